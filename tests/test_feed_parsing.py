"""Feed documents to entries: feeds written for these tests (RSS 0.91/1.0/2.0, Atom,
JSON Feed, hints), and the real feeds in ../shared/corpora/feeds (read in place, never
copied): news feeds in several encodings, ill-formed ones, and feedparser's own test
files. No file may make the parser raise; an ill-formed file still gives its usable
entries, with the complaint recorded."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import shared_path
from worker.feeds.parsing import ParsedFeed, parse_feed

# --------------------------------------------------------------- our own fixtures

RSS091 = b"""<?xml version="1.0"?>
<rss version="0.91"><channel><title>Harbour News</title><link>https://harbour.example/</link>
<description>x</description><language>en</language>
<item><title>Strike ends</title><link>https://harbour.example/strike-ends</link></item>
</channel></rss>"""

RDF = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">
<channel rdf:about="https://valley.example/"><title>Valley Post</title>
<link>https://valley.example/</link><description>x</description>
<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency>
</channel>
<item rdf:about="https://valley.example/a"><title>Bridge reopens</title>
<link>https://valley.example/a</link></item>
<item rdf:about="https://valley.example/b"><title>Market day</title>
<link>https://valley.example/b</link></item>
</rdf:RDF>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://hill.example/blog/">
<title>Hill Gazette</title><link href="https://hill.example/"/><id>urn:hill</id>
<updated>2026-03-02T09:00:00Z</updated>
<entry><title>Relative link</title><link rel="alternate" href="posts/one"/>
<id>urn:one</id><updated>2026-03-02T09:00:00Z</updated>
<content type="html">&lt;p&gt;Full text&lt;/p&gt;</content></entry>
<entry><title>Only an enclosure and an alternate</title>
<link rel="enclosure" href="https://hill.example/a.mp3"/>
<link rel="alternate" type="text/html" href="https://hill.example/blog/posts/two"/>
<id>urn:two</id><published>2026-03-03T10:30:00+01:00</published></entry>
<entry><title>No link at all</title><id>urn:three</id></entry>
</feed>"""

