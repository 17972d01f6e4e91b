"""Reprocessing from the archive (SQLite, in-process, real claim extraction): after the
claims extractor's version changes, `reprocess --older-extractor` rewrites every
claim with the new version, duplicates none, refetches nothing, and a second run has
nothing left to do."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlmodel import col, func, select

from schemas.models import Article, Claim, ClaimCluster, DedupBand, JobItem
from tests.test_backfill_helpers import job_row, run_items
from worker.testing.content import STORIES, serve_site


def _reprocess(**filters: object) -> int:
    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.reprocess import ReprocessFilter, create_reprocess_job

    with unit_of_work() as s:
        return int(create_reprocess_job(s, ReprocessFilter(**filters), get_settings()).id or 0)  # type: ignore[arg-type]


def _claims() -> list[Claim]:
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        return list(s.exec(select(Claim).order_by(col(Claim.article_id), col(Claim.start))).all())


def test_reprocess_after_extractor_bump_rewrites_claims_once(
    configure, server, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure()
    serve_site(server)
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.discovery import create_urls_job

    init_db()
    urls = [server.url(f"/news/{slug}") for slug, *_ in STORIES]
    with unit_of_work() as s:
        first = int(create_urls_job(s, urls, get_settings()).job.id or 0)
    run_items(first)
    before = _claims()
    assert before, "the stories carry attributed statements"
    _claim_times_follow_their_articles()
    hits = dict(server.hits)
    with unit_of_work() as s:
        bands_before = s.exec(select(func.count()).select_from(DedupBand)).one()

    import worker.claims
    import worker.claims.attribution

    old = worker.claims.EXTRACTOR_VERSION
    assert _reprocess(older_extractor=True) and job_row(_last_job())["discovered"] == 0
    monkeypatch.setattr(worker.claims, "EXTRACTOR_VERSION", old + "+bumped")
    monkeypatch.setattr(worker.claims.attribution, "EXTRACTOR_VERSION", old + "+bumped")

    job_id = _reprocess(older_extractor=True)
    assert job_row(job_id)["discovered"] == len(STORIES)
    run_items(job_id)
    row = job_row(job_id)
    assert row["state"] == "done" and row["done"] == len(STORIES), row

    after = _claims()
    key = [(c.article_id, c.start, c.end, c.verb, c.text) for c in after]
    assert key == [(c.article_id, c.start, c.end, c.verb, c.text) for c in before]
    assert not [k for k, n in Counter(key).items() if n > 1]
    assert {c.extractor_version for c in after} == {old + "+bumped"}
    assert dict(server.hits) == hits  # nothing fetched again
    with unit_of_work() as s:
        arts = s.exec(select(Article)).all()
        assert {a.state for a in arts} == {"processed"}
        assert {a.claims_version for a in arts} == {old + "+bumped"}
        assert s.exec(select(func.count()).select_from(DedupBand)).one() == bands_before
        # clusters: every claim's cluster exists and counts its articles
        for c in after:
            if c.cluster_id is not None:
                cluster = s.get(ClaimCluster, c.cluster_id)
                assert cluster is not None and cluster.n_articles >= 1

    # Nothing is older any more: a second run selects nothing.
    again = _reprocess(older_extractor=True)
    assert job_row(again)["discovered"] == 0
    # Reprocessing everything once more (no version filter) still duplicates nothing.
    job3 = _reprocess(outlet="127.0.0.1")
    run_items(job3)
    assert len(_claims()) == len(before)
    _claim_times_follow_their_articles()
    # the restart of a reprocess puts the article's (new) time on its claims at once,
    # before its claims step replaces them (cluster pages read the time from the claims)
    from sqlalchemy import update

    from worker.core.settings import get_settings
    from worker.jobs.reprocess import restart_article
    from worker.pipeline import resources

    aid = before[0].article_id
    with unit_of_work() as s:
        s.execute(update(Claim).where(col(Claim.article_id) == aid).values(article_at=None))
    with unit_of_work() as s:
        assert restart_article(s, aid, resources.archive(), get_settings())
        art = s.get(Article, aid)
        assert art is not None and art.state == "extracted"
    _claim_times_follow_their_articles()
    with unit_of_work() as s:
        # the URLs job, the bumped reprocess, the outlet reprocess (the empty ones hold none)
        assert s.exec(select(func.count()).select_from(JobItem)).one() == 3 * len(STORIES)


def _claim_times_follow_their_articles() -> None:
    """Every claim carries its article's time as a cluster page sorts it."""
    from worker.claims.firstseen import page_at
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        rows = s.exec(select(Claim, Article).join(Article)).all()
        assert rows
        for claim, art in rows:
            assert claim.article_at == page_at(art), (claim.id, art.id)


