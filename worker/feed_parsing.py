"""Feed documents to entries: RSS 0.9x/1.0/2.0, Atom and RDF through feedparser, and
JSON Feed (which feedparser does not read). Ill-formed feeds still give every usable
entry; the parser's complaint is returned, never raised."""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser

_SY_PERIOD_SECONDS = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 604800,
    "monthly": 2592000,
    "yearly": 31536000,
}


@dataclass
class Entry:
    link: str
    guid: str | None = None
    title: str | None = None
    published_at: datetime | None = None
    summary: str | None = None
    content: str | None = None


@dataclass
class ParsedFeed:
    entries: list[Entry] = field(default_factory=list)
    title: str | None = None
    site_url: str | None = None
    min_interval_hint: int | None = None  # from ttl / sy:updatePeriod, seconds
    error: str | None = None  # what was wrong with the document, if anything
    is_feed: bool = True


def _struct_to_dt(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _iso_to_dt(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def looks_like_json(body: bytes, content_type: str) -> bool:
    return "json" in content_type or body.lstrip()[:1] == b"{"


def parse_feed(body: bytes, content_type: str = "", base_url: str | None = None) -> ParsedFeed:
    if looks_like_json(body, content_type):
        return _parse_json_feed(body)
    return _parse_xml_feed(body, content_type, base_url)


def _hint(feed: Any) -> int | None:
    hints: list[int] = []
    ttl = str(feed.get("ttl", "")).strip()
    if ttl.isdigit():
        hints.append(int(ttl) * 60)
    period = str(feed.get("sy_updateperiod", "")).strip().lower()
    if period in _SY_PERIOD_SECONDS:
        freq = str(feed.get("sy_updatefrequency", "1")).strip()
        n = int(freq) if freq.isdigit() and int(freq) > 0 else 1
        hints.append(_SY_PERIOD_SECONDS[period] // n)
    return max(hints) if hints else None


def _parse_xml_feed(body: bytes, content_type: str, base_url: str | None) -> ParsedFeed:
    headers = {"content-type": content_type} if content_type else {}
    if base_url:
        headers["content-location"] = base_url
    d = feedparser.parse(
        body, response_headers=headers, sanitize_html=True, resolve_relative_uris=True
    )
    error = None
    if d.get("bozo"):
        exc = d.get("bozo_exception")
        error = f"{type(exc).__name__}: {exc}" if exc else "ill-formed feed"
    entries: list[Entry] = []
    for e in d.entries:
        link = e.get("link") or ""
        if not link:
            for lk in e.get("links", []):
                if lk.get("rel", "alternate") == "alternate" and lk.get("href"):
                    link = lk["href"]
                    break
        if not link and str(e.get("id", "")).startswith(("http://", "https://")):
            link = e["id"]
        if not link:
            continue
        content = None
        if e.get("content"):
            content = e["content"][0].get("value")
        entries.append(
            Entry(
                link=link.strip(),
                guid=e.get("id"),
                title=e.get("title"),
                published_at=_struct_to_dt(e.get("published_parsed") or e.get("updated_parsed")),
                summary=e.get("summary"),
                content=content,
            )
        )
    is_feed = bool(d.get("version")) or bool(entries)
    if not is_feed and error is None:
        error = "not a feed: no RSS, Atom or RDF document found"
    return ParsedFeed(
        entries=entries,
        title=d.feed.get("title"),
        site_url=d.feed.get("link"),
        min_interval_hint=_hint(d.feed),
        error=error,
        is_feed=is_feed,
    )


def _parse_json_feed(body: bytes) -> ParsedFeed:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return ParsedFeed(error=f"not a feed: invalid JSON ({exc})", is_feed=False)
    if not isinstance(doc, dict) or "jsonfeed.org" not in str(doc.get("version", "")):
        return ParsedFeed(error="not a feed: JSON without a JSON Feed version", is_feed=False)
    entries: list[Entry] = []
    items = doc.get("items")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        link = item.get("url") or item.get("external_url") or ""
        if not isinstance(link, str) or not link:
            continue
        entries.append(
            Entry(
                link=link.strip(),
                guid=str(item["id"]) if item.get("id") is not None else None,
                title=item.get("title") if isinstance(item.get("title"), str) else None,
                published_at=_iso_to_dt(item.get("date_published") or item.get("date_modified")),
                summary=item.get("summary") if isinstance(item.get("summary"), str) else None,
                content=(item.get("content_html") or item.get("content_text"))
                if isinstance(item.get("content_html") or item.get("content_text"), str)
                else None,
            )
        )
    return ParsedFeed(entries=entries, title=doc.get("title"), site_url=doc.get("home_page_url"))
