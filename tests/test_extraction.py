"""worker.pages.extractor: text, metadata, feed fallback, hostile input; the CLI helpers
(worker.pages.inputs).

All pages here are invented in the test; one test reads a few real pages from the shared
extraction corpus (never copied into the repo).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trafilatura

from schemas.records import ExtractedPage
from tests.conftest import SHARED, need
from worker.pages.arbiter import (
    ArbiterSettings,
    agreement,
    containment,
    readability_text,
    second_opinion,
    shingles,
)
from worker.pages.charset import decode_html
from worker.pages.extractor import (
    DEFAULT_PROFILE,
    EXTRACTOR_NAME,
    EXTRACTOR_VERSION,
    PROFILES,
    _parse,
    extract_page,
    html_fragment_to_text,
)
from worker.pages.inputs import extract_file, iter_inputs
from worker.pages.prune_teasers import (
    TeaserSettings,
    linked_headings,
    teaser_units,
    without_teasers,
)
from worker.testing.server import LocalServer

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CORPUS = SHARED / "corpora" / "extraction" / "trafilatura-eval"

PARAGRAPHS = [
    "The harbour authority of Porto Velho announced on Tuesday that the old lighthouse "
    "will be restored by local stonemasons before the winter storms arrive.",
    "According to the authority, the work will cost about two million reais and will be "
    "financed by a mix of municipal funds and a grant from a regional heritage foundation.",
    "Residents have campaigned for the restoration for almost a decade, collecting "
    "signatures at the weekly fish market and organising guided walks along the pier.",
    "Engineers said the lantern room will be rebuilt with the original cast-iron frame, "
    "which had been stored in a warehouse since the tower was closed in 1987.",
    "The first phase, replacing the damaged granite blocks at the base, starts next month "
    "and should be completed before the end of the summer season.",
]


def article(
    *,
    head_extra: str = "",
    published: str | None = "2024-03-05T14:30:00+02:00",
    canonical: str | None = "/news/2024/lighthouse-restored",
    body_paragraphs: list[str] | None = None,
    lang: str = "pt-BR",
) -> str:
    paras = PARAGRAPHS if body_paragraphs is None else body_paragraphs
    meta = [
        '<meta charset="utf-8">',
        "<title>Lighthouse to be restored | Porto Daily</title>",
        '<meta name="author" content="Marta Ribeiro">',
        '<meta property="og:site_name" content="Porto Daily">',
        '<meta property="og:title" content="Lighthouse to be restored">',
        '<meta name="description" content="The old lighthouse will be restored.">',
    ]
    if published:
        meta.append(f'<meta property="article:published_time" content="{published}">')
    if canonical:
        meta.append(f'<link rel="canonical" href="{canonical}">')
    body = "".join(f"<p>{p}</p>" for p in paras)
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head>{"".join(meta)}{head_extra}</head><body>'
        '<nav><a href="/">Home</a> <a href="/sport">Sport</a> <a href="/about">About us</a></nav>'
        f"<article><h1>Lighthouse to be restored</h1>{body}</article>"
        "<footer>© Porto Daily. All rights reserved. Contact the newsroom.</footer>"
        "</body></html>"
    )


URL = "https://www.portodaily.example.com/news/2024/lighthouse-restored?utm_source=rss"


# ---------------------------------------------------------------- text and metadata


def test_text_and_metadata() -> None:
    page = extract_page(article(), URL, now=NOW)
    assert isinstance(page, ExtractedPage)
    assert page.text_source == "page"
    for para in PARAGRAPHS:
        assert para in page.text
    assert "All rights reserved" not in page.text
    assert "About us" not in page.text
    assert page.title == "Lighthouse to be restored"
    assert page.author == "Marta Ribeiro"
    assert page.sitename == "Porto Daily"
    assert page.description == "The old lighthouse will be restored."
    assert page.language == "pt"
    assert page.extractor == EXTRACTOR_NAME == "trafilatura"
    assert page.extractor_version == EXTRACTOR_VERSION
    assert EXTRACTOR_VERSION.startswith(trafilatura.__version__ + "+cw")


def test_categories_tags_and_main_image() -> None:
    head = (
        '<meta property="og:image" content="/img/lighthouse.jpg">'
        '<meta property="article:section" content="Local news">'
        '<meta property="article:tag" content="heritage">'
        '<meta name="keywords" content="harbour, restoration">'
    )
    page = extract_page(article(head_extra=head), URL, now=NOW)
    assert page.categories == ["Local news"]
    assert page.tags == ["heritage", "harbour", "restoration"]
    assert page.image == "https://www.portodaily.example.com/img/lighthouse.jpg"


def test_published_at_is_aware_utc() -> None:
    page = extract_page(article(), URL, now=NOW)
    assert page.published_at == datetime(2024, 3, 5, 12, 30, tzinfo=UTC)
    assert page.published_at is not None and page.published_at.utcoffset() == timedelta(0)


def test_published_at_without_zone_is_taken_as_utc() -> None:
    page = extract_page(article(published="2024-03-05T09:15:00"), URL, now=NOW)
    assert page.published_at == datetime(2024, 3, 5, 9, 15, tzinfo=UTC)


def test_published_at_never_in_the_future() -> None:
    page = extract_page(article(published="2031-01-01T10:00:00+00:00"), URL, now=NOW)
    assert page.published_at is None or page.published_at <= NOW
    # and the same page is accepted once "now" has passed that date
    later = datetime(2031, 6, 1, tzinfo=UTC)
    assert extract_page(
        article(published="2031-01-01T10:00:00+00:00"), URL, now=later
    ).published_at == datetime(2031, 1, 1, 10, 0, tzinfo=UTC)


def test_canonical_same_site_is_made_absolute() -> None:
    page = extract_page(article(), URL, now=NOW)
    assert page.page_canonical_url == (
        "https://www.portodaily.example.com/news/2024/lighthouse-restored"
    )


def test_canonical_other_subdomain_of_same_registered_domain() -> None:
    html = article(canonical="https://amp.portodaily.example.com/a/1")
    page = extract_page(html, URL, now=NOW)
    assert page.page_canonical_url == "https://amp.portodaily.example.com/a/1"


def test_canonical_on_another_site_is_what_the_page_declares() -> None:
    """A syndicated copy naming its original outlet: kept (audit LOW 11; it used to be
    dropped, so every exported row had it empty)."""
    html = article(canonical="https://origin.example.org/stories/lighthouse")
    page = extract_page(html, URL, now=NOW)
    assert page.page_canonical_url == "https://origin.example.org/stories/lighthouse"
    assert page.sitename != "origin.example.org"  # the site is still the page's own


def test_canonical_og_url_when_no_link_and_only_http() -> None:
    og = '<meta property="og:url" content="https://wire.example.net/a/9">'
    html = article(canonical=None, head_extra=og)
    assert extract_page(html, URL, now=NOW).page_canonical_url == "https://wire.example.net/a/9"
    for bad in ("javascript:alert(1)", "ftp://files.example.org/a", "data:text/html,x"):
        assert extract_page(article(canonical=bad), URL, now=NOW).page_canonical_url is None


def test_site_name_never_comes_from_another_sites_canonical() -> None:
    """Without og:site_name, trafilatura names the site after the canonical URL's host: a
    copy pointing at another site must still be named after its own host."""
    no_site_name = article(canonical="https://aggregator.example.org/copied/lighthouse")
    no_site_name = no_site_name.replace('<meta property="og:site_name" content="Porto Daily">', "")
    assert extract_page(no_site_name, URL, now=NOW).sitename == "www.portodaily.example.com"
    same_site = article(canonical="https://amp.portodaily.example.com/a/1").replace(
        '<meta property="og:site_name" content="Porto Daily">', ""
    )
    assert extract_page(same_site, URL, now=NOW).sitename == "amp.portodaily.example.com"
    declared = article(canonical="https://aggregator.example.org/copied/lighthouse")
    assert extract_page(declared, URL, now=NOW).sitename == "Porto Daily"


def test_og_url_used_when_no_canonical_link() -> None:
    html = article(
        canonical=None,
        head_extra='<meta property="og:url" content="https://portodaily.example.com/l/9">',
    )
    assert extract_page(html, URL, now=NOW).page_canonical_url == (
        "https://portodaily.example.com/l/9"
    )


def test_canonical_needs_a_page_url() -> None:
    assert extract_page(article(), None, now=NOW).page_canonical_url is None


def test_repeated_extraction_is_identical() -> None:
    # Guards against trafilatura's process-wide dedup cache (deduplicate=True) eating
    # paragraphs already seen on an earlier page.
    first = extract_page(article(), URL, now=NOW)
    second = extract_page(article(), URL, now=NOW)
    assert first.text == second.text
    assert PARAGRAPHS[0] in second.text


# -------------------------------------------------------------------- feed fallback

SCRIPT_ONLY = (
    "<html><head><title>App</title><script>window.__STATE__={};</script></head>"
    '<body><div id="root"></div><script src="/bundle.js"></script>'
    "<noscript>Please enable JavaScript.</noscript></body></html>"
)
PAYWALL = article(
    body_paragraphs=[
        "The harbour authority announced on Tuesday that the old lighthouse will be restored.",
        "Subscribe to continue reading.",
    ]
)
FEED_CONTENT = "".join(f"<p>{p}</p>" for p in PARAGRAPHS[:3]) + "<script>alert(1)</script>"
FEED_SUMMARY = (
    "The old lighthouse of Porto Velho will be restored by local stonemasons before winter, "
    "the harbour authority said, after a decade-long campaign by residents of the old town."
)


def test_script_only_page_falls_back_to_feed_content() -> None:
    page = extract_page(
        SCRIPT_ONLY,
        URL,
        fallback_content=FEED_CONTENT,
        fallback_summary=FEED_SUMMARY,
        now=NOW,
    )
    assert page.text_source == "feed_content"
    assert page.text.split("\n") == PARAGRAPHS[:3]
    assert "<p>" not in page.text and "alert" not in page.text


def test_paywalled_page_falls_back_to_summary_when_no_content() -> None:
    page = extract_page(PAYWALL, URL, fallback_summary=FEED_SUMMARY, now=NOW)
    assert page.text_source == "feed_summary"
    assert page.text == FEED_SUMMARY
    # metadata still comes from the page
    assert page.author == "Marta Ribeiro"


def test_long_enough_page_keeps_page_text() -> None:
    page = extract_page(article(), URL, fallback_content=FEED_CONTENT, now=NOW)
    assert page.text_source == "page"
    assert PARAGRAPHS[4] in page.text


def test_min_text_chars_controls_fallback() -> None:
    kwargs = {"fallback_content": FEED_CONTENT * 3, "now": NOW}
    assert extract_page(article(), URL, min_text_chars=100_000, **kwargs).text_source == (  # type: ignore[arg-type]
        "feed_content"
    )
    assert extract_page(article(), URL, min_text_chars=10, **kwargs).text_source == "page"  # type: ignore[arg-type]


def test_script_only_without_fallback_gives_empty_text() -> None:
    page = extract_page(SCRIPT_ONLY, URL, now=NOW)
    assert page.text == ""
    assert page.text_source == "page"


def test_html_fragment_to_text() -> None:
    assert html_fragment_to_text("Tom &amp; Jerry<br>second") == "Tom & Jerry\nsecond"
    assert html_fragment_to_text("plain &lt;text&gt;") == "plain <text>"
    assert html_fragment_to_text("<ul><li>a</li><li>b</li></ul>") == "a\nb"
    assert html_fragment_to_text(None) == ""


# --------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "html",
    [
        "",
        "   \n\t ",
        "\x00\x01\x02",
        "<html><body><script>" + "var a = 1;" * 20_000 + "</script></body></html>",
        "<html><body><p>lone \ud800 surrogate and NUL \x00 chars</p></body></html>",
        "<<<>>>&&&;;;<!-- <![CDATA[ <?xml",
    ],
    ids=["empty", "blank", "controls", "all-script", "surrogate", "tag-soup"],
)
def test_broken_input_gives_empty_or_text_never_raises(html: str) -> None:
    page = extract_page(html, URL, now=NOW)
    assert isinstance(page, ExtractedPage)
    assert "var a = 1" not in page.text
    assert page.extractor_version == EXTRACTOR_VERSION


def test_empty_input_with_fallback_uses_fallback() -> None:
    page = extract_page("", URL, fallback_content=FEED_CONTENT, now=NOW)
    assert (page.text_source, page.text.split("\n")) == ("feed_content", PARAGRAPHS[:3])


def test_binary_garbage() -> None:
    rng = random.Random(3)
    body = bytes(rng.randrange(256) for _ in range(200_000))
    html, _ = decode_html(body, None)
    page = extract_page(html, URL, fallback_summary=FEED_SUMMARY, now=NOW)
    assert isinstance(page, ExtractedPage)
    assert page.title is None


def test_one_megabyte_single_line() -> None:
    html = article(body_paragraphs=PARAGRAPHS * 1300).replace("\n", " ")
    assert len(html) > 1_000_000 and "\n" not in html
    page = extract_page(html, URL, now=NOW)
    assert PARAGRAPHS[2] in page.text


def test_deeply_nested_markup() -> None:
    depth = 50_000
    html = "<html><body>" + "<div>" * depth + PARAGRAPHS[0] + "</div>" * depth + "</body></html>"
    page = extract_page(html, URL, fallback_summary=FEED_SUMMARY, now=NOW)
    assert isinstance(page, ExtractedPage)
    assert page.text in ("", FEED_SUMMARY) or PARAGRAPHS[0] in page.text


def test_non_string_input_does_not_raise() -> None:
    page = extract_page(b"<p>bytes</p>", URL, now=NOW)  # type: ignore[arg-type]
    assert page.text == ""


# --------------------------------------------------------------------- CLI helpers


def test_iter_inputs_files_directories_and_gz(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "a.html").write_text(article(), encoding="utf-8")
    (tmp_path / "nested" / "b.htm.gz").write_bytes(
        gzip.compress(article(lang="ru").encode("cp1251"))
    )
    (tmp_path / "nested" / "notes.txt").write_text("not html", encoding="utf-8")
    single = tmp_path / "single.html"
    single.write_text(article(), encoding="utf-8")

    out = list(iter_inputs([str(tmp_path / "nested"), str(single), str(tmp_path / "nope")]))
    assert [Path(o["file"]).name for o in out] == ["b.htm.gz", "single.html", "nope"]
    first = out[0]
    assert set(first) >= {"file", "title", "author", "published_at", "language", "sitename"}
    assert first["title"] == "Lighthouse to be restored"
    assert first["published_at"] == "2024-03-05T12:30:00+00:00"
    assert first["language"] == "ru"
    assert PARAGRAPHS[1] in first["text"]
    assert "error" in out[2] and out[2]["text"] == ""
    json.dumps(out)  # the CLI prints these as JSON

    every = list(iter_inputs([str(tmp_path)]))
    assert sorted(Path(o["file"]).name for o in every) == ["a.html", "b.htm.gz", "single.html"]


def test_extract_file_reports_unreadable_gz(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    out = extract_file(bad)
    assert out["text"] == "" and "error" in out


def test_iter_inputs_urls_use_the_given_fetcher() -> None:
    calls: list[str] = []

    def fetch(url: str) -> tuple[bytes, str | None, str]:
        calls.append(url)
        return article().encode("cp1252"), "text/html; charset=iso-8859-1", URL

    (out,) = list(iter_inputs(["https://portodaily.example.com/x"], fetch=fetch))
    assert calls == ["https://portodaily.example.com/x"]
    assert out["url"] == "https://portodaily.example.com/x" and "file" not in out
    assert out["encoding"] == "windows-1252"
    assert PARAGRAPHS[0] in out["text"]


def test_iter_inputs_url_without_fetcher_is_an_error_object() -> None:
    (out,) = list(iter_inputs(["https://portodaily.example.com/x"]))
    assert "error" in out and out["text"] == ""


# ---------------------------------------------------------------- real corpus pages


def _corpus_or_skip() -> Path:
    need((CORPUS / "evaldata.json").is_file(), f"the extraction corpus at {CORPUS}")
    return CORPUS


def test_real_pages_contain_their_with_snippets() -> None:
    corpus = _corpus_or_skip()
    evaldata = json.loads((corpus / "evaldata.json").read_text(encoding="utf-8"))
    found = total = pages = 0
    for url in sorted(evaldata)[:12]:
        item = evaldata[url]
        path = corpus / "html" / (item["file"] + ".gz")
        if not path.is_file():
            continue
        html, _ = decode_html(gzip.decompress(path.read_bytes()), None)
        text = " ".join(extract_page(html, url, min_text_chars=0).text.split())
        pages += 1
        for snippet in item["with"]:
            total += 1
            found += " ".join(snippet.split()) in text
    assert pages >= 10
    # trafilatura-eval snippet recall of the production settings is ~0.9 on the corpus
    assert found / total >= 0.8, f"{found}/{total} 'with' snippets found"


# ------------------------------------------------------------ the `extract` command


def test_extract_command_jsonl_files_directories_gz_and_urls(
    tmp_path: Path, server: LocalServer
) -> None:
    """`claimwire extract PATH_OR_URL... --jsonl`: one JSON object per line and input, no
    database created, URLs fetched through the guarded client (here from a local server)."""
    from tests.conftest import claimwire, cli_env
    from worker.testing.server import Reply

    pages = tmp_path / "pages"
    (pages / "deep").mkdir(parents=True)
    (pages / "a.html").write_text(article(), encoding="utf-8")
    russian = "Москва встречает весну: в парках открылись кафе, а на улицах стало людно. " * 3
    (pages / "deep" / "b.html.gz").write_bytes(
        gzip.compress(article(lang="ru", body_paragraphs=[*PARAGRAPHS, russian]).encode("cp1251"))
    )
    (pages / "deep" / "ignored.css").write_text("body {}", encoding="utf-8")
    server.routes["/story"] = Reply(body=article().encode("utf-8"))
    env = cli_env(tmp_path)
    r = claimwire(
        ["extract", str(pages), server.url("/story"), server.url("/missing"), "--jsonl"],
        env,
        tmp_path,
    )
    assert r.returncode == 1, r.stderr  # the 404: every record written, then exit 1
    assert "1 of 4 page(s) failed" in r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 4
    a, b, story, missing = lines
    assert Path(a["file"]).name == "a.html" and Path(b["file"]).name == "b.html.gz"
    for obj in (a, b, story):
        assert set(obj) >= {"title", "author", "published_at", "language", "sitename", "text"}
        assert obj["title"] == "Lighthouse to be restored"
        assert obj["author"] == "Marta Ribeiro"
        assert obj["published_at"] == "2024-03-05T12:30:00+00:00"
        assert obj["sitename"] == "Porto Daily"
        assert PARAGRAPHS[2] in obj["text"]
    assert b["language"] == "ru" and b["encoding"] == "windows-1251"
    assert "Москва встречает весну" in b["text"]
    assert story["url"] == server.url("/story") and story["language"] == "pt"
    assert missing["url"] == server.url("/missing") and "HTTP 404" in missing["error"]
    assert not (tmp_path / "data").exists(), "extract must not create a database"


def test_language_from_markup_else_detected_from_the_text() -> None:
    """The page's own declaration wins; a page that declares none gets the language of
    its text; text too short to tell gives None rather than a guess."""
    declared = extract_page(article(lang="pt-BR"), URL, now=NOW)
    assert declared.language == "pt"
    undeclared = extract_page(article().replace(' lang="pt-BR"', ""), URL, now=NOW)
    assert undeclared.language == "en"
    german = (
        "<html><head><title>Brücke</title></head><body><article><h1>Brücke</h1>"
        + "".join(
            f"<p>Der Bürgermeister sagte am Dienstag, dass die alte Brücke {n} im Mai "
            "wieder geöffnet werde und die Arbeiten weniger kosten würden als erwartet.</p>"
            for n in range(6)
        )
        + "</article></body></html>"
    )
    assert extract_page(german, URL, now=NOW).language == "de"
    tiny = "<html><body><p>Hello there.</p></body></html>"
    assert extract_page(tiny, URL, now=NOW).language is None


# ------------------------------------------------- second opinion (extract_arbiter)

TEASERS = [
    f"Teaser {n}: the council of a neighbouring town voted on Monday to {what} after a long "
    "debate between the mayor and the opposition parties."
    for n, what in enumerate(
        [
            "close the old swimming pool",
            "extend the tram line to the airport",
            "rename the central square",
            "ban cars from the river bank",
            "double the library budget",
            "hire forty new teachers",
            "sell the disused railway depot",
            "plant a thousand trees in the parks",
        ]
    )
]


def page_with_block_after_article(block_attrs: str) -> str:
    """An article followed, in the same container, by a block of other stories."""
    body = "".join(f"<p>{p}</p>" for p in PARAGRAPHS)
    more = "".join(f"<p>{t}</p>" for t in TEASERS)
    return (
        '<html lang="en"><head><title>Lighthouse to be restored</title></head><body>'
        '<nav><a href="/">Home</a></nav><div class="main"><div class="article-body">'
        f"<h1>Lighthouse to be restored</h1>{body}</div><div {block_attrs}>{more}</div></div>"
        "<footer>Porto Daily</footer></body></html>"
    )


@pytest.mark.parametrize(
    "attrs",
    [
        "hidden",
        'aria-hidden="true"',
        'style="display: none"',
        'style="color: red; visibility : hidden"',
    ],
    ids=str,
)
def test_second_opinion_drops_blocks_both_witnesses_leave_out(attrs: str) -> None:
    """trafilatura's default pass keeps the hidden block of other stories; its precise pass
    and readability both leave it out and agree, so production keeps the precise text."""
    html = page_with_block_after_article(f'class="x" {attrs}')
    default_pass = extract_page(html, URL, now=NOW, profile=PROFILES["balanced"]).text
    assert TEASERS[0] in default_pass  # the failure the second opinion is for
    page = extract_page(html, URL, now=NOW)
    assert DEFAULT_PROFILE.arbiter is not None
    assert not any(t in page.text for t in TEASERS)
    assert all(p in page.text for p in PARAGRAPHS)


def test_second_opinion_keeps_the_default_text_when_the_witnesses_disagree() -> None:
    """Visible block: the precise pass drops it but readability keeps it. No agreement on a
    shorter text, so the default pass's text is kept as it is."""
    html = page_with_block_after_article('class="stream"')
    default_pass = extract_page(html, URL, now=NOW, profile=PROFILES["balanced"]).text
    assert TEASERS[0] in default_pass
    assert extract_page(html, URL, now=NOW).text == default_pass