def _last_job() -> int:
    from worker.core.db import unit_of_work
    from worker.jobs import lifecycle

    with unit_of_work() as s:
        return int(lifecycle.list_jobs(s, 1)[0].id or 0)


def test_reprocess_selection_filters(configure, server) -> None:
    configure(extract_claims="false")
    serve_site(server)
    serve_site(server, prefix="/other", site="Other")
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.discovery import create_urls_job
    from worker.jobs.reprocess import ReprocessFilter, count_selection

    init_db()
    urls = [server.url(f"/news/{slug}") for slug, *_ in STORIES]
    with unit_of_work() as s:
        job = int(create_urls_job(s, urls, get_settings()).job.id or 0)
    run_items(job)
    from datetime import datetime, timedelta

    from worker.testing.content import BASE_DAY

    with unit_of_work() as s:  # publication dates as the pages say: hourly from 9:00
        for i, a in enumerate(s.exec(select(Article).order_by(col(Article.id))).all()):
            a.published_at = BASE_DAY + timedelta(hours=i)
    with unit_of_work() as s:
        assert count_selection(s, ReprocessFilter()) == len(STORIES)
        assert count_selection(s, ReprocessFilter(outlet="example.org")) == 0
        assert count_selection(s, ReprocessFilter(states=["failed"])) == 0
        cut = datetime.fromisoformat("2026-03-02T10:30:00+00:00")
        assert count_selection(s, ReprocessFilter(since=cut)) == len(STORIES) - 2
        assert count_selection(s, ReprocessFilter(until=cut)) == 2
    with pytest.raises(ValueError, match="cannot be reprocessed"):
        _reprocess(states=["discovered"])


def _snapshot() -> dict[str, object]:
    """Groups, claims and clusters in terms that survive new row ids."""
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        arts = {a.id: a for a in s.exec(select(Article)).all()}
        url = {i: a.url for i, a in arts.items()}
        canon = {a.url: url.get(a.duplicate_of_id) for a in arts.values()}
        claims = sorted(
            (url[c.article_id], c.start, c.end, c.verb, c.text) for c in s.exec(select(Claim)).all()
        )
        clusters = sorted(
            (c.speaker_key, c.text, c.n_articles, c.n_outlets)
            for c in s.exec(select(ClaimCluster)).all()
        )
        claimless = s.exec(
            select(func.count())
            .select_from(ClaimCluster)
            .where(
                col(ClaimCluster.id).not_in(
                    select(Claim.cluster_id).where(col(Claim.cluster_id).is_not(None))
                )
            )
        ).one()
    return {"canonical": canon, "claims": claims, "clusters": clusters, "claimless": claimless}


