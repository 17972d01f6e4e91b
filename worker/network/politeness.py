"""Politeness shared by feed polling and page fetching: robots.txt and per-host limits.

* robots.txt is parsed with protego and cached per origin in the database (shared by
  every worker, refreshed after ``robots_cache_ttl``). Each process also keeps the
  parsed rules of a good copy for up to ``ROBOTS_MEMORY_TTL`` seconds (never past the
  database copy's own expiry), so that polls and fetches of one host do not read and
  parse the same row every time.
* Per-host limits hold across all workers on all machines when the broker is Redis
  (Lua scripts on Redis keys); the embedded single-process mode uses in-process locks.
  A host answering 429/503 with ``Retry-After`` is backed off for that long. A request
  waits for its host itself at most ``MAX_WAIT`` seconds; further back in the host's
  line it raises ``HostBusy`` with its turn, and the task retries then, without holding
  a worker thread.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Protocol

import redis
from protego import Protego
from sqlmodel import Session

from schemas.models import RobotsTxt
from schemas.types import utcnow
from worker.core.db import upsert
from worker.core.settings import Settings
from worker.network.http import FetchError, HttpClient
from worker.network.urls import host_of, origin_of


class HostBusy(Exception):
    """The host's limits say: not now. Try again after ``retry_after`` seconds."""

    def __init__(self, host: str, retry_after: float) -> None:
        super().__init__(f"host {host} is rate-limited for {retry_after:.1f}s")
        self.host = host
        self.retry_after = retry_after


# ---------------------------------------------------------------------------- robots

# How long an unreachable robots.txt (5xx, 429, network error) is remembered before we
# ask again. Meanwhile the host is treated as disallowing everything (RFC 9309 2.3.1.4),
# unless an earlier good copy is cached: that copy stays in force (RFC 9309 2.4).
ROBOTS_ERROR_TTL = 300


class RobotsUnavailable(HostBusy):
    """robots.txt could not be read (server error or unreachable): nothing on the host
    may be fetched for now. ``why`` is the real cause (``HTTP 503``, ``network error:
    cannot resolve HOST: ...``, ``timeout: ConnectTimeout``); ``retry_after`` is when
    robots.txt is asked again. A ``HostBusy`` for polls and discovery (they wait); an
    article step counts it as a transient attempt (``tasks.base``), so a host that stays
    unreachable ends its articles in quarantine with this message."""

    def __init__(self, host: str, retry_after: float, why: str) -> None:
        super().__init__(host, retry_after)
        self.args = (f"robots.txt of {host} unreachable: {why}",)
        self.why = why


# Origins whose robots.txt just failed, in this process: (when, status, why). The
# database row would say the same, but a caller that lets RobotsUnavailable propagate
# rolls its transaction back, and the many items of one host must not each ask again.
_robots_down: dict[str, tuple[datetime, int | None, str]] = {}
_robots_down_lock = threading.Lock()


# Parsed good copies in this process: origin -> (until, status, rules). ``until`` is
# the earlier of ``ROBOTS_MEMORY_TTL`` from when it was read and the database copy's
# expiry, so the memory never outlives the shared cache's TTL; a copy refreshed by
# another worker is seen here at most ``ROBOTS_MEMORY_TTL`` seconds later.
ROBOTS_MEMORY_TTL = 60.0
_robots_rules: dict[str, tuple[datetime, int | None, Protego | None]] = {}


def forget_robots_failures() -> None:
    """Forget the in-process memory of robots.txt: failed downloads and the parsed
    rules of good copies (tests)."""
    with _robots_down_lock:
        _robots_down.clear()
        _robots_rules.clear()


def _decide(url: str, status: int | None, rules: Protego | None, settings: Settings) -> bool:
    if status is not None and status in (401, 403):
        return False  # the whole site is closed to robots
    if rules is None:
        return True
    return bool(rules.can_fetch(url, settings.user_agent))


def _unreachable(status: int | None) -> bool:
    """RFC 9309: a 5xx (and, like Google, a 429) or no answer at all means unreachable."""
    return status is None or status == 429 or status >= 500


