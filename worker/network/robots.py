"""robots.txt, shared by feed polling, page fetching and discovery.

robots.txt is parsed with protego and cached per origin in the database (shared by
every worker, refreshed after ``robots_cache_ttl``). Each process also keeps the
parsed rules of a good copy for up to ``ROBOTS_MEMORY_TTL`` seconds (never past the
database copy's own expiry), so that polls and fetches of one host do not read and
parse the same row every time. A robots.txt that cannot be read (5xx, 429, no answer)
closes the host for now (:class:`RobotsUnavailable`, a
:class:`~worker.network.politeness.HostBusy`), unless a good copy is cached.

robots.txt is a request to its host like any other: it is downloaded in the host's
slot (the caller's ``slot``: its turn on the host's timeline, the interval and the
concurrency of every worker and process, the send gate), as Scrapy's
``RobotsTxtMiddleware`` sends its robots.txt request through the engine's downloader
and so through the domain's download slot. The caller's own request then usually
waits for the host's next turn: sent back for it, the caller's transaction rolls back,
and the copy written in it with it. So a check that downloaded robots.txt says so
(``downloaded``), and the caller sent back keeps the copy with :func:`keeping` (the
sent-back path writes it in a transaction of its own, as a redirect hop is kept:
``worker.pages.fetch.RedirectWaits``): it is not downloaded again at the next turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from protego import Protego
from sqlmodel import Session

from schemas.models import RobotsTxt
from schemas.types import utcnow
from worker.core.db import upsert
from worker.core.settings import Settings
from worker.network.http import FetchError, HttpClient, Slot, UnknownHost
from worker.network.politeness import HostBusy, TurnAhead
from worker.network.urls import host_of, origin_of

# How long an unreachable robots.txt (5xx, 429, network error) is remembered before we
# ask again. Meanwhile the host is treated as disallowing everything (RFC 9309 2.3.1.4),
# unless an earlier good copy is cached: that copy stays in force (RFC 9309 2.4).
ROBOTS_ERROR_TTL = 300


class RobotsUnavailable(HostBusy):
    """robots.txt could not be read (server error or unreachable): nothing on the host
    may be fetched for now. ``why`` is the real cause (``HTTP 503``, ``network error:
    cannot resolve HOST: Temporary failure in name resolution``, ``timeout:
    ConnectTimeout``; a host name that does not exist is no such wait but
    :class:`~worker.network.http.UnknownHost`); ``retry_after`` is when
    robots.txt is asked again. A ``HostBusy`` for polls and discovery (they wait); an
    article step counts it as a transient attempt (``worker.pipeline.attempts``), so a
    host that stays unreachable ends its articles in quarantine with this message."""

    def __init__(self, host: str, retry_after: float, why: str) -> None:
        super().__init__(host, retry_after)
        self.args = (f"robots.txt of {host} unreachable: {why}",)
        self.why = why


@dataclass(frozen=True)
class RobotsCopy:
    """A robots.txt row a check downloaded and wrote in its caller's transaction. A
    caller whose own request is then sent back for its host's turn (its transaction
    rolls back) keeps it with :meth:`keep`, in the sent-back path's own transaction."""

    values: dict[str, object]

    def keep(self, session: Session) -> None:
        """Write the row again (an upsert: another worker may have stored the same
        origin meanwhile; its copy and this one are seconds apart)."""
        upsert(session, RobotsTxt, dict(self.values), ["origin"])


def _keep_all(copies: tuple[RobotsCopy, ...], then: object, session: Session) -> None:
    keep = getattr(then, "keep", None)
    if callable(keep):
        keep(session)  # what the wait itself keeps (a redirect hop: RedirectWaits)
    for copy in copies:
        copy.keep(session)


