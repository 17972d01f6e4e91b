"""Hostile and broken input: documents built to hurt a parser, and the ill-formed,
mis-encoded feeds of the real world.

* every file of ``../shared/corpora/feeds/`` (news feeds, ill-formed and mis-encoded
  ones, and feedparser's own test files), read at run time, never copied, goes through
  :func:`worker.feeds.parsing.parse_feed` without raising, and what comes out can be
  stored (on PostgreSQL, which refuses what SQLite would take);
* entity expansion ("billion laughs", quadratic blow-up) and external entities (local
  files, URLs, external DTDs, parameter entities) in feeds and sitemaps are neither
  expanded nor fetched nor read;
* pages that are huge, deeply nested, binary, NUL-filled or all script go through
  extraction, and through the real fetch -> extract -> dedup -> claims steps, and end in
  a recorded state with a reason, never an exception.

Hostile *servers* (slow drip, endless bodies, redirect loops, compression bombs on the
wire, TLS) are in ``tests/test_hostile_servers.py``; bad command-line input in
``tests/test_cli_errors.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import unicodedata
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared_path
from worker.feeds.parsing import ParsedFeed, parse_feed
from worker.jobs.sitemaps import SitemapError, parse_sitemap
from worker.testing.server import LocalServer, Reply

# Characters no stored text may hold: PostgreSQL refuses NUL in text, UTF-8 cannot
# encode lone surrogates, and the other C0 controls are never content.
_FORBIDDEN = {chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"} | {"\ufffe", "\uffff"}


def _bad_chars(s: str) -> list[str]:
    return sorted(
        {f"U+{ord(c):04X}" for c in s if c in _FORBIDDEN or unicodedata.category(c) == "Cs"}
    )


def _strings(obj: Any) -> Iterator[str]:
    """Every string inside a parse result (dataclasses, lists, dicts)."""
    if isinstance(obj, str):
        yield obj
    elif is_dataclass(obj) and not isinstance(obj, type):
        for f in fields(obj):
            yield from _strings(getattr(obj, f.name))
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _strings(item)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)


def _feed_problems(parsed: object) -> list[str]:
    """What is wrong with a parse result, as the poll step will use it."""
    if not isinstance(parsed, ParsedFeed):
        return [f"not a ParsedFeed: {type(parsed).__name__}"]
    problems = []
    for name in ("title", "site_url", "error"):
        value = getattr(parsed, name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name} is {type(value).__name__}")
    if parsed.min_interval_hint is not None and not isinstance(parsed.min_interval_hint, int):
        problems.append("min_interval_hint is not an int")
    for e in parsed.entries:
        if not isinstance(e.link, str) or not e.link or e.link != e.link.strip():
            problems.append(f"bad link {e.link!r}")
        for name in ("guid", "title", "summary", "content"):
            value = getattr(e, name)
            if value is not None and not isinstance(value, str):
                problems.append(f"entry {name} is {type(value).__name__}")
        if e.published_at is not None and (
            not isinstance(e.published_at, datetime) or e.published_at.tzinfo is None
        ):
            problems.append(f"published_at {e.published_at!r} is not aware")
    for s in _strings(parsed):
        bad = _bad_chars(s)
        if bad:
            problems.append(f"forbidden characters {bad} in {s[:60]!r}")
    return problems


# ------------------------------------------------------------------ the feed corpus


def _corpus() -> list[Path]:
    root = shared_path("corpora", "feeds")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix not in {".py", ".txt", ".tsv", ".md"}
        and "LICENSE" not in p.name
        and "licenses" not in p.parts
    )
    # a corpus that is there but empty must not make this test green
    assert len(files) > 1000, f"feed corpus looks incomplete: {len(files)} files in {root}"
    return files


def _bodies(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # a gzipped feed: the inflated document, and the raw bytes
        return [gzip.decompress(raw), raw]
    return [raw]


# The content types a server may claim for a feed, right or wrong.
CONTENT_TYPES = ["", "application/rss+xml; charset=utf-8", "text/html; charset=iso-8859-1"]


def test_every_corpus_feed_parses_without_raising() -> None:
    """All ~2,100 files, each under three content types (none, right, wrong charset)."""
    failures: list[str] = []
    with_entries: set[Path] = set()
    for path in _corpus():
        for body in _bodies(path):
            for ctype in CONTENT_TYPES:
                try:
                    parsed = parse_feed(body, ctype, "http://feeds.example.org/feed")
                except Exception as exc:
                    failures.append(f"{path} [{ctype}]: raised {type(exc).__name__}: {exc}")
                    continue
                failures += [f"{path} [{ctype}]: {p}" for p in _feed_problems(parsed)]
                if parsed.entries:
                    with_entries.add(path)
    assert not failures, "\n".join(failures[:30])
    # most of feedparser's test documents check one element and have no linked entry;
    # 116 of the 2,132 files give entries today
    assert len(with_entries) >= 100, f"entries found in only {len(with_entries)} documents"


def test_news_feeds_give_every_linked_item_and_decode_their_titles() -> None:
    """The news feeds of the corpus (MANIFEST.tsv says how many items each has): the
    well-formed and mis-encoded ones give every item and a correctly decoded title;
    the ill-formed ones give what they can and say what was wrong."""
    root = shared_path("corpora", "feeds", "news-feeds")
    rows = [
        line.split(b"\t")
        for line in (root / "MANIFEST.tsv").read_bytes().splitlines()[1:]
        if line.strip()
    ]
    assert len(rows) >= 20
    scripts = {"iso8859-1": "LATIN", "windows1251": "CYRILLIC", "gb2312": "CJK"}
    for row in rows:
        kind, name, items = row[0].decode(), row[1].decode(), int(row[7])
        parsed = parse_feed(_bodies(root / kind / name)[0])
        assert not _feed_problems(parsed), (name, _feed_problems(parsed))
        assert len(parsed.entries) <= items, name
        if kind in ("wellformed", "encodings"):
            assert len(parsed.entries) == items, (name, len(parsed.entries), items)
            assert parsed.title and "\ufffd" not in parsed.title, (name, parsed.title)
        for label, script in scripts.items():
            if label in name:
                assert parsed.title is not None
                assert any(
                    script in unicodedata.name(c, "") for c in parsed.title if ord(c) > 127
                ), (name, parsed.title)
        if name.startswith("saxerror"):
            assert parsed.error and "not well-formed" in parsed.error


def _store_entries(parsed: ParsedFeed, feed_url: str) -> list[int]:
    """What the poll step does with a parsed feed: the feed's title, the articles and
    sightings of its entries, in one transaction."""
    from schemas.models import Feed
    from schemas.types import utcnow
    from worker.core.db import unit_of_work
    from worker.feeds.polling import record_entries

    with unit_of_work() as session:
        feed = Feed(url=feed_url)
        session.add(feed)
        session.flush()
        feed.title = parsed.title
        feed.site_url = parsed.site_url
        feed.last_error = parsed.error
        return [article_id for article_id, _host in record_entries(session, feed, parsed, utcnow())]


@pytest.mark.postgres
def test_corpus_entries_can_be_stored_on_postgresql(configure: Any, pg_url: str) -> None:
    """Every corpus feed's entries through the poll step's recording, on PostgreSQL
    (which rejects NUL characters and badly encoded text that SQLite accepts)."""
    from worker.core.db import init_db

    configure(database_url=pg_url)
    init_db()
    failures: list[str] = []
    stored = 0
    for i, path in enumerate(_corpus()):
        parsed = parse_feed(_bodies(path)[0])
        if not parsed.entries:
            continue
        try:
            stored += len(_store_entries(parsed, f"http://corpus.example.org/{i}.xml"))
        except Exception as exc:
            failures.append(f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    assert not failures, "\n".join(failures[:30])
    assert stored >= 500, f"only {stored} articles stored from the corpus (548 today)"


# JSON Feed and XML documents whose fields carry what a database refuses or what is not
# text at all. The poll step must store the rest, not fail the whole feed.
HOSTILE_FEEDS: dict[str, bytes] = {
    "json-nul-and-surrogates": json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "Feed\u0000 title\ud800",
            "home_page_url": "https://site.example.org/",
            "items": [
                {
                    "id": "1",
                    "url": "https://site.example.org/a",
                    "title": "NUL \u0000 in the title",
                    "summary": "lone surrogate \udc80 here",
                    "content_text": "control \u0001\u001f characters",
                },
                {"id": "2", "url": "https://site.example.org/b", "title": "a good one"},
            ],
        }
    ).encode(),
    "json-wrong-types": json.dumps(
        {
            "version": "https://jsonfeed.org/version/1",
            "title": {"not": "a string"},
            "home_page_url": ["https://site.example.org/"],
            "items": [
                {"id": {"x": 1}, "url": "https://site.example.org/c", "title": 42},
                {"id": 7, "url": "https://site.example.org/d", "date_published": 12345},
                {"url": 123},
                "not an object",
                None,
            ],
        }
    ).encode(),
    "xml-nul-characters": (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T\x00</title>'
        b"<link>https://site.example.org/</link><item><title>a&#0;b\x00c</title>"
        b"<link>https://site.example.org/e</link><description>d\x00e&#1;</description>"
        b"</item></channel></rss>"
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FEEDS))
def test_hostile_feed_fields_are_cleaned(name: str) -> None:
    parsed = parse_feed(HOSTILE_FEEDS[name], "", "https://site.example.org/feed")
    assert _feed_problems(parsed) == []
    assert parsed.entries, "the usable entries are kept"


@pytest.mark.postgres
def test_hostile_feed_fields_can_be_stored_on_postgresql(configure: Any, pg_url: str) -> None:
    from worker.core.db import init_db

    configure(database_url=pg_url)
    init_db()
    for i, (name, body) in enumerate(sorted(HOSTILE_FEEDS.items())):
        parsed = parse_feed(body, "", "https://site.example.org/feed")
        new = _store_entries(parsed, f"https://site.example.org/feed{i}")
        assert len(new) == len({e.link for e in parsed.entries}) > 0, name


# ------------------------------------------------------- XML entities in feeds/sitemaps


def _billion_laughs(root_open: str, root_close: str, body: str) -> bytes:
    ents = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    tag = root_open.split()[0].lstrip("<").rstrip(">")
    doc = f'<?xml version="1.0"?>\n<!DOCTYPE {tag} [{ents}]>\n{root_open}{body}{root_close}'
    return doc.encode()


def _quadratic(
    root_open: str, root_close: str, body: str, size: int = 100_000, refs: int = 2000
) -> bytes:
    """One plain entity referenced many times: 100 kB x 2,000 (200 MB), or (the "wide"
    form, under the amplification ratio parsers tolerate) 280 B x 30,000."""
    tag = root_open.split()[0].lstrip("<").rstrip(">")
    big = "A" * size
    doc = f'<?xml version="1.0"?>\n<!DOCTYPE {tag} [<!ENTITY lol9 "{big}">]>\n'
    return (doc + root_open + body.replace("&lol9;", "&lol9;" * refs) + root_close).encode()


class Attack:
    """One entity trick, and what would show that it worked."""

    def __init__(self, name: str, secret_url: str, secret_file: Path) -> None:
        self.name = name
        self.secret_url = secret_url
        self.secret_file = secret_file

    def doctype(self, tag: str) -> str:
        f, u = self.secret_file.as_uri(), self.secret_url
        return {
            "xxe-file": f'<!DOCTYPE {tag} [<!ENTITY lol9 SYSTEM "{f}">]>',
            "xxe-passwd": f'<!DOCTYPE {tag} [<!ENTITY lol9 SYSTEM "file:///etc/passwd">]>',
            "xxe-http": f'<!DOCTYPE {tag} [<!ENTITY lol9 SYSTEM "{u}">]>',
            "parameter-entity": (
                f'<!DOCTYPE {tag} [<!ENTITY % ext SYSTEM "{u}"> %ext; <!ENTITY lol9 "x">]>'
            ),
            "external-dtd": f'<!DOCTYPE {tag} SYSTEM "{u}">',
            "public-dtd": f'<!DOCTYPE {tag} PUBLIC "-//claimwire//hostile//EN" "{u}">',
        }[self.name]

    def document(self, root_open: str, root_close: str, body: str) -> bytes:
        if self.name == "billion-laughs":
            return _billion_laughs(root_open, root_close, body)
        if self.name == "quadratic-blowup":
            return _quadratic(root_open, root_close, body)
        if self.name == "wide-entity":
            return _quadratic(root_open, root_close, body, size=280, refs=30_000)
        tag = root_open.split()[0].lstrip("<").rstrip(">")
        return f'<?xml version="1.0"?>\n{self.doctype(tag)}\n{root_open}{body}{root_close}'.encode()


ATTACKS = [
    "billion-laughs",
    "quadratic-blowup",
    "wide-entity",
    "xxe-file",
    "xxe-passwd",
    "xxe-http",
    "parameter-entity",
    "external-dtd",
    "public-dtd",
]

SECRET = "claimwire-secret-" + uuid.uuid4().hex


@pytest.fixture()
def trap(tmp_path: Path, server: LocalServer) -> tuple[str, Path, LocalServer]:
    """A secret file on disk and a secret URL on a local server: an attack that works
    reads one or fetches the other (the server counts every request)."""
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    dtd = f'<!ENTITY lol9 "{SECRET}"><!ENTITY leak "{SECRET}">'
    server.routes["/secret"] = Reply(body=dtd.encode(), content_type="application/xml-dtd")
    return server.url("/secret"), secret_file, server


def _leaked(strings: list[str]) -> list[str]:
    """Signs that an entity was expanded or an external resource read."""
    joined = "\n".join(strings)
    signs = []
    if SECRET in joined:
        signs.append("the secret was read")
    if "root:x:0:0" in joined or "/bin/bash" in joined or "nologin" in joined:
        signs.append("/etc/passwd was read")
    if "lol" * 20 in joined:
        signs.append("billion laughs expanded")
    if "A" * 1_000 in joined:
        signs.append("a plain entity was expanded")
    if sum(len(s) for s in strings) > 1_000_000:
        signs.append(f"{sum(len(s) for s in strings)} characters out of a small document")
    return signs


RSS_OPEN = '<rss version="2.0">'
RSS_BODY = (
    "<channel><title>Feed &lol9;</title><link>https://site.example.org/</link>"
    "<item><title>First &lol9;</title><link>https://site.example.org/a</link>"
    "<description>Summary &lol9;</description></item>"
    "<item><title>Second</title><link>https://site.example.org/b</link></item></channel>"
)
ATOM_OPEN = '<feed xmlns="http://www.w3.org/2005/Atom">'
ATOM_BODY = (
    "<title>Atom &lol9;</title><id>urn:x</id><updated>2026-01-01T00:00:00Z</updated>"
    '<entry><title>First &lol9;</title><link href="https://site.example.org/c"/><id>urn:c</id>'
    "<updated>2026-01-01T00:00:00Z</updated><content>Body &lol9;</content></entry>"
)


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("flavour", ["rss", "atom"])
def test_feed_entities_are_not_expanded_nor_resolved(
    attack: str, flavour: str, trap: tuple[str, Path, LocalServer]
) -> None:
    url, secret_file, server = trap
    a = Attack(attack, url, secret_file)
    if flavour == "rss":
        doc = a.document(RSS_OPEN, "</rss>", RSS_BODY)
    else:
        doc = a.document(ATOM_OPEN, "</feed>", ATOM_BODY)
    for ctype in ("", "application/rss+xml", "text/xml"):
        parsed = parse_feed(doc, ctype, "https://site.example.org/feed")
        assert _leaked(list(_strings(parsed))) == [], (attack, flavour, ctype)
        assert _feed_problems(parsed) == []
        assert parsed.entries, "the entries are still read"
    assert server.hits["/secret"] == 0, "the parser fetched an external entity or DTD"


URLSET_OPEN = '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
URLSET_BODY = (
    "<url><loc>https://site.example.org/&lol9;</loc><lastmod>2026-01-01</lastmod></url>"
    "<url><loc>https://site.example.org/b</loc></url>"
)
INDEX_OPEN = '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
INDEX_BODY = "<sitemap><loc>https://site.example.org/s-&lol9;.xml</loc></sitemap>"


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("flavour", ["urlset", "index", "gzipped"])
def test_sitemap_entities_are_not_expanded_nor_resolved(
    attack: str, flavour: str, trap: tuple[str, Path, LocalServer]
) -> None:
    url, secret_file, server = trap
    a = Attack(attack, url, secret_file)
    if flavour == "index":
        doc = a.document(INDEX_OPEN, "</sitemapindex>", INDEX_BODY)
    else:
        doc = a.document(URLSET_OPEN, "</urlset>", URLSET_BODY)
    if flavour == "gzipped":
        doc = gzip.compress(doc)
    try:
        parsed = parse_sitemap(doc, "https://site.example.org/sitemap.xml", 10_000_000)
    except SitemapError as exc:  # refusing the document is fine too
        strings = [str(exc)]
    else:
        strings = [e.loc for e in parsed.urls + parsed.sitemaps]
        assert all(s.startswith("https://site.example.org/") for s in strings), strings
    assert _leaked(strings) == [], (attack, flavour)
    assert server.hits["/secret"] == 0, "the parser fetched an external entity or DTD"


def test_sitemap_gzip_bomb_is_cut_at_the_limit() -> None:
    """A 20 kB .xml.gz that inflates to 200 MB: refused once past the size limit, without
    inflating the rest."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b" " * (1 << 20)
    parts = [comp.compress(b"<urlset>")]
    parts += [comp.compress(chunk) for _ in range(200)]
    parts.append(comp.compress(b"</urlset>") + comp.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 500_000
    with pytest.raises(SitemapError, match="larger than"):
        parse_sitemap(bomb, "https://site.example.org/sitemap.xml.gz", 10_000_000)


@pytest.mark.parametrize(
    "doc",
    [
        b"",
        b"\x00" * 1000,
        os.urandom(4096),
        b"<urlset>" * 50_000,
        b"<" + b"a" * 1_000_000,
        b"https://site.example.org/a\nnot a url\n",
        b"\x1f\x8bnot really gzip",
    ],
    ids=["empty", "nul", "random", "unclosed", "long-tag", "half-text", "fake-gzip"],
)
def test_broken_sitemaps_raise_only_sitemap_error(doc: bytes) -> None:
    try:
        parsed = parse_sitemap(doc, "https://site.example.org/sitemap.xml", 10_000_000)
    except SitemapError:
        return
    for e in parsed.urls + parsed.sitemaps:
        assert e.loc.startswith(("http://", "https://")), e.loc


# ----------------------------------------------------------------------- hostile pages


def _nested(depth: int, closed: bool = True) -> str:
    inner = "<p>The mayor said the deepest paragraph was finally reached.</p>"
    return (
        "<html><body>"
        + "<div>" * depth
        + inner
        + ("</div>" * depth if closed else "")
        + "</body></html>"
    )


def _huge() -> str:
    """About 9 MB of paragraphs: longer than extraction reads (MAX_HTML_CHARS)."""
    rnd = random.Random(5)
    words = ["harbour", "tram", "budget", "council", "bridge", "water", "school", "road"]
    paras = (
        f"<p>{i} " + " ".join(rnd.choice(words) for _ in range(150)) + ".</p>\n"
        for i in range(9_000)
    )  # all different: repeated paragraphs would be dropped as boilerplate
    return "<html><body><article>" + "".join(paras) + "</article></body></html>"


HOSTILE_PAGES: dict[str, bytes] = {
    "nested-100k-divs": _nested(100_000).encode(),
    "nested-100k-unclosed": _nested(100_000, closed=False).encode(),
    "nested-tables": ("<table><tr><td>" * 20_000 + "cell" + "</td></tr></table>" * 20_000).encode(),
    "binary": random.Random(1).randbytes(2_000_000),
    "nul-bytes": b"<html><body>" + b"\x00" * 1_000_000 + b"</body></html>",
    "all-script": (
        "<html><head><script>"
        + "var a = 1;" * 100_000
        + "</script></head><body>"
        + "<script>document.write('x')</script>" * 10_000
        + "</body></html>"
    ).encode(),
    "entities": (
        "<html><body><p>" + "&amp;&#0;&#xD800;&nosuch;" * 200_000 + "</p></body></html>"
    ).encode(),
    "unclosed-comment": b"<html><body><!-- " + b"x" * 2_000_000,
    "many-attributes": (
        "<html><body><div " + " ".join(f'a{i}="{i}"' for i in range(100_000)) + ">hi</div>"
    ).encode(),
    "huge": _huge().encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PAGES))
