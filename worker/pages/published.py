"""When an article was published, with the precision the sources give.

A page says when it was published in several places, some to the second and with a
time zone, some to the day. :func:`page_candidates` reads them, in this order of
authority:

1. ``meta``: ``<meta property="article:published_time">`` (and the publishers' own
   names for the same thing: ``og:published_time``, ``pubdate``, ``parsely-pub-date``...);
2. ``jsonld``: ``datePublished`` of the page's JSON-LD (an article's first);
3. ``time``: a ``<time datetime>`` of the article (not of a related story, a comment or
   the footer);
4. ``itemprop``: an element with ``itemprop="datePublished"`` (microdata);
5. ``dc``: Dublin Core (``DC.date.issued``, ``dcterms.created``...);
6. ``feed``: the feed entry's time (``pubDate``, ``published``), added by the caller;
7. ``visible``: the date htmldate finds in the page's text (a byline "3 March 2024");
8. ``url``: a date in the URL (``/2024/03/03/``).

:func:`choose` keeps the first candidate (the most authoritative) as the anchor, and
among the candidates that agree with it on the day the most precise one (``second`` >
``minute`` > ``day``; a tie goes to authority; seconds replace a minute only when they
fall in that minute: two times hours apart are two readings, and the more authoritative
one holds). A day-only date therefore never beats a precise time of the same day, a
feed time is used where the page gives only the day, and a URL date is only ever a day. A
time of exactly midnight (``T00:00:00``) is read as a day: it is how content systems
write a date without a time. A time the markup gives without a zone is the outlet's wall
clock: it takes the zone of another markup reading that gives the same wall clock with
one (``_zoned``), and is read as UTC only when none does. JSON-LD wrapped in
``<![CDATA[ ... ]]>`` or an HTML comment, as XHTML templates write it, is read
(:func:`script_json`).

"Agree on the day": a day-only date ``D`` agrees with a time whose offset is known when
the time falls on ``D`` in its own zone; with an unknown offset (a naive time, a feed
time, which feedparser gives in UTC) when some zone on Earth puts it on ``D`` (UTC
``D - 14h`` to ``D + 36h``). Two times agree when they are less than 24 hours apart.

The result is stored in UTC with its precision and, when the source gave one, its UTC
offset in minutes. A day is stored as midnight UTC of that date. For ordering (the
canonical of a duplicate group, a cluster's first seen) a day sorts as the end of its
UTC day (:func:`sort_time`): "some time that day", after every precise time of that day
and before the next day.
"""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from lxml.etree import XPath, _Element

Precision = Literal["second", "minute", "day"]
Source = Literal["meta", "jsonld", "time", "itemprop", "dc", "feed", "visible", "url"]

PRECISION_RANK: dict[str, int] = {"day": 0, "minute": 1, "second": 2}
SOURCES: tuple[str, ...] = ("meta", "jsonld", "time", "itemprop", "dc", "feed", "visible", "url")

EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
"""Dates before this are errors of the page (a copyright year, a placeholder)."""


@dataclass(frozen=True)
class Stamp:
    """One reading of the publication time: ``at`` in UTC (a day: midnight UTC of the
    date), its precision, the UTC offset the source gave (minutes; None when it gave
    none or for a day), and where it was read."""

    at: datetime
    precision: Precision
    offset: int | None
    source: str

    @property
    def day(self) -> date:
        """The date the source meant: a day's date, or the time's date in its zone."""
        if self.precision == "day" or self.offset is None:
            return self.at.date()
        return (self.at + timedelta(minutes=self.offset)).date()


def sort_time(at: datetime | None, precision: str | None) -> datetime | None:
    """The instant an article sorts at: its time, or for a day the end of that day."""
    if at is None:
        return None
    if precision == "day":
        return datetime.combine(at.astimezone(UTC).date(), time.max, tzinfo=UTC)
    return at


# ------------------------------------------------------------------ parsing values

_ISO = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?"
    r"\s*(Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
_COMPACT = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})(?:T?(\d{2})(\d{2})(\d{2})?)?\s*(Z)?\s*$")


def _offset_minutes(zone: str | None) -> int | None:
    if zone is None:
        return None
    if zone.upper() in ("Z", "UTC", "GMT"):
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) >= 4 else 0
    return sign * (hours * 60 + minutes)