def test_second_opinion_rule() -> None:
    calls: list[str] = []

    def text(name: str, value: str) -> Callable[[], str]:
        def get() -> str:
            calls.append(name)
            return value

        return get

    article_text = " ".join(PARAGRAPHS)
    main = article_text + " " + " ".join(TEASERS)
    rule = ArbiterSettings(ratio=0.7, agreement=0.6, min_chars=200)
    # Both witnesses shorter and agreeing: the precise text wins.
    assert second_opinion(main, text("p", article_text), text("o", article_text), rule) == (
        article_text
    )
    # Readability not much shorter: the precise pass is never run.
    calls.clear()
    assert second_opinion(main, text("p", article_text), text("o", main[:-10]), rule) is None
    assert calls == ["o"]
    # Precise pass not much shorter: keep the main text.
    assert second_opinion(main, text("p", main[:-10]), text("o", article_text), rule) is None
    # Readability short but about something else: no agreement, keep the main text.
    other = " ".join(TEASERS[:4])
    assert second_opinion(main, text("p", article_text), text("o", other), rule) is None
    # Readability as long as the main text: keep the main text.
    assert second_opinion(main, text("p", article_text), text("o", main), rule) is None
    # Precise text too short to trust.
    assert (
        second_opinion(main, text("p", PARAGRAPHS[0][:150]), text("o", article_text), rule) is None
    )
    assert second_opinion("", text("p", article_text), text("o", article_text), rule) is None
    # A main text so short that no precise text can be 200 characters and at most 0.7 of
    # it: neither witness is run, whatever they would say.
    calls.clear()
    short = "w " * 142  # 284 characters: 0.7 of it is 198.8, under min_chars
    assert second_opinion(short, text("p", short[:200]), text("o", short[:200]), rule) is None
    assert calls == []
    longer = "w " * 150  # 300 characters: 0.7 of it is 210, the witnesses are asked
    assert second_opinion(longer, text("p", "x"), text("o", longer[:200]), rule) is None
    assert calls == ["o", "p"]
    assert agreement(article_text, article_text) == 1.0
    assert agreement(article_text, other) == 0.0


