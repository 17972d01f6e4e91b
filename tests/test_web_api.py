"""The HTTP API of `claimwire web` (/api/v1/) on a real SQLite file and a real PostgreSQL
database: search through the full-text index, filters, cursor pagination, downloads,
details, writes with the token, and clear 4xx answers to bad input."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, insert, update
from starlette.testclient import TestClient

from schemas.models import Article, Claim
from tests.support.webdata import CLAIM, XSS_TITLE, Seeded, seed
from worker.core.db import unit_of_work

TOKEN = "test-token-abcdefghijklmnop"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, configure: Any) -> Iterator[tuple[Any, Seeded]]:
    overrides: dict[str, Any] = {
        "web_token": TOKEN,
        "allow_private_networks": "false",
        "allowed_private_addresses": "127.0.0.2",
    }
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    settings = configure(**overrides)
    yield settings, seed(settings)


@pytest.fixture()
def client(store: tuple[Any, Seeded]) -> Iterator[TestClient]:
    from worker.web.webapp import create_app

    settings, _ = store
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
        yield c


def ids(resp: Any) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [row["id"] for row in resp.json()["items"]]


def test_search_words_phrases_prefixes_and_filters(
    client: TestClient, store: tuple[Any, Seeded]
) -> None:
    _, seeded = store
    c1, c2, c3 = seeded.claim_ids
    get = client.get
    # newest first (by id)
    assert ids(get("/api/v1/claims", params={"q": "steelworks"})) == [c3, c2, c1]
    assert ids(get("/api/v1/claims", params={"q": "STEELWORKS korlin"})) == [c3, c2, c1]
    assert ids(get("/api/v1/claims", params={"q": '"reopen by spring"'})) == [c2, c1]
    assert ids(get("/api/v1/claims", params={"q": "steelw*"})) == [c3, c2, c1]
    assert ids(get("/api/v1/claims", params={"q": "steelw"})) == []  # whole words only
    # the sentence counts, not only the claim's content
    assert ids(get("/api/v1/claims", params={"q": "reporters"})) == [c2]
    # punctuation and engine syntax are only separators, never an error
    assert ids(get("/api/v1/claims", params={"q": "steelworks)(* -:^ {"})) == [c3, c2, c1]
    assert ids(get("/api/v1/claims", params={"speaker": "novak", "q": "spring"})) == [c3, c2, c1]
    assert ids(get("/api/v1/claims", params={"speaker": "maria novak"})) == [c2, c1]
    assert ids(get("/api/v1/claims", params={"outlet": "DailyLedger.example"}))[1:] == [c2]
    assert len(ids(get("/api/v1/claims", params={"kind": "direct"}))) == 1
    assert ids(get("/api/v1/claims", params={"min_outlets": 2})) == [c3, c2, c1]
    assert ids(get("/api/v1/claims", params={"since": "2026-11-04", "q": "steelworks"})) == [c3]
    # a bare date as `until` takes that whole day
    assert ids(get("/api/v1/claims", params={"until": "2026-11-03", "q": "steelworks"})) == [
        c2,
        c1,
    ]
    assert ids(get("/api/v1/claims", params={"cluster": seeded.cluster_id})) == [c3, c2, c1]
    row = get("/api/v1/claims", params={"q": "reporters"}).json()["items"][0]
    assert row["speaker"] == "Maria Novak" and row["verb"] == "told"
    assert row["outlet"] == "dailyledger.example" and row["cluster_outlets"] == 4
    assert CLAIM in row["sentence"] and row["text"] == CLAIM


def test_cursor_pages_are_stable_and_complete(client: TestClient) -> None:
    everything = ids(client.get("/api/v1/claims", params={"limit": 500}))
    assert len(everything) == 5
    seen: list[int] = []
    url: str | None = "/api/v1/claims?limit=2"
    pages = 0
    while url:
        body = client.get(url).json()
        seen += [r["id"] for r in body["items"]]
        url = body["next"]
        pages += 1
    assert seen == everything and pages == 3
    assert seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/api/v1/claims", {"cursor": "not-a-cursor!"}, 400, "malformed cursor"),
        ("/api/v1/claims", {"cursor": "WyJjbGFpbXMiLDIsIngiXQ"}, 400, "malformed cursor"),
        ("/api/v1/claims", {"since": "last tuesday"}, 400, "since: not a date"),
        ("/api/v1/claims", {"until": "2026-13-45"}, 400, "until: not a date"),
        ("/api/v1/claims", {"limit": 100000}, 400, "limit"),
        ("/api/v1/claims", {"limit": "ten"}, 400, "limit"),
        ("/api/v1/claims", {"kind": "rumour"}, 400, "kind"),
        ("/api/v1/claims", {"q": "word " * 200}, 400, "q"),
        ("/api/v1/claims", {"q": " ".join(f"w{i}" for i in range(40))}, 400, "too many words"),
        ("/api/v1/claims", {"min_outlets": -3}, 400, "min_outlets"),
        ("/api/v1/clusters/999999", {}, 404, "no claim cluster with id 999999"),
        ("/api/v1/clusters/abc", {}, 400, "cluster_id"),
        ("/api/v1/clusters/99999999999999999999999", {}, 400, "cluster_id"),
        ("/api/v1/articles/0", {}, 400, "article_id"),
        ("/api/v1/articles/424242", {}, 404, "no article with id 424242"),
        ("/api/v1/speakers/nobody-at-all", {}, 404, "no speaker"),
        ("/api/v1/speakers/" + "x" * 300, {}, 400, "key"),
        ("/api/v1/jobs/77777", {}, 404, "no job with id 77777"),
        ("/api/v1/feeds", {"state": "sleepy"}, 400, "state"),
        ("/api/v1/nothing-here", {}, 404, "no page at /api/v1/nothing-here"),
        ("/api/v1/claims.xml", {}, 400, "fmt"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: TestClient, path: str, params: dict[str, Any], status: int, says: str
) -> None:
    resp = client.get(path, params=params)
    assert resp.status_code == status, resp.text
    assert says in resp.json()["error"]
    assert "Traceback" not in resp.text


def test_a_cursor_of_another_list_is_refused(client: TestClient) -> None:
    cursor = client.get("/api/v1/clusters", params={"limit": 1}).json()["next_cursor"]
    assert cursor
    resp = client.get("/api/v1/claims", params={"cursor": cursor})
    assert resp.status_code == 400
    assert "not one of the claims list" in resp.json()["error"]


def test_cluster_tells_verbatim_reworded_and_copies_in_time_order(
    client: TestClient, store: tuple[Any, Seeded]
) -> None:
    _, seeded = store
    body = client.get(f"/api/v1/clusters/{seeded.cluster_id}").json()
    assert body["speaker"] == "Maria Novak" and body["n_outlets"] == 4
    assert body["first_outlet"] == "northern-herald.example"
    members = body["members"]
    assert [m["outlet"] for m in members] == seeded.outlets
    assert [m["wording"] for m in members] == ["verbatim", "verbatim", "reworded", "copy"]
    assert members[0]["first"] and not any(m["first"] for m in members[1:])
    assert members[3]["article_id"] == seeded.copy_article_id
    times = [m["published_at"] for m in members]
    assert times == sorted(times)


def test_article_has_text_claim_offsets_and_its_duplicate_group(
    client: TestClient, store: tuple[Any, Seeded]
) -> None:
    _, seeded = store
    body = client.get(f"/api/v1/articles/{seeded.first_article_id}").json()
    claim = body["claims"][0]
    assert body["text"][claim["start"] : claim["end"]] == CLAIM
    group = {a["id"]: a["canonical"] for a in body["duplicate_group"]}
    assert group == {seeded.first_article_id: True, seeded.copy_article_id: False}
    assert body["feeds"][0]["title"] == "Northern Herald"
    assert "raw" not in json.dumps(sorted(body))  # no raw page, no archive key
    hostile = client.get(f"/api/v1/articles/{seeded.hostile_article_id}").json()
    assert hostile["title"] == XSS_TITLE  # JSON carries the data as it is


def test_lists_of_clusters_speakers_articles_feeds_jobs(
    client: TestClient, store: tuple[Any, Seeded]
) -> None:
    _, seeded = store
    clusters = client.get("/api/v1/clusters", params={"min_outlets": 2}).json()["items"]
    assert [c["id"] for c in clusters] == [seeded.cluster_id]
    assert ids(client.get("/api/v1/clusters", params={"speaker": "Maria Novak"})) == [
        seeded.cluster_id
    ]
    speakers = client.get("/api/v1/speakers").json()["items"]
    keys = [s["key"] for s in speakers]
    assert keys == sorted(keys) and "novak" in keys
    novak = client.get("/api/v1/speakers/novak").json()
    assert novak["n_clusters"] == 1 and novak["clusters"][0]["id"] == seeded.cluster_id
    arts = client.get("/api/v1/articles", params={"outlet": "aggregator.example"}).json()
    assert [a["id"] for a in arts["items"]] == [seeded.copy_article_id]
    feeds = client.get("/api/v1/feeds").json()["items"]
    assert [f["state"] for f in feeds] == ["active", "failing", "paused"]
    jobs = client.get("/api/v1/jobs").json()["items"]
    assert jobs[0]["id"] == seeded.job_id and jobs[0]["done"] == 2 and jobs[0]["pending"] == 2
    status = client.get("/api/v1/status").json()
    assert status["claims"] == 5 and status["articles"]["processed"] == 6


def test_a_feeds_next_poll_is_worked_out_when_the_page_is_made(
    client: TestClient, store: tuple[Any, Seeded]
) -> None:
    """The database keeps when a failing feed is polled again; the feeds and status
    pages say how far off it is as they are made ("in 1h 4m", the time itself on
    hover), not a sentence stored with the error that was still read hours later."""
    from datetime import timedelta

    from schemas.models import Feed
    from schemas.types import utcnow

    _, seeded = store
    failing = seeded.feed_ids[1]
    with unit_of_work() as s:
        s.execute(
            update(Feed)
            .where(Feed.id == failing)  # type: ignore[arg-type]
            .values(next_poll_at=utcnow() + timedelta(minutes=95))
        )
    for page in ("/feeds", "/status"):
        html = client.get(page).text
        assert re.search(r">in 1h 3\dm</span>", html), page  # 1h 34m, or a minute less
        assert "next poll in" not in html


def test_downloads_hold_exactly_the_filtered_list(client: TestClient) -> None:
    listed = ids(client.get("/api/v1/claims", params={"q": "steelworks", "limit": 500}))
    resp = client.get("/api/v1/claims.jsonl", params={"q": "steelworks"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in resp.headers["content-disposition"]
    assert [json.loads(line)["id"] for line in resp.text.splitlines()] == listed
    resp = client.get("/api/v1/claims.csv", params={"q": "steelworks"})
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [int(r["id"]) for r in rows] == listed
    assert rows[0]["speaker"] and rows[0]["outlet"]
    feeds = list(csv.DictReader(io.StringIO(client.get("/api/v1/feeds.csv").text)))
    assert len(feeds) == 3 and feeds[0]["tags"] == "[]"
    # a cell that a spreadsheet would run as a formula is kept as text
    errors = [r["last_error"] for r in feeds]
    assert all(not (e or "").startswith(("=", "+", "@")) for e in errors)


def test_a_download_crosses_many_pages_in_order(
    client: TestClient, store: tuple[Any, Seeded]
) -> None:
    settings, seeded = store
    rows = [
        dict(
            article_id=seeded.first_article_id,
            speaker="Bulk Speaker",
            speaker_resolved="Bulk Speaker",
            verb="said",
            kind="indirect",
            text=f"bulk claim number {i}",
            start=i,
            end=i + 1,
            sentence=f"Bulk Speaker said bulk claim number {i}.",
            extractor_version="rules-test",
        )
        for i in range(2500)
    ]
    with unit_of_work(settings) as s:
        s.execute(insert(Claim), rows)
    resp = client.get("/api/v1/claims.jsonl", params={"q": "bulk"})
    got = [json.loads(line)["id"] for line in resp.text.splitlines()]
    assert len(got) == 2500 and len(set(got)) == 2500
    assert got == sorted(got, reverse=True)


def test_search_index_follows_inserts_updates_and_deletes(
    client: TestClient, store: tuple[Any, Seeded]
) -> None:
    settings, seeded = store
    c1 = seeded.claim_ids[0]
    with unit_of_work(settings) as s:
        s.execute(update(Claim).where(Claim.id == c1).values(text="the foundry will close"))
    assert c1 in ids(client.get("/api/v1/claims", params={"q": "foundry"}))
    # the sentence still says steelworks; the content does not
    assert ids(client.get("/api/v1/claims", params={"q": "steelworks"}))[-1] == c1
    with unit_of_work(settings) as s:
        s.execute(update(Claim).where(Claim.id == c1).values(sentence="Nothing."))
    assert c1 not in ids(client.get("/api/v1/claims", params={"q": "steelworks"}))
    c2 = seeded.claim_ids[1]
    assert ids(client.get("/api/v1/claims", params={"q": "reporters"})) == [c2]
    with unit_of_work(settings) as s:
        article = s.get(Claim, c2).article_id  # type: ignore[union-attr]
        s.execute(delete(Article).where(Article.id == article))  # its claims go with it
    assert ids(client.get("/api/v1/claims", params={"q": "reporters"})) == []


# ---------------------------------------------------------------------------- writes


def test_writes_need_the_bearer_token(client: TestClient, store: tuple[Any, Seeded]) -> None:
    _, seeded = store
    body = {"urls": ["https://example.com/feed.xml"]}
    assert client.post("/api/v1/feeds", json=body).status_code == 401
    bad = client.post("/api/v1/feeds", json=body, headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401 and "token" in bad.json()["error"]
    assert bad.headers["www-authenticate"] == "Bearer"
    feed = seeded.feed_ids[0]
    assert client.post(f"/api/v1/feeds/{feed}/pause").status_code == 401
    assert client.post(f"/api/v1/jobs/{seeded.job_id}/cancel").status_code == 401
    assert client.post("/api/v1/jobs", json={"kind": "reprocess"}).status_code == 401


def test_feeds_added_through_the_network_guard(client: TestClient) -> None:
    refused = client.post(
        "/api/v1/feeds", json={"urls": ["http://127.0.0.1:9/feed.xml"]}, headers=AUTH
    )
    assert refused.status_code == 400
    assert "private or reserved address" in refused.json()["error"]
    metadata = client.post(
        "/api/v1/feeds", json={"urls": ["http://169.254.169.254/latest"]}, headers=AUTH
    )
    assert metadata.status_code == 400
    scheme = client.post("/api/v1/feeds", json={"urls": ["javascript:alert(1)"]}, headers=AUTH)
    assert scheme.status_code == 400
    # nothing was added by the refused requests
    assert len(client.get("/api/v1/feeds").json()["items"]) == 3
    empty = client.post("/api/v1/feeds", json={"urls": []}, headers=AUTH)
    assert empty.status_code == 400


def test_feed_actions_and_opml_import(
    client: TestClient, store: tuple[Any, Seeded], configure: Any
) -> None:
    _, seeded = store
    feed = seeded.feed_ids[0]
    assert client.post(f"/api/v1/feeds/{feed}/pause", headers=AUTH).json()["state"] == "paused"
    assert client.post(f"/api/v1/feeds/{feed}/resume", headers=AUTH).json()["state"] == "active"
    assert client.post(f"/api/v1/feeds/{feed}/poll", headers=AUTH).status_code == 200
    assert client.post(f"/api/v1/feeds/{feed}/explode", headers=AUTH).status_code == 400
    assert client.post("/api/v1/feeds/99999/pause", headers=AUTH).status_code == 404
    opml = (
        b'<?xml version="1.0"?><opml version="2.0"><body>'
        b'<outline text="One" xmlUrl="http://127.0.0.1/private.xml"/>'
        b'<outline text="Two" xmlUrl="ftp://example.com/x"/></body></opml>'
    )
    resp = client.post(
        "/api/v1/feeds/import",
        content=opml,
        headers={**AUTH, "content-type": "text/x-opml"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["added"] == [] and len(resp.json()["invalid"]) == 2
    junk = client.post(
        "/api/v1/feeds/import", content=b"not xml", headers={**AUTH, "content-type": "text/x-opml"}
    )
    assert junk.status_code == 400 and "OPML" in junk.json()["error"]


def test_jobs_start_pause_resume_cancel(client: TestClient) -> None:
    urls = ["http://127.0.0.2:9/a.html", "http://127.0.0.2:9/b.html"]
    resp = client.post("/api/v1/jobs", json={"kind": "backfill_urls", "urls": urls}, headers=AUTH)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["kind"] == "backfill_urls" and job["discovered"] == 2
    assert job["state"] in ("queued", "running")
    jid = job["id"]
    assert client.post(f"/api/v1/jobs/{jid}/pause", headers=AUTH).json()["state"] == "paused"
    assert client.post(f"/api/v1/jobs/{jid}/resume", headers=AUTH).json()["state"] in (
        "queued",
        "running",
    )
    assert client.post(f"/api/v1/jobs/{jid}/cancel", headers=AUTH).json()["state"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{jid}/cancel", headers=AUTH)
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]
    bad = client.post("/api/v1/jobs", json={"kind": "backfill_feed"}, headers=AUTH)
    assert bad.status_code == 400 and "which feeds" in bad.json()["error"]
    bad = client.post(
        "/api/v1/jobs",
        json={"kind": "backfill_feed", "feeds": ["1"], "since": "yesterday"},
        headers=AUTH,
    )
    assert bad.status_code == 400 and "since: not a date" in bad.json()["error"]
    bad = client.post("/api/v1/jobs", json={"kind": "explode"}, headers=AUTH)
    assert bad.status_code == 400
    private = client.post(
        "/api/v1/jobs", json={"kind": "backfill_urls", "urls": ["http://10.0.0.1/x"]}, headers=AUTH
    )
    assert private.status_code == 400 and "private" in private.json()["error"]
    done = client.post(
        "/api/v1/jobs", json={"kind": "reprocess", "outlet": "nowhere.example"}, headers=AUTH
    )
    assert done.status_code == 201 and done.json()["discovered"] == 0


def test_openapi_schema_and_docs_page(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    for path in (
        "/api/v1/claims",
        "/api/v1/clusters/{cluster_id}",
        "/api/v1/feeds",
        "/api/v1/jobs",
    ):
        assert path in schema["paths"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "/api/v1/claims" in docs.text and "min_outlets" in docs.text
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text


def test_search_gives_the_same_rows_whichever_way_it_runs(
    client: TestClient, store: tuple[Any, Seeded], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query takes another path for a small outlet (SQLite) and for rare words once
    the table has statistics (PostgreSQL): the rows must not change."""
    from sqlalchemy import text

    from worker.claims import fulltext

    settings, _ = store
    queries: list[dict[str, Any]] = [
        {"q": "steelworks"},
        {"q": "steelworks", "outlet": "dailyledger.example"},
        {"q": "harbour", "outlet": "dailyledger.example"},
        {"q": '"reopen by spring"'},
        {"q": "steelw*", "speaker": "novak"},
        {"q": "korlin", "limit": 1},
    ]
    before = [ids(client.get("/api/v1/claims", params=q)) for q in queries]
    assert all(before[:4])
    monkeypatch.setattr(fulltext, "SMALL_OUTLET_ARTICLES", 0)  # SQLite: never small
    monkeypatch.setattr(fulltext, "RARE_MATCHES", 10**9)  # PostgreSQL: always rare
    with unit_of_work(settings) as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("ANALYZE claim"))
    fulltext._pg_stats.clear()
    after = [ids(client.get("/api/v1/claims", params=q)) for q in queries]
    assert after == before
    # PostgreSQL reads the matches of a search with many in windows of claim ids, newest
    # first (here windows of one and three ids, then the rest): the same rows and pages
    walk = {"q": "steelworks", "limit": 1}
    pages_before = every_id(client, walk)
    assert len(pages_before) >= 3
    monkeypatch.setattr(fulltext, "_pg_estimate", lambda *_: fulltext._Estimate(1, 1, 1, 1))
    monkeypatch.setattr(fulltext, "_pg_windows", lambda _estimate, _limit: [1, 3])
    windowed = [ids(client.get("/api/v1/claims", params=q)) for q in queries]
    assert windowed == before
    assert every_id(client, walk) == pages_before


