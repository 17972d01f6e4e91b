"""The commands that only read the database start light (issue 18: "a command that needs
no model answers in well under a second"): in a fresh interpreter they import none of
the heavy libraries, and the ones that read over SQLAlchemy Core (``schemas.tables``,
``worker.core.db.reading``) import neither the ORM nor the SQLModel classes. Their
answers are checked on a seeded store, SQLite and PostgreSQL. No timing is asserted
here: the times are `bench/cli_startup.py`'s (docs/benchmarks.md, "CLI startup")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_env
from tests.support.webdata import CLAIM, T0, Seeded, seed
from worker.core.render_tables import TARGET, render
from worker.core.settings import Settings
from worker.testing import HEAVY_LIBRARIES

ORM = ("sqlalchemy.orm", "sqlmodel", "schemas.models", "structlog")
"""What the Core read path leaves out (about a seventh of a second of every command),
and structlog: these commands log no event of their own (``_db(reading=True)``)."""

CORE_READERS: dict[str, list[str]] = {
    "status": ["status", "--json"],
    "export-claims": ["export", "claims", "--with-copies"],
    "export-articles": ["export", "articles"],
    "jobs-list": ["jobs", "list", "--json"],
    "feeds-list": ["feeds", "list", "--json"],
    "claims-search": ["claims", "search", "--speaker", "novak", "--jsonl"],
}
OTHER_READERS: dict[str, list[str]] = {
    # --text narrows with the full-text index, whose conditions are built on the ORM
    "claims-search-text": ["claims", "search", "--text", "reopen", "--jsonl"],
    "version": ["--version"],
}

_PROBE = """
import json, sys
from worker.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _probe(command: list[str], env: dict[str, str], cwd: Path) -> tuple[str, set[str]]:
    """The command's stdout and the modules it imported, in a fresh interpreter."""
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, set(json.loads(r.stderr.strip().splitlines()[-1]))


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_core_tables_are_the_models_tables() -> None:
    """schemas/tables.py is what `python -m worker.core.render_tables` writes from the
    models: a column added, dropped or retyped in schemas/models.py fails here until the
    file is written again."""
    assert TARGET.read_text(encoding="utf-8") == render(), (
        "schemas/tables.py is out of date: run python -m worker.core.render_tables"
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[dict[str, str], Seeded, Settings]:
    """A store seeded by tests.support.webdata (feeds in every state, a cluster repeated
    by four outlets with a copy, a job), and the environment of a command reading it."""
    overrides: dict[str, str] = {}
    if request.param == "postgresql":
        overrides["DATABASE_URL"] = request.getfixturevalue("pg_url")
    env = cli_env(tmp_path, **overrides)
    settings = Settings(
        data_dir=tmp_path / "data", database_url=overrides.get("DATABASE_URL", ""), _env_file=None
    )  # type: ignore[call-arg]
    return env, seed(settings), settings


@pytest.mark.parametrize("name", sorted(CORE_READERS) + sorted(OTHER_READERS))
def test_read_only_commands_import_no_heavy_library(
    name: str, seeded: tuple[dict[str, str], Seeded, Settings], tmp_path: Path
) -> None:
    env, _, _ = seeded
    command = CORE_READERS.get(name) or OTHER_READERS[name]
    _, modules = _probe(command, env, tmp_path)
    assert sorted(m for m in HEAVY_LIBRARIES if m in modules) == []
    if name in CORE_READERS:
        assert sorted(m for m in ORM if m in modules) == []


def test_core_readers_answer_what_is_stored(
    seeded: tuple[dict[str, str], Seeded, Settings], tmp_path: Path
) -> None:
    """What the Core read path answers, checked against the seeded store."""
    env, out, _ = seeded

    status = json.loads(_probe(CORE_READERS["status"], env, tmp_path)[0])
    assert status["articles"]["processed"] == 6
    assert status["claims"] == 5 and status["claim_clusters"] == 3
    assert status["feeds"]["total"] == len(out.feed_ids)
    assert status["feeds"]["failing"] == 1
    assert [e["id"] for e in status["recent_feed_errors"]][:1] == [out.feed_ids[1]]

    claims = _lines(_probe(CORE_READERS["export-claims"], env, tmp_path)[0])
    assert len(claims) == 6  # five claims, and the copy of the first article's
    first = next(c for c in claims if c["id"] == out.claim_ids[0] and c["copy_of"] is None)
    assert first["text"] == CLAIM and first["outlet"] == "northern-herald.example"
    assert first["first_seen_at"] == T0.isoformat() and first["cluster_id"] == out.cluster_id
    copy = next(c for c in claims if c["copy_of"] is not None)
    assert copy["id"] == out.claim_ids[0] and copy["outlet"] == "aggregator.example"
    assert copy["copy_of"] == first["article_url"]

    articles = {
        a["id"]: a for a in _lines(_probe(CORE_READERS["export-articles"], env, tmp_path)[0])
    }
    assert len(articles) == 6
    assert articles[out.copy_article_id]["duplicate_of"] == first["article_url"]
    assert articles[out.first_article_id]["feeds"] == ["https://northern-herald.example/rss"]
    assert articles[out.first_article_id]["published_at"] == T0.isoformat()

    (job,) = _lines(_probe(CORE_READERS["jobs-list"], env, tmp_path)[0])
    assert job["id"] == out.job_id and job["state"] == "running"
    assert (job["discovered"], job["done"], job["pending"]) == (4, 2, 2)
    assert job["articles"] == {"processed": 4}

    novak = _lines(_probe(CORE_READERS["claims-search"], env, tmp_path)[0])
    assert [c["id"] for c in novak] == out.claim_ids[::-1]  # newest first
    assert novak[-1]["cluster_outlets"] == 4 and novak[-1]["cluster_first_seen"] == T0.isoformat()
    reopen = _lines(_probe(OTHER_READERS["claims-search-text"], env, tmp_path)[0])
    assert [c["id"] for c in reopen] == out.claim_ids[::-1]
    (one,) = _lines(
        _probe(
            ["claims", "search", "--text", "vaccination", "--outlet", "wire.example", "--jsonl"],
            env,
            tmp_path,
        )[0]
    )
    assert one["speaker"] == "the Health Ministry" and one["kind"] == "direct"

    feeds = _lines(_probe(CORE_READERS["feeds-list"], env, tmp_path)[0])
    assert [f["id"] for f in feeds] == out.feed_ids
    assert feeds[1]["state"] == "failing" and feeds[1]["consecutive_failures"] == 3
    assert feeds[0]["new_entries_per_day"] > 0
