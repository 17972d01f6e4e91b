"""Deduplication with real parallel workers against real PostgreSQL (and Redis).

* separate Python processes (not threads) released together by a barrier, each placing
  one copy of a story in its own transaction;
* two real ``celery worker`` processes consuming dedup and claims tasks for many copies
  of several stories from a real Redis broker: one group per story, its canonical the
  earliest, claims stored for canonicals only, every copy counted as one more outlet;
* a group's canonical demoted by an earlier copy while its own claims step is running:
  the claims that step commits are removed and it is marked a duplicate.

Texts are invented (tests/test_dedup.py). Without PostgreSQL or Redis the tests skip,
unless CI=true (then they fail).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleState, Claim, ClaimCluster, DupGroup
from tests.conftest import ROOT
from tests.support.procs import processes
from tests.test_dedup import (
    BOILER_A_FOOT,
    BOILER_A_HEAD,
    BOILER_B_FOOT,
    BOILER_B_HEAD,
    NEAR_MISS,
    SECOND_STORY,
    STORY,
    T,
    add_article,
    excerpt,
    get,
    long_story,
    stored_claim,
)
from worker.core.db import dispose_engines, get_engine, init_db
from worker.core.settings import Settings, reset_settings
from worker.dedup import deduplicate, sketch
from worker.testing.procs import celery_beat, celery_worker, wait_until, worker_env


@pytest.fixture()
def pg_settings(pg_url: str) -> Iterator[Settings]:
    dispose_engines()
    reset_settings()
    settings = Settings(database_url=pg_url)
    init_db(settings)
    yield settings
    dispose_engines()
    reset_settings()


def variants(story: str) -> list[str]:
    """Exact and near copies of one story as different outlets carry it. Not every two
    are duplicates of each other: for the shorter stories the copies with boilerplate on
    both sides are not (J 0.66 to 0.75), only through the others; they end in one group
    in any order because a text matching two groups merges them."""
    return [
        story,
        f"{BOILER_A_HEAD}\n{story}\n{BOILER_A_FOOT}",
        f"{BOILER_B_HEAD}\n{story}\n{BOILER_B_FOOT}",
        story.upper().replace(".", " ."),
        f"{story}\n{BOILER_B_FOOT}",
        f"{BOILER_B_HEAD}\n{story}",
    ]


def add_copies(settings: Settings, story: str, tag: str) -> tuple[list[int], int]:
    """Copies on six outlets; the earliest published is created last (highest id)."""
    texts = variants(story)
    n = len(texts)
    ids = [
        add_article(
            settings,
            body,
            host=f"{tag}-outlet{i}.example",
            published=T + timedelta(minutes=10 * (n - i)),
        )
        for i, body in enumerate(texts)
    ]
    return ids, ids[-1]


def check_one_group(settings: Settings, ids: list[int], earliest: int) -> int:
    arts = [get(settings, aid) for aid in ids]
    groups = {a.dup_group_id for a in arts}
    assert len(groups) == 1 and None not in groups, groups
    group = groups.pop()
    assert group is not None
    for a in arts:
        expected = None if a.id == earliest else earliest
        assert a.duplicate_of_id == expected, (a.id, a.duplicate_of_id, earliest)
    with Session(get_engine(settings)) as s:
        g = s.get(DupGroup, group)
        assert g is not None and g.canonical_article_id == earliest
        members = s.exec(select(Article.id).where(Article.dup_group_id == group)).all()
        assert sorted(m or 0 for m in members) == sorted(ids)
    return group


# --- separate processes, released together ------------------------------------------------


def _place(url: str, article_id: int, barrier: Any, results: Any) -> None:
    """One process: its own engine and transaction, waiting at the barrier first."""
    settings = Settings(database_url=url)
    engine = get_engine(settings)
    with Session(engine) as s:
        s.execute(text("SELECT 1"))  # connect before the barrier: start together
        barrier.wait(timeout=60)
        out = deduplicate.deduplicate_article(s, article_id, settings)
        s.commit()
    results.put((article_id, out.advanced, out.matched_by, os.getpid()))
    dispose_engines()


def _place_at_once(url: str, ids: list[int]) -> list[tuple[int, bool, str | None, int]]:
    """Place each article from its own spawned process, all released by one barrier;
    the (id, advanced, matched_by, pid) of each."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(ids))
    results = ctx.Queue()
    procs = [ctx.Process(target=_place, args=(url, aid, barrier, results)) for aid in ids]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [results.get(timeout=10) for _ in ids]


