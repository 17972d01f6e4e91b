"""Rows of `claimwire export`: the public, stable shape of what claimwire stores."""

from __future__ import annotations

from pydantic import BaseModel


class ArticleRow(BaseModel):
    id: int
    url: str
    title: str | None
    author: str | None
    published_at: str | None
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
    published_at: str | None
    outlet: str
    extractor_version: str
