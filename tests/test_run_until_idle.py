"""How `claimwire run --until-idle` ends when it cannot finish: a broker that is down at
the start, a signal before the work is done, a broker that goes away mid-run. Each ends
with a clear line and an exit status that says so, and loses no pending work."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import claimwire, cli_env, need
from tests.support.content import STORIES, serve_site
from tests.support.procs import RedisServer, wait_until
from tests.support.server import LocalServer, Reply

SECRET = "Sw0rdfish-broker"


def _start_run(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run", "--until-idle"],
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _status(env: dict[str, str], cwd: Path) -> dict[str, object]:
    r = claimwire(["status", "--json"], env, cwd)
    assert r.returncode == 0, r.stderr
    data: dict[str, object] = json.loads(r.stdout)
    return data


def _slow_first_story(server: LocalServer, delay: float) -> str:
    """The site's feed, with the first story's page answering after ``delay`` seconds;
    return that page's path."""
    serve_site(server)
    path = f"/news/{STORIES[0][0]}"
    route = server.routes[path]
    assert isinstance(route, Reply)
    route.delay = delay
    return path


def _interrupted_run(
    env: dict[str, str],
    cwd: Path,
    server: LocalServer,
    slow: str,
    interrupt: Callable[[subprocess.Popen[str]], None],
) -> str:
    """Start `run --until-idle`, call ``interrupt`` once the slow page is asked for, and
    check that the run ends with exit 1 saying work is still pending, and that it is;
    return its stderr."""
    proc = _start_run(env, cwd)
    try:
        wait_until(lambda: server.hits[slow] >= 1, 120, 0.05, "the slow page to be asked for")
        interrupt(proc)
        _, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr[-3000:]
    assert "still pending stay in the database" in stderr
    articles = _status(env, cwd)["articles"]
    assert isinstance(articles, dict)
    assert articles.get("processed", 0) < len(STORIES), articles
    return stderr


def _run_to_the_end(env: dict[str, str], cwd: Path, server: LocalServer, slow: str) -> str:
    """With the slow page fast again, a new run finishes every story; return its stderr."""
    route = server.routes[slow]
    assert isinstance(route, Reply)
    route.delay = 0.0
    r = claimwire(["run", "--until-idle"], env, cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    articles = _status(env, cwd)["articles"]
    assert isinstance(articles, dict) and articles["processed"] == len(STORIES), articles
    return r.stderr


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    need(RedisServer.available(), "redis-server")
    rd = RedisServer(tmp_path / "redis").start()
    try:
        yield rd
    finally:
        rd.stop()


def test_broker_down_at_start_fails_at_once_and_keeps_the_feed_due(
    server: LocalServer, tmp_path: Path
) -> None:
    feed_url = serve_site(server)
    env = cli_env(tmp_path, BROKER_URL=f"redis://cw:{SECRET}@127.0.0.1:1/0")
    assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0

    started = time.monotonic()
    r = claimwire(["run", "--until-idle"], env, tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert time.monotonic() - started < 60, "it must not wait for the broker forever"
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, r.stderr
    assert "cannot connect to the broker redis://cw:***@127.0.0.1:1/0" in lines[0]
    assert SECRET not in r.stdout + r.stderr
    assert server.hits["/feed.xml"] == 0, "nothing was run"
    feeds = _status(env, tmp_path)["feeds"]
    assert isinstance(feeds, dict) and feeds["due"] == 1, feeds


def test_a_signal_before_the_work_is_done_says_so_and_the_next_run_finishes(
    server: LocalServer, tmp_path: Path
) -> None:
    slow = _slow_first_story(server, delay=4.0)
    env = cli_env(tmp_path)
    assert claimwire(["feeds", "add", server.url("/feed.xml")], env, tmp_path).returncode == 0

    stderr = _interrupted_run(
        env, tmp_path, server, slow, lambda proc: proc.send_signal(signal.SIGTERM)
    )
    assert "claimwire: stopped before the work was done." in stderr
    assert "claimwire: idle." not in stderr

    assert "claimwire: idle." in _run_to_the_end(env, tmp_path, server, slow)


@pytest.mark.redis
def test_broker_lost_mid_run_gives_up_and_keeps_the_work(
    server: LocalServer, tmp_path: Path, own_redis: RedisServer
) -> None:
    slow = _slow_first_story(server, delay=6.0)
    env = cli_env(tmp_path, BROKER_URL=own_redis.url(), UNTIL_IDLE_GIVE_UP="2")
    assert claimwire(["feeds", "add", server.url("/feed.xml")], env, tmp_path).returncode == 0

    stderr = _interrupted_run(env, tmp_path, server, slow, lambda _proc: own_redis.stop())
    assert "claimwire: gave up: the broker or the database stayed unreachable." in stderr

    # The broker is back (empty: it kept nothing); the database still knows the work.
    own_redis.start()
    _run_to_the_end(env, tmp_path, server, slow)