@pytest.mark.timeout(600)
def test_separate_processes_placing_copies_at_once_make_one_group(
    pg_settings: Settings,
) -> None:
    url = pg_settings.effective_database_url
    all_groups = set()
    for round_no, story in enumerate((STORY, SECOND_STORY, NEAR_MISS)):
        ids, earliest = add_copies(pg_settings, story, f"r{round_no}")
        got = _place_at_once(url, ids)
        assert all(advanced for _, advanced, _, _ in got)
        assert len({pid for *_, pid in got}) == len(ids)  # really one process each
        # copies that are not duplicates of each other may each start a group before a
        # linking copy merges them; whatever the order, one group remains
        assert sum(1 for _, _, how, _ in got if how is None) >= 1
        all_groups.add(check_one_group(pg_settings, ids, earliest))
    assert len(all_groups) == 3
    with Session(get_engine(pg_settings)) as s:
        assert len(s.exec(select(DupGroup)).all()) == 3


@pytest.mark.timeout(600)
def test_separate_processes_placing_a_story_and_its_excerpt_at_once_make_one_group(
    pg_settings: Settings,
) -> None:
    """A 900-word story, two copies and a 60-word excerpt of it (published first), each
    placed by its own process at the same moment. The excerpt shares no LSH bucket with
    the others: only its sampled shingles' advisory locks order it with them."""
    url = pg_settings.effective_database_url
    for round_no, seed in enumerate((61, 62, 63)):
        story = long_story(seed, 900)
        brief = excerpt(story, 300, 60)
        sk_story, sk_brief = sketch.sketch(story), sketch.sketch(brief)
        assert sk_story.bands is not None and sk_brief.bands is not None
        assert not set(sk_story.bands.tolist()) & set(sk_brief.bands.tolist())
        texts = [story, f"{BOILER_A_HEAD}\n{story}", f"{story}\n{BOILER_B_FOOT}"]
        ids = [
            add_article(
                pg_settings,
                body,
                host=f"x{round_no}-outlet{i}.example",
                published=T + timedelta(minutes=10 * (i + 1)),
            )
            for i, body in enumerate(texts)
        ]
        brief_id = add_article(pg_settings, brief, host=f"x{round_no}-brief.example", published=T)
        ids.append(brief_id)
        got = _place_at_once(url, ids)
        assert all(advanced for _, advanced, _, _ in got)
        check_one_group(pg_settings, ids, brief_id)


# --- two real celery workers ---------------------------------------------------------------


@pytest.mark.timeout(900)
def test_two_celery_workers_make_one_group_per_story_and_claims_once(
    pg_settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    stories = {"strike": STORY, "market": SECOND_STORY, "rewrite": NEAR_MISS}
    placed: dict[str, tuple[list[int], int]] = {
        tag: add_copies(pg_settings, story, tag) for tag, story in stories.items()
    }
    all_ids = sorted(aid for ids, _ in placed.values() for aid in ids)

    base = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
    env = worker_env(
        base,
        pg_settings.effective_database_url,
        redis_url,
        DATA_DIR=str(tmp_path / "data"),
        EXTRACT_CLAIMS="true",
        # the production recovery path runs too: a step message dropped because the
        # article's row was locked (a demotion re-pointing a group's members holds their
        # rows for a moment) is sent again by the sweep
        SWEEP_INTERVAL="2",
        STALE_AFTER="10",
        DISPATCH_INTERVAL="3600",
    )
    workers = [
        celery_worker(name, env, tmp_path, queues="io,cpu", pool="threads", concurrency=4)
        for name in ("w1", "w2")
    ]
    with processes(*workers, celery_beat("beat", env, tmp_path)):
        for w in workers:

            def ready(w: Any = w) -> bool:
                return "ready" in w.log()

            wait_until(ready, 180, what=f"{w.name} ready")
        _send_dedup(env, all_ids, tmp_path)

        seen: list[object] = []

        def all_processed() -> bool:
            try:
                with Session(get_engine(pg_settings)) as s:
                    states = s.exec(select(Article.state).where(col(Article.id).in_(all_ids))).all()
            except Exception as exc:  # shown if the wait fails
                seen[:] = [exc]
                raise
            seen[:] = [sorted(states)]
            return all(st == ArticleState.processed for st in states)

        try:
            wait_until(all_processed, 300, 1.0, "every copy deduplicated and processed")
        except TimeoutError as exc:
            raise AssertionError(f"not all processed; last seen: {seen}") from exc
        logs = {w.name: w.log() for w in workers}
        for w in workers:
            assert w.alive(), w.log()[-3000:]
    # both workers really took part: each ran dedup tasks
    for name, log in logs.items():
        assert "tasks.processing.dedup_article" in log, f"{name} ran no dedup task"

    canonicals = set()
    for ids, earliest in placed.values():
        check_one_group(pg_settings, ids, earliest)
        canonicals.add(earliest)
    with Session(get_engine(pg_settings)) as s:
        assert len(s.exec(select(DupGroup)).all()) == len(stories)
        claim_articles = set(s.exec(select(Claim.article_id)).all())
        # claims are extracted for canonical articles only, never for a copy
        assert claim_articles and claim_articles <= canonicals, claim_articles - canonicals
        for aid in all_ids:
            a = s.get(Article, aid)
            assert a is not None
            if aid in canonicals:
                assert a.claims_status == "extracted", (aid, a.claims_status)
            else:
                assert a.claims_status == "duplicate", (aid, a.claims_status)
        # the named minister's statement in the strike story: one cluster, six outlets (the
        # port authority's is a nameless speaker now, stored but never clustered)
        strike_ids, strike_canonical = placed["strike"]
        quote = s.exec(
            select(Claim).where(
                Claim.article_id == strike_canonical,
                col(Claim.text).contains("accept mediation"),
            )
        ).all()
        assert len(quote) == 1, quote
        cluster = s.get(ClaimCluster, quote[0].cluster_id)
        assert cluster is not None
        assert cluster.n_articles == len(strike_ids)
        assert cluster.n_outlets == len(strike_ids)
        assert cluster.first_article_id == strike_canonical


def _send_dedup(env: dict[str, str], ids: list[int], cwd: Path) -> None:
    """Queue one dedup task per article on the broker, all at once, from a separate
    process configured like the workers."""
    code = (
        "import sys\n"
        "from worker.celery_app import app, celery_config\n"
        "from worker.core.settings import get_settings\n"
        "app.conf.update(celery_config(get_settings()))\n"
        "from tasks.articles import dedup_article\n"
        "with app.producer_or_acquire() as producer:\n"
        "    for aid in map(int, sys.argv[1:]):\n"
        "        dedup_article.apply_async(args=[aid], producer=producer)\n"
    )
    import subprocess

    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, ids)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]