def _readability_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets one item each time trafilatura's readability port runs."""
    from trafilatura.readability_lxml import Document

    summary = Document.summary
    calls: list[int] = []

    def counted(self: Document) -> str:
        calls.append(1)
        return summary(self)

    monkeypatch.setattr(Document, "summary", counted)
    return calls


@pytest.mark.parametrize(
    ("block_attrs", "comments", "runs"),
    [
        ('class="stream"', "", 1),  # nothing hidden, nothing trafilatura prunes: one run
        ('class="stream" hidden', "", 2),  # the witness reads the page less the hidden block
        ('class="stream"', '<div id="comments"><p>First!</p></div>', 2),  # trafilatura prunes
        # hidden only inside what readability drops first (an unlikely candidate, a style):
        # the same tree to readability, one run
        ('class="stream"', '<div class="sidebar"><span aria-hidden="true">*</span>Share</div>', 1),
        ('class="stream"', '<div class="menu"><i hidden>=</i></div><style hidden>p{}</style>', 1),
        # hidden inside a block readability keeps (a "sidebar" that may be "content")
        ('class="stream"', '<div class="sidebar-content"><b aria-hidden="true">*</b>x</div>', 2),
        ('class="stream"', '<div class="sidebar">S</div><p><b hidden>*</b>Share</p>', 2),
    ],
    ids=[
        "same-tree",
        "hidden",
        "comments",
        "hidden-in-unlikely",
        "hidden-in-menu-and-style",
        "hidden-in-maybe",
        "hidden-beside-unlikely",
    ],
)
def test_witness_takes_trafilaturas_readability_run_of_the_same_tree(
    monkeypatch: pytest.MonkeyPatch, block_attrs: str, comments: str, runs: int
) -> None:
    """trafilatura's main pass runs readability on its copy of the page less its comment
    sections; the witness on the page less its hidden elements. When both trees are the
    page itself, the witness takes the main pass's summary instead of running readability
    again; otherwise it runs its own. The witness's text is the same either way."""
    from worker.pages import extractor
    from worker.pages.arbiter import readability_seen
    from worker.pages.extractor import _bare

    html = page_with_block_after_article(block_attrs).replace("</footer>", f"</footer>{comments}")
    tree = _parse(html)
    assert tree is not None
    own = readability_text(tree, html_fragment_to_text)
    with readability_seen() as seen:
        _bare(tree, URL, DEFAULT_PROFILE, with_metadata=True, now=NOW)
    assert seen  # the main pass ran readability
    assert readability_text(tree, html_fragment_to_text, seen) == own
    assert TEASERS[0] in own or "hidden" in block_attrs

    calls = _readability_runs(monkeypatch)
    page = extract_page(html, URL, now=NOW)
    assert len(calls) == runs
    # the same page with nothing collected: the witness always runs its own readability
    monkeypatch.setattr(extractor, "readability_seen", lambda: contextlib.nullcontext([]))
    calls.clear()
    assert extract_page(html, URL, now=NOW) == page
    assert len(calls) == 2


