"""The JSON API, ``/api/v1/``: claims, clusters, speakers, articles, feeds, jobs and
status. Lists take their filters as query parameters and page with ``cursor`` (the
``next_cursor`` of the previous page; the order is stable, the id breaking ties).
``/api/v1/<list>.csv`` and ``.jsonl`` stream every row of a list, filtered the same way,
in constant memory. Reads are open; writes need ``Authorization: Bearer <token>``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlmodel import Session

from worker.claims.fulltext import ClaimFilter
from worker.core.settings import Settings, mask_secrets, mask_url
from worker.web import actions, listings
from worker.web.actions import BadInput, parse_when
from worker.web.reads import read_session
from worker.web.webauth import Guard

router = APIRouter(prefix="/api/v1")

MAX_LIMIT = 500
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page (1-500).")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="The next_cursor of the previous page.")
]
Text = Annotated[str | None, Query(max_length=200)]
Day = Annotated[
    str | None, Query(max_length=40, description="YYYY-MM-DD or ISO 8601 (UTC by default).")
]
Id = Annotated[int, Path(ge=1, le=listings.MAX_ID)]
Kind = Literal["direct", "indirect", "mixed", "according_to"]
ArticleStates = Literal[
    "discovered",
    "fetched",
    "extracted",
    "deduplicated",
    "processed",
    "skipped",
    "failed",
    "quarantined",
]
FeedStates = Literal["active", "failing", "dead", "paused"]
JobStates = Literal["queued", "running", "paused", "done", "failed", "cancelled"]


class PageOut(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")
    next: str | None = Field(description="The URL of the next page.")


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def guard_of(request: Request) -> Guard:
    guard: Guard = request.app.state.guard
    return guard


def require_token(request: Request) -> None:
    """Writes: the token as ``Authorization: Bearer``."""
    guard = guard_of(request)
    if not guard.writable:
        raise HTTPException(
            403, "this claimwire is read-only: it was started without CLAIMWIRE_WEB_TOKEN"
        )
    if not guard.bearer_ok(request):
        raise HTTPException(
            401,
            "this change needs the token: send `Authorization: Bearer <CLAIMWIRE_WEB_TOKEN>`",
            headers={"WWW-Authenticate": "Bearer"},
        )


Writer = Depends(require_token)


def session_factory(request: Request) -> Callable[[], Any]:
    settings = settings_of(request)
    return lambda: read_session(settings)


def _page_out(request: Request, page: listings.Page) -> dict[str, Any]:
    rows, cursor = page
    nxt = None
    if cursor:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        nxt = f"{request.url.path}?{urlencode([*params, ('cursor', cursor)])}"
    return {"items": rows, "next_cursor": cursor, "next": nxt}


# ---------------------------------------------------------------------------- filters


def claim_filter(
    q: Annotated[
        str | None,
        Query(
            max_length=500,
            description='Words in the claim or its sentence; "a phrase"; prefix*.',
        ),
    ] = None,
    speaker: Annotated[str | None, Query(max_length=200, description="Words of the name.")] = None,
    outlet: Annotated[str | None, Query(max_length=200, description="Host, exactly.")] = None,
    kind: Kind | None = None,
    since: Day = None,
    until: Annotated[
        str | None, Query(max_length=40, description="Published on or before (a date: that day).")
    ] = None,
    min_outlets: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    cluster: Annotated[int | None, Query(ge=1, le=listings.MAX_ID)] = None,
    article: Annotated[int | None, Query(ge=1, le=listings.MAX_ID)] = None,
    speaker_key: Annotated[
        str | None,
        Query(
            max_length=200,
            description="A speaker key, exactly (as in /speakers): that speaker's clustered "
            "claims, whatever the name was written as.",
        ),
    ] = None,
) -> ClaimFilter:
    return ClaimFilter(
        q=q,
        speaker=speaker,
        outlet=outlet,
        kind=kind,
        since=parse_when(since, "since"),
        until=parse_when(until, "until", end=True),
        min_outlets=min_outlets,
        cluster_id=cluster,
        article_id=article,
        speaker_key=speaker_key.strip() if speaker_key and speaker_key.strip() else None,
    )


def cluster_filter(
    speaker: Annotated[
        str | None, Query(max_length=200, description="A speaker key or name.")
    ] = None,
    min_outlets: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    since: Day = None,
    until: Day = None,
) -> listings.ClusterFilter:
    return listings.ClusterFilter(
        speaker=speaker,
        min_outlets=min_outlets,
        since=parse_when(since, "since"),
        until=parse_when(until, "until", end=True),
    )


def article_filter(
    outlet: Text = None, state: ArticleStates | None = None, since: Day = None, until: Day = None
) -> listings.ArticleFilter:
    return listings.ArticleFilter(
        outlet=outlet,
        state=state,
        since=parse_when(since, "since"),
        until=parse_when(until, "until", end=True),
    )


# -------------------------------------------------------------------------- downloads


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # never a formula in a spreadsheet (text from hostile pages)
    return value


def stream_rows(rows: Iterator[dict[str, Any]], fmt: str, name: str) -> StreamingResponse:
    def csv_lines() -> Iterator[str]:
        buf = io.StringIO()
        writer: csv.DictWriter[str] | None = None
        for row in rows:
            if writer is None:
                writer = csv.DictWriter(buf, fieldnames=list(row))
                writer.writeheader()
            writer.writerow({k: _cell(v) for k, v in row.items()})
            if buf.tell() > 65536:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    def jsonl_lines() -> Iterator[str]:
        chunk: list[str] = []
        for row in rows:
            chunk.append(json.dumps(row, ensure_ascii=False))
            if len(chunk) >= 500:
                yield "\n".join(chunk) + "\n"
                chunk = []
        if chunk:
            yield "\n".join(chunk) + "\n"

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8"
    return StreamingResponse(
        csv_lines() if fmt == "csv" else jsonl_lines(),
        media_type=media,
        headers={"content-disposition": f'attachment; filename="claimwire-{name}.{fmt}"'},
    )


Format = Annotated[Literal["csv", "jsonl"], Path(description="csv or jsonl")]


# ----------------------------------------------------------------------------- claims


@router.get("/claims", response_model=PageOut, tags=["claims"])
def list_claims(
    request: Request,
    f: Annotated[ClaimFilter, Depends(claim_filter)],
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Claims: full-text search over the content and its sentence, and filters. With
    `q`, best match first (`match` "content": every word in the claim itself, then
    "sentence": some only in the sentence around it), newest first within; without,
    newest first. Each with its speaker, verb, article, outlet, time and cluster."""
    with read_session(settings_of(request)) as s:
        return _page_out(request, listings.claims_page(s, f, cursor, limit))