RSS2_GUID_ONLY = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Guid only</title><link>https://g.example/</link>
<description>x</description><ttl>90</ttl>
<item><title>Permalink guid</title><guid isPermaLink="true">https://g.example/p/1</guid>
<pubDate>Mon, 02 Mar 2026 09:00:00 GMT</pubDate></item>
</channel></rss>"""

JSON_FEED = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Lake Times",
        "home_page_url": "https://lake.example/",
        "feed_url": "https://lake.example/feed.json",
        "items": [
            {
                "id": "1",
                "url": "https://lake.example/ice",
                "title": "Ice melts",
                "date_published": "2026-03-02T09:00:00Z",
                "content_html": "<p>Early.</p>",
            },
            {"id": 2, "url": "/boats", "title": "Boats return"},
            {"id": "3", "title": "No URL"},
            "not an object",
        ],
    }
).encode()


def test_rss_091() -> None:
    parsed = parse_feed(RSS091)
    assert parsed.is_feed and parsed.error is None
    assert parsed.title == "Harbour News"
    assert [e.link for e in parsed.entries] == ["https://harbour.example/strike-ends"]


def test_rss_10_rdf_with_syndication_hint() -> None:
    parsed = parse_feed(RDF)
    assert [e.title for e in parsed.entries] == ["Bridge reopens", "Market day"]
    assert parsed.min_interval_hint == 1800  # hourly, twice: every 30 minutes


def test_atom_links_resolve_against_xml_base_and_prefer_alternate() -> None:
    parsed = parse_feed(ATOM, "application/atom+xml", "https://hill.example/feed")
    links = [e.link for e in parsed.entries]
    assert links == ["https://hill.example/blog/posts/one", "https://hill.example/blog/posts/two"]
    one, two = parsed.entries
    assert one.content == "<p>Full text</p>" and one.guid == "urn:one"
    assert two.published_at is not None and two.published_at.isoformat() == (
        "2026-03-03T09:30:00+00:00"
    )


def test_rss_entry_with_only_a_permalink_guid_and_a_ttl() -> None:
    parsed = parse_feed(RSS2_GUID_ONLY)
    assert [e.link for e in parsed.entries] == ["https://g.example/p/1"]
    assert parsed.min_interval_hint == 90 * 60


def test_json_feed() -> None:
    parsed = parse_feed(JSON_FEED, "application/feed+json")
    assert parsed.is_feed and parsed.title == "Lake Times"
    assert parsed.site_url == "https://lake.example/"
    assert [e.link for e in parsed.entries] == [
        "https://lake.example/ice",
        "https://lake.example/boats",
    ]
    assert parsed.entries[0].published_at is not None
    assert parsed.entries[1].guid == "2"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body><p>A page</p></body></html>", "text/html"),
        (b'{"version": 1, "items": []}', "application/json"),
        (b"{not json", "application/json"),
        (b"", ""),
        (b"\x00\x01\x02 binary", "application/octet-stream"),
    ],
)
def test_not_a_feed_is_said_so_not_raised(body: bytes, content_type: str) -> None:
    parsed = parse_feed(body, content_type)
    assert parsed.is_feed is False
    assert parsed.error and parsed.error.startswith("not a feed")
    assert parsed.entries == []


def test_leading_whitespace_and_gzip_are_tolerated() -> None:
    assert parse_feed(b"\n\n   " + RSS091).error is None
    packed = parse_feed(gzip.compress(RDF))
    assert len(packed.entries) == 2


def test_a_gzip_bomb_is_cut_off() -> None:
    bomb = gzip.compress(b"<rss>" + b" " * 200_000_000)
    parsed = parse_feed(bomb)  # bounded: no 200 MB in memory, no exception
    assert parsed.entries == []


# ------------------------------------------------------------- the shared corpora


def _corpus_files(*parts: str) -> list[Path]:
    root = shared_path("corpora", "feeds", *parts)
    skip = {".py", ".txt", ".tsv", ".md"}
    files = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix not in skip
        and "licenses" not in p.parts
        and not p.name.endswith("LICENSE")
    ]
    assert files, f"no feed files under {root}"
    return files


def _well_formed(data: bytes) -> bool:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        etree.fromstring(data.lstrip(), parser)
    except etree.XMLSyntaxError:
        return False
    return True


def _check_entries(parsed: ParsedFeed) -> None:
    for e in parsed.entries:
        assert isinstance(e.link, str) and e.link and e.link == e.link.strip()


def test_every_corpus_file_parses_without_raising() -> None:
    files = _corpus_files()
    with_entries = 0
    for path in files:
        parsed = parse_feed(path.read_bytes(), "", f"https://corpus.example/{path.name}")
        _check_entries(parsed)
        with_entries += bool(parsed.entries)
    assert len(files) > 2000  # news feeds and feedparser's ~2,100 test files
    assert with_entries > 100


def test_ill_formed_xml_gives_usable_entries_and_records_the_error() -> None:
    """Every document a strict XML parser rejects comes back with an error; those
    that contain items still give them."""
    # Its only item is cut off inside a CDATA section: nothing usable is left.
    truncated = {"rss_incomplete_cdata.xml"}
    rejected = with_items = 0
    for path in _corpus_files():
        data = path.read_bytes()
        if path.suffix not in (".xml", ".rss", ".atom", ".rdf") or _well_formed(data):
            continue
        rejected += 1
        parsed = parse_feed(data)
        assert parsed.error, path
        has_items = re.search(rb"<(item|entry)[\s>]", data)
        if has_items and re.search(rb"<link[^>]*>\s*http", data) and path.name not in truncated:
            with_items += 1
            assert parsed.entries, path
    assert rejected > 50
    assert with_items >= 5


def _manifest() -> list[dict[str, str]]:
    path = shared_path("corpora", "feeds", "news-feeds", "MANIFEST.tsv")
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _news(row: dict[str, str], base: str | None = None) -> ParsedFeed:
    path = shared_path("corpora", "feeds", "news-feeds", row["dir"], row["file"])
    return parse_feed(path.read_bytes(), "", base)


def test_news_feeds_give_every_item() -> None:
    rows = [r for r in _manifest() if r["dir"] in ("wellformed", "encodings")]
    assert len(rows) >= 15
    for row in rows:
        parsed = _news(row)
        assert parsed.is_feed, row["file"]
        assert len(parsed.entries) == int(row["items"]), row["file"]
        _check_entries(parsed)


@pytest.mark.parametrize(
    ("name", "script"),
    [
        ("jornal-de-noticias-iso8859-1.rss", "[áéíóúãõç]"),
        ("oren-ru-windows1251.xml", "[\u0400-\u04ff]"),
        ("kc0011-gb2312.rss", "[\u4e00-\u9fff]"),
    ],
)
def test_legacy_encodings_are_decoded(name: str, script: str) -> None:
    (row,) = [r for r in _manifest() if r["file"] == name]
    parsed = _news(row)
    titles = " ".join([parsed.title or ""] + [e.title or "" for e in parsed.entries])
    assert "\ufffd" not in titles
    assert re.search(script, titles), titles[:200]


def test_ill_formed_news_feeds() -> None:
    by_file = {r["file"]: r for r in _manifest() if r["dir"] == "illformed"}
    sax = _news(by_file["saxerror-unescaped-amp.xml"])
    assert len(sax.entries) == int(by_file["saxerror-unescaped-amp.xml"]["items"])
    assert sax.error and "not well-formed" in sax.error
    nested = _news(by_file["pcmag-dvorak-illegally-nested.xml"])
    # Empty <item/> elements between the real ones: the real ones all come through.
    assert len(nested.entries) == 10
    assert all(e.title for e in nested.entries)
    moved = _news(by_file["unrecognized.rss"])
    assert moved.is_feed is False and moved.error
    # Entries without any web address (only a tag: id, or nothing) are unusable.
    for name in ("missing-fields.atom", "incomplete-fields.atom"):
        parsed = _news(by_file[name])
        assert parsed.is_feed and parsed.entries == [], name