def test_witness_runs_its_own_readability_when_the_port_is_not_the_known_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hidden elements only inside blocks readability drops first: with another
    readability port than the one whose first steps are known, the witness runs its own
    readability (two runs), and the page's record is the same."""
    from worker.pages import arbiter

    html = page_with_block_after_article('class="stream"').replace(
        "</footer>", '</footer><div class="sidebar"><span aria-hidden="true">*</span></div>'
    )
    calls = _readability_runs(monkeypatch)
    page = extract_page(html, URL, now=NOW)
    assert len(calls) == 1
    monkeypatch.setattr(arbiter, "_FIRST_DROPS_KNOWN", False)
    calls.clear()
    assert extract_page(html, URL, now=NOW) == page
    assert len(calls) == 2


def test_readability_witness_never_raises_on_hostile_trees() -> None:
    depth = 50_000
    html = "<html><body>" + "<div>" * depth + PARAGRAPHS[0] + "</div>" * depth + "</body></html>"
    tree = _parse(html)
    assert tree is not None
    assert isinstance(readability_text(tree, html_fragment_to_text), str)


READABILITY_PAGES = SHARED / "corpora" / "extraction" / "readability-test-pages" / "pages"


@pytest.mark.parametrize("name", ["yahoo-2", "yahoo-3"])
def test_real_pages_where_the_default_pass_keeps_other_stories(name: str) -> None:
    """Two real pages of the failure (stories listed after the article): the default pass
    returns about three times the article; production's text is the article."""
    folder = READABILITY_PAGES / name
    need(folder.is_dir(), f"the readability test pages at {folder}")
    html, _ = decode_html(gzip.decompress((folder / "source.html.gz").read_bytes()), None)
    expected = shingles(html_fragment_to_text((folder / "expected.html").read_text("utf-8")))
    default_pass = shingles(extract_page(html, None, profile=PROFILES["balanced"]).text)
    ours = shingles(extract_page(html, None).text)
    assert containment(default_pass, expected) < 0.5  # mostly not the article
    assert containment(ours, expected) >= 0.9  # precision
    assert containment(expected, ours) >= 0.8  # recall


