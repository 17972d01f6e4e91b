"""A spaCy model that cannot be loaded (CLAIMWIRE_SPACY_MODEL wrong) is a fault of the
configuration, not of the pages: `claimwire run` refuses to start, a worker says so at
start, and claims steps wait (never counted, never quarantined) until it is fixed."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.models import Article, ArticleState, Claim
from schemas.types import utcnow
from tests.conftest import REDIS_URL, claimwire, cli_env, need
from tests.support.db import load_article
from worker.testing.content import serve_site
from worker.testing.procs import celery_worker, wait_until, worker_env
from worker.testing.server import LocalServer

BOGUS = "en_core_web_bogus"
TEXT = (
    'The minister said on Tuesday that the new bridge would open next spring. "We are '
    'ready to start," the mayor, Anna Lindqvist, told reporters at the town hall.'
)


def test_run_with_a_model_that_cannot_load_fails_at_once_and_runs_nothing(
    server: LocalServer, tmp_path: Path
) -> None:
    feed_url = serve_site(server)
    env = cli_env(tmp_path)
    assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0

    r = claimwire(["run", "--until-idle"], {**env, "CLAIMWIRE_SPACY_MODEL": BOGUS}, tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("claimwire: error: CLAIMWIRE_SPACY_MODEL='en_core_web_bogus'")
    assert "Traceback" not in r.stderr
    assert server.hits["/feed.xml"] == 0, "nothing was run"

    # Claims off: the model is not needed, and the run goes ahead.
    r = claimwire(
        ["run", "--until-idle"],
        {**env, "CLAIMWIRE_SPACY_MODEL": BOGUS, "CLAIMWIRE_EXTRACT_CLAIMS": "false"},
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert server.hits["/feed.xml"] == 1


def test_the_run_process_checks_an_installed_model_without_importing_spacy() -> None:
    """With CPU processes, the `run` process only checks that the model is installed
    (its zygote loads it): that check imports no spaCy (0.65 s of the run's start)."""
    import subprocess
    import sys

    from worker.core.settings import get_settings

    model = get_settings().spacy_model
    code = (
        "import sys\n"
        "from worker.claims.model import model_problem\n"
        f"assert model_problem({model!r}, load=False) is None\n"
        f"assert 'cannot be loaded' in model_problem({BOGUS!r}, load=False)\n"
        "assert model_problem('blank:en', load=False) is None\n"
        "assert 'spacy' not in sys.modules, 'spaCy imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]


def _deduplicated_article(tag: str) -> int:
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        a = Article(
            url=f"https://news.example/{tag}",
            url_hash=tag,
            host="news.example",
            state=ArticleState.deduplicated,
            state_changed_at=utcnow() - timedelta(hours=1),
            text=TEXT,
            language="en",
        )
        s.add(a)
        s.flush()
        assert a.id is not None
        return a.id


def _claims(aid: int) -> int:
    from sqlmodel import select

    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        return len(s.exec(select(Claim).where(Claim.article_id == aid)).all())


def test_claims_step_waits_for_the_model_without_counting(configure: Any) -> None:
    """The task itself (run in this process): every retry meets the same missing model;
    after its environment retries the message is dropped and the article is still
    pending, uncounted, for the sweep. With the setting fixed the same step processes it.
    A crash of the claims code itself still counts (the contrast)."""
    from tasks.articles import claims_article
    from worker.core.db import init_db

    settings = configure(spacy_model=BOGUS, max_attempts=3)
    init_db(settings)
    aid = _deduplicated_article("a")

    result = claims_article.apply(args=(aid,))
    assert result.get(propagate=False) is False, result.traceback
    a = load_article(aid)
    assert a.state == ArticleState.deduplicated, a.failure_reason
    assert a.attempts == 0
    assert a.failure_reason is None
    assert a.step_starts == 0, "the process lives: no death counted"
    assert _claims(aid) == 0

    configure()  # the setting fixed
    assert claims_article.apply(args=(aid,)).get() is True
    a = load_article(aid)
    assert a.state == ArticleState.processed
    assert a.claims_status == "extracted"
    assert _claims(aid) >= 1


def test_worker_says_so_at_start_and_its_claims_steps_wait_until_fixed(
    configure: Any, tmp_path: Path, redis_available: bool
) -> None:
    """Real processes: a Celery worker on the cpu queue over Redis, SQLite database."""
    need(redis_available, "Redis at 127.0.0.1:6379")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    db_url = f"sqlite:///{tmp_path / 'cw.sqlite'}"
    settings = configure(database_url=db_url, broker_url=REDIS_URL, max_attempts=2)
    from worker.core.db import init_db

    init_db(settings)
    aid = _deduplicated_article("w")
    base = dict(os.environ)  # the test's settings (configure) and PATH, PYTHONPATH...
    env = worker_env(base, db_url, REDIS_URL, spacy_model=BOGUS)

    worker = celery_worker("cpu-bogus", env, tmp_path, queues="cpu", concurrency=2)
    worker.start()
    try:
        wait_until(lambda: "claims_model_unavailable" in worker.log(), timeout=120)
        start_lines = [ln for ln in worker.log().splitlines() if "claims_model_unavailable" in ln]
        assert "CLAIMWIRE_SPACY_MODEL='en_core_web_bogus'" in start_lines[0]

        from tasks.articles import claims_article

        claims_article.apply_async(args=(aid,))
        wait_until(lambda: worker.log().count("environment_error") >= 2, timeout=120)
        a = load_article(aid)
        assert a.state == ArticleState.deduplicated
        assert a.attempts == 0 and a.failure_reason is None
    finally:
        worker.stop()

    # Fixed and restarted: the waiting retry (still in Redis, unacknowledged or
    # scheduled) or a sweep re-send runs the step; here we send it once more, as the
    # sweep would.
    fixed = celery_worker("cpu-fixed", worker_env(base, db_url, REDIS_URL), tmp_path, "cpu")
    fixed.start()
    try:
        from tasks.articles import claims_article

        claims_article.apply_async(args=(aid,))
        wait_until(lambda: load_article(aid).state == ArticleState.processed, timeout=180)
        assert "claims_model_unavailable" not in fixed.log()
    finally:
        fixed.stop()
        client.flushdb()
    a = load_article(aid)
    assert a.attempts == 0 and a.claims_status == "extracted"
    assert _claims(aid) >= 1


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAIMWIRE_SPACY_MODEL", raising=False)