class RobotsKept(HostBusy):
    """A caller's request that must wait for its host's turn (``busy``, as its slot or
    a redirect hop said) after a check that downloaded the host's robots.txt in the
    host's slot: :meth:`keep` writes the robots.txt, and what ``busy`` keeps, in the
    sent-back path's own transaction (``worker.pipeline.attempts.take_back_start``)."""

    def __init__(self, busy: HostBusy, copies: tuple[RobotsCopy, ...]) -> None:
        super().__init__(busy.host, busy.retry_after)
        self.args = busy.args
        self.busy = busy
        self.copies = copies

    def keep(self, session: Session) -> None:
        _keep_all(self.copies, self.busy, session)


class RobotsKeptTurn(TurnAhead):
    """:class:`RobotsKept` for a poll whose turn is ahead (:class:`TurnAhead`): the poll
    task keeps the robots.txt when it holds the poll or sends it back
    (``tasks.polls``)."""

    def __init__(self, ahead: TurnAhead, copies: tuple[RobotsCopy, ...]) -> None:
        super().__init__(ahead.host, ahead.retry_after)
        self.copies = copies

    def keep(self, session: Session) -> None:
        _keep_all(self.copies, None, session)


def keeping(exc: BaseException, copies: list[RobotsCopy]) -> BaseException:
    """``exc`` (a caller's request refused by its host's slot) carrying the robots.txt
    its check downloaded (``copies``) for the sent-back path to keep; ``exc`` itself
    when nothing was downloaded, or when it is no wait for a turn."""
    if not copies:
        return exc
    if isinstance(exc, TurnAhead):
        return RobotsKeptTurn(exc, tuple(copies))
    if isinstance(exc, HostBusy) and not isinstance(exc, RobotsUnavailable):
        return RobotsKept(exc, tuple(copies))
    return exc


def keep_robots(exc: BaseException) -> Callable[[Session], None] | None:
    """What a sent-back caller must write for ``exc`` to keep (None: nothing)."""
    if isinstance(exc, (RobotsKept, RobotsKeptTurn)):
        return exc.keep
    return None


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


def robots_allows(
    session: Session,
    http: HttpClient,
    url: str,
    settings: Settings,
    slot: Slot | None = None,
    downloaded: list[RobotsCopy] | None = None,
) -> bool:
    """Whether robots.txt of ``url``'s origin lets our user agent fetch it.

    Raises :class:`RobotsUnavailable` while the host's robots.txt answers 5xx/429 or
    cannot be reached and no earlier good copy is cached (complete disallow, temporary);
    :class:`~worker.network.http.UnknownHost` when the host name does not exist (nothing
    is cached for it).

    ``slot(url)``: the host's slot, entered around the robots.txt request when it must
    be downloaded (the caller's own: under its key, at its turn); what entering it
    raises (:class:`~worker.network.politeness.HostBusy`, a poll's ``TurnAhead``) goes
    to the caller, nothing downloaded. None: no slot (tests of the rules only; every
    caller in the service gives one). ``downloaded``: a copy downloaded and written in
    the caller's transaction is added there (:class:`RobotsCopy`, :func:`keeping`).
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
        with slot(origin + "/robots.txt") if slot is not None else nullcontext():
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
        if downloaded is not None:
            downloaded.append(RobotsCopy(values))
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
    as the HTTP client words it (``network error: cannot resolve HOST: Temporary
    failure in name resolution``, ``timeout: ConnectTimeout``, ``HTTP 503``): it is
    what the feed's last error and the article's failure reason show, and the database
    row keeps it for the other workers (no rules are ever parsed from an unreachable
    answer). A host that does not exist raises :class:`UnknownHost`."""
    try:
        resp = http.get(origin + "/robots.txt", max_bytes=500_000)
    except UnknownHost:
        # No such host: nothing to cache (a name that appears later is asked then), and
        # the caller's own request would meet the same answer: it fails with it now
        # (a feed's poll, an article quarantined at once), not after ROBOTS_ERROR_TTL
        # rounds of asking again.
        raise
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
