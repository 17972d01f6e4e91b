"""SQLModel tables. Unique constraints make every write idempotent under at-least-once delivery.

States of an article (``ArticleState``) move forward only:
discovered -> fetched -> extracted -> deduplicated -> processed, or end in
skipped (robots, content type, ...), failed (permanent error) or quarantined
(a step failed ``max_attempts`` times; replayable).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from schemas.states import FINAL_ARTICLE_STATES as FINAL_ARTICLE_STATES
from schemas.states import PENDING_ARTICLE_STATES as PENDING_ARTICLE_STATES
from schemas.states import ArticleState as ArticleState
from schemas.states import FeedState as FeedState
from schemas.states import JobItemState as JobItemState
from schemas.states import JobState as JobState
from schemas.types import UTCDateTime, utcnow


def _ts(*, index: bool = False, nullable: bool = True) -> Any:
    return Field(
        default=None,
        sa_type=UTCDateTime(),
        nullable=nullable,
        index=index,
    )


def _created() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=UTCDateTime(),
        nullable=False,
    )


class Feed(SQLModel, table=True):
    # ids never reused (SQLite: AUTOINCREMENT; PostgreSQL's sequences never go back)
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_type=Text, unique=True)
    title: str | None = None
    site_url: str | None = Field(default=None, sa_type=Text)
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    state: str = Field(default=FeedState.active, index=True)
    created_at: datetime = _created()

    # scheduling: the database is the scheduler
    next_poll_at: datetime = Field(
        default_factory=utcnow,
        sa_type=UTCDateTime(),
        nullable=False,
        index=True,
    )
    lease_until: datetime | None = _ts()
    poll_interval: int = 3600
    interval_override: int | None = None
    min_interval_hint: int | None = None

    # conditional GET and body hash
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None

    # health
    last_attempt_at: datetime | None = _ts()
    last_success_at: datetime | None = _ts()
    last_new_entry_at: datetime | None = _ts()
    consecutive_failures: int = 0
    transient_failures: int = 0
    permanent_failures: int = 0
    last_error: str | None = Field(default=None, sa_type=Text)
    last_status: int | None = None
    polls_total: int = 0
    entries_new_total: int = 0


class FeedPoll(SQLModel, table=True):
    """A bounded history of polls per feed."""

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(
        sa_column=Column(Integer, ForeignKey("feed.id", ondelete="CASCADE"), nullable=False)
    )
    started_at: datetime = _created()
    duration_ms: int = 0
    outcome: str = "ok"
    http_status: int | None = None
    entries_seen: int = 0
    entries_new: int = 0
    # entries refused (a link that is not http(s), over the per-poll limit...) and why
    entries_rejected: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    rejected: str | None = Field(default=None, sa_type=Text)
    error: str | None = Field(default=None, sa_type=Text)

    __table_args__ = (Index("ix_feedpoll_feed_started", "feed_id", "started_at"),)


class RawPage(SQLModel, table=True):
    """A fetched body in the archive, addressed by the SHA-256 of its bytes."""

    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    stored_size: int
    content_type: str | None = None
    storage_key: str
    created_at: datetime = _created()


class Article(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_type=Text)
    url_hash: str = Field(max_length=64, unique=True)
    host: str = Field(index=True)
    state: str = Field(default=ArticleState.discovered)
    state_changed_at: datetime = _created()
    attempts: int = 0
    failed_state: str | None = None  # the state a quarantined article was in
    failure_reason: str | None = Field(default=None, sa_type=Text)
    # starts of the current step not known to have ended: recorded in their own
    # transaction before the step runs, cleared when it returns or raises, so what is
    # left counts the worker processes that died during it (worker.pipeline.attempts)
    step_starts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    step_started_at: datetime | None = _ts()
    discovered_at: datetime = _created()

    # what the feed entry said (fallback text, first-seen metadata)
    entry_title: str | None = Field(default=None, sa_type=Text)
    entry_published_at: datetime | None = _ts()
    entry_summary: str | None = Field(default=None, sa_type=Text)
    entry_content: str | None = Field(default=None, sa_type=Text)

    # fetch
    fetched_at: datetime | None = _ts()
    http_status: int | None = None
    content_type: str | None = None
    final_url: str | None = Field(default=None, sa_type=Text)
    # redirect hops the fetch in progress has followed: a hop whose host was not free
    # is made later as a request of its own, from final_url (worker/pages/fetch.py)
    redirects: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    raw_sha256: str | None = Field(default=None, foreign_key="rawpage.sha256", max_length=64)
    encoding: str | None = None

    # extraction
    extracted_at: datetime | None = _ts()
    title: str | None = Field(default=None, sa_type=Text)
    author: str | None = Field(default=None, sa_type=Text)
    published_at: datetime | None = _ts(index=True)
    # what published_at is known to ("second", "minute", "day"; None: no date found) and
    # the UTC offset (minutes) its source gave; a day is stored as midnight UTC
    published_precision: str | None = Field(default=None, max_length=8)
    published_offset: int | None = None
    # when the article sorts as published (canonical, first seen): published_at, or the
    # end of its day for a day (worker.pages.published.sort_time)
    published_sort_at: datetime | None = _ts()
    language: str | None = None
    sitename: str | None = None
    description: str | None = Field(default=None, sa_type=Text)
    categories: list[str] = Field(default_factory=list, sa_type=JSON)
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    image: str | None = Field(default=None, sa_type=Text)
    page_canonical_url: str | None = Field(default=None, sa_type=Text)
    text: str | None = Field(default=None, sa_type=Text)
    text_source: str | None = None
    extractor: str | None = None
    extractor_version: str | None = Field(default=None, index=True)

    # dedup
    text_hash: str | None = Field(default=None, max_length=64, index=True)
    dup_group_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("dupgroup.id"), index=True)
    )
    duplicate_of_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("article.id"), index=True)
    )

    # claims
    claims_version: str | None = None
    claims_status: str | None = None  # extracted, duplicate, skipped_language, no_text
    processed_at: datetime | None = _ts()

    # ids never reused (SQLite: AUTOINCREMENT; PostgreSQL's sequences never go back)
    __table_args__ = (
        Index("ix_article_state_changed", "state", "state_changed_at"),
        {"sqlite_autoincrement": True},
    )


class Sighting(SQLModel, table=True):
    """A feed listed an article (every feed that listed it is recorded once)."""

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("article.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    feed_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("feed.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    entry_guid: str | None = Field(default=None, sa_type=Text)
    entry_url: str | None = Field(default=None, sa_type=Text)
    seen_at: datetime = _created()

    __table_args__ = (UniqueConstraint("article_id", "feed_id", name="uq_sighting_article_feed"),)


class DupGroup(SQLModel, table=True):
    """Articles carrying the same text; the canonical one is the earliest published."""

    id: int | None = Field(default=None, primary_key=True)
    canonical_article_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("article.id", use_alter=True))
    )
    created_at: datetime = _created()


class DedupBand(SQLModel, table=True):
    """One LSH band hash of an article's MinHash signature; shared by every worker."""

    band: int = Field(primary_key=True)
    hash: int = Field(sa_column=Column(BigInteger, primary_key=True))
    article_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("article.id", ondelete="CASCADE"), primary_key=True, index=True
        )
    )