# ------------------------------------------------------- teaser lists (extract_teasers)

STORIES = [
    ("Harbour pilots strike for a second day", "/news/2024/pilots-strike"),
    ("Fish market moves to the old customs house", "/news/2024/fish-market"),
    ("Ferry timetable changes for the winter", "/news/2024/ferry-winter"),
    ("Record catch of sardines in the bay", "/news/2024/sardines"),
]


def page_with_teaser_list(*, kicker: str = "", article_paragraphs: bool = True) -> str:
    """An article and, in the same container, a list of other stories: each a linked
    headline (optionally after a kicker) and a one-line summary."""
    body = "".join(f"<p>{p}</p>" for p in PARAGRAPHS) if article_paragraphs else ""
    items = "".join(
        f'<div class="story"><h3>{kicker}<a href="{href}">{title}</a></h3><p>{summary}</p></div>'
        for (title, href), summary in zip(STORIES, TEASERS, strict=False)
    )
    return (
        '<html lang="en"><head><title>Lighthouse to be restored</title></head><body>'
        '<nav><a href="/">Home</a></nav><div class="main"><div class="content">'
        f"<h1>Lighthouse to be restored</h1>{body}"
        f'<div class="group"><h2>More from the harbour</h2>{items}</div>'
        "</div></div><footer>Porto Daily</footer></body></html>"
    )