def _stamp(
    y: int,
    mo: int,
    d: int,
    h: int | None,
    mi: int | None,
    s: int | None,
    offset: int | None,
    source: str,
) -> Stamp | None:
    try:
        day = date(y, mo, d)
    except ValueError:
        return None
    if h is None or mi is None or (h == 0 and mi == 0 and not s):
        return Stamp(datetime.combine(day, time(), tzinfo=UTC), "day", None, source)
    if not (0 <= h < 24 and 0 <= mi < 60 and 0 <= (s or 0) < 60):
        return None
    if offset is not None and abs(offset) > 14 * 60:
        return None
    local = datetime(y, mo, d, h, mi, s or 0, tzinfo=UTC)
    at = local - timedelta(minutes=offset or 0)
    return Stamp(at, "second" if s else "minute", offset, source)


def _stamp_of(m: re.Match[str], offset: int | None, source: str) -> Stamp | None:
    """:func:`_stamp` of a match of ``_ISO`` or ``_COMPACT`` (year, month, day, hour,
    minute, second; the zone, group 7, is read by the caller into ``offset``)."""
    y, mo, d, h, mi, s = (int(g) if g is not None else None for g in m.groups()[:6])
    assert y is not None and mo is not None and d is not None
    return _stamp(y, mo, d, h, mi, s, offset, source)


def parse_stamp(value: Any, source: str) -> Stamp | None:
    """A date or time as pages write it (ISO 8601, RFC 822, a compact ``YYYYMMDD``) to a
    :class:`Stamp`; None when it is not one."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > 64:
        return None
    m = _ISO.match(value)
    if m:
        return _stamp_of(m, _offset_minutes(m.group(7)), source)
    m = _COMPACT.match(value)
    if m:
        return _stamp_of(m, 0 if m.group(7) else None, source)
    try:  # "Sun, 03 Mar 2024 14:05:00 +0100"
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is not None:
        off = parsed.utcoffset()
        offset = None if off is None else int(off.total_seconds() // 60)
        return _stamp(
            parsed.year,
            parsed.month,
            parsed.day,
            parsed.hour,
            parsed.minute,
            parsed.second,
            offset,
            source,
        )
    return None


def from_datetime(value: datetime | None, source: str) -> Stamp | None:
    """A time already parsed (a feed entry's, in UTC; htmldate's) as a :class:`Stamp`,
    its offset unknown: exactly midnight UTC is a day, non-zero seconds are seconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    if value.time() == time():
        return Stamp(value, "day", None, source)
    precision: Precision = "second" if value.second else "minute"
    return Stamp(value.replace(microsecond=0), precision, None, source)


# ------------------------------------------------------------------ page candidates

_META_NAMES = (
    "article:published_time",
    "og:article:published_time",
    "og:published_time",
    "article.published",
    "published_time",
    "pubdate",
    "publishdate",
    "publish-date",
    "publish_date",
    "parsely-pub-date",
    "sailthru.date",
    "date.release",
    "citation_publication_date",
)
_DC_NAMES = (
    "dc.date.issued",
    "dcterms.issued",
    "dc.date.created",
    "dcterms.created",
    "dc.date.published",
    "dc.date",
    "dcterms.date",
)
_ARTICLE_TYPES = re.compile(r"(Article|Posting|Report)$")
_URL_DATE = re.compile(
    r"/((?:19|20)\d{2})[/-](0?[1-9]|1[0-2])[/-](0?[1-9]|[12]\d|3[01])(?:/|[-_.]|$)"
)
# a <time> inside one of these belongs to something else than the article
_OTHER = re.compile(r"related|comment|footer|sidebar|teaser|recommend|promo|more-", re.I)


def _metas(tree: _Element) -> Iterator[tuple[str, str]]:
    for meta in tree.iter("meta"):
        key = meta.get("property") or meta.get("name") or meta.get("itemprop") or ""
        content = meta.get("content")
        if key and content:
            yield key.strip().lower(), content


def _meta_values(tree: _Element, names: tuple[str, ...]) -> list[str]:
    found = {name: value for name, value in reversed(list(_metas(tree))) if name in names}
    return [found[n] for n in names if n in found]


