"""Sitemaps for backfills: robots.txt ``Sitemap:`` lines, sitemap indexes, URL sets and
news sitemaps (``news:publication_date``), plain-text sitemaps, gzip-compressed files.

Parsing is safe and bounded: lxml with entity resolution, DTD loading and network
access turned off, and any document that declares entities refused outright (no XXE,
no "billion laughs": nothing is expanded, and no URL is silently cut short at an
entity reference), gzip inflated only up to the size limit, and the caller fetches
through :class:`worker.network.http.HttpClient` (SSRF guard, timeouts, response size limit).
Documents are parsed here; nothing is fetched here.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin

from lxml import etree

MAX_URLS_PER_DOCUMENT = 50_000  # the sitemap protocol's own limit


class SitemapError(ValueError):
    """Not a usable sitemap (not XML, not a urlset or index, too large)."""


@dataclass
class SitemapEntry:
    loc: str
    date: datetime | None = None  # news:publication_date, else lastmod
    title: str | None = None  # news:title


@dataclass
class SitemapDocument:
    kind: str  # "index" or "urlset"
    sitemaps: list[SitemapEntry] = field(default_factory=list)
    urls: list[SitemapEntry] = field(default_factory=list)
    truncated: bool = False


def parse_w3c_date(value: str | None) -> datetime | None:
    """W3C datetime (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, full ISO 8601 with ``Z`` or
    offset) to an aware UTC datetime; None when absent or unreadable."""
    if not value:
        return None
    v = value.strip()
    if not v:
        return None
    if len(v) == 4 and v.isdigit():
        v += "-01-01"
    elif len(v) == 7 and v[4] == "-":
        v += "-01"
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


def robots_sitemaps(robots_txt: str, base_url: str) -> list[str]:
    """The ``Sitemap:`` URLs of a robots.txt, in order, without repeats."""
    found: list[str] = []
    for line in robots_txt.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "sitemap":
            url = urljoin(base_url, value.split("#", 1)[0].strip())
            if url and url not in found:
                found.append(url)
    return found


def gunzip_bounded(body: bytes, limit: int) -> bytes:
    """Inflate a gzip file (a ``.xml.gz`` sitemap served as-is) up to ``limit`` bytes."""
    if body[:2] != b"\x1f\x8b":
        return body
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise SitemapError(f"corrupt gzip sitemap: {exc}") from exc
    if len(out) > limit:
        raise SitemapError(f"sitemap larger than {limit} bytes once inflated")
    return out


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def _child_text(el: etree._Element, name: str) -> str | None:
    for child in el.iter():
        if child is not el and _local(child.tag) == name and child.text:
            return str(child.text).strip()
    return None


_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    recover=True,
    remove_comments=True,
    remove_pis=True,
)


def parse_sitemap(body: bytes, base_url: str, limit: int) -> SitemapDocument:
    """Parse a sitemap index, a URL set (news sitemap included) or a plain-text list.

    Raises :class:`SitemapError` for anything else."""
    data = gunzip_bounded(body, limit).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not data:
        raise SitemapError("empty sitemap")
    if not data.startswith(b"<"):
        return _parse_text(data, base_url)
    parser = etree.XMLParser(**_PARSER_OPTIONS)
    try:
        root = etree.fromstring(data, parser=parser, base_url=base_url)
    except etree.XMLSyntaxError as exc:
        raise SitemapError(f"not XML: {exc}") from exc
    if root is None:
        raise SitemapError("not XML")
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        # Entity declarations have no business in a sitemap: they are how XML entity
        # expansion ("billion laughs") and external entity (XXE) attacks work.
        raise SitemapError("refused: the document declares XML entities")
    kind = _local(root.tag)
    if kind == "sitemapindex":
        doc = SitemapDocument(kind="index")
        for el in root:
            if _local(el.tag) != "sitemap":
                continue
            loc = _child_text(el, "loc")
            if loc:
                doc.sitemaps.append(
                    SitemapEntry(urljoin(base_url, loc), parse_w3c_date(_child_text(el, "lastmod")))
                )
        return doc
    if kind == "urlset":
        doc = SitemapDocument(kind="urlset")
        for el in root:
            if _local(el.tag) != "url":
                continue
            loc = _child_text(el, "loc")
            if not loc:
                continue
            if len(doc.urls) >= MAX_URLS_PER_DOCUMENT:
                doc.truncated = True
                break
            date = parse_w3c_date(_child_text(el, "publication_date")) or parse_w3c_date(
                _child_text(el, "lastmod")
            )
            doc.urls.append(SitemapEntry(urljoin(base_url, loc), date, _child_text(el, "title")))
        return doc
    raise SitemapError(f"not a sitemap: root element <{kind or '?'}>")


def _parse_text(data: bytes, base_url: str) -> SitemapDocument:
    doc = SitemapDocument(kind="urlset")
    for raw in data.decode("utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith(("http://", "https://")):
            raise SitemapError("not a sitemap: neither XML nor a list of URLs")
        if len(doc.urls) >= MAX_URLS_PER_DOCUMENT:
            doc.truncated = True
            break
        doc.urls.append(SitemapEntry(urljoin(base_url, line)))
    return doc


def in_range(
    date: datetime | None,
    since: datetime | None,
    until: datetime | None,
    *,
    include_undated: bool,
) -> bool:
    """Whether a dated item falls within [since, until]; undated ones only when asked
    to (or when no bound is given at all)."""
    if date is None:
        return include_undated or (since is None and until is None)
    if since is not None and date < since:
        return False
    return not (until is not None and date > until)
