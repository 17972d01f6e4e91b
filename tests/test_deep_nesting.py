"""Issue 18, item 4: an article under 50,000 nested ``div`` elements is extracted (the
markup is flattened before parsing: libxml2 stops at 256 open elements and dropped the
rest of the page), through ``claimwire extract`` and through the pipeline's extract
step. A page still too deep once flattened is a failure with its reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import claimwire, cli_env

DEPTH = 50_000
PARAGRAPHS = [
    "Mayor Lena Fischer said on Tuesday that the harbour tram line would open in May, "
    "two years later than first promised, after the council approved the last contract.",
    "The transport office said the delay came from the bridge works near the old market, "
    "where engineers found the foundations weaker than the plans had shown in 2019.",
    "Residents of the eastern districts have waited for the line since the first plans "
    "were drawn, and several shop owners said they had lost customers during the works.",
]


def deep_page(depth: int = DEPTH, *, closed: bool = True, tag: str = "div") -> str:
    article = (
        "<article><h1>Tram line opens in May</h1>"
        + "".join(f"<p>{p}</p>" for p in PARAGRAPHS)
        + "</article>"
    )
    return (
        "<!doctype html><html><head><title>Tram line opens in May</title></head><body>"
        + f"<{tag}>" * depth
        + article
        + (f"</{tag}>" * depth if closed else "")
        + "<footer><p>Contact the newsroom.</p></footer></body></html>"
    )


@pytest.mark.parametrize(
    "page",
    [
        deep_page(),
        deep_page(closed=False),
        deep_page(tag="span"),
        deep_page(tag="blockquote"),
        # a deep widget before the article: the parser used to stop inside it and drop
        # the article after it
        "<html><body>" + "<div>" * 300 + "ad" + "</div>" * 300 + deep_page(0).split("<body>", 1)[1],
    ],
    ids=["divs", "unclosed-divs", "spans", "blockquotes", "deep-widget-before"],
)
def test_deeply_nested_article_is_extracted(page: str) -> None:
    from worker.pages.extractor import extract_page

    extracted = extract_page(page, "https://news.example.org/tram")
    assert extracted.failure is None
    assert extracted.text_source == "page"
    for p in PARAGRAPHS:
        assert p in extracted.text


def test_flatten_leaves_normal_markup_alone_and_bounds_depth() -> None:
    from worker.pages.extractor import _load
    from worker.pages.nesting import HARD_DEPTH, flatten, too_deep

    normal = deep_page(40)
    assert flatten(normal) == normal
    flat = flatten(deep_page())
    tree = _load(flat)
    assert tree is not None and not too_deep(tree)
    assert not tree.xpath("boolean(" + "*/" * HARD_DEPTH + "*)")
    # unclosed list items and paragraphs close each other: no depth, nothing removed
    items = "<html><body><ul>" + "<li><p>item" * 5000 + "</ul></body></html>"
    assert flatten(items) == items
    # tags inside scripts and comments are not elements
    scripted = "<html><body><script>" + "<div>" * 5000 + "</script><!--" + "<div>" * 5000
    assert flatten(scripted + "--><p>x</p></body></html>") == scripted + "--><p>x</p></body></html>"


def test_page_still_too_deep_is_a_failure_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """When flattening cannot help (here: it is switched off), the page says why it has no
    text instead of giving an empty text as if the page had none."""
    from worker.pages import extractor

    monkeypatch.setattr(extractor, "flatten", lambda html: html)
    page = extractor.extract_page(deep_page(), "https://news.example.org/tram")
    assert page.text == "" and page.failure == "nesting too deep"
    # the feed's text still serves, as for any page without text
    fallback = "<p>" + PARAGRAPHS[0] * 3 + "</p>"
    page = extractor.extract_page(deep_page(), None, fallback_content=fallback)
    assert page.text_source == "feed_content" and PARAGRAPHS[0] in page.text


def test_extract_command_gives_the_deep_article(tmp_path: Path) -> None:
    path = tmp_path / "deep.html"
    path.write_text(deep_page(), encoding="utf-8")
    r = claimwire(["extract", "--jsonl", str(path)], cli_env(tmp_path), tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    (record,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert "error" not in record
    assert record["title"] == "Tram line opens in May"
    for p in PARAGRAPHS:
        assert p in record["text"]


def test_extract_command_reports_a_page_too_deep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process (flattening switched off): an error record and exit status 1."""
    from worker.cli import main
    from worker.pages import extractor

    monkeypatch.setattr(extractor, "flatten", lambda html: html)
    monkeypatch.setenv("CLAIMWIRE_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "deep.html"
    path.write_text(deep_page(), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["extract", "--jsonl", str(path)])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    (record,) = [json.loads(line) for line in captured.out.splitlines()]
    assert record["error"] == "nesting too deep" and record["text"] == ""
    assert "1 of 1 page(s) failed" in captured.err


def _pipeline(configure: Any, server: Any, **settings: str) -> tuple[Any, int]:
    """The deep page served, and a feed entry linking it stored as the poll stores it."""
    from schemas.models import Feed
    from schemas.types import utcnow
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.parsing import Entry, ParsedFeed
    from worker.feeds.polling import record_entries
    from worker.testing.server import Reply

    configured = configure(**settings)
    init_db()
    server.routes["/deep"] = Reply(body=deep_page().encode(), content_type="text/html")
    parsed = ParsedFeed(entries=[Entry(link=server.url("/deep"), title="Tram")])
    with unit_of_work() as session:
        feed = Feed(url=server.url("/feed.xml"))
        session.add(feed)
        session.flush()
        ((article_id, _host),) = record_entries(session, feed, parsed, utcnow())
    return configured, article_id


def _run_steps(settings: Any, article_id: int) -> None:
    from worker.claims import store
    from worker.core.db import unit_of_work
    from worker.dedup import deduplicate
    from worker.pages import extract, fetch
    from worker.pipeline import resources

    steps = [
        lambda s: (
            fetch.fetch_article(
                s,
                article_id,
                resources.http_client(),
                resources.host_limiter(),
                resources.archive(),
                settings,
            ).advanced
        ),
        lambda s: extract.extract_stored_article(s, article_id, resources.archive(), settings),
        lambda s: deduplicate.deduplicate_article(s, article_id, settings).advanced,
        lambda s: store.process_claims(s, article_id, settings),
    ]
    for step in steps:
        with unit_of_work() as session:
            if not step(session):
                return


@pytest.mark.postgres
def test_pipeline_extracts_the_deep_article(
    configure: Any, pg_url: str, redis_url: str, server: Any
) -> None:
    from schemas.models import Article, ArticleState
    from worker.core.db import unit_of_work

    settings, article_id = _pipeline(
        configure, server, database_url=pg_url, broker_url=redis_url, extract_claims="false"
    )
    _run_steps(settings, article_id)
    with unit_of_work() as session:
        article = session.get(Article, article_id)
        assert article is not None
        assert article.state == ArticleState.processed, article.failure_reason
        assert article.failure_reason is None
        for p in PARAGRAPHS:
            assert p in (article.text or "")


@pytest.mark.postgres
def test_pipeline_fails_a_page_too_deep_with_its_reason(
    configure: Any, pg_url: str, redis_url: str, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schemas.models import Article, ArticleState
    from worker.core.db import unit_of_work
    from worker.pages import extractor

    monkeypatch.setattr(extractor, "flatten", lambda html: html)
    settings, article_id = _pipeline(
        configure, server, database_url=pg_url, broker_url=redis_url, extract_claims="false"
    )
    _run_steps(settings, article_id)
    with unit_of_work() as session:
        article = session.get(Article, article_id)
        assert article is not None
        assert article.state == ArticleState.failed
        assert article.failure_reason == "nesting too deep"
        assert article.attempts == 0  # not retried: the same on every try