TEASER_RULE = TeaserSettings(min_units=3, max_chars=400, link_share=0.5, group_share=0.5)


@pytest.mark.parametrize("kicker", ["", "<span>Local</span> "], ids=["plain", "kicker"])
def test_teaser_list_next_to_the_article_is_removed(kicker: str) -> None:
    """trafilatura keeps the summaries of the other stories (they share the article's
    container); with the teaser rule the text is the article alone."""
    html = page_with_teaser_list(kicker=kicker)
    default_pass = extract_page(html, URL, now=NOW, profile=PROFILES["balanced"]).text
    assert any(t in default_pass for t in TEASERS[:4])  # the failure the rule is for
    assert len(teaser_units(_parse(html), TEASER_RULE)) == 4  # type: ignore[arg-type]
    assert DEFAULT_PROFILE.teasers is not None  # production removes teaser lists
    text = extract_page(html, URL, now=NOW).text
    assert all(p in text for p in PARAGRAPHS)
    assert not any(t in text for t in TEASERS)
    assert not any(title in text for title, _ in STORIES)


def test_metadata_comes_from_the_page_as_it_is() -> None:
    """The text comes from the page without its teaser list, the metadata from the whole
    page: here the only dates are in the teasers, and the date found is the one found
    without the rule."""
    stamps = iter(range(1, 9))
    html = re.sub(
        '<div class="story">',
        lambda _: (
            f'<div class="story"><time datetime="2023-02-0{next(stamps)}T10:00:00Z">2023</time>'
        ),
        page_with_teaser_list(),
    )
    tree = _parse(html)
    assert tree is not None
    pruned = without_teasers(tree, TeaserSettings())
    assert pruned is not tree and next(pruned.iter("time"), None) is None
    plain = extract_page(html, URL, now=NOW, profile=PROFILES["balanced+arbiter"])
    page = extract_page(html, URL, now=NOW)
    assert plain.published_at is not None
    assert page.published_at == plain.published_at
    assert (page.title, page.author, page.sitename) == (plain.title, plain.author, plain.sitename)
    assert page.text != plain.text  # the text did change


def test_too_few_teasers_or_long_units_are_not_a_list() -> None:
    tree = _parse(page_with_teaser_list())
    assert tree is not None
    assert teaser_units(tree, replace(TEASER_RULE, min_units=5)) == []
    assert teaser_units(tree, replace(TEASER_RULE, max_chars=100)) == []
    # a kicker takes more than a fifth of the heading: not a link at a share of 0.8
    kicked = _parse(page_with_teaser_list(kicker="<span>Local news from the harbour</span> "))
    assert kicked is not None
    assert teaser_units(kicked, replace(TEASER_RULE, link_share=0.8)) == []
    assert len(teaser_units(kicked, TEASER_RULE)) == 4


def test_one_linked_heading_in_an_article_is_kept() -> None:
    html = article().replace(
        f"<p>{PARAGRAPHS[2]}</p>",
        '<h2><a href="/reports/lighthouse.pdf">The engineers report</a></h2>'
        f"<p>{PARAGRAPHS[2]}</p>",
    )
    tree = _parse(html)
    assert tree is not None
    assert len(linked_headings(tree)) == 1
    assert teaser_units(tree, TEASER_RULE) == []
    assert without_teasers(tree, TEASER_RULE) is tree


def test_linked_item_titles_between_paragraphs_are_not_a_teaser_list() -> None:
    """A listicle: each item's title links to the thing reviewed, and the item's text
    follows as paragraphs in the same container. The titles are a small share of that
    container, so nothing is removed; links to places in the page are never stories."""
    items = "".join(
        f'<h3><a href="https://shop.example.org/{n}">{title}</a></h3><p>{text}</p>'
        for n, ((title, _), text) in enumerate(zip(STORIES, PARAGRAPHS, strict=False))
    )
    listicle = (
        "<html><body><article><h1>Four things to do at the harbour</h1>"
        f"<div class='body'>{items}</div></article></body></html>"
    )
    tree = _parse(listicle)
    assert tree is not None
    assert len(linked_headings(tree)) == 4
    assert teaser_units(tree, TEASER_RULE) == []
    assert teaser_units(tree, replace(TEASER_RULE, group_share=0.1)) != []  # the guard
    text = extract_page(listicle, URL, now=NOW).text
    assert all(title in text for title, _ in STORIES)
    toc = page_with_teaser_list().replace('href="/news/2024/', 'href="#')
    toc_tree = _parse(toc)
    assert toc_tree is not None
    assert linked_headings(toc_tree) == []