def every_id(client: TestClient, params: dict[str, Any]) -> list[int]:
    body = client.get("/api/v1/claims", params=params).json()
    seen = [row["id"] for row in body["items"]]
    while body["next_cursor"]:
        body = client.get("/api/v1/claims", params={**params, "cursor": body["next_cursor"]}).json()
        seen += [row["id"] for row in body["items"]]
    return seen


def test_a_day_only_time_is_shown_as_a_date_not_as_midnight(
    client: TestClient, store: tuple[Any, Seeded]
) -> None:
    """A page that gave only its day (issue 15's precision) is shown with its date alone,
    on the article page and in the API; a time to the minute keeps its hour."""
    from sqlalchemy import update

    from schemas.models import Article
    from worker.core.db import unit_of_work

    settings, seeded = store
    aid = seeded.first_article_id
    page = client.get(f"/articles/{aid}").text
    assert 'title="the date only' not in page
    with unit_of_work(settings) as s:
        s.execute(update(Article).where(Article.id == aid).values(published_precision="day"))
    body = client.get(f"/api/v1/articles/{aid}").json()
    assert body["published_precision"] == "day"
    page = client.get(f"/articles/{aid}").text
    day = body["published_at"][:10]
    assert f'<time datetime="{day}" title="the date only' in page
