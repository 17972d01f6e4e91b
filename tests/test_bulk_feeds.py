"""Large subscription lists: thousands of feeds added in one call (an OPML import of a
big list) must not hit the database's limit on bind parameters per statement."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import func, select

N = 7_000  # x 7 columns > PostgreSQL's 65,535 parameters in one INSERT


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_adding_thousands_of_feeds_at_once(configure: Any, request: Any, db: str) -> None:
    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    settings = configure(**extra)
    from schemas.models import Feed
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.subscriptions import add_feeds

    init_db(settings)
    urls = [(f"https://site{i % 97}.example/feed/{i}.xml", None, ["bulk"]) for i in range(N)]
    with unit_of_work() as session:
        first = add_feeds(session, urls, settings)
    assert len(first.added) == N and first.existing == []
    # the same list again, plus one new feed: only that one is added
    with unit_of_work() as session:
        again = add_feeds(session, [*urls, ("https://new.example/rss", None, [])], settings)
    assert again.added == ["https://new.example/rss"]
    assert len(again.existing) == N
    with unit_of_work() as session:
        assert session.exec(select(func.count()).select_from(Feed)).one() == N + 1
