"""Search of the web view on a real SQLite file and a real PostgreSQL database: best
match first and a cursor that stays right while claims arrive, diacritics folded alike
on both databases, claims of one speaker by key, and reads stopped after their time
limit with a clear 503."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from schemas.models import Article, Claim, ClaimCluster
from tests.support.webdata import BIG_T0, big_cluster
from worker.claims.clustering import speaker_key
from worker.claims.firstseen import page_at
from worker.core.db import init_db, unit_of_work
from worker.network.urls import url_hash

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, configure: Any) -> Any:
    overrides: dict[str, Any] = {}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    s = configure(**overrides)
    init_db(s)
    return s


@pytest.fixture()
def client(settings: Any) -> Iterator[TestClient]:
    from worker.web.webapp import create_app

    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
        yield c


_n = 0


def add_claim(
    settings: Any,
    speaker: str,
    content: str,
    before: str = "",
    *,
    host: str = "example.org",
    cluster: bool = True,
) -> int:
    """One article with one claim (its sentence: ``before`` + speaker + said + content),
    in a cluster of its own keyed like claimwire keys speakers."""
    global _n
    _n += 1
    sentence = f"{before} {speaker} said {content}.".strip()
    with unit_of_work(settings) as s:
        url = f"https://{host}/story/{_n}"
        art = Article(
            url=url,
            url_hash=url_hash(url),
            host=host,
            state="processed",
            title=f"Story {_n}",
            text=sentence,
            published_at=T0 + timedelta(hours=_n),
            discovered_at=T0 + timedelta(hours=_n),
            language="en",
        )
        s.add(art)
        s.flush()
        cluster_id = None
        if cluster:
            cl = ClaimCluster(
                speaker_key=speaker_key(speaker),
                speaker=speaker,
                text=content,
                first_seen_at=art.published_at,
                first_article_id=art.id,
                n_articles=1,
                n_outlets=1,
            )
            s.add(cl)
            s.flush()
            cluster_id = cl.id
        start = sentence.index(content)
        claim = Claim(
            article_id=int(art.id or 0),
            speaker=speaker,
            speaker_resolved=speaker,
            verb="said",
            kind="indirect",
            text=content,
            start=start,
            end=start + len(content),
            sentence=sentence,
            extractor_version="test",
            cluster_id=cluster_id,
            article_at=page_at(art),
        )
        s.add(claim)
        s.flush()
        return int(claim.id or 0)


def ids(resp: Any) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [row["id"] for row in resp.json()["items"]]


def every_page(client: TestClient, url: str, between: Any = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    nxt: str | None = url
    while nxt:
        body = client.get(nxt).json()
        rows += body["items"]
        nxt = body["next"]
        if between is not None and nxt:
            between()
    return rows


def test_best_match_first_then_newest_and_a_cursor_stable_under_inserts(
    settings: Any, client: TestClient
) -> None:
    # in the claim's own words
    in_claim = [
        add_claim(settings, "Maria Novak", "the ferry fares will fall in March"),
        add_claim(settings, "Ivo Brandt", "ferry fares rose twice", before="At the port,"),
        add_claim(settings, "Lena Vos", "fares on the ferry are too high"),
    ]
    # "ferry" only in the sentence around the claim
    in_sentence = [
        add_claim(settings, "Ivo Brandt", "fares will fall", before="On the ferry,"),
        add_claim(settings, "Maria Novak", "the fares are fair", before="Asked about ferry"),
    ]
    add_claim(settings, "Lena Vos", "the bridge toll will stay")  # neither
    first = client.get("/api/v1/claims", params={"q": "ferry fares"}).json()["items"]
    assert [r["id"] for r in first] == in_claim[::-1] + in_sentence[::-1]
    assert [r["match"] for r in first] == ["content"] * 3 + ["sentence"] * 2
    # no search: newest first, no match
    plain = client.get("/api/v1/claims").json()["items"]
    assert [r["id"] for r in plain] == sorted((r["id"] for r in plain), reverse=True)
    assert {r["match"] for r in plain} == {None}

    # page by page (one row a page) while claims of both kinds keep arriving: every
    # claim there at the start is shown once, in the order of the first answer
    arrivals: list[int] = []

    def arrive() -> None:
        n = len(arrivals)
        if n % 2:
            arrivals.append(add_claim(settings, "Ivo Brandt", f"ferry fares up {n}"))
        else:
            arrivals.append(add_claim(settings, "Ivo Brandt", f"up {n}", before="Ferry fares:"))

    rows = every_page(client, "/api/v1/claims?q=ferry+fares&limit=1", between=arrive)
    shown = [r["id"] for r in rows]
    assert len(shown) == len(set(shown))  # nothing twice
    old = [i for i in shown if i not in arrivals]
    assert old == [r["id"] for r in first]  # nothing skipped, nothing moved
    # sentence matches that arrived while the content matches were paged are still
    # shown (their tier was not reached yet); content matches that arrived are not
    late = [i for i in shown if i in arrivals]
    assert late and all(r["match"] == "sentence" for r in rows if r["id"] in late)
    # the download gives the same order as the pages
    jsonl = client.get("/api/v1/claims.jsonl", params={"q": "ferry fares"}).text
    import json

    download = [json.loads(line)["id"] for line in jsonl.splitlines()]
    again = [r["id"] for r in every_page(client, "/api/v1/claims?q=ferry+fares&limit=2")]
    assert download == again
    tiers = [r["match"] for r in every_page(client, "/api/v1/claims?q=ferry+fares&limit=3")]
    assert tiers == sorted(tiers)  # every "content" before every "sentence"
    # a phrase is ranked the same way
    phrase = client.get("/api/v1/claims", params={"q": '"ferry fares"', "limit": 500}).json()
    assert in_claim[1] in [r["id"] for r in phrase["items"] if r["match"] == "content"]
    assert [r["match"] for r in phrase["items"]] == sorted(r["match"] for r in phrase["items"])


def test_a_cursor_is_checked(client: TestClient, settings: Any) -> None:
    add_claim(settings, "Maria Novak", "ferry fares will fall")
    add_claim(settings, "Maria Novak", "ferry fares will rise")
    body = client.get("/api/v1/claims", params={"q": "ferry", "limit": 1}).json()
    assert body["next_cursor"]
    resp = client.get("/api/v1/claims", params={"cursor": "WyJjbGFpbXMiLDVd"})  # one key
    assert resp.status_code == 400 and "not one of the claims list" in resp.json()["error"]


def test_diacritics_fold_alike_on_both_databases(settings: Any, client: TestClient) -> None:
    accented = add_claim(settings, "Ana Kovač", "the Šibenik bridge will reopen in Höchst")
    plain = add_claim(settings, "Ana Kovac", "the Sibenik ferry will stop in Hochst")
    for q in ("sibenik", "Šibenik", "ŠIBENIK", "sibe*", "šibe*"):
        assert ids(client.get("/api/v1/claims", params={"q": q})) == [plain, accented], q
    for q in ("hochst", "höchst"):
        assert ids(client.get("/api/v1/claims", params={"q": q})) == [plain, accented], q
    assert ids(client.get("/api/v1/claims", params={"q": '"šibenik bridge"'})) == [accented]
    for name in ("kovac", "Kovač", "ana kovač"):
        assert ids(client.get("/api/v1/claims", params={"speaker": name})) == [
            plain,
            accented,
        ], name
    # folding is no stemming: "bridge" is not "bridges"
    assert ids(client.get("/api/v1/claims", params={"q": "bridges"})) == []


@pytest.mark.postgres
def test_folding_comes_with_the_migration_on_postgres(pg_url: str, configure: Any) -> None:
    """A store created before 0012 is folded by the upgrade, claims already there
    included."""
    from alembic import command

    from worker.core.db import alembic_config, dispose_engines, get_engine

    settings = configure(database_url=pg_url)
    engine = get_engine(settings)
    with engine.connect() as conn:
        cfg = alembic_config(pg_url)
        cfg.attributes["connection"] = conn
        # the revision just before 0012, and a claim written as it was then
        command.upgrade(cfg, "0011_hardening")
        conn.execute(
            text(
                "INSERT INTO article (url, url_hash, host, state, state_changed_at, attempts,"
                " step_starts, discovered_at, categories, tags) VALUES ('https://a.example/1',"
                " 'h1', 'a.example', 'processed', now(), 0, 0, now(), '[]', '[]')"
            )
        )
        claim = conn.execute(
            text(
                "INSERT INTO claim (article_id, speaker, speaker_resolved, verb, kind, text,"
                ' start, "end", sentence, extractor_version, created_at) SELECT id,'
                " 'Ana Kovač', 'Ana Kovač', 'said', 'indirect', 'the Šibenik bridge will reopen',"
                " 0, 1, 'Ana Kovač said the Šibenik bridge will reopen.', 't', now()"
                " FROM article RETURNING id"
            )
        ).scalar_one()
        conn.commit()
    dispose_engines()
    with unit_of_work(settings) as s:
        found = s.execute(
            text("SELECT id FROM claim WHERE search_vector @@ to_tsquery('simple', 'sibenik')")
        ).all()
        assert found == []  # before: not folded
    init_db(settings)
    with unit_of_work(settings) as s:
        found = s.execute(
            text(
                "SELECT id FROM claim WHERE search_vector @@ "
                "to_tsquery('claimwire_search', 'sibenik')"
            )
        ).all()
        assert [r[0] for r in found] == [claim]
        assert s.execute(text("SELECT unaccent('Kovač')")).scalar() == "Kovac"


def test_claims_of_a_speaker_go_by_key(settings: Any, client: TestClient) -> None:
    # one person written three ways; another whose name holds the same words
    novak = [
        add_claim(settings, "Health Minister Maria Novak", "the clinic will open"),
        add_claim(settings, "Maria Novak", "the clinic opens in May"),
        add_claim(settings, "Novak", "the clinic is ready"),
    ]
    other = add_claim(settings, "Novak Petrovic", "the clinic is late")
    assert speaker_key("Novak Petrovic") != speaker_key("Maria Novak")
    key = speaker_key("Maria Novak")
    assert ids(client.get("/api/v1/claims", params={"speaker_key": key})) == novak[::-1]
    assert ids(
        client.get("/api/v1/claims", params={"speaker_key": speaker_key("Novak Petrovic")})
    ) == [other]
    rows = client.get("/api/v1/claims", params={"q": "clinic"}).json()["items"]
    assert {r["id"]: r["speaker_key"] for r in rows} == {
        **{i: key for i in novak},
        other: speaker_key("Novak Petrovic"),
    }
    # the claims page links every speaker to their page by key, not by name
    page = client.get("/claims", params={"q": "clinic"}).text
    assert page.count(f'href="/speakers/{key}"') == 3
    assert page.count(f'href="/speakers/{speaker_key("Novak Petrovic")}"') == 1
    assert "/claims?speaker=" not in page
    # the speaker page gathers the three variants and links to their claims by key
    speaker = client.get(f"/speakers/{key}").text
    assert f'href="/claims?speaker_key={key}"' in speaker
    assert "clinic is late" not in speaker
    for name in ("Health Minister Maria Novak", "Maria Novak", "Novak"):
        assert f"<strong>{name}</strong>" in speaker
    # a claim not clustered yet has no key to link by: its name is shown, unlinked
    loose = add_claim(settings, "Ivo Brandt", "the clinic is small", cluster=False)
    page = client.get("/claims", params={"q": "small clinic"}).text
    assert f'id="claim-{loose}"' in page and "/speakers/brandt" not in page


def test_a_read_past_its_time_limit_is_a_clear_503(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that runs too long is stopped by the database itself (statement_timeout,
    SQLite's progress handler) and answered with 503 and what to do, on pages and API."""
    from worker.web import listings
    from worker.web.reads import QueryTimeout, read_session
    from worker.web.webapp import create_app

    add_claim(settings, "Maria Novak", "the ferry will run")
    postgres = settings.effective_database_url.startswith("postgresql")
    slow = (
        "SELECT pg_sleep(30)"
        if postgres
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT count(*) FROM (SELECT i FROM n LIMIT 1000000000)"
    )
    with (
        pytest.raises(QueryTimeout, match=r"took longer than 0\.2 s"),
        read_session(settings, timeout=0.2) as s,
    ):
        s.execute(text(slow)).all()
    # the connection goes back to the pool without the limit
    with unit_of_work(settings) as s:
        assert s.execute(text("SELECT 1")).scalar() == 1
        if postgres:
            assert s.execute(text("SHOW statement_timeout")).scalar() == "0"

    real = listings.claims_page

    def slow_claims(session: Any, *args: Any) -> Any:
        session.execute(text(slow)).all()
        return real(session, *args)

    monkeypatch.setattr(listings, "claims_page", slow_claims)
    app_settings = settings.model_copy(update={"web_query_timeout": 0.2})
    with TestClient(create_app(app_settings), base_url="http://127.0.0.1:8000") as c:
        api = c.get("/api/v1/claims", params={"q": "ferry"})
        assert api.status_code == 503
        assert "took longer than 0.2 s" in api.json()["error"]
        assert "narrow it" in api.json()["error"]
        page = c.get("/claims", params={"q": "ferry"})
        assert page.status_code == 503 and "took longer than 0.2 s" in page.text
        assert "Traceback" not in page.text
        # other reads are not affected
        assert c.get("/api/v1/clusters").status_code == 200