def robots_allows(session: Session, http: HttpClient, url: str, settings: Settings) -> bool:
    """Whether robots.txt of ``url``'s origin lets our user agent fetch it.

    Raises :class:`RobotsUnavailable` while the host's robots.txt answers 5xx/429 or
    cannot be reached and no earlier good copy is cached (complete disallow, temporary).
    """
    if not settings.respect_robots:
        return True
    origin = origin_of(url)
    now = utcnow()
    with _robots_down_lock:
        remembered = _robots_rules.get(origin)
    if remembered is not None and now < remembered[0]:
        return _decide(url, remembered[1], remembered[2], settings)
    row = session.get(RobotsTxt, origin)
    age = (now - row.fetched_at).total_seconds() if row is not None else None
    ttl = settings.robots_cache_ttl
    if row is not None and _unreachable(row.status):
        ttl = min(ttl, ROBOTS_ERROR_TTL)
    with _robots_down_lock:
        down = _robots_down.get(origin)
    recent = down is not None and (now - down[0]).total_seconds() < ROBOTS_ERROR_TTL
    if down is not None and recent:
        stale = row is None or age is None or age > ttl or row.fetched_at < down[0]
        if stale:
            retry = ROBOTS_ERROR_TTL - (now - down[0]).total_seconds()
            raise RobotsUnavailable(host_of(url), max(1.0, retry), down[2])
    if row is None or age is None or age > ttl:
        status, body = _download_robots(http, origin)
        with _robots_down_lock:
            _robots_rules.pop(origin, None)
            if _unreachable(status) and (row is None or _unreachable(row.status)):
                _robots_down[origin] = (now, status, body)
            else:
                _robots_down.pop(origin, None)
        values: dict[str, object] = {"origin": origin, "fetched_at": now, "status": status}
        values["body"] = body  # for an unreachable answer: its cause, for other workers
        if _unreachable(status) and row is not None and not _unreachable(row.status):
            # Keep the last good copy; look again in ROBOTS_ERROR_TTL seconds.
            values["status"], values["body"] = row.status, row.body
            values["fetched_at"] = now - timedelta(seconds=max(0, ttl - ROBOTS_ERROR_TTL))
        # An upsert: another worker may be storing the same origin's robots.txt now.
        upsert(session, RobotsTxt, values, ["origin"])
        if row is not None:
            session.refresh(row)
        else:
            row = session.get(RobotsTxt, origin)
        assert row is not None
        age = (now - row.fetched_at).total_seconds()
    if _unreachable(row.status):
        why = row.body or (f"HTTP {row.status}" if row.status else "no answer")
        retry = max(1.0, ROBOTS_ERROR_TTL - max(age, 0.0))
        raise RobotsUnavailable(host_of(url), retry, why)
    rules = Protego.parse(row.body) if row.body else None
    until = min(now + timedelta(seconds=ROBOTS_MEMORY_TTL), row.fetched_at + timedelta(seconds=ttl))
    with _robots_down_lock:
        _robots_rules[origin] = (until, row.status, rules)
    return _decide(url, row.status, rules, settings)


def _download_robots(http: HttpClient, origin: str) -> tuple[int | None, str]:
    """(status, body); status None when the server could not be reached at all.

    For an unreachable answer (:func:`_unreachable`) the body is instead its real cause,
    as the HTTP client words it (``network error: cannot resolve HOST: Name or service
    not known``, ``timeout: ConnectTimeout``, ``HTTP 503``): it is what the feed's last
    error and the article's failure reason show, and the database row keeps it for the
    other workers (no rules are ever parsed from an unreachable answer)."""
    try:
        resp = http.get(origin + "/robots.txt", max_bytes=500_000)
    except FetchError as exc:
        if exc.transient:
            # timeout, refused, reset, a name that does not resolve: unreachable
            return (exc.status if exc.status and _unreachable(exc.status) else None), exc.reason
        # Blocked address, redirect loop, too large...: no usable file, and asking again
        # will not help. Treated as unavailable (allow); the fetch itself meets the same
        # error and records it.
        return exc.status or 0, ""
    if _unreachable(resp.status):
        return resp.status, f"HTTP {resp.status}"
    if resp.status >= 400:
        return resp.status, ""
    return resp.status, resp.body.decode("utf-8", errors="replace")


# ------------------------------------------------------------------------ host limits


class HostLimiter(Protocol):
    def slot(self, host: str) -> AbstractContextManager[None]: ...

    def back_off(self, host: str, seconds: float) -> None: ...


# One round trip per attempt: the clock is Redis's own (one clock for every machine),
# read inside the script (scripts are replicated by their effects, Redis >= 5).
_ACQUIRE = """
local slots, nxt, backoff = KEYS[1], KEYS[2], KEYS[3]
local limit, interval, token, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3],
    tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = tonumber(redis.call('GET', backoff) or '0')
if b > now then return tostring(b - now) end
local n = tonumber(redis.call('GET', nxt) or '0')
if n > now then return tostring(n - now) end
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
if redis.call('ZCARD', slots) >= limit then return '0.2' end
redis.call('ZADD', slots, now + ttl, token)
redis.call('EXPIRE', slots, math.ceil(ttl) + 1)
redis.call('SET', nxt, tostring(now + interval), 'PX', math.ceil(interval * 1000) + 1)
return '0'
"""


# A request that finds its host busy takes a turn in the host's line: the time it should
# come back, ``spacing`` after the last turn given out (and not before the host is free).
# Hundreds of articles of one busy host so come back one after another at the host's
# pace, each about once, instead of all at once every second. A turn further ahead than
# ``max_ahead`` (the longest countdown a retry may have) is not recorded: the retry comes
# back early, finds the host still closed, and takes its turn then; recording it would
# leave an unused hole in the line.
_TURN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local free_in, spacing, max_ahead = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = math.max(last + spacing, now + free_in)
if at - now <= max_ahead then
    redis.call('SET', KEYS[1], tostring(at), 'PX', math.ceil((at - now) * 1000) + 1)