class ArticleSignature(SQLModel, table=True):
    """The MinHash signature of an article's text, to confirm LSH candidates."""

    article_id: int = Field(
        sa_column=Column(Integer, ForeignKey("article.id", ondelete="CASCADE"), primary_key=True)
    )
    signature: bytes
    shingle_count: int = 0


class DedupSample(SQLModel, table=True):
    """One sampled shingle of an article's text (hash-mod sampling, so a text contained
    in another has its samples among the other's): the containment candidate index."""

    hash: int = Field(sa_column=Column(BigInteger, primary_key=True))
    article_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("article.id", ondelete="CASCADE"), primary_key=True, index=True
        )
    )


class ClaimCluster(SQLModel, table=True):
    """The same claim by the same speaker, repeated across outlets."""

    __table_args__ = {"sqlite_autoincrement": True}  # ids never reused, as Feed's

    id: int | None = Field(default=None, primary_key=True)
    speaker_key: str = Field(index=True)
    speaker: str
    text: str = Field(sa_type=Text)
    signature: bytes | None = None
    first_seen_at: datetime | None = _ts()
    # the first article's published_precision (None: its discovery time)
    first_seen_precision: str | None = Field(default=None, max_length=8)
    first_article_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("article.id", ondelete="SET NULL"), index=True),
    )
    n_articles: int = 0
    n_outlets: int = 0
    created_at: datetime = _created()


class ClaimClusterWord(SQLModel, table=True):
    """One content word of a cluster's text (the candidate index of claim clustering),
    with the cluster's speaker key and its number of content words. Written once when
    the cluster is created (its text never changes); goes with the cluster."""

    cluster_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("claimcluster.id", ondelete="CASCADE"), primary_key=True
        )
    )
    word: str = Field(primary_key=True)
    speaker_key: str
    n_words: int

    __table_args__ = (
        Index("ix_claimclusterword_lookup", "speaker_key", "word", "cluster_id", "n_words"),
    )


class Claim(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("article.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    speaker: str = Field(sa_type=Text)
    speaker_resolved: str = Field(sa_type=Text)
    verb: str
    kind: str
    text: str = Field(sa_type=Text)
    start: int
    end: int
    sentence: str = Field(sa_type=Text)
    extractor_version: str
    cluster_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("claimcluster.id", ondelete="SET NULL"), index=True),
    )
    # when a cluster page lists this claim's article: its publication time, else its
    # discovery (worker.claims.firstseen.page_at), copied here by the claims step and
    # kept when the article's time changes, so that a cluster's repeats are read in
    # time order from ix_claim_cluster_at (migration 0013)
    article_at: datetime | None = _ts()
    created_at: datetime = _created()

    __table_args__ = (
        UniqueConstraint("article_id", "start", "end", "verb", name="uq_claim_article_span"),
        Index("ix_claim_cluster_at", "cluster_id", "article_at", "article_id", "id"),
        # a cluster's newest claim in one probe (migration 0014)
        Index("ix_claim_cluster_newest", "cluster_id", "id"),
    )


class Job(SQLModel, table=True):
    """A backfill or reprocess: parameters, state and times. Counts come from its items."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    state: str = Field(default=JobState.queued, index=True)
    created_at: datetime = _created()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    updated_at: datetime = _created()
    last_error: str | None = Field(default=None, sa_type=Text)


class JobItem(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(
        sa_column=Column(Integer, ForeignKey("job.id", ondelete="CASCADE"), nullable=False)
    )
    article_id: int = Field(
        sa_column=Column(Integer, ForeignKey("article.id", ondelete="CASCADE"), nullable=False)
    )
    state: str = Field(default=JobItemState.pending)
    updated_at: datetime = _created()

    __table_args__ = (
        UniqueConstraint("job_id", "article_id", name="uq_jobitem_job_article"),
        Index("ix_jobitem_job_state", "job_id", "state"),
    )


class RobotsTxt(SQLModel, table=True):
    """robots.txt per scheme+host, cached for every worker."""

    origin: str = Field(primary_key=True)
    fetched_at: datetime = _created()
    status: int | None = None
    body: str = Field(default="", sa_type=Text)