def test_a_page_that_is_only_a_list_of_stories_keeps_its_text() -> None:
    """A section front: removing the teasers would leave nothing, so it is extracted as it
    is (the same text as without the rule)."""
    html = page_with_teaser_list(article_paragraphs=False)
    tree = _parse(html)
    assert tree is not None and len(teaser_units(tree, TEASER_RULE)) == 4
    plain = extract_page(html, URL, now=NOW, profile=PROFILES["balanced+arbiter"]).text
    assert plain  # trafilatura finds the summaries
    assert extract_page(html, URL, now=NOW).text == plain


def test_teaser_units_never_hold_the_headline() -> None:
    """The first story sits in the block of the h1: its unit stops below that block (the
    headline stays); the three others are removed."""
    (t1, h1), *rest = STORIES
    others = "".join(f'<div><h3><a href="{h}">{t}</a></h3></div>' for t, h in rest)
    html = (
        "<html><body><div class='top'><div><h1>Lighthouse to be restored</h1>"
        f'<h3><a href="{h1}">{t1}</a></h3></div>{others}</div>'
        f"<div>{''.join(f'<p>{p}</p>' for p in PARAGRAPHS)}</div></body></html>"
    )
    tree = _parse(html)
    assert tree is not None
    units = teaser_units(tree, TEASER_RULE)
    assert [u.tag for u in units] == ["div"] * 3
    assert all(u.find(".//h1") is None for u in units)
    pruned = without_teasers(tree, TEASER_RULE)
    assert pruned is not tree
    assert pruned.find(".//h1") is not None
    assert [h.text_content() for h in pruned.iter("h3")] == [t1]
    assert len(list(tree.iter("h3"))) == 4  # the page itself is not changed


# --------------------------------------------------------------- captions and images

CAPTION = "Stonemasons inspecting the granite base of the tower in May. Photo: Ana Costa"


def page_with_figure() -> str:
    return article().replace(
        f"<p>{PARAGRAPHS[2]}</p>",
        '<figure><img src="/img/lighthouse.jpg" alt="The lighthouse at dusk">'
        f"<figcaption>{CAPTION}</figcaption></figure><p>{PARAGRAPHS[2]}</p>",
    )


def test_figure_captions_as_paragraphs() -> None:
    html = page_with_figure()
    assert CAPTION not in extract_page(html, URL, now=NOW, profile=PROFILES["balanced"]).text
    text = extract_page(html, URL, now=NOW, profile=PROFILES["balanced+captions+arbiter"]).text
    lines = text.split("\n")
    assert lines.index(CAPTION) == lines.index(PARAGRAPHS[1]) + 1  # where the figure was
    assert "lighthouse.jpg" not in text and "at dusk" not in text
    assert all(p in text for p in PARAGRAPHS)


def test_include_images_keeps_no_image_markup() -> None:
    html = page_with_figure()
    text = extract_page(html, URL, now=NOW, profile=PROFILES["balanced+images"]).text
    assert "lighthouse.jpg" not in text and "![" not in text
    assert all(p in text for p in PARAGRAPHS)


def test_benchmark_words_ignore_invisible_format_characters() -> None:
    """Measure v2 of bench.extraction_quality: a soft hyphen, a zero-width joiner or a BOM
    inside a word does not split it (a reader sees one word); v1 did."""
    from bench.extraction_quality import shingle_prf, words

    gold = "The prime minister Netan\u00adyahu said on Tues\u200dday that the \ufeffvote is off."
    ours = "The prime minister Netanyahu said on Tuesday that the vote is off."
    assert words(gold) == words(ours)
    assert "netan" in words(gold, v1=True)
    assert shingle_prf(ours, gold) == (1.0, 1.0, 1.0)
    assert shingle_prf(ours, gold, v1=True)[2] < 0.7
    assert words("ﬁne ＡＢＣ") == ["fine", "abc"]  # NFKC


# ------------------------------------------------------------ the page's parser


def test_page_tree_is_trafilaturas_with_elements_classed_in_c() -> None:
    """``_load`` parses as trafilatura's ``load_html`` does (the same tree, the same
    rejections), with an element class lookup that calls no Python per element."""
    from lxml import etree
    from lxml.html import HtmlElement
    from trafilatura.utils import load_html

    from worker.pages.extractor import _load

    pages = [
        "<html><head><title>T</title></head><body><!-- c --><form><input name=q>"
        "<textarea>x</textarea></form><p>One <b>two</b></p><?pi x?></body></html>",
        '<?xml version="1.0" encoding="utf-8"?><html><body><p>declared</p></body></html>',
        "<html/><body><p>faulty html element</p></body>",
        "just some text, no markup at all",
        "<p>one block</p>",
        "<!DOCTYPE html><html><body><div><p>é ü 漢字</p></div></body></html>",
    ]
    corpus = CORPUS / "html"
    if corpus.is_dir():
        for path in sorted(corpus.glob("*.html.gz"))[:15]:
            pages.append(decode_html(gzip.decompress(path.read_bytes()), None)[0])
    for html in pages:
        ours, theirs = _load(html), load_html(html)
        assert (ours is None) == (theirs is None), html[:80]
        if ours is not None and theirs is not None:
            assert etree.tostring(ours) == etree.tostring(theirs), html[:80]
            assert all(type(el) is HtmlElement for el in ours.iter(etree.Element))
    tree = _load(pages[0])
    assert tree is not None
    assert tree.find(".//form").text_content() == "x"  # an HtmlElement's methods work