def _walk_jsonld(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from _walk_jsonld(item)
    elif isinstance(node, dict):
        yield node
        for key in ("@graph", "mainEntity", "mainEntityOfPage", "itemListElement"):
            if key in node:
                yield from _walk_jsonld(node[key])


# A script's text wrapped as XHTML or old browsers needed it: ``<![CDATA[ ... ]]>`` (also
# behind ``//`` or inside ``/* */``) or ``<!-- ... -->``. An HTML parser keeps the wrapper
# in the script's text, where it makes the JSON unreadable.
_SCRIPT_WRAPPER = re.compile(
    r"^\s*(?:(?://|/\*)\s*)?(?:<!\[CDATA\[|<!--)(?:\s*\*/)?"
    r"(?P<body>.*?)"
    r"(?:(?://|/\*)\s*)?(?:\]\]>|-->)(?:\s*\*/)?\s*$",
    re.S,
)


def script_json(text: str | None) -> Any:
    """The JSON of a script's text, without a CDATA or comment wrapper around it;
    ValueError when it is not JSON."""
    text = text or ""
    m = _SCRIPT_WRAPPER.match(text)
    return json.loads(m.group("body") if m else text)


def _jsonld_values(tree: _Element) -> list[str]:
    articles: list[str] = []
    others: list[str] = []
    for script in tree.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            continue
        try:
            data = script_json(script.text)
        except (ValueError, RecursionError):
            continue
        for obj in _walk_jsonld(data):
            value = obj.get("datePublished")
            if not isinstance(value, str):
                continue
            kind = obj.get("@type")
            kinds = kind if isinstance(kind, list) else [kind]
            if any(isinstance(k, str) and _ARTICLE_TYPES.search(k) for k in kinds):
                articles.append(value)
            else:
                others.append(value)
    return articles + others


def _outside_article(el: _Element) -> bool:
    node: _Element | None = el
    while node is not None:
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag in ("aside", "nav", "footer"):
            return True
        if _OTHER.search(" ".join((node.get("class") or "", node.get("id") or ""))):
            return True
        node = node.getparent()
    return False


def _time_values(tree: _Element) -> list[str]:
    times = [t for t in tree.iter("time") if t.get("datetime") and not _outside_article(t)]
    marked = [
        t
        for t in times
        if t.get("pubdate") is not None or (t.get("itemprop") or "").lower() == "datepublished"
    ]
    chosen = marked or [t for t in times if any(True for _ in t.iterancestors("article"))] or times
    return [str(t.get("datetime")) for t in chosen[:1]]


# The attribute's parents (the same elements in the same order as
# ``//*[@itemprop="datePublished"]``, which tests the attribute on every element: four
# times the cost); compiled once.
_DATE_PUBLISHED = XPath('//@itemprop[.="datePublished"]/..')


def _itemprop_values(tree: _Element) -> list[str]:
    out: list[str] = []
    for el in _DATE_PUBLISHED(tree):
        value = el.get("content") or el.get("datetime") or el.text_content()
        if value and value.strip():
            out.append(value.strip())
    return out[:1]


def url_stamp(url: str | None) -> Stamp | None:
    """A ``/YYYY/MM/DD/`` date in the URL's path, as a day."""
    if not url:
        return None
    path = url.split("?", 1)[0].split("#", 1)[0]
    m = _URL_DATE.search(path)
    if not m:
        return None
    return _stamp(int(m.group(1)), int(m.group(2)), int(m.group(3)), None, None, None, None, "url")


def page_candidates(
    tree: _Element | None, url: str | None, visible: datetime | None
) -> list[Stamp]:
    """Every reading of the publication time of a page, most authoritative first (the
    module doc's order, the feed left out). ``visible`` is htmldate's date of the page."""
    out: list[Stamp] = []

    def add(values: Iterable[str], source: str) -> None:
        for v in values:
            s = parse_stamp(v, source)
            if s is not None:
                out.append(s)
                return

    if tree is not None:
        add(_meta_values(tree, _META_NAMES), "meta")
        add(_jsonld_values(tree), "jsonld")
        add(_time_values(tree), "time")
        add(_itemprop_values(tree), "itemprop")
        add(_meta_values(tree, _DC_NAMES), "dc")
    v = from_datetime(visible, "visible")
    if v is not None:
        out.append(v)
    u = url_stamp(url)
    if u is not None:
        out.append(u)
    return out


# ------------------------------------------------------------------ the choice


def agree(a: Stamp, b: Stamp) -> bool:
    """Whether two readings agree on the day (module doc)."""
    if a.precision == "day" and b.precision == "day":
        return a.day == b.day
    if a.precision == "day" or b.precision == "day":
        d, t = (a, b) if a.precision == "day" else (b, a)
        if t.offset is not None:
            return t.day == d.day
        start = d.at - timedelta(hours=14)
        return start <= t.at < d.at + timedelta(hours=36)
    return abs(a.at - b.at) < timedelta(hours=24)


def choose(candidates: list[Stamp], now: datetime | None = None) -> Stamp | None:
    """The publication time: the most precise candidate agreeing on the day with the
    most authoritative one (module doc). Candidates after ``now`` or before 1990 are
    ignored."""
    now = now or datetime.now(UTC)
    usable = [c for c in candidates if EARLIEST <= c.at <= now]
    usable.sort(key=_authority)
    if not usable:
        return None
    anchor = usable[0]
    best = anchor
    for c in usable[1:]:
        if not agree(anchor, c) or PRECISION_RANK[c.precision] <= PRECISION_RANK[best.precision]:
            continue
        # a time replaces a day; seconds replace a minute only when they say that minute
        # (two times hours apart are two readings, and the more authoritative one holds)
        if best.precision == "day" or abs(c.at - best.at) < timedelta(minutes=1):
            best = c
    return _zoned(best, usable)


# The page's markup: a time it gives without a zone is its outlet's wall clock. The feed's
# time and htmldate's are not (feedparser gives UTC; htmldate's is a day or a guess).
_MARKUP = frozenset(("meta", "jsonld", "time", "itemprop", "dc"))


def _zoned(best: Stamp, usable: list[Stamp]) -> Stamp:
    """A time of the page's markup given without a zone ("2024-03-03T14:05:00") is the
    outlet's wall clock, not UTC: when another reading of the markup gives that same wall
    clock with its zone ("2024-03-03T14:05:00+01:00"), the time is in that zone. Nothing
    else says which zone it was; it stays as it is (read as UTC) then."""
    if best.precision == "day" or best.offset is not None or best.source not in _MARKUP:
        return best
    for c in usable:
        if c.offset is None or c.precision == "day" or c.source not in _MARKUP:
            continue
        wall = c.at + timedelta(minutes=c.offset)
        same = (
            wall == best.at
            if "minute" not in (c.precision, best.precision)
            else wall.replace(second=0) == best.at.replace(second=0)
        )
        if same:
            return Stamp(
                best.at - timedelta(minutes=c.offset), best.precision, c.offset, best.source
            )
    return best


def _authority(c: Stamp) -> int:
    return SOURCES.index(c.source) if c.source in SOURCES else len(SOURCES)


def _markup_anchor(candidates: list[Stamp], now: datetime) -> Stamp | None:
    """The anchor :func:`choose` takes, when it is a reading of the page's markup (not the
    feed's, the visible date or the URL's: those come later in authority)."""
    usable = [c for c in candidates if EARLIEST <= c.at <= now]
    if not usable:
        return None
    anchor = min(usable, key=_authority)
    return anchor if _authority(anchor) < SOURCES.index("feed") else None


def settled(candidates: list[Stamp], now: datetime) -> bool:
    """Whether htmldate's extensive search can be left out: the most authoritative usable
    candidate is the page markup's (not the feed's, the visible date or the URL's) and
    gives the time to the minute or the second. Then no later reading can replace it as
    the anchor, and the only one that can still refine it is a reading with seconds inside
    that minute (:func:`choose`): the feed's, which the caller adds apart, or htmldate's,
    whose search without the extensive part still reads the markup. What the extensive
    search adds (dates in the page's text, through dateparser) could matter only for a
    minute whose seconds appear nowhere but in the visible text: none of the 141 such
    pages of the 1,124 of ``bench.frontier_speed`` (docs/benchmarks.md, branch
    ``extractq``)."""
    anchor = _markup_anchor(candidates, now)
    return anchor is not None and anchor.precision in ("second", "minute")


def final(candidates: list[Stamp], now: datetime) -> bool:
    """Whether ``candidates`` already fix what :func:`choose` keeps, whatever is added of
    the readings that come after them in authority (htmldate's visible date, the URL's):
    :func:`choose` over the candidates more authoritative than the visible date keeps a
    time to the second. It then keeps it with any such reading added: the anchor stays
    (the added readings come later in authority), the readings before them in authority
    are gone through as before, and nothing replaces a second. The markup's own time to the
    second, or the feed's time to the second on a page whose markup gives only the day or
    nothing. htmldate need not be asked then."""
    before = [c for c in candidates if _authority(c) < SOURCES.index("visible")]
    chosen = choose(before, now)
    return chosen is not None and chosen.precision == "second"


__all__ = [
    "PRECISION_RANK",
    "Precision",
    "Stamp",
    "agree",
    "choose",
    "final",
    "from_datetime",
    "page_candidates",
    "parse_stamp",
    "script_json",
    "settled",
    "sort_time",
    "url_stamp",
]
