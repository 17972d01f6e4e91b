"""Feed documents to entries: RSS 0.9x/1.0/2.0, Atom and RDF through feedparser, and
JSON Feed (which feedparser does not read). Ill-formed feeds still give every usable
entry; the parser's complaint is returned, never raised."""

from __future__ import annotations

import calendar
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

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
    # Entries left out for want of a web address: the address each had instead
    # (``file:``, ``javascript:``, a ``urn:`` id), or "" for none. A poll counts them
    # refused, with the reason, in its record.
    not_web: list[str] = field(default_factory=list)


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


def _is_web_url(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


def looks_like_json(body: bytes, content_type: str) -> bool:
    return "json" in content_type or body.lstrip()[:1] == b"{"


# A feed served as a .gz file without Content-Encoding is unpacked up to this size.
MAX_UNPACKED_BYTES = 20_000_000


def _unpack(body: bytes) -> bytes | None:
    """The content of a gzip file (bounded: a bomb is cut off), or None."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, MAX_UNPACKED_BYTES)
    except zlib.error:
        return None
    return out


# NUL (PostgreSQL refuses it in text), the other C0 controls, and lone surrogates (not
# encodable as UTF-8): a feed can carry them (JSON "\u0000", XML "&#0;" read by the
# lenient parser) and one such entry would make the whole poll fail to store.
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(value: str | None) -> str | None:
    return _UNSTORABLE.sub("", value) if isinstance(value, str) else None


def _scrub(parsed: ParsedFeed) -> ParsedFeed:
    """Only storable text in every field (see ``_UNSTORABLE``); entries whose link is
    left empty are dropped."""
    parsed.title, parsed.site_url = _clean(parsed.title), _clean(parsed.site_url)
    parsed.error = _clean(parsed.error)
    for e in parsed.entries:
        e.link = _clean(e.link) or ""
        e.guid, e.title = _clean(e.guid), _clean(e.title)
        e.summary, e.content = _clean(e.summary), _clean(e.content)
    kept = [e for e in parsed.entries if e.link.strip()]
    parsed.not_web += [""] * (len(parsed.entries) - len(kept))
    parsed.not_web = [_clean(x) or "" for x in parsed.not_web]
    parsed.entries = kept
    return parsed


def parse_feed(body: bytes, content_type: str = "", base_url: str | None = None) -> ParsedFeed:
    """Entries of a feed document; never raises on a bad document (``error`` says
    what was wrong, ``is_feed`` whether it is a feed at all)."""
    if body[:2] == b"\x1f\x8b":  # a gzip file served as such (e.g. feed.xml.gz)
        unpacked = _unpack(body)
        if unpacked is not None:
            body = unpacked
    # Whitespace before the XML declaration makes the document ill-formed for the
    # strict parser, and is common; a byte-order mark stays for feedparser to read.
    if body[:1].isspace():
        body = body.lstrip()
    if looks_like_json(body, content_type):
        return _scrub(_parse_json_feed(body, base_url))
    return _scrub(_parse_xml_feed(body, content_type, base_url))


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
    not_web: list[str] = []
    site = d.feed.get("link")
    for e in d.entries:
        # feedparser's ``link`` (which may be a non-URL guid), then an alternate link,
        # then an id that is a URL: the first web address wins.
        candidates = [e.get("link")]
        candidates += [
            lk.get("href") for lk in e.get("links", []) if lk.get("rel", "alternate") == "alternate"
        ]
        candidates.append(e.get("id"))
        if isinstance(site, str) and _is_web_url(site):
            # Relative links feedparser could not resolve (no base URL was given).
            candidates = [
                urljoin(site, c) if isinstance(c, str) and c.startswith("/") else c
                for c in candidates
            ]
        link = next((c.strip() for c in candidates if _is_web_url(c)), "")
        if not link:
            other = (c.strip() for c in candidates if isinstance(c, str) and c.strip())
            not_web.append(next(other, ""))
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
    if not is_feed:
        error = f"not a feed: {error or 'no RSS, Atom or RDF document found'}"
    return ParsedFeed(
        entries=entries,
        title=d.feed.get("title"),
        site_url=d.feed.get("link"),
        min_interval_hint=_hint(d.feed),
        error=error,
        is_feed=is_feed,
        not_web=not_web,
    )


def _parse_json_feed(body: bytes, base_url: str | None = None) -> ParsedFeed:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return ParsedFeed(error=f"not a feed: invalid JSON ({exc})", is_feed=False)
    if not isinstance(doc, dict) or "jsonfeed.org" not in str(doc.get("version", "")):
        return ParsedFeed(error="not a feed: JSON without a JSON Feed version", is_feed=False)
    entries: list[Entry] = []
    not_web: list[str] = []
    items = doc.get("items")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        link = item.get("url") or item.get("external_url") or ""
        if not isinstance(link, str) or not link.strip():
            not_web.append("")
            continue
        base = doc.get("feed_url") or doc.get("home_page_url") or base_url
        entries.append(
            Entry(
                link=urljoin(base, link.strip()) if isinstance(base, str) else link.strip(),
                guid=str(item["id"]) if item.get("id") is not None else None,
                title=item.get("title") if isinstance(item.get("title"), str) else None,
                published_at=_iso_to_dt(item.get("date_published") or item.get("date_modified")),
                summary=item.get("summary") if isinstance(item.get("summary"), str) else None,
                content=(item.get("content_html") or item.get("content_text"))
                if isinstance(item.get("content_html") or item.get("content_text"), str)
                else None,
            )
        )
    title, home = doc.get("title"), doc.get("home_page_url")
    return ParsedFeed(
        entries=entries,
        title=title if isinstance(title, str) else None,
        site_url=home if isinstance(home, str) else None,
        not_web=not_web,
    )
