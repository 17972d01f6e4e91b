"""The schema comes from Alembic migrations, and they match the models on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import schemas.models  # noqa: F401
from worker.claims.fulltext import is_search_index
from worker.core.db import dispose_engines, get_engine, init_db
from worker.core.settings import Settings


def _check(settings: Settings) -> None:
    init_db(settings)
    init_db(settings)  # a second upgrade is a no-op
    engine = get_engine(settings)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert {
            "feed",
            "article",
            "sighting",
            "claim",
            "claimcluster",
            "rawpage",
            "job",
            "alembic_version",
        } <= tables
        opts = {"include_object": lambda _o, name, type_, *_: not is_search_index(name, type_)}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), SQLModel.metadata)
    # Models and migrations agree (no table, column or index missing on either side).
    assert [
        d
        for d in diff
        if d[0]
        in ("add_table", "remove_table", "add_column", "remove_column", "add_index", "remove_index")
    ] == []
    dispose_engines()


def test_migrations_on_sqlite(tmp_path) -> None:
    _check(Settings(data_dir=tmp_path))


@pytest.mark.postgres
def test_migrations_on_postgres(pg_url: str, tmp_path) -> None:
    _check(Settings(data_dir=tmp_path, database_url=pg_url))


def _old_database_upgrades(settings: Settings) -> None:
    """A database at 0008_claim_search (before publication precision, issue 15) with an
    article and a cluster in it upgrades to head: the new columns exist and are empty,
    the rows are kept, and ordering falls back to the stored time."""
    from alembic import command
    from sqlalchemy import text

    from worker.core.db import alembic_config

    engine = get_engine(settings)
    with engine.connect() as conn:
        cfg = alembic_config(settings.effective_database_url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008_claim_search")
        conn.execute(
            text(
                "INSERT INTO article (url, url_hash, host, state, state_changed_at, attempts,"
                " step_starts, discovered_at, published_at, categories, tags) VALUES"
                " ('https://a.example/1', 'h1', 'a.example', 'processed', :t, 0, 0, :t,"
                " :p, '[]', '[]')"
            ),
            {"t": "2024-03-04 10:00:00", "p": "2024-03-03 00:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO claimcluster (speaker_key, speaker, text, first_seen_at,"
                " n_articles, n_outlets, created_at) VALUES ('novak', 'Novak', 'x', :p, 1, 1, :t)"
            ),
            {"t": "2024-03-04 10:00:00", "p": "2024-03-03 00:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO claim (article_id, speaker, speaker_resolved, verb, kind, text,"
                ' start, "end", sentence, extractor_version, created_at) VALUES'
                " (1, 'Novak', 'Novak', 'said', 'indirect', 'x', 0, 1, 'Novak said x.', 't', :t)"
            ),
            {"t": "2024-03-04 10:00:00"},
        )
        conn.commit()
    init_db(settings)
    from sqlmodel import Session, select

    from schemas.models import Article, Claim, ClaimCluster
    from worker.claims.firstseen import order_key, page_at

    with Session(engine) as s:
        (a,) = s.exec(select(Article)).all()
        assert a.published_precision is None and a.published_sort_at is None
        assert a.published_offset is None
        assert order_key(a)[0] == a.published_at  # sorts as before until reprocessed
        (c,) = s.exec(select(ClaimCluster)).all()
        assert c.first_seen_precision is None and c.first_seen_at is not None
        # 0013 back-fills the claim's copy of its article's time (published, else found)
        (claim,) = s.exec(select(Claim)).all()
        assert claim.article_at == a.published_at == page_at(a)
    dispose_engines()


def test_old_database_upgrades_on_sqlite(tmp_path) -> None:
    _old_database_upgrades(Settings(data_dir=tmp_path))


@pytest.mark.postgres
def test_old_database_upgrades_on_postgres(pg_url: str, tmp_path) -> None:
    _old_database_upgrades(Settings(data_dir=tmp_path, database_url=pg_url))


def _stale_feed_errors_become_facts(settings: Settings) -> None:
    """A feed's last error stored with a sentence about its next poll (a poll whose
    host's robots.txt could not be read wrote "...; next poll in 63 min (... UTC)",
    still shown hours later) keeps its cause alone after the upgrade, in the feed and
    its poll history; other errors are left as they are."""
    from sqlalchemy import text

    stale = (
        "robots.txt of a.example unreachable: HTTP 503; next poll in 63 min (2026-11-26 01:02 UTC)"
    )
    init_db(settings)
    engine = get_engine(settings)
    with engine.connect() as conn:  # a database of 0017, with what polls wrote then
        conn.execute(text("UPDATE alembic_version SET version_num = '0017_bodykeys'"))
        for i, error in ((1, stale), (2, "HTTP 404; next poll in a minute, says the server")):
            conn.execute(
                text(
                    "INSERT INTO feed (id, url, tags, state, created_at, next_poll_at,"
                    " poll_interval, consecutive_failures, transient_failures,"
                    " permanent_failures, last_error, polls_total, entries_new_total)"
                    " VALUES (:i, :u, '[]', 'failing', :t, :t, 3600, 1, 1, 0, :e, 1, 0)"
                ),
                {"i": i, "u": f"https://a.example/{i}.xml", "t": "2026-11-26 00:00:00", "e": error},
            )
        conn.execute(
            text(
                "INSERT INTO feedpoll (feed_id, started_at, duration_ms, outcome,"
                " entries_seen, entries_new, entries_rejected, error)"
                " VALUES (1, :t, 5, 'error', 0, 0, 0, :e)"
            ),
            {"t": "2026-11-26 00:00:00", "e": stale.replace("63 min", "90 s")},
        )
        conn.commit()
    from worker.core import db

    db._migrated.discard(settings.effective_database_url)  # a new process's first use
    init_db(settings)
    with engine.connect() as conn:
        errors = conn.execute(text("SELECT last_error FROM feed ORDER BY id")).scalars().all()
        history = conn.execute(text("SELECT error FROM feedpoll")).scalars().all()
    assert errors == [
        "robots.txt of a.example unreachable: HTTP 503",
        "HTTP 404; next poll in a minute, says the server",  # not ours: left alone
    ]
    assert history == ["robots.txt of a.example unreachable: HTTP 503"]
    dispose_engines()


def test_stale_feed_errors_become_facts_on_sqlite(tmp_path) -> None:
    _stale_feed_errors_become_facts(Settings(data_dir=tmp_path))


@pytest.mark.postgres
def test_stale_feed_errors_become_facts_on_postgres(pg_url: str, tmp_path) -> None:
    _stale_feed_errors_become_facts(Settings(data_dir=tmp_path, database_url=pg_url))
