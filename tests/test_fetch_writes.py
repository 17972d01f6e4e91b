"""What a fetch step writes: the article's response columns and its new state in one
``UPDATE`` (issue 16: a fetch's CPU is mostly its statements), and nothing else of the
article touched. Real SQLite, real local server."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, update

from schemas.models import Article, ArticleState
from tests.support.db import discovered_article, load_article
from worker.testing.server import LocalServer, Reply

PAGE = (
    b"<!DOCTYPE html><html><head><title>Harbour</title></head><body><article><p>"
    + b"The harbour office opened a second quay for the winter ferries. " * 20
    + b"</p></article></body></html>"
)


def test_a_fetch_writes_its_article_in_one_update_and_leaves_the_rest(
    configure: Any, server: LocalServer
) -> None:
    settings = configure()
    from worker.core.db import get_engine, init_db, unit_of_work
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST as FETCH

    init_db()
    server.routes["/story"] = Reply(body=PAGE, content_type="text/html; charset=utf-8")
    article_id = discovered_article(server.url("/story"))
    with unit_of_work() as s:  # what the feed's entry gave: the fetch must keep it
        s.execute(
            update(Article)
            .where(Article.id == article_id)  # type: ignore[arg-type]
            .values(
                entry_title="Second quay",
                entry_summary="A summary of the entry.",
                failure_reason="an earlier attempt timed out",
            )
        )
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()))

    engine = get_engine(settings)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        outcome = run_step(FETCH, article_id, follow_up=False)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert outcome.advanced, outcome
    writes = [
        s
        for s in statements
        if s.startswith("UPDATE article SET") and "step_starts" not in s.split(" WHERE ")[0]
    ]
    # one UPDATE with the response's columns and the state (two before: the raw page's
    # INSERT flushed the response's columns, the commit the state)
    assert len(writes) == 1, writes
    for column in ("state=", "http_status=", "content_type=", "final_url=", "raw_sha256="):
        assert column in writes[0], writes[0]
    a = load_article(article_id)
    assert a.state == ArticleState.fetched
    assert a.http_status == 200
    assert a.content_type == "text/html; charset=utf-8"
    assert a.final_url == server.url("/story")
    assert a.raw_sha256 is not None and a.fetched_at is not None
    assert a.failure_reason is None
    assert (a.entry_title, a.entry_summary) == ("Second quay", "A summary of the entry.")
    assert a.step_starts == 0
