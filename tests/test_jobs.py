"""Jobs in-process (SQLite): items through the whole pipeline, the throttle, a job
interrupted in every intermediate state and resumed (each URL fetched once), pause,
resume, cancel, and the work a job holds back from the live sweep."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, func, select

from schemas.models import Article, Claim, JobItem
from schemas.types import utcnow
from tests.test_backfill_helpers import job_row, run_items, serve_articles


def _urls_job(server, paths: list[str]) -> int:
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.discovery import create_urls_job

    init_db()
    with unit_of_work() as s:
        result = create_urls_job(s, [server.url(p) for p in paths], get_settings())
        return int(result.job.id or 0)


def test_urls_job_runs_every_item_through_the_pipeline(configure, server) -> None:
    configure(extract_claims="false")
    site = serve_articles(server, 12, "u")
    job_id = _urls_job(server, [*site.pages, site.pages[0] + "?utm_source=x"])
    run_items(job_id)
    row = job_row(job_id)
    assert row["state"] == "done"
    assert row["discovered"] == 12  # the tracking-parameter copy is the same article
    assert (row["done"], row["fetched"], row["pending"], row["failed"]) == (12, 12, 0, 0)
    assert all(server.hits[p] == 1 for p in site.pages)
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        states = s.exec(select(Article.state, func.count()).group_by(col(Article.state))).all()
        assert dict(states) == {"processed": 12}
        texts = s.exec(select(Article.text)).all()
        assert all(t and "Reference number" in t for t in texts)


def test_throttle_keeps_at_most_backfill_concurrency_in_flight(configure, server) -> None:
    configure(backfill_concurrency=3)
    site = serve_articles(server, 10, "t")
    job_id = _urls_job(server, site.pages)
    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs import lifecycle

    settings = get_settings()
    with unit_of_work() as s:
        first = lifecycle.advance(s, settings)
    with unit_of_work() as s:
        second = lifecycle.advance(s, settings)  # nothing finished: nothing more goes out
    assert len(first.items) == 3 and second.items == []
    with unit_of_work() as s:
        assert lifecycle.progress(s, job_id, settings).in_flight == 3
    # A second job shares the same budget: as items finish, the room they leave goes
    # round robin to both jobs, and the total in flight stays at 3.
    job2 = _urls_job(server, [p + "?v=2" for p in site.pages[:4]])
    from tasks.job_steps import process_item

    for jid, aid in first.items:
        process_item(jid, aid)
    with unit_of_work() as s:
        one = lifecycle.progress(s, job_id, settings).in_flight
        two = lifecycle.progress(s, job2, settings).in_flight
        assert lifecycle.advance(s, settings).items == []
    assert one + two == 3 and one >= 1 and two >= 1


def test_interrupted_job_resumes_and_fetches_each_url_once(configure, server) -> None:
    """Half the items done; the others left as a killed worker leaves them: dispatched
    (lease running) with their articles in every intermediate state. After a restart
    (reclaim) the job finishes; no page is fetched twice, no row duplicated."""
    configure(extract_claims="false")
    site = serve_articles(server, 20, "k")
    job_id = _urls_job(server, site.pages)
    run_items(job_id, limit=10)

    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs import lifecycle
    from worker.pipeline.steps import step_for

    settings = get_settings()
    with unit_of_work() as s:
        pending = s.exec(
            select(JobItem.article_id)
            .where(JobItem.job_id == job_id, JobItem.state == "pending")
            .order_by(col(JobItem.id))
        ).all()
    assert len(pending) == 10
    # Leave items mid-way: 0..3 steps done, then "crash" (the lease is still running).
    for n, aid in enumerate(pending):
        for _ in range(n % 4):
            with unit_of_work() as s:
                state = s.get(Article, aid).state  # type: ignore[union-attr]
                step = step_for(state)
                assert step is not None
                step.run(s, aid, settings)
        with unit_of_work() as s:
            item = s.exec(select(JobItem).where(JobItem.article_id == aid)).one()
            item.updated_at = utcnow()
    with unit_of_work() as s:
        mid = {a.state for a in s.exec(select(Article).where(col(Article.id).in_(pending)))}
        assert mid == {"discovered", "fetched", "extracted", "deduplicated"}
        # while the leases run, nothing is sent again (no duplicate work) ...
        assert lifecycle.advance(s, settings).items == []
    # ... and a restart reclaims them at once
    with unit_of_work() as s:
        plan = lifecycle.advance(s, settings, reclaim=True)
    assert len(plan.items) == settings.backfill_concurrency
    from tasks.job_steps import process_item

    for jid, aid in plan.items:
        process_item(jid, aid)
    run_items(job_id)
    row = job_row(job_id)
    assert row["state"] == "done" and row["done"] == 20, row
    assert {p: server.hits[p] for p in site.pages} == dict.fromkeys(site.pages, 1)
    with unit_of_work() as s:
        assert s.exec(select(func.count()).select_from(Article)).one() == 20
        assert s.exec(select(func.count()).select_from(JobItem)).one() == 20


def test_pause_resume_cancel(configure, server) -> None:
    configure(extract_claims="false")
    site = serve_articles(server, 8, "p")
    job_id = _urls_job(server, site.pages)
    from tasks.job_steps import process_item
    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs import lifecycle

    settings = get_settings()
    from worker.reports.status import pending_work, pending_work_at_most

    with unit_of_work() as s:
        plan = lifecycle.advance(s, settings)
    with unit_of_work() as s:
        lifecycle.pause(s, job_id)
    # messages already sent for a paused job do nothing and give their item back
    for jid, aid in plan.items:
        assert process_item(jid, aid) is None
    with unit_of_work() as s:
        assert lifecycle.advance(s, settings).items == []
        assert lifecycle.progress(s, job_id, settings).in_flight == 0
        assert pending_work(s) == 0  # run --until-idle does not wait for it
        assert pending_work_at_most(s, 50) == 0
    assert not any(server.hits[p] for p in site.pages)

    with unit_of_work() as s:
        lifecycle.resume(s, job_id)
    run_items(job_id, limit=3)
    with unit_of_work() as s:
        lifecycle.cancel(s, job_id)
    row = job_row(job_id)
    assert row["state"] == "cancelled" and row["done"] == 3
    with unit_of_work() as s:
        # the five articles it never started are forgotten; the three done stay
        assert s.exec(select(func.count()).select_from(Article)).one() == 3
        assert lifecycle.jobs_pending_work(s) == 0
        assert lifecycle.advance(s, settings).items == []
    import pytest

    with unit_of_work() as s, pytest.raises(lifecycle.JobStateError):
        lifecycle.resume(s, job_id)


def test_held_articles_are_left_to_the_job(configure, server) -> None:
    """Articles of pending items are the job's: the live pipeline's pending count does
    not count them twice and the sweep filter names them (see docs/backfill.md)."""
    configure()
    site = serve_articles(server, 5, "h")
    job_id = _urls_job(server, site.pages)
    from worker.core.db import unit_of_work
    from worker.jobs import lifecycle
    from worker.pipeline.sweep import held_article_ids
    from worker.reports.status import pending_work, pending_work_at_most

    with unit_of_work() as s:
        held = set(s.exec(held_article_ids()).all())
        assert len(held) == 5
        # queued job: 1 for the job + 5 items; articles not counted a second time
        assert pending_work(s) == 6
        # the watcher's bounded count: the same up to its bound, the bound beyond it
        assert [pending_work_at_most(s, n) for n in (50, 6, 4, 1)] == [6, 6, 4, 1]
        lifecycle.pause(s, job_id)
    with unit_of_work() as s:
        assert len(set(s.exec(held_article_ids()).all())) == 5  # paused still holds
        assert pending_work(s) == 0
        assert pending_work_at_most(s, 50) == 0


def test_already_processed_articles_are_not_fetched_again(configure, server) -> None:
    configure(extract_claims="false")
    site = serve_articles(server, 4, "again")
    first = _urls_job(server, site.pages)
    run_items(first)
    second = _urls_job(server, site.pages)
    run_items(second)
    assert job_row(second)["done"] == 4
    assert all(server.hits[p] == 1 for p in site.pages)
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        assert s.exec(select(func.count()).select_from(Claim)).one() == 0


def test_robots_and_errors_end_items_as_skipped_or_failed(configure, server) -> None:
    from worker.testing.server import Reply

    configure(extract_claims="false")
    site = serve_articles(server, 2, "ok")
    server.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nDisallow: /private/\n", content_type="text/plain"
    )
    server.routes["/gone"] = Reply(410, b"gone")
    job_id = _urls_job(server, [*site.pages, "/private/x", "/gone"])
    run_items(job_id)
    row = job_row(job_id)
    assert (row["done"], row["skipped"], row["failed"], row["state"]) == (2, 1, 1, "done")
    assert server.hits["/private/x"] == 0


def test_job_timestamps(configure, server) -> None:
    configure(extract_claims="false")
    site = serve_articles(server, 2, "ts")
    job_id = _urls_job(server, site.pages)
    run_items(job_id)
    row = job_row(job_id)
    assert row["started_at"] and row["finished_at"]
    assert row["finished_at"] >= row["started_at"] >= row["created_at"]


def test_item_whose_article_the_live_pipeline_finished_ends_at_the_next_round(
    configure, server
) -> None:
    """An item in flight whose article another worker finished (the live pipeline took
    it from a poll while the item's task found the article's row locked) is finished by
    the next scheduling round, not after its lease runs out (``stale_after``)."""
    configure(extract_claims="false", stale_after=3600)
    site = serve_articles(server, 3, "live")
    job_id = _urls_job(server, site.pages)
    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs import lifecycle
    from worker.pipeline.steps import step_for

    settings = get_settings()
    with unit_of_work() as s:
        plan = lifecycle.advance(s, settings)
    assert len(plan.items) == 2  # backfill_concurrency
    (_, live_aid), (_, other) = plan.items
    # The live pipeline runs the first article to the end; the item's message finds it
    # locked (PostgreSQL) and leaves it, so the item stays pending with a running lease.
    for _ in range(4):
        with unit_of_work() as s:
            article = s.get(Article, live_aid)
            assert article is not None
            step = step_for(article.state)
            assert step is not None
            step.run(s, live_aid, settings)
    with unit_of_work() as s:
        assert s.get(Article, live_aid).state == "processed"  # type: ignore[union-attr]
        assert lifecycle.progress(s, job_id, settings).in_flight == 2
        plan = lifecycle.advance(s, settings)
    row = job_row(job_id)
    assert (row["done"], row["pending"]) == (1, 2), row
    # the room it left goes to the third article; the second is still in flight
    with unit_of_work() as s:
        ids = set(s.exec(select(JobItem.article_id).where(JobItem.job_id == job_id)).all())
    assert plan.items == [(job_id, (ids - {live_aid, other}).pop())]


def test_operation_tasks_create_and_steer_jobs(configure, server) -> None:
    """The task bodies other systems call (see docs/backfill.md), run in-process: each
    start task creates its job and returns its id; pause/resume/cancel steer it; bad
    arguments fail the call without creating a job."""
    import pytest

    from tasks import operations as job_tasks
    from tests.test_backfill_helpers import DAY0, serve_atom_archive, serve_sitemaps
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.feeds.subscriptions import FeedNotFound, add_feeds
    from worker.jobs import lifecycle

    configure(extract_claims="false")
    init_db()
    site = serve_articles(server, 6, "op")
    feed_url = serve_atom_archive(server, site, per_page=3)
    serve_sitemaps(server, site, old_before=DAY0 + timedelta(days=2))
    with unit_of_work() as s:
        add_feeds(s, [(feed_url, None, [])], get_settings())

    a = job_tasks.start_backfill_feed([feed_url], "2026-01-01", "2026-12-31", True)
    b = job_tasks.start_backfill_sitemap(server.url("/"), since="2026-01-03")
    c = job_tasks.start_backfill_urls([server.url(p) for p in site.pages[:2]] + ["nope"])
    run_items(c)
    d = job_tasks.start_reprocess(outlet="127.0.0.1", states=["processed", "failed"])
    e = job_tasks.start_reprocess(feed=feed_url, older_extractor=True)
    assert [a, b, c, d, e] == [1, 2, 3, 4, 5]
    with pytest.raises(FeedNotFound):
        job_tasks.start_backfill_feed(["https://unknown.example/feed"], "2026-01-01")
    with pytest.raises(ValueError, match="cannot be reprocessed"):
        job_tasks.start_reprocess(states=["discovered"])
    with pytest.raises(ValueError):
        job_tasks.start_backfill_sitemap(server.url("/"), since="last week")

    with unit_of_work() as s:
        got = {j.id: j for j in lifecycle.list_jobs(s)}
        assert sorted(got) == [1, 2, 3, 4, 5]  # the failed calls left nothing behind
        assert got[1].params["feeds"] == [1] and got[1].params["include_undated"] is True
        assert got[1].params["until"].startswith("2026-12-31")
        assert got[2].params["since"].startswith("2026-01-03")
        assert (got[3].state, got[3].params["invalid"]) == ("done", 1)
        assert got[4].params["states"] == ["processed", "failed"]
        assert lifecycle.progress(s, 4, get_settings()).discovered == 2
        assert got[5].params["feed"] == 1 and got[5].params["older_extractor"] is True
        assert got[1].state == "running"  # started at once, not at the next tick

    assert job_tasks.pause_job(a) == a
    with unit_of_work() as s:
        assert lifecycle.get_job(s, a).state == "paused"
    job_tasks.resume_job(a)
    with unit_of_work() as s:
        assert lifecycle.get_job(s, a).state == "running"
    job_tasks.cancel_job(a)
    with unit_of_work() as s:
        assert lifecycle.get_job(s, a).state == "cancelled"
    with pytest.raises(lifecycle.JobStateError):
        job_tasks.resume_job(a)