def test_categories_and_tags_searched_only_when_a_link_can_name_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Categories and tags are trafilatura's ``extract_catstags``, whose queries keep only
    links to ``/category/`` or ``/tag/`` paths (and their plurals): on a page without such
    a link they are not run, and the categories are its fallback, the ``<meta>`` section.
    The same lists on invented pages with and without such links."""
    import trafilatura.metadata

    from worker.pages.extractor import _CATSTAG_LINKS, _catstags, _page_metadata

    meta_section = '<meta property="article:section" content="Local &amp; regional">'
    links = {
        "none": "",
        "category": '<div class="post-meta"><a href="/category/local-news/">Local news</a></div>',
        "categories": '<div class="entry-meta"><a href="/categories/port/">Port</a></div>',
        "tag": '<div class="tags"><a href="/tag/heritage/">heritage</a> '
        '<a href="/tags/harbour/">harbour</a></div>',
        "elsewhere": '<p><a href="/category/sport/">Sport</a> <a href="/tag/x/">x</a></p>',
        "near-miss": '<div class="tags"><a href="/tagged/heritage/">heritage</a> '
        '<a href="/catalogue/">shop</a></div>',
    }
    original = trafilatura.metadata.extract_catstags
    for head in ("", meta_section, '<meta name="dc.subject" content="Harbours">'):
        for name, block in links.items():
            html = article(head_extra=head).replace("</article>", block + "</article>")
            tree = _parse(html)
            assert tree is not None
            found = [str(h) for h in _CATSTAG_LINKS(tree)]
            for metatype in ("category", "tag"):
                assert _catstags(metatype, tree, found) == original(metatype, tree), (name, head)

    calls: list[str] = []

    def counted(metatype: str, tree: Any) -> list[str]:
        calls.append(metatype)
        return original(metatype, tree)

    monkeypatch.setattr(trafilatura.metadata, "extract_catstags", counted)
    plain = _parse(article(head_extra=meta_section))
    assert plain is not None
    doc = _page_metadata(plain, URL, DEFAULT_PROFILE, NOW)
    assert calls == []  # no link can name a category or a tag
    assert doc.categories == ["Local & regional"] and doc.tags == []
    tagged = _parse(article().replace("</article>", links["tag"] + "</article>"))
    assert tagged is not None
    doc = _page_metadata(tagged, URL, DEFAULT_PROFILE, NOW)
    assert calls == ["tag"]
    assert doc.categories == [] and doc.tags == ["heritage", "harbour"]


def test_page_metadata_is_trafilaturas_less_the_licence() -> None:
    """The page's metadata is trafilatura's ``extract_metadata`` made of its own steps, less
    the licence and the host name (claimwire stores neither): every other field the same,
    on invented pages (a byline and categories and tags found in the markup, JSON-LD, a
    licence link, no page URL) and corpus pages, with and without htmldate's extensive
    search; with ``dates`` None the date alone is left out. The page's tree is unchanged.
    ``_bare`` with metadata gives ``bare_extraction``'s Document the same way."""
    from lxml import etree
    from trafilatura.metadata import extract_metadata
    from trafilatura.settings import Document

    from worker.pages.extractor import _bare, _date_params, _page_metadata

    head = (
        '<script type="application/ld+json">{"@type": "NewsArticle", '
        '"headline": "Lighthouse works start", "datePublished": "2024-03-05"}</script>'
    )
    byline = (
        '<p class="byline">By Marta Ribeiro and Rui Sousa</p>'
        '<div class="post-meta"><a href="/category/local-news/">Local news</a></div>'
        '<div class="tags"><a href="/tag/heritage/">heritage</a> '
        '<a href="/tag/harbour/">harbour</a></div>'
        '<footer><a rel="license" href="https://creativecommons.org/licenses/by/4.0/">'
        "CC BY 4.0</a></footer>"
    )
    invented = article(head_extra=head, body_paragraphs=[*PARAGRAPHS, "Published 5 March 2024"])
    invented = invented.replace('<meta name="author" content="Marta Ribeiro">', "").replace(
        "</article>", byline + "</article>"
    )
    pages: list[tuple[str, str | None]] = [
        (invented, URL),
        (
            invented.replace('<link rel="canonical" href="/news/2024/lighthouse-restored">', ""),
            None,
        ),
        (article(published=None, canonical=None), None),
    ]
    corpus = CORPUS / "html"
    if corpus.is_dir():
        for path in sorted(corpus.glob("*.html.gz"))[::200]:
            pages.append((decode_html(gzip.decompress(path.read_bytes()), None)[0], URL))
    fields = [f for f in Document.__slots__ if f not in ("license", "hostname")]

    def value(doc: Any, field: str) -> Any:
        found = getattr(doc, field)
        return etree.tostring(found) if isinstance(found, etree._Element) else found

    licences = 0
    for html, url in pages:
        tree = _parse(html)
        assert tree is not None
        before = etree.tostring(tree)
        for dates in (True, False):
            params = _date_params(DEFAULT_PROFILE, NOW, dates)
            theirs = extract_metadata(tree, url, params, False, set())
            ours = _page_metadata(tree, url, DEFAULT_PROFILE, NOW, dates)
            for field in fields:
                assert value(ours, field) == value(theirs, field), (field, html[:80])
            assert ours.license is None
            licences += theirs.license is not None
            undated = _page_metadata(tree, url, DEFAULT_PROFILE, NOW, None)
            for field in fields:
                expected = None if field in ("date", "filedate") else value(theirs, field)
                assert value(undated, field) == expected, field
            whole = trafilatura.bare_extraction(
                tree,
                url=url,
                include_comments=False,
                include_formatting=False,
                with_metadata=True,
                date_extraction_params=params,
            )
            doc = _bare(tree, url, DEFAULT_PROFILE, with_metadata=True, now=NOW, dates=dates)
            assert (doc is None) == (whole is None)
            if doc is not None and whole is not None:
                for field in fields:
                    assert value(doc, field) == value(whole, field), field
        assert etree.tostring(tree) == before
    assert licences >= 2  # the invented page's licence link: trafilatura reads it, we do not
    first = _page_metadata(_parse(invented), URL, DEFAULT_PROFILE, NOW)  # type: ignore[arg-type]
    assert first.author == "Marta Ribeiro; Rui Sousa"
    assert (first.categories, first.tags) == (["Local news"], ["heritage", "harbour"])