# --- demotion while the demoted canonical's claims step runs ----------------------------------


@pytest.mark.timeout(300)
def test_demotion_waits_for_a_running_claims_step_and_removes_its_claims(
    pg_settings: Settings,
) -> None:
    s = pg_settings
    late = add_article(s, STORY, host="late.example", published=T + timedelta(hours=5))
    with Session(get_engine(s)) as sess:
        deduplicate.deduplicate_article(sess, late, s)
        sess.commit()
    early = add_article(
        s, f"{BOILER_A_HEAD}\n{STORY}", host="early.example", published=T, discovered=None
    )
    engine = get_engine(s)
    claims_step = Session(engine)
    try:
        # the late article's claims step: holds its row (as attempts.lock_article does)
        # and has read it as canonical
        claims_step.execute(
            select(Article.id).where(col(Article.id) == late).with_for_update(skip_locked=True)
        )
        art = claims_step.get(Article, late)
        assert art is not None and art.duplicate_of_id is None
        pid = claims_step.execute(text("SELECT pg_backend_pid()")).scalar_one()

        outcome: list[deduplicate.DedupOutcome] = []
        errors: list[BaseException] = []

        def place_early() -> None:
            try:
                with Session(engine) as other:
                    outcome.append(deduplicate.deduplicate_article(other, early, s))
                    other.commit()
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        worker = threading.Thread(target=place_early)
        worker.start()

        def dedup_waits_on_our_lock() -> bool:
            with engine.connect() as conn:
                blocked = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE :pid = ANY(pg_blocking_pids(pid))"
                    ),
                    {"pid": pid},
                ).scalar_one()
                return bool(blocked)

        wait_until(dedup_waits_on_our_lock, 60, 0.05, "dedup blocked on the claims step")
        # the claims step stores its claims and commits
        claims_step.add(
            stored_claim(
                late,
                "say",
                "direct",
                "We have asked for the same thing for eighteen months",
                "We have asked.",
            )
        )
        art.claims_status = "extracted"
        art.claims_version = "v1"
        art.state = ArticleState.processed
        claims_step.commit()
    finally:
        claims_step.close()
    worker.join(timeout=120)
    assert not errors, errors
    assert outcome and outcome[0].canonical_changed_to == early
    demoted = get(s, late)
    assert demoted.duplicate_of_id == early
    assert demoted.claims_version is None
    assert demoted.claims_status == "duplicate"
    with Session(engine) as sess:
        assert sess.exec(select(Claim).where(Claim.article_id == late)).all() == []
