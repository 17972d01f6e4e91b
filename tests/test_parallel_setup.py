"""The suite runs in parallel (pytest-xdist, ``-n`` in pyproject's addopts): each worker
gets its own Redis database, below the base one of CLAIMWIRE_TEST_REDIS."""

from __future__ import annotations

import pytest

from tests.conftest import worker_redis_url

BASE = "redis://127.0.0.1:6379/12"


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        (None, BASE),  # -n 0 or -p no:xdist: the base database itself
        ("", BASE),
        ("gw0", BASE),
        ("gw1", "redis://127.0.0.1:6379/11"),
        ("gw4", "redis://127.0.0.1:6379/8"),
    ],
)
def test_each_worker_has_its_own_redis_database(worker: str | None, expected: str) -> None:
    assert worker_redis_url(BASE, worker) == expected


def test_password_and_host_are_kept() -> None:
    url = worker_redis_url("redis://:secret@cache.example:6380/5", "gw2")
    assert url == "redis://:secret@cache.example:6380/3"


def test_a_worker_index_above_the_base_database_is_refused() -> None:
    with pytest.raises(pytest.UsageError, match="database -1"):
        worker_redis_url("redis://127.0.0.1:6379/2", "gw3")
