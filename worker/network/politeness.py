"""Per-host limits shared by feed polling, page fetching and discovery.

Per-host limits hold across all workers on all machines when the broker is Redis (Lua
scripts on Redis keys); the embedded single-process mode uses in-process locks. A host
answering 429/503 with ``Retry-After`` is backed off for that long. A request waits for
its host itself at most ``MAX_WAIT`` seconds; further back in the host's line it raises
``HostBusy`` with its turn, and the task retries then, without holding a worker thread.
(robots.txt is :mod:`worker.network.robots`.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import redis

from worker.core.settings import Settings


class HostBusy(Exception):
    """The host's limits say: not now. Try again after ``retry_after`` seconds."""

    def __init__(self, host: str, retry_after: float) -> None:
        super().__init__(f"host {host} is rate-limited for {retry_after:.1f}s")
        self.host = host
        self.retry_after = retry_after


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
