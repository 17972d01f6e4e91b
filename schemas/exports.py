"""Rows of `claimwire export`: the public, stable shape of what claimwire stores."""

from __future__ import annotations

from pydantic import BaseModel


class ArticleRow(BaseModel):
    id: int
    url: str
    title: str | None
    author: str | None
    published_at: str | None  # ISO 8601 in UTC; a date alone when known only to the day
    language: str | None
    sitename: str | None
    text: str | None
    status: str
    failure_reason: str | None
    duplicate_of: str | None
    feeds: list[str]
    host: str
    description: str | None
    text_source: str | None
    extractor_version: str | None
    discovered_at: str
    fetched_at: str | None
    categories: list[str]
    tags: list[str]
    image: str | None
    page_canonical_url: str | None
    extractor: str | None
    encoding: str | None
    published_precision: str | None = None  # second, minute, day (None: no date found)
    published_offset: int | None = None  # the page's UTC offset in minutes, when it gave one


class ClaimRow(BaseModel):
    id: int
    article_url: str
    speaker: str
    speaker_resolved: str
    verb: str
    text: str
    kind: str
    start: int
    end: int
    sentence: str
    cluster_id: int | None
    published_at: str | None  # of this row's article (as ArticleRow.published_at)
    outlet: str
    extractor_version: str
    published_precision: str | None = None
    first_seen_at: str | None = None  # the cluster's first appearance (as published_at)
    first_seen_precision: str | None = None
    # --with-copies: a row of a duplicate article (another outlet running the same text)
    # names the article that carries the claim; None on the carrying article's own row
    copy_of: str | None = None
