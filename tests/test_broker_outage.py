"""A step that meets Redis down (issue 18): its retry cannot be sent either (the broker
is that same Redis). One warning line names the outage, no chained tracebacks, no
`reject requeue=False`; the message ends on purpose and the sweep re-sends the article
from the database once the broker is back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from schemas.models import Article, ArticleState
from schemas.types import utcnow
from tests.support.db import load_article
from worker.testing.procs import free_port
from worker.testing.server import Reply

pytestmark = [pytest.mark.redis]


def _run_in_worker(task: Any, *args: Any) -> Any:
    """Run ``task`` as a worker would run a delivered message (not "called directly",
    where Celery raises instead of sending a retry)."""
    task.push_request(
        id="broker-outage-test",
        args=list(args),
        kwargs={},
        retries=0,
        called_directly=False,
        is_eager=False,
        delivery_info={"exchange": "", "routing_key": "io"},
        hostname="test@host",
    )
    try:
        return task.run(*args)
    finally:
        task.pop_request()


def test_a_retry_that_meets_the_broker_down_is_one_line_and_the_sweep_recovers(
    configure: Any, server: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tasks.articles import fetch_article
    from tasks.schedule import sweep
    from worker.core.db import init_db, unit_of_work

    server.routes["/news/a"] = Reply(body=b"<html><body><p>hello</p></body></html>")
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: Redis is down
    init_db(configure(broker_url=down, stale_after=60))
    with unit_of_work() as s:
        a = Article(
            url=server.url("/news/a"),
            url_hash="a",
            host="127.0.0.1",
            state=ArticleState.discovered,
            state_changed_at=utcnow(),
        )
        s.add(a)
        s.flush()
        aid = a.id
    assert aid is not None
    capsys.readouterr()

    # The fetch meets Redis down (its host limiter lives there), and so does its retry.
    assert _run_in_worker(fetch_article, aid) is False
    printed = capsys.readouterr()
    lines = (printed.out + printed.err).splitlines()
    outage = [line for line in lines if "retry_not_sent_broker_down" in line]
    assert len(outage) == 1, lines
    assert "tasks.fetching.fetch_article" in outage[0] and "Connection refused" in outage[0]
    # (the local HTTP server's own report of a connection the client dropped, between
    # its dashed lines, is the test server's noise, not claimwire's or Celery's)
    ours = "\n".join(lines).split("-" * 40)[::2]
    assert not [ln for ln in "".join(ours).splitlines() if "Traceback" in ln or "eject" in ln], (
        "\n".join(lines)
    )
    a = load_article(aid)
    assert a.state == ArticleState.discovered, "left pending for the sweep"
    assert a.attempts == 0 and a.step_starts == 0, "an outage costs the article nothing"
    assert server.hits.get("/news/a", 0) == 0

    # Redis is back: the sweep re-sends the article once it is stale_after old.
    import redis

    settings = configure(broker_url=redis_url, stale_after=60)
    client = redis.Redis.from_url(redis_url)
    client.delete("io")
    assert sweep() == 0, "not before stale_after"
    with unit_of_work() as s:
        s.get(Article, aid).state_changed_at = utcnow() - timedelta(seconds=61)  # type: ignore[union-attr]
    assert sweep() == 1
    assert client.llen("io") == 1, "the fetch is queued again"
    client.delete("io")
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST

    assert run_step(FIRST, aid, settings=settings).advanced
    assert load_article(aid).state == ArticleState.fetched
