"""Migration 0017_bodykeys: a cluster stored under the old key of "the Department of
Transport" (``department``) is re-keyed ``transport department`` and joins the older
cluster of "Transport Department" holding the same statement; another department's
cluster stays apart. SQLite and PostgreSQL; every text is invented for this test."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from schemas.models import ClaimCluster
from tests.test_migrations_speakerkeys import TROOPS, TROOPS_AGAIN, _old_database
from worker.core.db import dispose_engines, get_engine, init_db
from worker.core.settings import Settings

BUDGET = "the agency's budget would be cut by a tenth next year"


def _rekeyed_and_merged(settings: Settings) -> None:
    ids = _old_database(
        settings,
        "0016_speakerkeys",
        (
            ("older", "transport department", "the Transport Department", TROOPS),
            ("same", "department", "the Department of Transport", TROOPS_AGAIN),
            ("other", "department", "Department of Health", BUDGET),
        ),
    )
    init_db(settings)  # runs 0017
    with Session(get_engine(settings)) as s:
        clusters = {c.id: c for c in s.exec(select(ClaimCluster)).all()}
        assert ids["same"] not in clusters  # one statement: joined the older cluster
        assert clusters[ids["older"]].n_articles == 2
        assert clusters[ids["other"]].speaker_key == "health department"
        assert len(clusters) == 2
    dispose_engines()


def test_body_keys_migration_on_sqlite(tmp_path) -> None:
    _rekeyed_and_merged(Settings(data_dir=tmp_path))


@pytest.mark.postgres
def test_body_keys_migration_on_postgres(pg_url: str, tmp_path) -> None:
    _rekeyed_and_merged(Settings(data_dir=tmp_path, database_url=pg_url))
