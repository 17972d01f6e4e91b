"""Per-host limits shared by feed polling, page fetching and discovery: the crawl frontier.

Each host has a **timeline**: at most ``host_max_concurrency`` requests in flight, one
start per ``host_min_interval`` seconds, and none during a back-off (``Retry-After``).
The timeline holds across all workers on all machines when the broker is Redis (Lua
scripts on Redis keys, Redis's own clock); the embedded single-process mode keeps the
same timeline in process memory.

A request whose host is free takes its slot at once. A request whose host is not free
is never waited for in a worker thread: it is given a **turn**, the next free place on
the host's timeline (one ``turn_spacing`` after the last turn given out, and not before
the host is free), and raises :class:`HostBusy` with the seconds to its turn; its task
is re-sent with that countdown, which frees the thread for work on other hosts. A turn
is reserved under the caller's ``key`` (``article:ID`` for a fetch, ``feed:ID`` for a
poll): when the re-sent message comes back at its turn, the slot is its own, and no
request without a turn can take it in between. So the work of one host is done at the
host's pace, in the order it arrived (but for a fetch whose turn moved: the end of the
line), each item taking at most one more message (none for a new article whose poll
reserved its turn: ``worker.feeds.polling.send_fetches``), while every other host's
work goes ahead: the host's readiness picks the work, not the queue
order. The feed dispatcher reserves the turns of the feeds it hands out before it sends
their polls (:func:`reserve_turns`), so 40 feeds of one host are sent for 40 different
seconds.

A worker thread waits only for less than ``max_wait`` (a fraction of a second: a
message delivered a moment before its turn, or right after the request before it
started late), never for a host's line.

The limiter spaces the *starts* it gives out; a request still leaves its thread a
moment later (the connection, the request's headers, a thread the system ran late), and
a request that left late was followed by the next one on time: the host's server saw
two requests 0.78 s apart with a 1 s interval (issue 16). So the slot also paces the
moment a request actually leaves: the first write of its headers on the socket
(:func:`worker.network.netguard.send_gate`) waits, when the host's last request left
less than ``host_min_interval`` ago, or while another request of the host is between
its check and the end of its write, for the rest of the interval (a wait in the thread,
only as long as the request before was late), holds the host until its own write has
ended and then records that moment, per host, across threads (and across processes on
Redis, on Redis's clock): see :data:`SEND_HOLD`. On Redis the slot's take makes that
first check and hold in its own round trip; the gate asks again only for a request that
did not leave when the take said (a new connection, a thread run late).

A turn is a reservation, not work: the work itself is the article's or the feed's row
in the database. A turn whose message is lost (a killed worker, a Redis flush) is an
unused second on the host's timeline; the row is re-sent by the sweep or the feed's
lease runs out, and it takes a new turn. (robots.txt is :mod:`worker.network.robots`.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import redis

from worker.core.settings import Settings
from worker.network.netguard import send_gate

SEND_HOLD = 3.0
"""Seconds a request's record holds its host before the end of its first write is known
(see :class:`SendPace`). The send gate records a request when it finds the host free,
before the write; the thread can be run late between that record and the write (a
thread waiting for the GIL or a core), and the request then leaves after its record.
Recorded as the moment of the check, or that moment plus a few milliseconds, the host's
next request counted its interval from there and could leave less than the interval
after it: issue 16's poll cycle at load 57–85 had 6 pairs of one host's requests started
0.47–1.00 s apart at the client, each the first one's thread stalled 0.57–1.33 s between
its check and its write. So the record before the write is a hold, this far ahead of
the check: the host's next request waits while it stands; once the write has ended the
record becomes the write's end (:meth:`SendPace.after_send`), and the next request
counts its interval from there. A request that never reaches its write (its process
killed) holds its host this long, once."""


class _Pacer(Protocol):
    def pace(self, host: str, own: str = "") -> tuple[float, str]: ...

    def settle(self, host: str, own: str) -> None: ...


class SendPace:
    """The :class:`~worker.network.netguard.SendGate` of a request of ``host``: before
    its headers leave, wait until the host's last request left ``interval`` seconds ago
    and no request of the host is between its check and the end of its write, and hold
    the host (a record :data:`SEND_HOLD` ahead); once the write has ended, the record
    becomes that moment (on Redis each record is a round trip, on Redis's clock).

    ``planned``, ``own``: the slot's take already did the first check and hold (the
    Redis limiter's script, in the same round trip): the request leaves at ``planned``
    (``time.monotonic()``), held by ``own``. A request that is there well within its
    hold (counted from ``recorded``, the soonest moment the hold can stand for: the take
    was asked then, plus its wait; its answer can reach the thread late) leaves without
    asking again; a later one asks as above, where its own hold does not hold it back."""

    __slots__ = ("host", "interval", "own", "pacer", "planned", "recorded")

    def __init__(
        self,
        pacer: _Pacer,
        host: str,
        interval: float,
        planned: float = 0.0,
        own: str = "",
        recorded: float | None = None,
    ) -> None:
        self.pacer = pacer
        self.host = host
        self.interval = interval
        self.planned = planned
        self.own = own
        self.recorded = planned if recorded is None else recorded

    def before_send(self) -> None:
        if self.own:
            pause = self.planned - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if time.monotonic() - self.recorded <= SEND_HOLD / 2:
                return  # the take's hold stands for this write
        while True:
            wait, own = self.pacer.pace(self.host, own=self.own)
            if wait <= 0:
                self.own = own
                return
            # a hold of another request can end (its write ended) before ``wait`` says:
            # asked again soon. The wait is bounded by a hold and an interval (a hold
            # whose request never wrote runs out), and by the slot's concurrency
            time.sleep(min(wait, 0.1))

    def after_send(self) -> None:
        if self.own:
            self.pacer.settle(self.host, self.own)


@contextmanager
def _paced(pacer: _Pacer, host: str, interval: float) -> Iterator[None]:
    """A request's send inside a slot of ``host``: paced by :class:`SendPace` when the
    host has an interval (the local limiter's ``slot``; the Redis one's take makes the
    first record itself)."""
    if interval > 0:
        with send_gate(SendPace(pacer, host, interval)):
            yield
    else:
        yield


class HostBusy(Exception):
    """The host's limits say: not now. Try again after ``retry_after`` seconds (the
    caller's turn, when it gave a key)."""

    def __init__(self, host: str, retry_after: float) -> None:
        super().__init__(f"host {host} is rate-limited for {retry_after:.1f}s")
        self.host = host
        self.retry_after = retry_after


@dataclass(frozen=True)
class HostLine:
    """One host of the frontier as the limiter sees it: turns reserved and not yet
    taken, seconds until the host's timeline is free for a request without a turn
    (0: free now), and seconds until its last reserved turn."""

    host: str
    turns: int
    free_in: float
    last_turn_in: float


class HostLimiter(Protocol):
    def slot(self, host: str, key: str | None = None) -> AbstractContextManager[None]: ...

    def back_off(self, host: str, seconds: float) -> None: ...

    def reserve(self, host: str, key: str, earliest: float = 0.0) -> float: ...

    def book(self, host: str, key: str) -> float: ...

    def lines(self, limit: int = 20) -> list[HostLine]: ...


# How long a worker thread may wait for a host itself: only a message that arrives a
# moment before its turn, or finds the request before it started a moment late. Anything
# longer is a HostBusy with a turn, and the thread goes on with other work. (It was 10 s,
# then 2 s, and every thread of a worker waited in one host's line while 99 hosts were
# free: issue 16.)
MAX_WAIT = 0.25

# Turns further back than this are forgotten (their message was lost long ago).
TURN_MEMORY = 3600.0

# A turn this long past is no longer honoured: its message was lost, and the request
# that now comes with its key (re-sent by the sweep) takes a new turn at the end of the
# line. A message that is only late (its worker was busy) keeps its turn.
STALE_TURN = 300.0

TURN_LEAD = 0.1
"""Seconds a message for a host's turn is due before the turn. It comes a moment early
and its thread waits out the rest in :meth:`slot` (under :data:`MAX_WAIT`), which
starts the request at its turn, never before; the message's delivery and the step's
first transaction then happen within the lead instead of making the request late, which
moved every later turn of the host by as much (on one host, 4.6% a turn: issue 16)."""


def turn_countdown(seconds_to_turn: float) -> float:
    """The countdown of a message for a turn ``seconds_to_turn`` seconds ahead."""
    return max(0.0, seconds_to_turn - TURN_LEAD)


FRONTIER_KEY = "cw:frontier"
"""Redis sorted set of the hosts with reserved turns: host -> time of its last turn."""


def turn_spacing(settings: Settings) -> float:
    """Seconds between two turns of a host's line: the host's minimum interval, or,
    without one, a guess of one second per request shared by the concurrent slots."""
    return max(settings.host_min_interval, 1.0 / max(1, settings.host_max_concurrency))


def _default_max_ahead(settings: Settings) -> float:
    from worker.core.queues import max_countdown

    return max_countdown(settings)


# One round trip per attempt; the clock is Redis's own (one clock for every machine),
# read inside the script (scripts are replicated by their effects, Redis >= 5).
# KEYS: slots, next, backoff, line, turns, frontier, moved (the last turn moved because
# the request before it started late), sent (when the host's last request left: _PACE).
# ARGV: limit, interval, token, ttl, key ('' for none), spacing, max_ahead, tolerance,
# host, mode ('take', 'reserve', 'ahead' (a reserve that first takes a poll's turn:
# reserve_ahead) or 'book': see HostLimiter.book), stale (seconds past which a turn is
# forgotten), earliest (a new turn not sooner than this many seconds from now).
# Returns the seconds to wait as a string: '0' means the slot was taken, and so does
# 'T<seconds> <record>' (a take with an interval: its request leaves in that many seconds,
# recorded as the host's last one under that string; see SendPace).
_ACQUIRE = """
local slots, nxt, backoff, line, turns, frontier, moved, sent = KEYS[1], KEYS[2],
    KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local limit, interval, token, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3],
    tonumber(ARGV[4])
local key, spacing, max_ahead, tol = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]),
    tonumber(ARGV[8])
local host, mode, stale, earliest = ARGV[9], ARGV[10], tonumber(ARGV[11]),
    tonumber(ARGV[12])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = tonumber(redis.call('GET', backoff) or '0')
local n = tonumber(redis.call('GET', nxt) or '0')
local last = tonumber(redis.call('GET', line) or '0')
local reserving = mode == 'reserve' or mode == 'ahead'

-- A fetch before the polls: the first poll turn ('feed:' key) at least ``from`` is given
-- to ``key``, and that poll goes to the end of the line. The host's turns stay where
-- they were, one more at the end: its pace is unchanged, only their order.
local function displace(from)
    local cand = redis.call('ZRANGEBYSCORE', turns, from, '+inf', 'WITHSCORES', 'LIMIT', 0, 64)
    for i = 1, #cand, 2 do
        if string.sub(cand[i], 1, 5) == 'feed:' then
            local at = tonumber(cand[i + 1])
            local to = math.max(last + spacing, b)
            if at < b or to - now > max_ahead then return nil end
            redis.call('ZADD', turns, at, key, to, cand[i])
            redis.call('EXPIRE', turns, math.ceil(to - now + 3600))
            redis.call('SET', line, tostring(to), 'PX', math.ceil((to - now) * 1000) + 1000)
            redis.call('ZADD', frontier, to, host)
            return tostring(at - now)
        end
    end
    return nil
end

local function book(at)
    if at - now <= max_ahead then
        redis.call('ZADD', turns, at, key)
        redis.call('EXPIRE', turns, math.ceil(at - now + 3600))
        if at > last then
            redis.call('SET', line, tostring(at), 'PX', math.ceil((at - now) * 1000) + 1000)
            redis.call('ZADD', frontier, at, host)
        end
    end
    return tostring(at - now)
end

-- The slot's take: also when its request leaves (_PACE's first check and record, in
-- this round trip): once the host's last request left ``interval`` ago, at most
-- ``interval`` from now, and holds the host (SEND_HOLD) until its write ends; none
-- while another request holds it. Its return is 'T<seconds to the leave> <the hold>'.
local taken = '0'
local function take()
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    if redis.call('ZCARD', slots) >= limit then return false end
    if mode == 'book' then return true end  -- a slot is free: nothing taken
    redis.call('ZADD', slots, now + ttl, token)
    redis.call('EXPIRE', slots, math.ceil(ttl) + 1)
    if interval > 0 then
        redis.call('SET', nxt, tostring(now + interval), 'PX', math.ceil(interval * 1000) + 1)
        local left = tonumber(redis.call('GET', sent) or '0')
        -- a record ahead of now is a hold (SendPace: a request between its check and
        -- the end of its write): no leave planned on it, the send gate waits for it
        if left <= now then
            local leave = math.min(math.max(now, left + interval), now + interval)
            local rec = leave + @SEND_HOLD@
            local own = tostring(rec)
            redis.call('SET', sent, own, 'PX', math.ceil((rec - now + interval) * 1000) + 1000)
            taken = 'T' .. tostring(leave - now) .. ' ' .. own
        end
    end
    if key ~= '' then redis.call('ZREM', turns, key) end
    return true
end

local r = nil
if key ~= '' then r = tonumber(redis.call('ZSCORE', turns, key)) end
-- a turn long past (its message was lost), or past when the dispatcher asks again: gone
if r ~= nil and (r < now - stale or (reserving and r < now)) then r = nil end
if r ~= nil then
    if reserving or r > now + tol then return tostring(r - now) end
    if b > now + tol then  -- backed off since: a new turn at the end of the line
        return book(math.max(last + spacing, b))
    end
    local free = math.max(b, n, r)
    if free > now + tol then  -- the request before started late: move this turn,
        -- to a place of its own after every turn moved before it (in the order they
        -- are moved: the first of many late requests of one host is not joined there
        -- by all the others, each sent back again when one of them takes it)
        local at = math.max(free, tonumber(redis.call('GET', moved) or '0') + spacing)
        -- a look ('book') whose line goes on after it: to the end of the line, not
        -- onto the next turns (each taken at its own time would move it again); a
        -- fetch takes the next poll's turn instead, when there is one (displace)
        if mode == 'book' and last > r then
            if string.sub(key, 1, 8) == 'article:' then
                local before = displace(at - tol)
                if before then return before end
            end
            at = math.max(at, last + spacing)
        end
        redis.call('ZADD', turns, at, key)
        redis.call('SET', moved, tostring(at), 'PX', math.ceil((at - now) * 1000) + 1000)
        if at > last then
            redis.call('SET', line, tostring(at), 'PX', math.ceil((at - now) * 1000) + 1000)
            redis.call('ZADD', frontier, at, host)
        end
        return tostring(at - now)
    end
    if free > now then return tostring(free - now) end
    if take() then return taken end
    redis.call('ZADD', turns, now + spacing, key)  -- every slot in flight
    return tostring(spacing)
end
if mode == 'ahead' then
    local before = displace(now + earliest)
    if before then return before end
    earliest = 0
end
local at = math.max(now + earliest, b, n, last + spacing)
if at <= now and not reserving then
    if take() then
        if mode ~= 'book' then return taken end
    else
        if key == '' then return '0.2' end  -- every slot in flight: one may end any moment
        at = now + spacing
    end
end
if key == '' then return tostring(at - now) end
return book(at)
""".replace("@SEND_HOLD@", repr(SEND_HOLD))

# When a host's last request left (SendPace), on Redis's clock. KEYS: sent. ARGV:
# interval, what ('check': hold the host for a request if it is free; 'settle': the
# request's write ended), own (the request's hold: its own take's, when it made one).
# check returns the seconds to wait, or '0 <hold>': the host held for the request.
_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local raw = redis.call('GET', KEYS[1])
local last = tonumber(raw or '0')
local mine = ARGV[3] ~= '' and raw == ARGV[3]
if ARGV[2] == 'settle' then
    -- the write's end (or later: now), unless another request holds the host since
    if mine or last < now then
        redis.call('SET', KEYS[1], tostring(now), 'PX', math.ceil(interval * 1000) + 1000)
    end
    return '0'
end
if last + interval > now and not mine then
    return tostring(last + interval - now)
end
local rec = tostring(now + @SEND_HOLD@)
redis.call('SET', KEYS[1], rec, 'PX', math.ceil((@SEND_HOLD@ + interval) * 1000) + 1000)
return '0 ' .. rec
""".replace("@SEND_HOLD@", repr(SEND_HOLD))


# The hosts with turns, for `claimwire status`: ARGV: now-relative horizon, limit.
_LINES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60)
local hosts = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', now - 60, 'WITHSCORES',
    'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for i = 1, #hosts, 2 do
    local h = hosts[i]
    local p = 'cw:host:' .. h .. ':'
    redis.call('ZREMRANGEBYSCORE', p .. 'turns', '-inf', now - 3600)
    local count = redis.call('ZCARD', p .. 'turns')
    local b = tonumber(redis.call('GET', p .. 'backoff') or '0')
    local n = tonumber(redis.call('GET', p .. 'next') or '0')
    local last = tonumber(hosts[i + 1])
    table.insert(out, {h, count, tostring(math.max(0, b - now, n - now)), tostring(last - now)})
end
return out
"""


class RedisHostLimiter:
    """The frontier's timelines in Redis, across every process using this Redis.
    A request that would wait longer than ``max_wait`` raises :class:`HostBusy` with the
    seconds to its turn (reserved under its ``key``, when it has one)."""

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
        self._lines = client.register_script(_LINES)
        self._pace = client.register_script(_PACE)

    def pace(self, host: str, own: str = "") -> tuple[float, str]:
        """Seconds before a request of ``host`` may leave (its last one left less than
        the interval ago, or one is between its check and the end of its write, and
        that was not the request's own hold ``own``), or 0 and the host held for the
        request: ``(0.0, hold)`` (:class:`SendPace`)."""
        said = self._pace(
            keys=[f"cw:host:{host}:sent"],
            args=[self.settings.host_min_interval, "check", own],
        )
        wait, _, hold = (said.decode() if isinstance(said, bytes) else str(said)).partition(" ")
        return float(wait), hold

    def settle(self, host: str, own: str) -> None:
        """The write of the request holding ``host`` by ``own`` ended: recorded now."""
        self._pace(
            keys=[f"cw:host:{host}:sent"],
            args=[self.settings.host_min_interval, "settle", own],
        )

    def _keys(self, host: str) -> list[str]:
        p = f"cw:host:{host}:"
        return [
            p + "slots",
            p + "next",
            p + "backoff",
            p + "line",
            p + "turns",
            FRONTIER_KEY,
            p + "moved",
            p + "sent",
        ]

    def _args(
        self, host: str, token: str, key: str | None, mode: str, earliest: float = 0.0
    ) -> list[str | float]:
        s = self.settings
        return [
            s.host_max_concurrency,
            s.host_min_interval,
            token,
            s.total_timeout + 30,
            key or "",
            turn_spacing(s),
            self.max_ahead,
            min(self.max_wait, MAX_WAIT),
            host,
            mode,
            STALE_TURN,
            earliest,
        ]

    @contextmanager
    def slot(self, host: str, key: str | None = None) -> Iterator[None]:
        token = uuid.uuid4().hex
        waited = 0.0
        keys = self._keys(host)
        while True:
            asked = time.monotonic()
            got = self._acquire(keys=keys, args=self._args(host, token, key, "take"))
            said = got.decode() if isinstance(got, bytes) else str(got)
            if said.startswith("T"):  # taken, and when its request leaves (SendPace)
                leave_in, own = said[1:].split(" ", 1)
                leave = max(0.0, float(leave_in))
                # not before the record (counted from the answer), and the record is not
                # sooner than counted from the question
                planned, recorded = time.monotonic() + leave, asked + leave
                break
            wait = float(said)
            if wait <= 0:
                planned, own, recorded = 0.0, "", 0.0
                break
            if waited + wait > self.max_wait:
                raise HostBusy(host, wait)
            time.sleep(wait)  # a moment before the turn (or the slot) is free
            waited += wait
        interval = self.settings.host_min_interval
        try:
            if interval > 0:
                with send_gate(SendPace(self, host, interval, planned, own, recorded)):
                    yield
            else:
                yield
        finally:
            self.r.zrem(keys[0], token)

    def reserve(self, host: str, key: str, earliest: float = 0.0) -> float:
        """Reserve a turn for ``key`` on the host's timeline (or keep the one it has);
        return the seconds until it. Nothing is taken: the request comes at its turn.
        A new turn is not sooner than ``earliest`` seconds from now."""
        return float(
            self._acquire(
                keys=self._keys(host), args=self._args(host, "", key, "reserve", earliest)
            )
        )

    def book(self, host: str, key: str) -> float:
        """What :meth:`slot` would say for ``key``, without taking a slot: 0 when the
        request may start now (its turn, kept for it under ``key``, is now), else the
        seconds to its turn (reserved, as :meth:`slot` reserves it). A caller asks this
        before work it would undo for a busy host; the slot itself is then taken at the
        turn, which no request without it can take."""
        return float(self._acquire(keys=self._keys(host), args=self._args(host, "", key, "book")))

    def reserve_many(
        self,
        items: Iterable[tuple[str, str]],
        earliest: Iterable[float] | None = None,
        *,
        ahead: bool = False,
    ) -> list[float]:
        """:meth:`reserve` for many (host, key) pairs in one round trip (``ahead``:
        :func:`reserve_ahead`'s turns, ``earliest`` the soonest poll turn taken)."""
        pipe = self.r.pipeline(transaction=False)
        items = list(items)
        mode = "ahead" if ahead else "reserve"
        for (host, key), soonest in zip(items, earliest or [0.0] * len(items), strict=True):
            self._acquire(
                keys=self._keys(host),
                args=self._args(host, "", key, mode, soonest),
                client=pipe,
            )
        return [float(x) for x in pipe.execute()]

    def _now(self) -> float:
        sec, usec = self.r.time()  # one clock for every machine
        return float(sec) + float(usec) / 1e6

    def back_off(self, host: str, seconds: float) -> None:
        until = self._now() + seconds
        self.r.set(self._keys(host)[2], str(until), px=int(seconds * 1000) + 1)

    def lines(self, limit: int = 20) -> list[HostLine]:
        """The hosts with the latest reserved turns (the longest lines first, roughly:
        a host's last turn is as far ahead as its line is long)."""
        rows = self._lines(keys=[FRONTIER_KEY], args=[limit])
        out = [
            HostLine(
                host=(h.decode() if isinstance(h, bytes) else str(h)),
                turns=int(count),
                free_in=float(free),
                last_turn_in=float(last),
            )
            for h, count, free, last in rows
        ]
        return sorted(out, key=lambda line: -line.turns)


class LocalHostLimiter:
    """The same timelines inside one process (the embedded mode runs one process)."""

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
        self._turns: dict[str, dict[str, float]] = {}
        self._moved: dict[str, float] = {}  # the last turn moved (see _ACQUIRE)
        self._sent: dict[str, float] = {}  # when the host's last request left
        self.offset = 0.0  # seconds added to the clock (tests move time forward)

    def _book(self, host: str, key: str, at: float, now: float) -> float:
        if at - now <= self.max_ahead:
            turns = self._turns.setdefault(host, {})
            turns[key] = at
            if at > self._line.get(host, 0.0):
                self._line[host] = at
            if len(turns) > 64 and len(turns) % 64 == 0:  # forget turns lost long ago
                for k in [k for k, v in turns.items() if v < now - TURN_MEMORY]:
                    del turns[k]
        return at - now

    def _take(self, host: str, key: str, now: float, mode: str = "take") -> bool:
        """Take a slot now, if one of the host's concurrent slots is free (``book``:
        only say whether one is)."""
        if self._inflight.get(host, 0) >= self.settings.host_max_concurrency:
            return False
        if mode == "book":
            return True
        self._inflight[host] = self._inflight.get(host, 0) + 1
        self._next[host] = now + self.settings.host_min_interval
        turns = self._turns.get(host)
        if turns is not None and key:
            turns.pop(key, None)
            if not turns:
                del self._turns[host]
        return True

    def _try(self, host: str, key: str, mode: str, earliest: float = 0.0) -> float:
        """The Redis script's rules (``_ACQUIRE``), in this process."""
        now = time.monotonic() + self.offset
        tol = min(self.max_wait, MAX_WAIT)
        spacing = turn_spacing(self.settings)
        with self._lock:
            b = self._backoff.get(host, 0.0)
            n = self._next.get(host, 0.0)
            last = self._line.get(host, 0.0)
            reserving = mode in ("reserve", "ahead")
            r = self._turns.get(host, {}).get(key) if key else None
            if r is not None and (r < now - STALE_TURN or (reserving and r < now)):
                r = None
            if r is not None:
                if reserving or r > now + tol:
                    return r - now
                if b > now + tol:
                    return self._book(host, key, max(last + spacing, b), now)
                free = max(b, n, r)
                if free > now + tol:  # moved after every turn moved before it
                    at = max(free, self._moved.get(host, 0.0) + spacing)
                    if mode == "book" and last > r:  # and after the line (see _ACQUIRE)
                        if key.startswith("article:"):  # or a poll's turn (displace)
                            before = self._displace(host, key, at - tol, now, b, last, spacing)
                            if before is not None:
                                return before
                        at = max(at, last + spacing)
                    self._turns[host][key] = at
                    self._moved[host] = at
                    if at > last:
                        self._line[host] = at
                    return at - now
                if free > now:
                    return free - now
                if self._take(host, key, now, mode):
                    return 0.0
                self._turns[host][key] = now + spacing
                return spacing
            if mode == "ahead":
                before = self._displace(host, key, now + earliest, now, b, last, spacing)
                if before is not None:
                    return before
                earliest = 0.0
            at = max(now + earliest, b, n, last + spacing)
            if at <= now and not reserving:
                if not self._take(host, key, now, mode):
                    if not key:
                        return 0.2
                    at = now + spacing
                elif mode != "book":
                    return 0.0
            if not key:
                return at - now
            return self._book(host, key, at, now)

    def _displace(
        self,
        host: str,
        key: str,
        since: float,
        now: float,
        b: float,
        last: float,
        spacing: float,
    ) -> float | None:
        """The Redis script's ``displace``: ``key`` takes the first poll turn at
        ``since`` or later, and that poll goes to the end of the host's line."""
        turns = self._turns.get(host, {})
        polls = [(at, k) for k, at in turns.items() if at >= since and k.startswith("feed:")]
        if not polls:
            return None
        at, poll = min(polls)
        to = max(last + spacing, b)
        if at < b or to - now > self.max_ahead:
            return None
        turns[key] = at
        turns[poll] = to
        self._line[host] = to
        return at - now

    def pace(self, host: str, own: str = "") -> tuple[float, str]:
        """As :meth:`RedisHostLimiter.pace`, in this process (its slots make no hold at
        the take: ``own`` is never given)."""
        interval = self.settings.host_min_interval
        with self._lock:
            now = time.monotonic() + self.offset
            last = self._sent.get(host)
            if last is not None and last + interval > now and repr(last) != own:
                return last + interval - now, ""
            hold = now + SEND_HOLD
            self._sent[host] = hold
            return 0.0, repr(hold)

    def settle(self, host: str, own: str) -> None:
        """As :meth:`RedisHostLimiter.settle`."""
        with self._lock:
            now = time.monotonic() + self.offset
            last = self._sent.get(host)
            if last is None or repr(last) == own or last < now:
                self._sent[host] = now

    @contextmanager
    def slot(self, host: str, key: str | None = None) -> Iterator[None]:
        waited = 0.0
        while (wait := self._try(host, key or "", "take")) > 0:
            if waited + wait > self.max_wait:
                raise HostBusy(host, wait)
            time.sleep(wait)
            waited += wait
        try:
            with _paced(self, host, self.settings.host_min_interval):
                yield
        finally:
            with self._lock:
                self._inflight[host] -= 1

    def reserve(self, host: str, key: str, earliest: float = 0.0) -> float:
        return self._try(host, key, "reserve", earliest)

    def book(self, host: str, key: str) -> float:
        return self._try(host, key, "book")

    def reserve_many(
        self,
        items: Iterable[tuple[str, str]],
        earliest: Iterable[float] | None = None,
        *,
        ahead: bool = False,
    ) -> list[float]:
        items = list(items)
        mode = "ahead" if ahead else "reserve"
        return [
            self._try(host, key, mode, soonest)
            for (host, key), soonest in zip(items, earliest or [0.0] * len(items), strict=True)
        ]

    def back_off(self, host: str, seconds: float) -> None:
        with self._lock:
            self._backoff[host] = time.monotonic() + self.offset + seconds

    def lines(self, limit: int = 20) -> list[HostLine]:
        now = time.monotonic() + self.offset
        with self._lock:
            out = [
                HostLine(
                    host=host,
                    turns=len(turns),
                    free_in=max(
                        0.0, self._backoff.get(host, 0.0) - now, self._next.get(host, 0.0) - now
                    ),
                    last_turn_in=self._line.get(host, now) - now,
                )
                for host, turns in self._turns.items()
                if turns
            ]
        return sorted(out, key=lambda line: -line.turns)[:limit]


class TurnAhead(Exception):
    """The request's turn is ``retry_after`` seconds ahead (it moved: the request before
    it started late). Raised instead of :class:`HostBusy` by a :class:`KeyedLimiter`
    with ``send_back_within``, so that its caller sends the request back for the turn
    instead of handling it as a busy host."""

    def __init__(self, host: str, retry_after: float) -> None:
        super().__init__(f"the turn on {host} is {retry_after:.2f}s ahead")
        self.host = host
        self.retry_after = retry_after


class KeyedLimiter:
    """A limiter whose every slot is asked under one key (a poll of one feed, whose code
    does not know its key): ``slot(host)`` is ``limiter.slot(host, key)``. With
    ``send_back_within``, a turn at most that far ahead raises :class:`TurnAhead`
    rather than :class:`HostBusy`."""

    def __init__(self, limiter: HostLimiter, key: str, send_back_within: float = 0.0) -> None:
        self.limiter = limiter
        self.key = key
        self.send_back_within = send_back_within

    @contextmanager
    def slot(self, host: str, key: str | None = None) -> Iterator[None]:
        try:
            with self.limiter.slot(host, key or self.key):
                yield
        except HostBusy as exc:
            if type(exc) is HostBusy and exc.retry_after <= self.send_back_within:
                raise TurnAhead(host, exc.retry_after) from exc
            raise

    def back_off(self, host: str, seconds: float) -> None:
        self.limiter.back_off(host, seconds)

    def reserve(self, host: str, key: str, earliest: float = 0.0) -> float:
        return self.limiter.reserve(host, key, earliest)

    def book(self, host: str, key: str) -> float:
        return self.limiter.book(host, key)

    def lines(self, limit: int = 20) -> list[HostLine]:
        return self.limiter.lines(limit)


def reserve_turns(
    limiter: HostLimiter, items: list[tuple[str, str]], earliest: list[float] | None = None
) -> list[float]:
    """Reserve a turn for each (host, key), in order; the seconds until each. A new turn
    of item *i* is not sooner than ``earliest[i]`` seconds from now."""
    soonest = earliest or [0.0] * len(items)
    many = getattr(limiter, "reserve_many", None)
    if many is not None:
        return list(many(items, soonest))
    return [limiter.reserve(host, key, e) for (host, key), e in zip(items, soonest, strict=True)]


AHEAD_OF_POLLS = 1.0
"""Seconds from now before which a new article's fetch does not take a poll's turn
(:func:`reserve_ahead`): its poll commits and its message is delivered first."""


def reserve_ahead(limiter: HostLimiter, items: list[tuple[str, str]]) -> list[float]:
    """Reserve a turn for each new article's fetch ``(host, key)``, in order, ahead of
    the polls waiting in the host's line: the fetch takes the first poll turn (a
    ``feed:`` key) at least :data:`AHEAD_OF_POLLS` seconds from now, and that poll
    goes to the end of the line (its message, come at its old turn, is sent back for
    the new one). Without a poll turn ahead, the end of the line, as
    :func:`reserve_turns`. The host's turns are the same instants, one more at the end:
    its pace and concurrency are unchanged, only the order of the line.

    A host's 40 feeds are 40 s of turns; a new article found by the first of them was
    fetched after the 40th, and the CPU steps of a poll cycle's new articles all came
    after its polls (issue 16). Now they overlap them."""
    many = getattr(limiter, "reserve_many", None)
    if many is None:
        return reserve_turns(limiter, items)
    return list(many(items, [AHEAD_OF_POLLS] * len(items), ahead=True))


def make_limiter(settings: Settings) -> HostLimiter:
    url = settings.effective_broker_url
    if url.startswith(("redis://", "rediss://")):
        return RedisHostLimiter(redis.Redis.from_url(url), settings)
    return LocalHostLimiter(settings)
