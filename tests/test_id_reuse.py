"""Ids users see are never reused (issue 18): after `feeds remove` of the newest feed, a
cancelled backfill's articles or an orphaned cluster, the next row takes a new id. On
SQLite that needs AUTOINCREMENT (migration 0011 rebuilds the tables, children kept);
PostgreSQL's sequences never go back. Jobs are never deleted."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import JSON, column, delete, func, insert, table, text
from sqlmodel import select

from schemas.models import Article, ClaimCluster, Feed, FeedPoll, Sighting
from schemas.types import utcnow
from tests.conftest import claimwire, cli_env


def _article(n: int) -> dict[str, Any]:
    now = utcnow()
    return dict(
        url=f"https://news.example/{n}",
        url_hash=f"h{n}",
        host="news.example",
        state="discovered",
        attempts=0,
        state_changed_at=now,
        discovered_at=now,
        categories=[],
        tags=[],
    )


def _old_article_row(n: int) -> Any:
    """An INSERT of article ``n`` naming only the columns of ``_article`` (an old schema
    lacks the columns added since, which the model's INSERT would name)."""
    row = {"id": n, **_article(n)}
    cols = [column(k, JSON) if k in ("categories", "tags") else column(k) for k in row]
    return insert(table("article", *cols)).values(**row)


def _new_ids_after_deleting_the_newest(settings: Any) -> None:
    from worker.core.db import unit_of_work
    from worker.feeds.subscriptions import add_feeds

    with unit_of_work() as s:
        add_feeds(s, [(f"https://f{i}.example/feed.xml", None, []) for i in range(3)], settings)
    with unit_of_work() as s:
        newest = max(s.exec(select(Feed.id)).all())
        s.execute(delete(Feed).where(Feed.id == newest))
    with unit_of_work() as s:
        add_feeds(s, [("https://f9.example/feed.xml", None, [])], settings)
    with unit_of_work() as s:
        again = s.exec(select(Feed.id).where(Feed.url == "https://f9.example/feed.xml")).one()
    assert again is not None and newest is not None and again > newest

    for model, row in (
        (Article, _article),
        (ClaimCluster, lambda n: dict(speaker_key=f"s{n}", speaker=f"S {n}", text=f"t{n}")),
    ):
        with unit_of_work() as s:
            for n in range(3):
                s.execute(insert(model).values(**row(n)))
        with unit_of_work() as s:
            newest = s.exec(select(func.max(model.id))).one()
            s.execute(delete(model).where(model.id == newest))
        with unit_of_work() as s:
            s.execute(insert(model).values(**row(7)))
            assert s.exec(select(func.max(model.id))).one() > newest, model


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_ids_are_never_reused(configure: Any, db: str, request: pytest.FixtureRequest) -> None:
    from worker.core.db import init_db

    extra = {"database_url": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    settings = configure(**extra)
    init_db(settings)
    _new_ids_after_deleting_the_newest(settings)


def test_feeds_remove_then_add_gives_a_new_id(tmp_path: Any) -> None:
    """The new user's case, through the CLI on the default database (SQLite)."""
    env = cli_env(tmp_path)
    assert claimwire(["init"], env, tmp_path).returncode == 0
    for url in ("https://a.example/feed.xml", "https://b.example/feed.xml"):
        assert claimwire(["feeds", "add", url], env, tmp_path).returncode == 0
    assert claimwire(["feeds", "remove", "2"], env, tmp_path).returncode == 0
    assert claimwire(["feeds", "add", "https://c.example/feed.xml"], env, tmp_path).returncode == 0
    shown = claimwire(["feeds", "show", "https://c.example/feed.xml", "--json"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    import json

    assert json.loads(shown.stdout)["id"] == 3


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_database_migrated_from_0008_keeps_its_rows_and_never_reuses_ids(
    configure: Any, db: str, request: pytest.FixtureRequest
) -> None:
    """Upgraded from the schema before 0011 with feeds, polls, sightings, articles and
    clusters in it: every row and link is kept (the rebuilt tables' children too: the
    drop of the old table must not cascade), then ids are never reused."""
    from alembic import command

    from worker.core.db import alembic_config, dispose_engines, get_engine, init_db

    extra = {"database_url": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    settings = configure(**extra)
    engine = get_engine(settings)
    with engine.connect() as conn:
        cfg = alembic_config(settings.effective_database_url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008_claim_search")
        conn.commit()
    now = utcnow()
    with engine.begin() as conn:
        for n in (1, 2):
            conn.execute(
                insert(Feed.__table__).values(id=n, url=f"https://f{n}.example/feed.xml")  # type: ignore[attr-defined]
            )
            conn.execute(
                text(
                    "INSERT INTO feedpoll (feed_id, started_at, duration_ms, outcome, "
                    "entries_seen, entries_new) VALUES (:id, :now, 1, 'ok', 1, 1)"
                ),
                {"id": n, "now": now},
            )
        conn.execute(_old_article_row(1))
        conn.execute(
            text(
                "INSERT INTO sighting (article_id, feed_id, entry_url, seen_at) "
                "VALUES (1, 2, 'https://news.example/1', :now)"
            ),
            {"now": now},
        )
    dispose_engines()
    init_db(settings)
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        assert len(s.exec(select(Feed)).all()) == 2
        assert len(s.exec(select(FeedPoll)).all()) == 2, "polls of the rebuilt feed table kept"
        assert [(x.article_id, x.feed_id) for x in s.exec(select(Sighting)).all()] == [(1, 2)]
        assert [p.entries_rejected for p in s.exec(select(FeedPoll)).all()] == [0, 0]
        if db == "sqlite":
            for table in ("feed", "article", "claimcluster"):
                sql = s.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}
                ).scalar()
                assert "AUTOINCREMENT" in str(sql), table
            assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1, "on again after"
        if db == "postgresql":  # explicit ids above: move the sequences past them
            for table in ("feed", "article"):
                s.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
    with unit_of_work() as s:
        s.execute(delete(Article))
        s.execute(delete(Feed))
    _new_ids_after_deleting_the_newest(settings)
