"""`claimwire status` as a user reads it (audit LOW 14): a broker that cannot be reached
is said in words, not only as "io=?", and the articles not read for claims are not
called "skipped" next to the article state of that name."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import claimwire, cli_env


def test_status_says_the_broker_is_unreachable(tmp_path: Path) -> None:
    env = cli_env(tmp_path, BROKER_URL="redis://cw:Sw0rdfish@127.0.0.1:1/0")
    r = claimwire(["status"], env, tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "broker unreachable (redis://cw:***@127.0.0.1:1/0)" in r.stdout, r.stdout
    assert "io=?" not in r.stdout
    assert "Sw0rdfish" not in r.stdout + r.stderr
    assert "processed article(s) not read for claims (not in English)" in r.stdout
    assert "articles skipped" not in r.stdout
    data = json.loads(claimwire(["status", "--json"], env, tmp_path, timeout=120).stdout)
    assert data["broker_reachable"] is False and data["queues"]["io"] is None


def test_status_with_the_embedded_broker_shows_queue_depths(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    r = claimwire(["status"], env, tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "queues: io=0" in r.stdout and "unreachable" not in r.stdout, r.stdout
    data = json.loads(claimwire(["status", "--json"], env, tmp_path, timeout=120).stdout)
    assert data["broker_reachable"] is True
