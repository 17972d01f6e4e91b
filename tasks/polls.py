"""Feed polls (``io`` queue).

The dispatcher sends ``poll_feeds`` with a few leased feeds per message (Celery's cost
per message is a large share of a poll that answers 304); ``poll_feed`` polls one and
is kept for messages sent by older versions. Either way each feed is polled in its own
transaction under its own lease token, and one feed's failure never touches the others.
Each new article's first step is sent once its poll has committed, held back until
its turn on its host's timeline (reserved by the poll: ``send_fetches``).
"""

from __future__ import annotations

import heapq
import time
from typing import Any

import structlog

from tasks.base import ClaimwireTask
from worker.celery_app import app
from worker.core import outbox
from worker.core.db import unit_of_work
from worker.core.queues import POLL_FEEDS_TASK
from worker.core.settings import Settings, get_settings
from worker.feeds import polling
from worker.network.politeness import KeyedLimiter, TurnAhead, turn_countdown
from worker.network.robots import keep_robots
from worker.pipeline import resources
from worker.pipeline.attempts import (
    ENVIRONMENT_ERRORS,
    environment_retry,
    is_environment_error,
    keep_after_rollback,
    short_error,
)
from worker.pipeline.steps import FIRST

log = structlog.get_logger("claimwire.tasks")