def test_a_huge_cluster_is_paged_and_its_timeline_bounded(
    settings: Any, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.web import listings

    repeats, outlets = 430, 45
    cid, art_ids = big_cluster(settings, repeats, outlets)
    total = repeats + 2
    # the API: pages of 97 repeats in time order, every repeat once, numbered
    first = client.get(f"/api/v1/clusters/{cid}", params={"limit": 97}).json()
    assert first["n_repeats"] == total
    assert first["counts"] == {"verbatim": 345, "reworded": 85, "copy": 2}
    assert len(first["members"]) == 97 and first["next_cursor"]
    seen: list[dict[str, Any]] = []
    body = first
    while True:
        seen += body["members"]
        if not body["next"]:
            break
        body = client.get(body["next"]).json()
    assert [m["position"] for m in seen] == list(range(1, total + 1))
    assert [m["article_id"] for m in seen[:repeats]] == art_ids
    assert [m["wording"] for m in seen[-2:]] == ["copy", "copy"]
    times = [m["published_at"] for m in seen]
    assert times == sorted(times)
    assert seen[0]["first"] and not any(m["first"] for m in seen[1:])
    # the timeline: the first 30 outlets a row each, the others one row, every repeat
    # counted once; hours, or longer buckets when hours would make too many marks
    timeline = first["timeline"]
    assert timeline["rows"][:30] == [f"o{i}.example" for i in range(30)]
    assert timeline["rows"][30] == "17 other outlets" and len(timeline["rows"]) == 31
    assert sum(c["verbatim"] + c["reworded"] + c["copy"] for c in timeline["cells"]) == total
    assert timeline["bucket_seconds"] == 3600
    monkeypatch.setattr(listings, "CHART_MARKS", 100)
    coarse = client.get(f"/api/v1/clusters/{cid}").json()["timeline"]
    assert coarse["bucket_seconds"] > 3600 and len(coarse["cells"]) <= 100
    assert sum(c["verbatim"] + c["reworded"] + c["copy"] for c in coarse["cells"]) == total
    # the page: one page of repeats, a bounded chart, a link to the next page
    monkeypatch.setattr(listings, "CLUSTER_PAGE", 50)
    page = client.get(f"/clusters/{cid}")
    assert page.status_code == 200
    html = page.text
    assert html.count('<tr id="repeat-') == 50
    assert "Repeats 1–50 of 432" in html
    assert html.count('class="mark ') == len(coarse["cells"])
    assert html.count('class="outlet-label"') == 31
    nxt = client.get(f"/clusters/{cid}", params={"cursor": first_cursor(client, cid, 50)})
    assert 'id="repeat-51"' in nxt.text and 'id="repeat-1"' not in nxt.text
    # a mark of many repeats opens the list at its time
    start = coarse["cells"][3]["start"]
    from_mark = client.get(f"/api/v1/clusters/{cid}", params={"start": start}).json()
    at = from_mark["members"][0]
    assert at["published_at"] >= start
    assert at["position"] == 1 + sum(1 for m in seen if m["published_at"] < start)
    # the counts of a cluster larger than a page are kept between views, until the
    # cluster changes
    with unit_of_work(settings) as s:
        url = "https://late.example/one"
        late = Article(
            url=url,
            url_hash=url_hash(url),
            host="late.example",
            state="processed",
            published_at=T0 + timedelta(days=90),
        )
        s.add(late)
        s.flush()
        s.add(
            Claim(
                article_id=int(late.id or 0),
                speaker="Ivo Brandt",
                speaker_resolved="Ivo Brandt",
                verb="said",
                kind="indirect",
                text="rates will fall",
                start=0,
                end=15,
                sentence="Ivo Brandt said rates will fall.",
                extractor_version="test",
                cluster_id=cid,
                article_at=page_at(late),
            )
        )
    again = client.get(f"/api/v1/clusters/{cid}").json()
    assert again["n_repeats"] == total + 1 and again["counts"]["verbatim"] == 346
    assert "late.example" in again["outlets"]
    # a cluster of many articles is counted by day in the database; the first repeat
    # is still ringed in its day
    monkeypatch.setattr(listings, "BY_DAY_ABOVE", 100)
    monkeypatch.setattr(listings, "CHART_MARKS", 1500)
    listings._summaries.clear()
    daily = client.get(f"/api/v1/clusters/{cid}").json()["timeline"]
    assert daily["bucket_seconds"] == 86400
    assert sum(c["verbatim"] + c["reworded"] + c["copy"] for c in daily["cells"]) == total + 1
    html = client.get(f"/clusters/{cid}").text
    assert html.count('class="first-ring"') == 1 and "a mark per outlet and day" in html
    # cursors of another cluster, malformed starts: 400
    other, _ = big_cluster(settings, 3, 1)
    resp = client.get(f"/api/v1/clusters/{other}", params={"cursor": first["next_cursor"]})
    assert resp.status_code == 400 and "not one of the" in resp.json()["error"]
    resp = client.get(f"/api/v1/clusters/{cid}", params={"start": "soon"})
    assert resp.status_code == 400 and "start: not a date" in resp.json()["error"]


def first_cursor(client: TestClient, cid: int, limit: int) -> str:
    cursor = client.get(f"/api/v1/clusters/{cid}", params={"limit": limit}).json()["next_cursor"]
    assert isinstance(cursor, str)
    return cursor


def test_a_cluster_pages_alike_with_its_copies_kept_or_joined(
    settings: Any, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copies of a cluster larger than a page are kept with its counts; pages read
    from them and pages that join the copies again give the same rows, by cursor and
    from a time, and the same counts and timeline (the kept copies are counted in
    Python, the joined ones in the database), by hour and by day."""
    from worker.web import listings

    cid, _ = big_cluster(settings, 150, 7)
    start = (BIG_T0 + timedelta(days=5)).isoformat()

    def read() -> tuple[list[Any], list[Any], list[Any]]:
        listings._summaries.clear()
        by_cursor = [
            (m["position"], m["article_id"], m["claim_id"], m["copy"], m["published_at"])
            for m in every_member(client, cid)
        ]
        body = client.get(f"/api/v1/clusters/{cid}", params={"start": start}).json()
        from_time = [(m["position"], m["article_id"], m["copy"]) for m in body["members"]]
        summaries = []
        for by_day_above in (10**9, 100):  # counted by hour, then by day
            monkeypatch.setattr(listings, "BY_DAY_ABOVE", by_day_above)
            listings._summaries.clear()
            body = client.get(f"/api/v1/clusters/{cid}", params={"limit": 40}).json()
            summaries.append((body["counts"], body["outlets"], body["timeline"], body["n_repeats"]))
        return by_cursor, from_time, summaries

    kept = read()
    monkeypatch.setattr(listings, "COPIES_KEPT", 0)
    joined = read()
    assert kept == joined
    hourly, daily = kept[2]
    assert hourly[0]["copy"] == 2 and hourly[3] == 152
    assert hourly[2]["bucket_seconds"] < daily[2]["bucket_seconds"] == 86400
    assert len(kept[0]) == 152 and sum(1 for m in kept[0] if m[3]) == 2
    assert [m[0] for m in kept[0]] == list(range(1, 153))
    assert kept[1][0][0] == 1 + sum(1 for m in kept[0] if m[4] < start)


def every_member(client: TestClient, cid: int) -> list[dict[str, Any]]:
    body = client.get(f"/api/v1/clusters/{cid}", params={"limit": 40}).json()
    seen = list(body["members"])
    while body["next"]:
        body = client.get(body["next"]).json()
        seen += body["members"]
    return seen


def test_postgres_reads_the_newest_claims_first_only_when_it_spares_rows() -> None:
    """The id windows of a PostgreSQL search (the rows are the same either way: see
    test_web_api's test_search_gives_the_same_rows_whichever_way_it_runs): for a phrase
    of common words (17,800 rows to recheck for 1,780 matches) the first window holds
    eight pages of matches; none when there are few matches, or too few candidate rows
    to be worth a window of the primary key."""
    from worker.claims.fulltext import _Estimate, _pg_windows

    phrase = _Estimate(matches=2370, joint=1780, candidates=17_800, rows=1_000_000)
    first, wider = _pg_windows(phrase, 51)
    assert first == int(1_000_000 * 8 * 51 / 1780) and wider == 4 * first
    assert _pg_windows(_Estimate(5233, 5233, 5233, 1_000_000), 51)[0] < first
    assert _pg_windows(_Estimate(600, 600, 60_000, 1_000_000), 51) == []  # few matches
    assert _pg_windows(_Estimate(3667, 3667, 3667, 1_000_000), 51) == []  # few rows
    assert _pg_windows(None, 51) == []