def test_hostile_page_extraction_gives_text_or_nothing(name: str) -> None:
    from worker.pages.charset import decode_html
    from worker.pages.extractor import MAX_HTML_CHARS, extract_page

    html, _encoding = decode_html(HOSTILE_PAGES[name], "text/html")
    page = extract_page(html, "https://site.example.org/a")
    assert isinstance(page.text, str)
    assert len(page.text) <= MAX_HTML_CHARS
    assert _bad_chars(page.text) == []
    fallback = "<p>" + "The feed's own text of the article, long enough to be used. " * 10
    page = extract_page(html, "https://site.example.org/a", fallback_content=fallback)
    assert page.text, "an unreadable page falls back to the feed's text"
    if name == "huge":
        assert len(page.text) > 100_000 and page.text_source == "page"


@pytest.mark.postgres
def test_hostile_pages_through_the_pipeline_steps(
    configure: Any, pg_url: str, redis_url: str, server: LocalServer
) -> None:
    """The real steps, as the Celery tasks run them (one transaction each, on
    PostgreSQL): every hostile page is fetched, archived and extracted, and the article
    ends ``processed`` with no text and ``claims_status`` ``no_text``, or ``processed``
    with text, or ``skipped``/``failed`` with a reason. None raises, none is left
    pending, and a normal article next to them is processed as usual."""
    from sqlmodel import Session, select

    from schemas.models import Article, ArticleState
    from worker.claims import store
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.dedup import deduplicate as dedup_module
    from worker.feeds.parsing import Entry
    from worker.pages import extract as extract_module
    from worker.pages import fetch as fetch_module
    from worker.pipeline import resources

    settings = configure(database_url=pg_url, broker_url=redis_url, extract_claims="true")
    init_db()
    links = {}
    for name, body in HOSTILE_PAGES.items():
        server.routes[f"/hostile/{name}"] = Reply(body=body, content_type="text/html")
        links[name] = server.url(f"/hostile/{name}")
    # binary served as what it is: not HTML, skipped before extraction
    server.routes["/hostile/binary-octets"] = Reply(
        body=HOSTILE_PAGES["binary"], content_type="application/octet-stream"
    )
    links["binary-octets"] = server.url("/hostile/binary-octets")
    normal = (
        "<html><head><title>A normal page</title></head><body><article>"
        + "<p>Mayor Lena Fischer said the tram line would open in May, two years late.</p>" * 5
        + "</article></body></html>"
    )
    server.routes["/normal"] = Reply(body=normal.encode())
    links["normal"] = server.url("/normal")
    parsed = ParsedFeed(entries=[Entry(link=u, title=n) for n, u in links.items()])
    ids = _store_entries(parsed, server.url("/feed.xml"))
    assert len(ids) == len(links)

    def fetch(s: Session, aid: int) -> bool:
        http, limiter, archive = (
            resources.http_client(),
            resources.host_limiter(),
            resources.archive(),
        )
        return fetch_module.fetch_article(s, aid, http, limiter, archive, settings).advanced

    def extract(s: Session, aid: int) -> bool:
        return extract_module.extract_stored_article(s, aid, resources.archive(), settings)

    def deduplicate(s: Session, aid: int) -> bool:
        return dedup_module.deduplicate_article(s, aid, settings).advanced

    def claims(s: Session, aid: int) -> bool:
        return store.process_claims(s, aid, get_settings())

    steps: list[Callable[[Session, int], bool]] = [fetch, extract, deduplicate, claims]
    for aid in ids:
        for step in steps:
            with unit_of_work() as session:
                if not step(session, aid):
                    break
    with unit_of_work() as session:
        articles = {a.url: a for a in session.exec(select(Article)).all()}
    by_name = {name: articles[url] for name, url in links.items()}
    for name, a in by_name.items():
        assert a.attempts == 0, name
        if a.state == ArticleState.processed:
            assert a.extracted_at is not None and a.processed_at is not None, name
            if not a.text:
                assert a.claims_status == "no_text", (name, a.claims_status)
                assert "no text" in (a.failure_reason or ""), (name, a.failure_reason)
            assert _bad_chars(a.text or "") == [], name
        else:
            assert a.state in (ArticleState.skipped, ArticleState.failed), (name, a.state)
            assert a.failure_reason, name
    assert by_name["binary-octets"].state == ArticleState.skipped
    assert "not HTML" in (by_name["binary-octets"].failure_reason or "")
    assert by_name["normal"].state == ArticleState.processed
    assert "tram line" in (by_name["normal"].text or "")
    assert by_name["normal"].claims_status == "extracted"
    assert by_name["huge"].state == ArticleState.processed
    assert len(by_name["huge"].text or "") > 100_000
    for name in ("all-script", "nul-bytes", "unclosed-comment"):
        assert by_name[name].state == ArticleState.processed, name
        assert by_name[name].claims_status == "no_text", name
    for name in ("nested-100k-divs", "nested-100k-unclosed"):  # flattened (issue 18)
        assert by_name[name].state == ArticleState.processed, name
        assert "deepest paragraph was finally reached" in (by_name[name].text or ""), name