def test_reprocess_of_duplicate_groups_keeps_groups_claims_and_clusters(
    configure, server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each story is served twice (two sections, near-duplicates): groups of two, claims
    on the canonical article only, clusters counting both copies. Reprocessing every
    article after a claims extractor bump takes each one out of its group and puts it
    back (a canonical's copy stands in meanwhile): afterwards the same canonicals, the
    same claims (none duplicated, none on a copy) and the same cluster counts."""
    configure()
    serve_site(server)
    serve_site(server, prefix="/copy", site="Harbour Copy")
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.discovery import create_urls_job

    init_db()
    urls = [server.url(f"{pre}/news/{slug}") for pre in ("", "/copy") for slug, *_ in STORIES]
    with unit_of_work() as s:
        first = int(create_urls_job(s, urls, get_settings()).job.id or 0)
    run_items(first)
    before = _snapshot()
    canonical = before["canonical"]
    assert isinstance(canonical, dict)
    copies = {u for u, c in canonical.items() if c is not None}
    assert len(copies) == len(STORIES), canonical  # every story: one canonical, one copy
    assert before["claims"] and not {c[0] for c in before["claims"]} & copies  # type: ignore[union-attr]
    assert any(n == 2 for _k, _t, n, _o in before["clusters"])  # type: ignore[union-attr]
    hits = dict(server.hits)

    import worker.claims
    import worker.claims.attribution

    bumped = worker.claims.EXTRACTOR_VERSION + "+dup"
    monkeypatch.setattr(worker.claims, "EXTRACTOR_VERSION", bumped)
    monkeypatch.setattr(worker.claims.attribution, "EXTRACTOR_VERSION", bumped)
    job_id = _reprocess(older_extractor=True, states=["processed"])
    # canonicals carry claims, copies none: a new claims extractor selects only the
    # canonicals (a copy's claims do not depend on it)
    assert job_row(job_id)["discovered"] == len(STORIES)
    run_items(job_id)
    assert job_row(job_id)["state"] == "done"
    after = _snapshot()
    assert after == before
    assert dict(server.hits) == hits
    with unit_of_work() as s:
        arts = s.exec(select(Article)).all()
        assert {a.claims_version for a in arts if a.url not in copies} == {bumped}
        assert {c.extractor_version for c in s.exec(select(Claim)).all()} == {bumped}
    # and nothing is left to select
    assert job_row(_reprocess(older_extractor=True))["discovered"] == 0
    # a whole reprocess (no version filter) also gives the same groups and claims
    job_all = _reprocess(states=["processed"])
    assert job_row(job_all)["discovered"] == 2 * len(STORIES)
    run_items(job_all)
    assert _snapshot() == before


def test_older_extractor_skips_demoted_copies_of_a_fresh_run(configure, server) -> None:
    """Audit MEDIUM 7: a canonical article demoted to a copy by an earlier-published one
    arriving later loses its claims and dedup clears its claims_version; right after
    that fresh run `--older-extractor` must select nothing. An article whose text
    an older page extractor produced is selected, alone."""
    configure()
    serve_site(server)
    serve_site(server, prefix="/copy", site="Harbour Copy")
    from datetime import timedelta

    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.discovery import create_urls_job
    from worker.jobs.reprocess import ReprocessFilter, count_selection, selection

    init_db()
    copy_urls = [server.url(f"/copy/news/{slug}") for slug, *_ in STORIES]
    with unit_of_work() as s:
        first = int(create_urls_job(s, copy_urls, get_settings()).job.id or 0)
    run_items(first)
    with unit_of_work() as s:  # the copies turn out to be published a day later
        for a in s.exec(select(Article)).all():
            assert a.claims_status == "extracted" and a.published_at is not None
            a.published_at = a.published_at + timedelta(days=1)
            assert a.published_sort_at is not None  # the order key moves with it
            a.published_sort_at = a.published_sort_at + timedelta(days=1)
    originals = [server.url(f"/news/{slug}") for slug, *_ in STORIES]
    with unit_of_work() as s:
        second = int(create_urls_job(s, originals, get_settings()).job.id or 0)
    run_items(second)
    with unit_of_work() as s:
        arts = s.exec(select(Article)).all()
        demoted = [a for a in arts if a.url.startswith(server.url("/copy/"))]
        assert len(demoted) == len(STORIES)
        # the situation of the audit: copies without a claims version
        assert {(a.claims_status, a.claims_version) for a in demoted} == {("duplicate", None)}
        assert all(a.duplicate_of_id is not None for a in demoted)
        assert count_selection(s, ReprocessFilter(older_extractor=True)) == 0
        assert count_selection(s, ReprocessFilter()) == 2 * len(STORIES)
        older = demoted[0]
        older.extractor_version = "trafilatura-0.0+old"
        older_id = older.id
    with unit_of_work() as s:
        assert list(s.scalars(selection(ReprocessFilter(older_extractor=True)))) == [older_id]


def test_reprocess_selects_by_feed(configure, server) -> None:
    configure(extract_claims="false")
    serve_site(server)
    from schemas.models import Sighting
    from worker.core.db import init_db, insert_ignore, unit_of_work
    from worker.core.settings import get_settings
    from worker.feeds.subscriptions import add_feeds, find_feed
    from worker.jobs.discovery import create_urls_job
    from worker.jobs.reprocess import ReprocessFilter, count_selection, selection

    init_db()
    urls = [server.url(f"/news/{slug}") for slug, *_ in STORIES]
    with unit_of_work() as s:
        job = int(create_urls_job(s, urls, get_settings()).job.id or 0)
        add_feeds(
            s, [(server.url("/a.xml"), None, []), (server.url("/b.xml"), None, [])], get_settings()
        )
    run_items(job)
    with unit_of_work() as s:
        fa, fb = (int(find_feed(s, server.url(p)).id or 0) for p in ("/a.xml", "/b.xml"))
        ids = list(s.exec(select(Article.id).order_by(col(Article.id))).all())
        rows = [dict(article_id=ids[0], feed_id=fa), dict(article_id=ids[1], feed_id=fa)]
        rows.append(dict(article_id=ids[1], feed_id=fb))
        insert_ignore(s, Sighting, rows, ["article_id", "feed_id"])
    with unit_of_work() as s:
        assert list(s.scalars(selection(ReprocessFilter(feed_id=fa)))) == ids[:2]
        assert list(s.scalars(selection(ReprocessFilter(feed_id=fb)))) == ids[1:2]
        assert count_selection(s, ReprocessFilter(feed_id=fb, outlet="example.org")) == 0
