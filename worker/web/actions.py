"""What the web view changes, for its forms and its API alike: feeds (add, import OPML,
pause, resume, poll now) and jobs (start, pause, resume, cancel). Each action is one
unit of work over the domain functions the CLI uses; messages to the workers are sent
after the commit (``worker.core.outbox``). Errors the user can fix raise
:class:`BadInput` (or the domain's own ``FeedNotFound``, ``JobNotFound``,
``JobStateError``) with a message to show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import structlog

from worker.core import outbox
from worker.core.db import unit_of_work
from worker.core.settings import Settings, mask_secrets, parse_networks

log = structlog.get_logger("claimwire.web")

MAX_FEEDS_PER_REQUEST = 1000
MAX_URLS_PER_JOB = 10_000


class BadInput(ValueError):
    """Input the user must correct; the message says what and how."""


def parse_when(value: str | None, name: str, *, end: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` or ISO 8601 (UTC unless it says otherwise). A bare date given as an
    ``end`` means the end of that day (the bound is exclusive: the next midnight)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > 40:
        raise BadInput(f"{name}: not a date (use YYYY-MM-DD or ISO 8601)")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{name}: not a date: {value!r} (use YYYY-MM-DD or ISO 8601)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if end and len(value) == 10:
        when += timedelta(days=1)
    return when


# ------------------------------------------------------------------------------- feeds


def check_feed_address(url: str, settings: Settings) -> str:
    """The canonical URL, if claimwire may fetch it: http(s), and a host that resolves
    to addresses the network guard allows (``CLAIMWIRE_ALLOW_PRIVATE_NETWORKS``,
    ``CLAIMWIRE_ALLOWED_PRIVATE_ADDRESSES``): the guard of every fetch, asked at once
    so that the person adding the feed sees the refusal."""
    import httpcore

    from worker.network.netguard import BlockedAddress, check_host
    from worker.network.urls import InvalidURL, canonicalize

    try:
        canonical = canonicalize(url)
    except InvalidURL as exc:
        raise BadInput(str(exc)) from None
    parts = urlsplit(canonical)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        check_host(
            parts.hostname or "",
            port,
            allow_private=settings.allow_private_networks,
            exceptions=parse_networks(settings.allowed_private_addresses),
        )
    except BlockedAddress as exc:
        raise BadInput(f"{mask_secrets(url)}: {exc}") from None
    except httpcore.ConnectError as exc:
        raise BadInput(f"{mask_secrets(url)}: {exc}") from None
    return canonical


@dataclass
class FeedsAdded:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # "url: why"


def add_feeds(
    settings: Settings, entries: list[tuple[str, str | None, list[str]]], *, strict: bool
) -> FeedsAdded:
    """Add feeds given as (url, title, tags). ``strict``: one refused URL refuses the
    whole request (BadInput); else refused URLs are reported and the others added."""
    from worker.feeds.subscriptions import add_feeds as add

    if len(entries) > MAX_FEEDS_PER_REQUEST:
        raise BadInput(f"too many feeds in one request: at most {MAX_FEEDS_PER_REQUEST}")
    result = FeedsAdded()
    good: list[tuple[str, str | None, list[str]]] = []
    for url, title, tags in entries:
        try:
            good.append((check_feed_address(url, settings), title, tags))
        except BadInput as exc:
            if strict:
                raise
            result.invalid.append(str(exc))
    if good:
        with unit_of_work(settings) as session:
            done = add(session, good, settings)
        result.added, result.existing = done.added, done.existing
        log.info("web_feeds_added", added=len(done.added), existing=len(done.existing))
    return result


MAX_OPML_BYTES = 5_000_000


def import_opml(settings: Settings, data: bytes) -> FeedsAdded:
    from worker.feeds.opml import OPMLError, read_opml

    if not data.strip():
        raise BadInput("the OPML file is empty")
    if len(data) > MAX_OPML_BYTES:
        raise BadInput(f"the OPML file is larger than {MAX_OPML_BYTES // 1_000_000} MB")
    try:
        entries = read_opml(data)
    except OPMLError as exc:
        raise BadInput(str(exc)) from None
    if not entries:
        raise BadInput("the OPML file lists no feed")
    return add_feeds(settings, entries, strict=False)


def feed_action(settings: Settings, feed_id: int, action: str) -> dict[str, Any]:
    """``pause``, ``resume`` or ``poll`` (due now; the dispatcher is told at once)."""
    from worker.core.queues import DISPATCH_TASK
    from worker.feeds.polling import make_due
    from worker.feeds.subscriptions import find_feed, set_paused
    from worker.web.listings import masked_feed_row

    with unit_of_work(settings) as session:
        feed = find_feed(session, str(feed_id))
        if action in ("pause", "resume"):
            set_paused(session, feed, action == "pause")
        elif action == "poll":
            make_due(session, [int(feed.id or 0)])
            outbox.send_after_commit(session, DISPATCH_TASK)
        else:
            raise BadInput(f"unknown feed action {action!r} (pause, resume, poll)")
        session.flush()
        session.refresh(feed)
        row = masked_feed_row(feed)
    log.info("web_feed_changed", feed=feed_id, action=action)
    return row


# -------------------------------------------------------------------------------- jobs

JOB_KINDS = ("backfill_feed", "backfill_sitemap", "backfill_urls", "reprocess")


@dataclass
class JobRequest:
    kind: str
    feeds: list[str] = field(default_factory=list)  # backfill_feed: ids or URLs
    url: str | None = None  # backfill_sitemap
    urls: list[str] = field(default_factory=list)  # backfill_urls
    since: str | None = None
    until: str | None = None
    include_undated: bool = False
    outlet: str | None = None  # reprocess
    feed: str | None = None  # reprocess: articles seen in this feed
    states: list[str] = field(default_factory=list)  # reprocess
    older_extractor: bool = False  # reprocess


def start_job(settings: Settings, req: JobRequest) -> int:
    """Create the job, then start it at once (its first scheduling round); the
    scheduler would start it at its next tick anyway."""
    from worker.feeds.subscriptions import find_feed
    from worker.jobs.discovery import create_feed_job, create_sitemap_job, create_urls_job
    from worker.jobs.reprocess import REPROCESSABLE_STATES, ReprocessFilter, create_reprocess_job
    from worker.network.urls import InvalidURL

    if req.kind not in JOB_KINDS:
        raise BadInput(f"unknown job kind {req.kind!r}: choose among {', '.join(JOB_KINDS)}")
    since = parse_when(req.since, "since")
    until = parse_when(req.until, "until", end=True)
    if since and until and since >= until:
        raise BadInput("since is after until")
    with unit_of_work(settings) as session:
        if req.kind == "backfill_feed":
            if not req.feeds:
                raise BadInput("which feeds? give feed ids or URLs")
            if since is None:
                raise BadInput("since: a feed backfill needs its oldest date (YYYY-MM-DD)")
            ids = list(dict.fromkeys(int(find_feed(session, r).id or 0) for r in req.feeds))
            job = create_feed_job(session, ids, since, until, include_undated=req.include_undated)
        elif req.kind == "backfill_sitemap":
            if not req.url or not req.url.strip():
                raise BadInput("url: give a sitemap URL or a site's address")
            if since is None:
                raise BadInput("since: a sitemap backfill needs its oldest date (YYYY-MM-DD)")
            url = check_feed_address(req.url.strip(), settings)
            try:
                job = create_sitemap_job(
                    session, url, since, until, include_undated=req.include_undated
                )
            except InvalidURL as exc:
                raise BadInput(str(exc)) from None
        elif req.kind == "backfill_urls":
            urls = [u.strip() for u in req.urls if u.strip()]
            if not urls:
                raise BadInput("urls: give at least one article URL")
            if len(urls) > MAX_URLS_PER_JOB:
                raise BadInput(f"urls: at most {MAX_URLS_PER_JOB} in one job")
            for u in urls:
                check_feed_address(u, settings)
            job = create_urls_job(session, urls, settings).job
        else:
            states = [s for s in req.states if s] or ["processed"]
            for st in states:
                if st not in REPROCESSABLE_STATES:
                    raise BadInput(
                        f"states: {st!r} is not one of {', '.join(REPROCESSABLE_STATES)}"
                    )
            feed_id = int(find_feed(session, req.feed).id or 0) if req.feed else None
            f = ReprocessFilter(
                since=since,
                until=until,
                feed_id=feed_id,
                outlet=(req.outlet or "").strip().lower() or None,
                states=states,
                older_extractor=req.older_extractor,
            )
            job = create_reprocess_job(session, f, settings)
        job_id = int(job.id or 0)
    log.info("web_job_started", job=job_id, kind=req.kind)
    kick(job_id)
    return job_id


def kick(job_id: int) -> None:
    """One scheduling round for the job now (best effort: the scheduler does it at its
    next tick anyway)."""
    try:
        from worker.jobs.work import advance_once

        advance_once(job_ids=[job_id])
    except Exception as exc:  # noqa: BLE001 (the scheduler starts it anyway)
        log.warning("web_job_kick_failed", job=job_id, error=str(exc))


def job_action(settings: Settings, job_id: int, action: str) -> str:
    """``pause``, ``resume`` or ``cancel``; returns the job's new state."""
    from worker.jobs import lifecycle

    if action not in ("pause", "resume", "cancel"):
        raise BadInput(f"unknown job action {action!r} (pause, resume, cancel)")
    with unit_of_work(settings) as session:
        job = getattr(lifecycle, action)(session, job_id)
        state = str(job.state)
    log.info("web_job_changed", job=job_id, action=action)
    if action == "resume":
        kick(job_id)
    return state
