"""Pydantic shapes that cross module boundaries: extraction results, claims, exports."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

ClaimKind = Literal["direct", "indirect", "mixed", "according_to"]
TextSource = Literal["page", "feed_content", "feed_summary"]
TimePrecision = Literal["second", "minute", "day"]


class ExtractedClaim(BaseModel):
    """One attributed statement found in a text; offsets index the text as given."""

    speaker: str
    speaker_resolved: str
    verb: str
    kind: ClaimKind
    text: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    sentence: str


class ExtractedPage(BaseModel):
    """Clean text and metadata of one page, as the extraction step produced it."""

    text: str
    text_source: TextSource = "page"
    title: str | None = None
    author: str | None = None
    published_at: datetime | None = None
    # what published_at is known to: a day is stored as midnight UTC of that date
    published_precision: TimePrecision | None = None
    published_offset: int | None = None  # the source's UTC offset, minutes
    published_source: str | None = None  # meta, jsonld, time, itemprop, dc, feed, visible, url
    language: str | None = None
    sitename: str | None = None
    description: str | None = None
    categories: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    image: str | None = None
    page_canonical_url: str | None = None
    extractor: str
    extractor_version: str
    failure: str | None = None
    """Why the page itself could not be read (e.g. ``"nesting too deep"``); None when it
    was. ``text`` may still hold the feed entry's text (``text_source`` says so)."""
