"""Shared fixtures: real PostgreSQL and Redis (never mocked), a local HTTP server,
and settings pointing the code under test at them.

Outside CI a missing PostgreSQL or Redis skips the tests that need it; under CI=true
it fails them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _find_shared() -> Path:
    """The read-only corpora (`../shared` next to the checkout). A clone made elsewhere
    (CI) finds them through CLAIMWIRE_TEST_SHARED or the usual places."""
    if os.environ.get("CLAIMWIRE_TEST_SHARED"):
        return Path(os.environ["CLAIMWIRE_TEST_SHARED"])
    for candidate in (ROOT.parent / "shared", ROOT.parent.parent / "shared", Path("/work/shared")):
        if (candidate / "corpora").is_dir():
            return candidate
    return ROOT.parent / "shared"


SHARED = _find_shared()
PG_ADMIN_URL = os.environ.get("CLAIMWIRE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def worker_redis_url(base: str, worker: str | None) -> str:
    """The Redis database of one pytest-xdist worker: the base database (the one in
    CLAIMWIRE_TEST_REDIS) minus the worker's index, so that gw0, gw1, gw2 of a base 15 use
    15, 14, 13. A run without xdist workers (``-n 0``, ``-p no:xdist``) uses the base."""
    if not worker or not worker.startswith("gw"):
        return base
    index = int(worker[2:])
    parts = urlsplit(base)
    db = int(parts.path.strip("/") or 0)
    if index > db:
        raise pytest.UsageError(
            f"CLAIMWIRE_TEST_REDIS={base}: xdist worker {worker} would need Redis database "
            f"{db - index}; use a higher base database or fewer workers"
        )
    return urlunsplit(parts._replace(path=f"/{db - index}"))


REDIS_BASE_URL = os.environ.get("CLAIMWIRE_TEST_REDIS", "redis://127.0.0.1:6379/15")
REDIS_URL = worker_redis_url(REDIS_BASE_URL, os.environ.get("PYTEST_XDIST_WORKER"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str) -> None:
    """Skip a test whose service is missing, or fail it under CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is not available and CI=true: a missing service is a failure")
    pytest.skip(f"{what} is not available")


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    need(path.exists(), f"../shared/{'/'.join(parts)}")
    return path


def _pg_ok() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


def _redis_ok() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_ok()


@pytest.fixture(scope="session")
def redis_available() -> bool:
    return _redis_ok()


@pytest.fixture()
def pg_url(pg_available: bool) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    need(pg_available, "PostgreSQL at 127.0.0.1:5432")
    import psycopg

    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from worker.core.db import dispose_engines

        dispose_engines()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def redis_url(redis_available: bool) -> Iterator[str]:
    """This worker's Redis database (REDIS_URL), emptied before and after the test."""
    need(redis_available, "Redis at 127.0.0.1:6379")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture()
def server() -> Iterator[Any]:
    from worker.testing.server import LocalServer

    srv = LocalServer().start()
    yield srv
    srv.stop()


@pytest.fixture()
def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point claimwire's settings (read from the environment) at a test setup and
    return the Settings. Defaults: SQLite in tmp_path, private networks allowed,
    no politeness delay."""
    from worker.core.db import dispose_engines
    from worker.core.settings import get_settings, reset_settings
    from worker.pipeline import resources

    def apply(**overrides: Any) -> Any:
        env = {
            "CLAIMWIRE_DATA_DIR": str(tmp_path / "data"),
            "CLAIMWIRE_ALLOW_PRIVATE_NETWORKS": "true",
            "CLAIMWIRE_HOST_MIN_INTERVAL": "0",
            "CLAIMWIRE_HOST_MAX_CONCURRENCY": "8",
        }
        env.update({f"CLAIMWIRE_{k.upper()}": str(v) for k, v in overrides.items()})
        for key in [k for k in os.environ if k.startswith("CLAIMWIRE_")]:
            monkeypatch.delenv(key, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        reset_settings()
        dispose_engines()
        resources.reset()
        settings = get_settings()
        from worker.celery_app import app, celery_config

        app.conf.update(celery_config(settings))
        # Forget the connection and producer pools of an earlier test's broker: a cached
        # producer would publish there instead of to this test's broker.
        app._pool = None
        if "amqp" in app.__dict__:
            app.amqp._producer_pool = None
        return settings

    yield apply
    reset_settings()
    dispose_engines()
    resources.reset()


def cli_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Environment for running the `claimwire` command as a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
    env.update(
        {
            "CLAIMWIRE_DATA_DIR": str(tmp_path / "data"),
            "CLAIMWIRE_ALLOW_PRIVATE_NETWORKS": "true",
            "CLAIMWIRE_HOST_MIN_INTERVAL": "0",
            "CLAIMWIRE_HOST_MAX_CONCURRENCY": "8",
        }
    )
    env.update({f"CLAIMWIRE_{k.upper()}": v for k, v in overrides.items()})
    return env


def claimwire(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 240, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )
