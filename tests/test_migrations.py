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
