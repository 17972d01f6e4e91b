"""Audit of issue 4 from a user's seat: what `claimwire extract URL` reports, and how
far a server's Retry-After can push claimwire back. Real local servers, no mocks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import Session

from tests.conftest import claimwire, cli_env
from worker.network.http import MAX_RETRY_AFTER, FetchError, parse_retry_after
from worker.testing.server import LocalServer, Reply

PAGE = (
    "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Ferry news</title>"
    "</head><body><article><h1>Ferry news</h1>"
    + "<p>The ferry between the two islands will run twice a day from May, the harbour "
    "office announced on Tuesday, after a winter of cancelled crossings.</p>"
    * 4
    + "</article></body></html>"
).encode()


def test_extract_url_that_is_not_html_says_so(tmp_path: Path, server: LocalServer) -> None:
    """A PDF or JSON URL gave an object with empty text and no error: the user could not
    tell a non-HTML page from a page without text."""
    server.routes["/report.pdf"] = Reply(body=b"%PDF-1.4 " * 1000, content_type="application/pdf")
    server.routes["/api"] = Reply(body=b'{"a": 1}', content_type="application/json")
    server.routes["/story"] = Reply(body=PAGE)
    env = cli_env(tmp_path, ALLOW_PRIVATE_NETWORKS="true")
    urls = [server.url("/report.pdf"), server.url("/api"), server.url("/story")]
    r = claimwire(["extract", *urls, "--jsonl"], env, tmp_path)
    assert r.returncode == 1, r.stderr  # two pages failed; all three records written
    pdf, api, story = (json.loads(line) for line in r.stdout.splitlines())
    assert pdf["error"] == "FetchError: not HTML: content type application/pdf"
    assert api["error"] == "FetchError: not HTML: content type application/json"
    assert "error" not in story and "twice a day" in story["text"]


def test_extract_empty_directory_is_mentioned(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a page")
    r = claimwire(["extract", str(empty), "--jsonl"], cli_env(tmp_path), tmp_path)
    assert r.returncode == 0 and r.stdout == ""
    assert f"{empty}: no pages in this directory" in r.stderr


def test_retry_after_is_capped() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("999999999") == MAX_RETRY_AFTER
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == MAX_RETRY_AFTER
    assert parse_retry_after("soon") is None


def test_absurd_retry_after_on_an_article_backs_its_host_off_a_week_at_most(
    configure: Any, server: LocalServer
) -> None:
    """A page answering 429 with Retry-After: 999999999 closed its host for 31 years (and
    parked the article's retry as long)."""
    settings = configure()
    from schemas.models import Article
    from worker.core.db import get_engine, init_db
    from worker.network.politeness import HostBusy
    from worker.network.urls import host_of, url_hash
    from worker.pages.fetch import fetch_article
    from worker.pipeline import resources

    init_db()
    server.routes["/busy"] = Reply(429, b"later", headers={"Retry-After": "999999999"})
    url = server.url("/busy")
    with Session(get_engine(settings)) as s:
        a = Article(url=url, url_hash=url_hash(url), host=host_of(url))
        s.add(a)
        s.flush()
        assert a.id is not None
        limiter = resources.host_limiter()
        try:
            fetch_article(s, a.id, resources.http_client(), limiter, resources.archive(), settings)
        except FetchError as exc:
            assert exc.transient and exc.status == 429
            assert exc.retry_after == MAX_RETRY_AFTER
        else:
            raise AssertionError("a 429 must raise a transient FetchError")
    try:
        with limiter.slot(host_of(url)):
            pass
    except HostBusy as busy:
        assert MAX_RETRY_AFTER - 60 <= busy.retry_after <= MAX_RETRY_AFTER
    else:
        raise AssertionError("the host must be backed off")


def test_claims_search_words_are_literal_and_any_case(configure: Any) -> None:
    """`claims search --text 50%` matched every claim holding "50" (and "_" any
    character): the user's words went into LIKE unescaped. On SQLite, `--speaker
    özdemir` did not find "Özdemir"."""
    settings = configure()
    from schemas.models import Article, Claim
    from worker.claims.search import search_claims
    from worker.core.db import get_engine, init_db
    from worker.network.urls import url_hash

    init_db()
    texts = ["prices rose 50% in a year", "prices rose 50 cents", "the a_b test failed"]
    with Session(get_engine(settings)) as s:
        for i, text in enumerate(texts):
            url = f"https://paper.example/{i}"
            a = Article(url=url, url_hash=url_hash(url), host="paper.example")
            s.add(a)
            s.flush()
            assert a.id is not None
            s.add(
                Claim(
                    article_id=a.id,
                    speaker="Özdemir",
                    speaker_resolved="The 100% Party of Cem Özdemir",
                    verb="say",
                    kind="indirect",
                    text=text,
                    start=0,
                    end=len(text),
                    sentence=text,
                    extractor_version="test",
                )
            )
        s.commit()
        assert [r["text"] for r in search_claims(s, words="50%")] == [texts[0]]
        assert [r["text"] for r in search_claims(s, words="a_b")] == [texts[2]]
        assert search_claims(s, words="rose 50_") == []
        assert len(search_claims(s, speaker="100%")) == 3
        assert search_claims(s, speaker="1_0") == []
        # letters outside ASCII fold too (SQLite's lower() folds ASCII only)
        assert len(search_claims(s, speaker="özdemir")) == 3
        assert len(search_claims(s, speaker="ÖZDEMIR")) == 3


def test_archived_copy_of_other_bytes_is_never_extracted_as_the_page(
    configure: Any, server: LocalServer
) -> None:
    """A stored copy replaced by a valid zstandard frame of other bytes was read back
    as the page (frames carry no checksum): the article got another page's text. It is
    now an error naming the page, which the step counts (quarantine, then replay)."""
    import zstandard

    settings = configure()
    from schemas.models import Article, ArticleState, RawPage
    from worker.core.db import get_engine, init_db
    from worker.network.urls import host_of, url_hash
    from worker.pages.archive import ArchivedPageCorrupt
    from worker.pages.extract import extract_stored_article
    from worker.pages.fetch import fetch_article
    from worker.pipeline import resources

    init_db()
    server.routes["/story"] = Reply(body=PAGE)
    url = server.url("/story")
    archive = resources.archive()
    with Session(get_engine(settings)) as s:
        a = Article(url=url, url_hash=url_hash(url), host=host_of(url))
        s.add(a)
        s.flush()
        assert a.id is not None
        args = (resources.http_client(), resources.host_limiter(), archive, settings)
        assert fetch_article(s, a.id, *args).advanced
        raw = s.get(RawPage, a.raw_sha256)
        assert raw is not None
        other = PAGE.replace(b"twice a day", b"once a week")
        stored = settings.effective_archive_dir / raw.storage_key
        stored.write_bytes(zstandard.ZstdCompressor().compress(other))
        try:
            extract_stored_article(s, a.id, archive, settings)
        except ArchivedPageCorrupt as exc:
            assert raw.storage_key in str(exc) and "SHA-256" in str(exc)
        else:
            raise AssertionError("another page's bytes must not be extracted")
        assert a.state == ArticleState.fetched and a.text is None


def test_the_extract_step_reads_the_page_by_its_archive_key_or_fetches_it_again(
    configure: Any, server: LocalServer
) -> None:
    """The step reads the archived page's key alone (not the whole ``rawpage`` row): a
    page fetched in the same transaction is extracted from it, and an article whose page
    never reached the archive goes back to be fetched, saying so."""
    settings = configure()
    from schemas.models import Article, ArticleState
    from worker.core.db import get_engine, init_db
    from worker.network.urls import host_of, url_hash
    from worker.pages.extract import extract_stored_article
    from worker.pages.fetch import fetch_article
    from worker.pipeline import resources

    init_db()
    server.routes["/story"] = Reply(body=PAGE)
    url = server.url("/story")
    archive = resources.archive()
    with Session(get_engine(settings)) as s:
        fetched = Article(url=url, url_hash=url_hash(url), host=host_of(url))
        lost = Article(
            url=url + "?lost",
            url_hash=url_hash(url + "?lost"),
            host=host_of(url),
            state=ArticleState.fetched,
        )
        s.add_all([fetched, lost])
        s.flush()
        assert fetched.id is not None and lost.id is not None
        args = (resources.http_client(), resources.host_limiter(), archive, settings)
        assert fetch_article(s, fetched.id, *args).advanced
        assert extract_stored_article(s, fetched.id, archive, settings)
        assert fetched.state == ArticleState.extracted
        assert fetched.text is not None and "twice a day" in fetched.text
        assert not extract_stored_article(s, lost.id, archive, settings)
        assert lost.state == ArticleState.discovered
        assert lost.failure_reason == "archived page missing; refetching"
