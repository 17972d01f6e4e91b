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
