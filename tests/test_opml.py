"""OPML import (listparser) and export: our own subscription lists, a round trip through
the database and the `claimwire` command, and every OPML file in ../shared/corpora/opml
(read in place): none may crash the import; nested outlines become tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from schemas.models import Feed
from tests.conftest import claimwire, cli_env, shared_path
from worker.core.db import init_db, unit_of_work
from worker.feeds.opml import OPMLError, read_opml, write_opml
from worker.feeds.subscriptions import add_feeds, all_feeds

NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>Mine</title></head><body>
  <outline text="News">
    <outline text="World">
      <outline type="rss" text="Harbour Daily" xmlUrl="https://harbour.example/feed.xml"
               htmlUrl="https://harbour.example/"/>
    </outline>
    <outline type="rss" text="Valley Post" xmlUrl="https://valley.example/rss"
             category="local,/Regions/North"/>
  </outline>
  <outline type="rss" text="Top level" xmlUrl="https://top.example/atom.xml"/>
  <outline text="Empty folder"/>
</body></opml>"""


def test_nested_outlines_and_categories_become_tags() -> None:
    feeds = {url: (title, tags) for url, title, tags in read_opml(NESTED)}
    assert feeds["https://harbour.example/feed.xml"] == ("Harbour Daily", ["News/World"])
    title, tags = feeds["https://valley.example/rss"]
    assert title == "Valley Post"
    assert set(tags) == {"News", "local", "Regions/North"}
    assert feeds["https://top.example/atom.xml"] == ("Top level", [])
    assert len(feeds) == 3


@pytest.mark.parametrize(
    "data", [b"This is not valid opml content", b"", b"<html><body>hi</body></html>"]
)
def test_a_file_that_is_no_subscription_list_is_refused(data: bytes) -> None:
    with pytest.raises(OPMLError, match="not an OPML subscription list"):
        read_opml(data)


def test_round_trip_keeps_feeds_titles_and_tags(configure: Any) -> None:
    settings = configure()
    init_db(settings)
    original = [
        ("https://harbour.example/feed.xml", "Harbour & Sons <Daily>", ["News/World", "ships"]),
        ("https://valley.example/rss", None, ["local"]),
        ("https://top.example/atom.xml", "Top \u00e9t\u00e9 \u65b0\u95fb", []),
        ("https://deep.example/f", "Deep", ["a/b/c", "x/y", "plain"]),
    ]
    with unit_of_work() as s:
        add_feeds(s, original, settings)
    with unit_of_work() as s:
        doc = write_opml(all_feeds(s))
    back = {url: (title, sorted(tags)) for url, title, tags in read_opml(doc.encode())}
    assert back == {
        url: (title or url, sorted(tags))  # an untitled feed is labelled by its URL
        for url, title, tags in original
    }


def test_export_keeps_each_feed_in_the_folder_it_was_imported_from(configure: Any) -> None:
    """Import puts a feed's ``category`` values first and its folder last; export must
    read it the same way, or a feed with categories moves to another folder (and on
    to yet another one at every round trip)."""
    settings = configure()
    init_db(settings)
    doc = NESTED.replace(b'htmlUrl="https://harbour.example/"', b'category="ships,sea/north"')
    imported = read_opml(doc)
    with unit_of_work() as s:
        add_feeds(s, imported, settings)
    for _ in range(2):
        with unit_of_work() as s:
            exported = write_opml(all_feeds(s))
        again = {u: (title, tags) for u, title, tags in read_opml(exported.encode())}
        assert again == {u: (title, tags) for u, title, tags in imported}  # tag order too
    assert '<outline text="World" title="World">' in exported
    harbour = next(t for u, _, t in imported if u == "https://harbour.example/feed.xml")
    assert harbour == ["ships", "sea/north", "News/World"]


