"""Every step that leaves its article pending leaves a message for it (issue 16).

A step's message ends when the step returns; the database says what is pending, but
only the sweep reads it, ``stale_after`` (600 s) later. So a step that leaves its article
in a pending state must send that state's step after its commit, or it waits for the
sweep. Real SQLite and PostgreSQL, the real steps; the messages are caught where the
unit of work hands them to Celery (``worker.core.outbox``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from schemas.models import Article, ArticleState
from schemas.types import utcnow
from tests.support.db import load_article


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, configure: Any) -> Any:
    overrides: dict[str, Any] = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    settings = configure(**overrides)
    from worker.core.db import init_db

    init_db(settings)
    return settings


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    from worker.core import outbox

    caught: list[Any] = []
    monkeypatch.setattr(outbox, "_sender", caught.extend)
    return caught


def test_an_extract_that_sends_its_article_back_to_be_fetched_sends_the_fetch(
    db: Any, sent: list[Any]
) -> None:
    """An extract step whose archived page is missing sends its article back to
    ``discovered`` ("archived page missing; refetching") and ends. It sent nothing: the
    article waited for the sweep. It now sends the fetch step after its commit."""
    from worker.core.db import unit_of_work
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST, step_named

    with unit_of_work() as s:
        a = Article(
            url="https://news.example/a",
            url_hash="a",
            host="news.example",
            state=ArticleState.fetched,
            state_changed_at=utcnow() - timedelta(minutes=5),
        )
        s.add(a)
        s.flush()
        aid = a.id
    outcome = run_step(step_named("extract"), aid, settings=db)
    assert outcome.retry_in is None and outcome.state == ArticleState.discovered
    assert load_article(aid).state == ArticleState.discovered
    assert [(m.task, m.args) for m in sent] == [(FIRST.task_name, (aid,))], sent