@router.get("/claims.{fmt}", tags=["claims"], response_class=StreamingResponse)
def download_claims(
    request: Request, fmt: Format, f: Annotated[ClaimFilter, Depends(claim_filter)]
) -> StreamingResponse:
    """Every claim of the list with these filters, as CSV or JSON lines."""

    def fetch(s: Session, c: str | None, n: int) -> listings.Page:
        return listings.claims_page(s, f, c, n)

    return stream_rows(listings.iterate(fetch, session_factory(request)), fmt, "claims")


# --------------------------------------------------------------------------- clusters


@router.get("/clusters", response_model=PageOut, tags=["clusters"])
def list_clusters(
    request: Request,
    f: Annotated[listings.ClusterFilter, Depends(cluster_filter)],
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Claim clusters (one claim by one speaker, repeated), newest first."""
    with read_session(settings_of(request)) as s:
        return _page_out(request, listings.clusters_page(s, f, cursor, limit))


@router.get("/clusters.{fmt}", tags=["clusters"], response_class=StreamingResponse)
def download_clusters(
    request: Request, fmt: Format, f: Annotated[listings.ClusterFilter, Depends(cluster_filter)]
) -> StreamingResponse:
    def fetch(s: Session, c: str | None, n: int) -> listings.Page:
        return listings.clusters_page(s, f, c, n)

    return stream_rows(listings.iterate(fetch, session_factory(request)), fmt, "clusters")


@router.get("/clusters/{cluster_id}", tags=["clusters"])
def get_cluster(
    request: Request,
    cluster_id: Id,
    cursor: Cursor = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Repeats per page (1-500).")
    ] = listings.CLUSTER_PAGE,
    start: Annotated[
        str | None,
        Query(max_length=40, description="Start the repeats at this time (ISO 8601, UTC)."),
    ] = None,
) -> dict[str, Any]:
    """How a claim spread: first seen; counts of verbatim repeats, rewordings and
    copies; `timeline`, the repeats counted per outlet and hour (a day, week or 30 days
    for a long-lived claim; the first 30 outlets a row each); and `members`, one page of
    the repeats in time order with their wording and `position` (`next_cursor`, `next`
    for the next page, `start` to begin at a time)."""
    with read_session(settings_of(request)) as s:
        body = listings.cluster_detail(s, cluster_id, cursor, limit, parse_when(start, "start"))
    nxt = body["next_cursor"]
    body["next"] = (
        f"{request.url.path}?{urlencode([('limit', limit), ('cursor', nxt)])}" if nxt else None
    )
    return body


# --------------------------------------------------------------------------- speakers


@router.get("/speakers", response_model=PageOut, tags=["speakers"])
def list_speakers(
    request: Request,
    name: Annotated[str | None, Query(max_length=200, description="Part of the name.")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Speakers of claim clusters, alphabetically by key."""
    with read_session(settings_of(request)) as s:
        return _page_out(request, listings.speakers_page(s, name, cursor, limit))


@router.get("/speakers.{fmt}", tags=["speakers"], response_class=StreamingResponse)
def download_speakers(
    request: Request,
    fmt: Format,
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> StreamingResponse:
    def fetch(s: Session, c: str | None, n: int) -> listings.Page:
        return listings.speakers_page(s, name, c, n)

    return stream_rows(listings.iterate(fetch, session_factory(request)), fmt, "speakers")


@router.get("/speakers/{key}", tags=["speakers"])
def get_speaker(request: Request, key: Annotated[str, Path(max_length=200)]) -> dict[str, Any]:
    """A speaker's clusters over time (oldest first)."""
    with read_session(settings_of(request)) as s:
        return listings.speaker_detail(s, key)


# --------------------------------------------------------------------------- articles


@router.get("/articles", response_model=PageOut, tags=["articles"])
def list_articles(
    request: Request,
    f: Annotated[listings.ArticleFilter, Depends(article_filter)],
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Articles, newest found first."""
    with read_session(settings_of(request)) as s:
        return _page_out(request, listings.articles_page(s, f, cursor, limit))


@router.get("/articles.{fmt}", tags=["articles"], response_class=StreamingResponse)
def download_articles(
    request: Request, fmt: Format, f: Annotated[listings.ArticleFilter, Depends(article_filter)]
) -> StreamingResponse:
    def fetch(s: Session, c: str | None, n: int) -> listings.Page:
        return listings.articles_page(s, f, c, n)

    return stream_rows(listings.iterate(fetch, session_factory(request)), fmt, "articles")


@router.get("/articles/{article_id}", tags=["articles"])
def get_article(request: Request, article_id: Id) -> dict[str, Any]:
    """An article: metadata, clean text, claims with their offsets, duplicate group.
    The archived raw page is never served."""
    with read_session(settings_of(request)) as s:
        return listings.article_detail(s, article_id)


# ------------------------------------------------------------------------------ feeds


@router.get("/feeds", response_model=PageOut, tags=["feeds"])
def list_feeds(
    request: Request,
    state: FeedStates | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Feeds with their health."""
    with read_session(settings_of(request)) as s:
        return _page_out(request, listings.feeds_page(s, state, cursor, limit))


@router.get("/feeds.{fmt}", tags=["feeds"], response_class=StreamingResponse)
def download_feeds(
    request: Request, fmt: Format, state: FeedStates | None = None
) -> StreamingResponse:
    def fetch(s: Session, c: str | None, n: int) -> listings.Page:
        return listings.feeds_page(s, state, c, n)

    return stream_rows(listings.iterate(fetch, session_factory(request)), fmt, "feeds")


class FeedsIn(BaseModel):
    urls: list[Annotated[str, Field(max_length=2000)]] = Field(
        min_length=1, max_length=actions.MAX_FEEDS_PER_REQUEST
    )


@router.post("/feeds", tags=["feeds"], dependencies=[Writer], status_code=200)
def add_feeds(request: Request, body: FeedsIn) -> dict[str, Any]:
    """Add feeds (token needed). Every URL goes through the network guard; one refused
    URL refuses the request."""
    result = actions.add_feeds(
        settings_of(request), [(u, None, []) for u in body.urls], strict=True
    )
    return {"added": result.added, "existing": result.existing}


@router.post("/feeds/import", tags=["feeds"], dependencies=[Writer])
def import_feeds(
    request: Request,
    opml: Annotated[bytes, Body(media_type="text/x-opml", description="An OPML file.")],
) -> dict[str, Any]:
    """Import an OPML subscription list sent as the request body (token needed)."""
    result = actions.import_opml(settings_of(request), opml)
    return {"added": result.added, "existing": result.existing, "invalid": result.invalid}


@router.post("/feeds/{feed_id}/{action}", tags=["feeds"], dependencies=[Writer])
def change_feed(
    request: Request, feed_id: Id, action: Literal["pause", "resume", "poll"]
) -> dict[str, Any]:
    """Pause, resume, or poll a feed now (token needed)."""
    return actions.feed_action(settings_of(request), feed_id, action)


# ------------------------------------------------------------------------------- jobs


@router.get("/jobs", response_model=PageOut, tags=["jobs"])
def list_jobs(
    request: Request, state: JobStates | None = None, cursor: Cursor = None, limit: Limit = 50
) -> dict[str, Any]:
    """Backfill and reprocess jobs, newest first, with their progress."""
    settings = settings_of(request)
    with read_session(settings) as s:
        return _page_out(request, listings.jobs_page(s, state, cursor, limit, settings))


@router.get("/jobs/{job_id}", tags=["jobs"])
def get_job(request: Request, job_id: Id) -> dict[str, Any]:
    from worker.jobs import lifecycle

    settings = settings_of(request)
    with read_session(settings) as s:
        return listings.job_detail(s, lifecycle.get_job(s, job_id), settings)


class JobIn(BaseModel):
    kind: Literal["backfill_feed", "backfill_sitemap", "backfill_urls", "reprocess"]
    feeds: list[Annotated[str, Field(max_length=2000)]] = Field(default=[], max_length=1000)
    url: Annotated[str | None, Field(max_length=2000)] = None
    urls: list[Annotated[str, Field(max_length=2000)]] = Field(
        default=[], max_length=actions.MAX_URLS_PER_JOB
    )
    since: Annotated[str | None, Field(max_length=40)] = None
    until: Annotated[str | None, Field(max_length=40)] = None
    include_undated: bool = False
    outlet: Annotated[str | None, Field(max_length=200)] = None
    feed: Annotated[str | None, Field(max_length=2000)] = None
    states: list[Annotated[str, Field(max_length=40)]] = Field(default=[], max_length=10)
    older_extractor: bool = False


@router.post("/jobs", tags=["jobs"], dependencies=[Writer], status_code=201)
def start_job(request: Request, body: JobIn) -> dict[str, Any]:
    """Start a backfill (feed, sitemap, URLs) or a reprocess (token needed)."""
    settings = settings_of(request)
    job_id = actions.start_job(settings, actions.JobRequest(**body.model_dump()))
    return get_job(request, job_id)


@router.post("/jobs/{job_id}/{action}", tags=["jobs"], dependencies=[Writer])
def change_job(
    request: Request, job_id: Id, action: Literal["pause", "resume", "cancel"]
) -> dict[str, Any]:
    """Pause, resume or cancel a job (token needed)."""
    actions.job_action(settings_of(request), job_id, action)
    return get_job(request, job_id)


# ----------------------------------------------------------------------------- status


def status_data(settings: Settings) -> dict[str, Any]:
    from worker.reports.status import collect

    with read_session(settings) as s:
        data = collect(s, settings)
    data["database"] = mask_url(str(data["database"]))
    data["broker"] = mask_url(str(data["broker"]))
    return json.loads(mask_secrets(json.dumps(data)))  # type: ignore[no-any-return]


@router.get("/status", tags=["status"])
def status(request: Request) -> dict[str, Any]:
    """Queues, articles by state, feed health, claims, recent errors."""
    return status_data(settings_of(request))


__all__ = ["BadInput", "router"]