class Held(Exception):
    """The feed's turn moved ``seconds`` ahead (the request before it on its host
    started late) and its message keeps it for then instead of sending it back."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"turn {seconds:.2f}s ahead")
        self.seconds = seconds


def _poll_one(
    feed_id: int,
    lease: str,
    settings: Settings,
    preloaded: dict[int, polling.Loaded] | None = None,
    hold_within: float = 0.0,
    batch: list[polling.PollWrite] | None = None,
    sent_back: list[tuple[float, int, str]] | None = None,
) -> int:
    """Poll one leased feed in its own transaction; every article it brought gets its
    fetch once that commits. Environment errors propagate (the caller retries); any
    other failure is logged and leaves the feed to its lease (the dispatcher tries
    again). ``preloaded``: the message's feeds, read together
    (:func:`worker.feeds.polling.read_feeds`). A turn that moved at most
    ``hold_within`` seconds ahead raises :class:`Held` (nothing written) instead of
    sending the poll back in a message of its own. ``batch``: a 304's writes are left
    there (:func:`worker.feeds.polling.write_polls`, :func:`_write_batch`).
    ``sent_back``: a poll sent back for its moved turn is left there, ``(when its
    message is due, on time.monotonic(), feed_id, lease)``, for the caller to send
    (:func:`_send_back`) instead of being sent in a message of its own at once."""
    before = len(batch) if batch is not None else 0
    try:
        with unit_of_work() as session:
            # The feed's turn on its host's timeline was reserved by the dispatcher
            # under this key (worker.feeds.polling.plan_polls).
            limiter = KeyedLimiter(
                resources.host_limiter(),
                polling.turn_key(feed_id),
                send_back_within=settings.poll_lease_seconds / 4,
            )
            result = polling.poll_feed(
                session,
                feed_id,
                lease,
                resources.http_client(),
                limiter,
                settings,
                preloaded,
                batch,
            )
            # each new article's fetch, held back until its turn on its host (reserved
            # now: the turn is known, and a fetch sent at once was only sent back for it)
            polling.send_fetches(
                session,
                list(zip(result.new_article_ids, result.new_article_hosts, strict=True)),
                resources.host_limiter(),
                settings,
                FIRST.task_name,
            )
    except polling.LeaseLost:
        log.info("poll_lease_lost", feed_id=feed_id)
        return 0
    except TurnAhead as exc:
        # the robots.txt its check downloaded, kept though the poll rolls back
        keep_after_rollback(keep_robots(exc), feed_id=feed_id)
        if exc.retry_after <= hold_within:
            raise Held(exc.retry_after) from exc
        # Its turn moved (the request before it on the host started late): the poll,
        # rolled back, is sent back for the new turn under the same lease, as a fetch
        # is, instead of being deferred to the dispatcher.
        countdown = turn_countdown(exc.retry_after)
        if sent_back is not None:
            sent_back.append((time.monotonic() + countdown, feed_id, lease))
        else:
            outbox.deliver([outbox.Message(POLL_FEEDS_TASK, ([[feed_id, lease]],), countdown)])
        log.info("poll_sent_back_for_turn", feed_id=feed_id, seconds=round(countdown, 2))
        return 0
    except Exception as exc:
        if is_environment_error(exc):
            raise
        # An error of this feed (a bug, a statement the database refuses): it would fail
        # the same way on every retry. Recorded as a failed poll, counted and shown.
        log.exception("poll_crashed", feed_id=feed_id)
        _record_crash(feed_id, lease, f"{type(exc).__name__}: {short_error(exc)}", settings)
        return 0
    if result.outcome == "skipped":
        log.info("poll_skipped_not_lease_holder", feed_id=feed_id)
    elif batch is not None and len(batch) > before:
        pass  # logged once written (_write_batch)
    else:
        log.info(
            "feed_polled",
            feed_id=feed_id,
            outcome=result.outcome,
            new=len(result.new_article_ids),
            error=result.error,
        )
    return len(result.new_article_ids)


def _send_back(sent_back: list[tuple[float, int, str]]) -> None:
    """Send the polls of a message sent back for their moved turns, and empty
    ``sent_back``: those whose messages are due within :data:`HOLD_WITHIN` seconds of
    the first of them go in one message, due then (its later polls are held for their
    turns within it, :func:`poll_feeds`). Each was a message of its own, received, read
    and run alone: most of a poll cycle's messages under load (issue 16). The turns are
    the limiter's either way: each poll still takes its slot at its own turn.
    An environment error propagates, ``sent_back`` left as it was."""
    if not sent_back:
        return
    groups: list[tuple[float, list[list[Any]]]] = []
    for due, feed_id, lease in sorted(sent_back):
        if groups and due - groups[-1][0] <= HOLD_WITHIN:
            groups[-1][1].append([feed_id, lease])
        else:
            groups.append((due, [[feed_id, lease]]))
    now = time.monotonic()
    outbox.deliver(
        [outbox.Message(POLL_FEEDS_TASK, (feeds,), max(0.0, due - now)) for due, feeds in groups]
    )
    sent_back.clear()


def _write_batch(batch: list[polling.PollWrite]) -> None:
    """Write the 304s gathered by a message's polls in one transaction, and empty
    ``batch``. Environment errors propagate (the caller retries those feeds: their
    leases still hold, nothing of them was written)."""
    if not batch:
        return
    with unit_of_work() as session:
        done = {w.feed_id for w in polling.write_polls(session, batch)}
    for w in batch:
        if w.feed_id in done:
            log.info("feed_polled", feed_id=w.feed_id, outcome=w.result.outcome, new=0, error=None)
        else:
            log.info("poll_lease_lost", feed_id=w.feed_id)
    batch.clear()


def _record_crash(feed_id: int, lease: str, error: str, settings: Settings) -> None:
    """Record a crashed poll on its feed (:func:`worker.feeds.polling.record_crash`), in
    a unit of work of its own; an environment error here propagates (the message is
    retried and the poll runs again), any other leaves the feed to its lease."""
    try:
        with unit_of_work() as session:
            polling.record_crash(session, feed_id, lease, error, settings)
    except polling.LeaseLost:
        log.info("poll_lease_lost", feed_id=feed_id)
    except Exception as exc:
        if is_environment_error(exc):
            raise
        # not even the failure could be written: the feed is left to its lease
        log.exception("poll_crash_not_recorded", feed_id=feed_id)


@app.task(bind=True, base=ClaimwireTask, name="tasks.polling.poll_feed")
def poll_feed(self: ClaimwireTask, feed_id: int, lease: str | None = None) -> int:
    """Poll one leased feed; queue a fetch for every article it brought.

    ``lease`` is the token of the claim that sent this message; a message without one
    (sent by an older version) or with an outdated one does nothing. After
    ``ENV_MAX_RETRIES`` environment errors the message is dropped: the lease runs out
    and the dispatcher claims the feed again."""
    if lease is None:
        log.info("poll_without_lease", feed_id=feed_id)
        return 0
    try:
        return _poll_one(feed_id, lease, get_settings())
    except ENVIRONMENT_ERRORS as exc:
        self.settle(environment_retry(self.name, exc, self.request.retries or 0, feed_id=feed_id))
        return 0


PRELOAD_FRESH = 10.0
"""Seconds the feeds of a message read together stay good for its polls; read again
after that (a message of slow hosts can take minutes)."""


HOLD_WITHIN = 2.0
"""Seconds ahead a moved turn may be for its poll message to keep the feed and poll it
then (after the message's other feeds) rather than send it back in a message of its
own: the request before it on its host started late, by a moment under load."""

HOLD_AT_MOST = 4.0
"""Seconds one message may spend waiting for moved turns, in all; past that, a moved
turn is sent back for."""


@app.task(bind=True, base=ClaimwireTask, name=POLL_FEEDS_TASK)
def poll_feeds(self: ClaimwireTask, leases: list[list[Any]]) -> int:
    """Poll a few leased feeds one after another: ``leases`` is ``[[feed_id, token],
    ...]``. Each feed is its own transaction, with the same fencing, error handling and
    follow-ups as :func:`poll_feed`; a redelivered message re-polls nothing that
    committed (those leases are spent).

    * The feeds are read in one statement before the first poll, outside a
      transaction (:func:`worker.feeds.polling.read_feeds`; again after
      :data:`PRELOAD_FRESH` seconds; on SQLite a message of one feed reads it in its
      poll's own transaction); each poll's fenced ``UPDATE`` still checks its lease and writes
      only the columns it changed.
    * A feed whose turn moved at most :data:`HOLD_WITHIN` seconds ahead (the request
      before it on its host started late) is kept and polled at its new turn, after the
      message's other feeds (the thread waits only when nothing else of the message is
      ready, :data:`HOLD_AT_MOST` seconds in all); further ahead, or past that, it is
      sent back for its turn. Politeness is the limiter's: the poll takes its slot at
      its turn either way.
    * The feeds sent back for turns moved further are sent together (:func:`_send_back`:
      one message for those due within :data:`HOLD_WITHIN` seconds of each other),
      before the message waits for a held feed, and at its end.
    * The 304s are written together at the message's end (:func:`_write_batch`), also
      when it waited for a held feed meanwhile (at most :data:`HOLD_AT_MOST` seconds):
      written before each wait, most of a loaded cycle's 304s were written alone, a
      transaction each (issue 16). Their leases hold until then.
    * An environment error (database, broker, Redis) stops the batch: the feed that
      met it and the ones not yet polled are retried together, later (at most
      ``ENV_MAX_RETRIES`` times; then their leases run out and the dispatcher claims
      them again).
    * Once one more poll might not end within the task's soft time limit (slow hosts,
      per-host waits), the feeds not yet polled go out in a new message, so the limit
      never stops a message midway. The first feed is always polled.
    """
    settings = get_settings()
    started = time.monotonic()
    # The longest one poll may take: robots.txt and the feed downloaded, each within
    # total_timeout, plus the host limiter's longest wait (10 s).
    longest_poll = 2 * settings.total_timeout + 10
    soft_limit = settings.task_time_limit - 30  # as worker.celery_app sets it
    budget = soft_limit - longest_poll - HOLD_AT_MOST
    total = 0
    preloaded: dict[int, polling.Loaded] | None = None
    loaded_at = 0.0
    todo = [(int(f), str(t)) for f, t in leases]
    held: list[tuple[float, int, str]] = []  # (when, feed_id, token), by when
    batch: list[polling.PollWrite] = []  # the 304s polled, written together
    batched: list[tuple[int, str]] = []  # their feeds and tokens
    back: list[tuple[float, int, str]] = []  # sent back for their turns, not yet sent
    waited = 0.0
    polled = 0
    current: tuple[int, str] | None = None

    def flush() -> None:
        _write_batch(batch)
        batched.clear()
        _send_back(back)

    try:
        while todo or held:
            current = None
            if polled and time.monotonic() - started > budget:
                flush()
                on = [[f, t] for f, t in todo] + [[f, t] for _, f, t in held]
                log.info("poll_batch_split", polled=polled, left=len(on))
                outbox.send_now(POLL_FEEDS_TASK, on)
                return total
            if held and (not todo or held[0][0] <= time.monotonic()):
                when, feed_id, lease = heapq.heappop(held)
                current = (feed_id, lease)
                if when > time.monotonic():  # nothing else of the message is ready
                    # the polls sent back go now (their turns may come during the wait);
                    # the 304s wait for the message's end, to be written together (a
                    # wait is at most HOLD_AT_MOST seconds in all)
                    _send_back(back)
                    pause = max(0.0, when - time.monotonic())
                    time.sleep(pause)
                    waited += pause
            else:
                feed_id, lease = current = todo.pop(0)
            # The message's feeds in one statement (those not yet polled). On SQLite a
            # message of one feed (a poll sent back for its turn) reads it in the
            # poll's own transaction; on PostgreSQL it too is read outside a
            # transaction (read_feeds): the poll's transaction then holds no snapshot
            # during the request, and a poll sent back again has no BEGIN and ROLLBACK.
            left = len(todo) + len(held) + 1
            stale = preloaded is None or time.monotonic() - loaded_at > PRELOAD_FRESH
            if stale and (left > 1 or polling.reads_outside_a_transaction()):
                loaded_at = time.monotonic()
                ids = [feed_id, *(f for f, _ in todo), *(f for _, f, _ in held)]
                preloaded = polling.read_feeds(ids)
            # (poll_feed takes the feed out of ``preloaded``; a held one is put back)
            kept = preloaded.get(feed_id) if preloaded is not None else None
            hold = max(0.0, min(HOLD_WITHIN, HOLD_AT_MOST - waited))
            gathered = len(batch)
            try:
                total += _poll_one(feed_id, lease, settings, preloaded, hold, batch, back)
                polled += 1
            except Held as later:
                if preloaded is not None and kept is not None:
                    preloaded[feed_id] = kept
                # due a moment before the turn: the limiter waits out the rest
                log.info("poll_held_for_turn", feed_id=feed_id, seconds=round(later.seconds, 2))
                due = time.monotonic() + turn_countdown(later.seconds)
                heapq.heappush(held, (due, feed_id, lease))
            if len(batch) > gathered:
                batched.append((feed_id, lease))
        current = None
        flush()
    except ENVIRONMENT_ERRORS as exc:
        # retried together: the feed that met it, the ones not yet polled, the 304s not
        # yet written and the polls not yet sent back (their leases hold: nothing of them
        # was written)
        again = dict.fromkeys(
            [*batched, *((f, t) for _, f, t in back), *([current] if current else []), *todo]
        )
        again.update(dict.fromkeys((f, t) for _, f, t in held))
        rest: list[list[Any]] = [[f, t] for f, t in again]
        first = next(iter(again))[0] if again else 0
        outcome = environment_retry(self.name, exc, self.request.retries or 0, feed_id=first)
        if outcome.retry_in is not None and rest:
            retry = self.retry_or_leave(
                args=(rest,), countdown=outcome.retry_in, max_retries=outcome.max_retries
            )
            if retry is not None:
                raise retry from exc
    return total