def test_cli_export_then_import_into_a_fresh_database(tmp_path: Path) -> None:
    src = tmp_path / "src.opml"
    src.write_bytes(NESTED)
    env_a = cli_env(tmp_path / "a")
    r = claimwire(["feeds", "import", str(src)], env_a, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "imported 3 new feeds" in r.stdout
    r = claimwire(["feeds", "import", str(src)], env_a, tmp_path)  # again: nothing new
    assert "imported 0 new feeds, 3 already present" in r.stdout

    out = tmp_path / "out.opml"
    r = claimwire(["feeds", "export", "--out", str(out)], env_a, tmp_path)
    assert r.returncode == 0, r.stderr
    stdout_doc = claimwire(["feeds", "export"], env_a, tmp_path).stdout
    assert stdout_doc == out.read_text(encoding="utf-8")

    env_b = cli_env(tmp_path / "b")
    r = claimwire(["feeds", "import", str(out)], env_b, tmp_path)
    assert r.returncode == 0 and "imported 3 new feeds" in r.stdout

    def listing(env: dict[str, str]) -> dict[str, Any]:
        r = claimwire(["feeds", "list", "--json"], env, tmp_path)
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        return {row["url"]: (row["title"], sorted(row["tags"])) for row in rows}

    assert listing(env_a) == listing(env_b)
    assert len(listing(env_b)) == 3


# ------------------------------------------------------------- the shared corpus


def _opml_files() -> list[Path]:
    root = shared_path("corpora", "opml")
    files = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".opml", ".xml", ".rdf") and "licenses" not in p.parts
    ]
    assert len(files) > 100, f"OPML corpus looks incomplete: {len(files)} files"
    return files


def test_every_corpus_opml_file_imports_or_is_refused_cleanly() -> None:
    imported = refused = feeds = 0
    for path in _opml_files():
        try:
            entries = read_opml(path.read_bytes())
        except OPMLError:
            refused += 1
            continue
        imported += 1
        for url, title, tags in entries:
            assert isinstance(url, str) and url
            assert title is None or isinstance(title, str)
            assert all(isinstance(t, str) and t for t in tags)
            assert len(tags) == len(set(tags))
        feeds += len(entries)
    assert imported > refused
    assert feeds > 1000


def test_corpus_folders_are_kept_as_tags() -> None:
    """awesome-rss-feeds ships each country both with and without a category folder."""
    with_cat = shared_path("corpora", "opml", "awesome-rss-feeds", "countries", "with_category")
    without = with_cat.parent / "without_category"
    compared = 0
    for path in sorted(with_cat.glob("*.opml")):
        plain = without / path.name
        if not plain.exists():
            continue
        tagged = read_opml(path.read_bytes())
        untagged = read_opml(plain.read_bytes())
        assert [u for u, _, _ in tagged] == [u for u, _, _ in untagged]
        assert all(tags == [] for _, _, tags in untagged)
        assert all(tags == [path.stem] for _, _, tags in tagged), path.name
        compared += 1
    assert compared >= 10


def test_listparser_category_fixtures() -> None:
    root = shared_path("corpora", "opml", "listparser-tests", "tests", "files", "opml")
    cats = root / "categories"
    ((_, _, nested),) = read_opml((cats / "hier-2-nested.xml").read_bytes())
    assert nested == ["grouping1/grouping2"]
    ((_, _, mixed),) = read_opml((cats / "hier-4-mixed.xml").read_bytes())
    assert set(mixed) == {"tag", "parent/child", "grouping"}


def test_importing_the_whole_corpus_into_the_database(configure: Any) -> None:
    """Thousands of feeds from many files, duplicates across files: one row each."""
    from worker.network.urls import InvalidURL, canonicalize

    settings = configure()
    init_db(settings)
    wanted: set[str] = set()
    for path in _opml_files():
        try:
            entries = read_opml(path.read_bytes())
        except OPMLError:
            continue
        good = []
        for url, title, tags in entries:
            try:
                wanted.add(canonicalize(url))
            except InvalidURL:
                continue
            good.append((url, title, tags))
        with unit_of_work() as s:
            add_feeds(s, good, settings)
    with unit_of_work() as s:
        stored = {f.url for f in s.exec(select(Feed)).all()}
    assert stored == wanted