end
return tostring(at - now)
"""

# How long a worker thread may wait for a host itself (sleeping, holding the thread)
# before it gives the host up: HostBusy with a turn in the host's line, and the task
# retries then. A host that is free within it is waited for in the thread (a retry that
# comes back a little before its turn, or a moment after another request took the
# slot), without a turn: sending those to the back of the line cost a third of a busy
# host's pace when measured. It used to be 10 s, so 32 threads of a worker all waited
# for one host at 1 request/s.
MAX_WAIT = 2.0


def turn_spacing(settings: Settings) -> float:
    """Seconds between two turns of the line: the host's minimum interval, or, without
    one, a guess of one second per request shared by the concurrent slots."""
    return max(settings.host_min_interval, 1.0 / max(1, settings.host_max_concurrency))


def _default_max_ahead(settings: Settings) -> float:
    from worker.core.queues import max_countdown

    return max_countdown(settings)


class RedisHostLimiter:
    """At most ``host_max_concurrency`` requests in flight and one request per
    ``host_min_interval`` seconds per host, across every process using this Redis.
    A request that would wait longer than ``max_wait`` raises :class:`HostBusy` with
    its turn in the host's line (``_TURN``)."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        max_wait: float = MAX_WAIT,
        max_ahead: float | None = None,
    ) -> None:
        self.r = client
        self.settings = settings
        self.max_wait = max_wait
        self.max_ahead = _default_max_ahead(settings) if max_ahead is None else max_ahead
        self._acquire = client.register_script(_ACQUIRE)
        self._turn = client.register_script(_TURN)

    def _keys(self, host: str) -> list[str]:
        return [f"cw:host:{host}:slots", f"cw:host:{host}:next", f"cw:host:{host}:backoff"]

    def _take_turn(self, host: str, free_in: float) -> float:
        args = [free_in, turn_spacing(self.settings), self.max_ahead]
        return float(self._turn(keys=[f"cw:host:{host}:line"], args=args))

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        token = uuid.uuid4().hex
        waited = 0.0
        keys = self._keys(host)
        ttl = self.settings.total_timeout + 30
        while True:
            wait = float(
                self._acquire(
                    keys=keys,
                    args=[
                        self.settings.host_max_concurrency,
                        self.settings.host_min_interval,
                        token,
                        ttl,
                    ],
                )
            )
            if wait <= 0:
                break
            if waited + wait > self.max_wait:
                raise HostBusy(host, self._take_turn(host, wait))
            time.sleep(wait)  # free soon: wait here (a retry at its turn, a little early)
            waited += wait
        try:
            yield
        finally:
            self.r.zrem(keys[0], token)

    def _now(self) -> float:
        sec, usec = self.r.time()  # one clock for every machine
        return float(sec) + float(usec) / 1e6

    def back_off(self, host: str, seconds: float) -> None:
        until = self._now() + seconds
        self.r.set(self._keys(host)[2], str(until), px=int(seconds * 1000) + 1)


class LocalHostLimiter:
    """The same limits inside one process (the embedded mode runs one process)."""

    def __init__(
        self, settings: Settings, max_wait: float = MAX_WAIT, max_ahead: float | None = None
    ) -> None:
        self.settings = settings
        self.max_wait = max_wait
        self.max_ahead = _default_max_ahead(settings) if max_ahead is None else max_ahead
        self._lock = threading.Lock()
        self._inflight: dict[str, int] = {}
        self._next: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._line: dict[str, float] = {}

    def _take_turn(self, host: str, free_in: float) -> float:
        """The host's line (see ``_TURN``), in this process."""
        now = time.monotonic()
        with self._lock:
            at = max(self._line.get(host, 0.0) + turn_spacing(self.settings), now + free_in)
            if at - now <= self.max_ahead:
                self._line[host] = at
            if self._line.get(host, now) < now:
                del self._line[host]  # an empty line: nothing to keep
            return at - now

    def _try(self, host: str) -> float:
        now = time.monotonic()
        with self._lock:
            wait = max(self._backoff.get(host, 0.0), self._next.get(host, 0.0)) - now
            if wait > 0:
                return wait
            if self._inflight.get(host, 0) >= self.settings.host_max_concurrency:
                return 0.2
            self._inflight[host] = self._inflight.get(host, 0) + 1
            self._next[host] = now + self.settings.host_min_interval
            return 0.0

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        waited = 0.0
        while (wait := self._try(host)) > 0:
            if waited + wait > self.max_wait:
                raise HostBusy(host, self._take_turn(host, wait))
            time.sleep(wait)
            waited += wait
        try:
            yield
        finally:
            with self._lock:
                self._inflight[host] -= 1

    def back_off(self, host: str, seconds: float) -> None:
        with self._lock:
            self._backoff[host] = time.monotonic() + seconds


def make_limiter(settings: Settings) -> HostLimiter:
    url = settings.effective_broker_url
    if url.startswith(("redis://", "rediss://")):
        return RedisHostLimiter(redis.Redis.from_url(url), settings)
    return LocalHostLimiter(settings)
