"""How `claimwire run --until-idle` ends when it cannot finish: a broker that is down at
the start, a signal before the work is done, a broker that goes away mid-run. Each ends
with a clear line and an exit status that says so, and loses no pending work."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import claimwire, cli_env, need
from worker.testing.content import STORIES, serve_site
from worker.testing.procs import RedisServer, wait_until
from worker.testing.server import LocalServer, Reply

SECRET = "Sw0rdfish-broker"
# check_broker tries twice (max_retries=1): two connections reach the dead port; a
# broker awaited would reach it again and again until the subprocess timed out.
MAX_BROKER_ATTEMPTS = 4


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
    assert "Warm shutdown" not in r.stdout  # stdout carries only the command's output
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


@contextlib.contextmanager
def _dead_broker() -> Iterator[tuple[int, list[int]]]:
    """A port where a broker should be: every connection is accepted, counted and closed
    at once (a broker that is down). Yields the port and the count (one element)."""
    listener = socket.create_server(("127.0.0.1", 0))
    count = [0]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            count[0] += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], count
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_broker_down_at_start_fails_at_once_and_keeps_the_feed_due(
    server: LocalServer, tmp_path: Path
) -> None:
    """ "At once": after a bounded number of connection attempts (counted by the dead
    broker's port), not after a time, so a slow machine cannot fail it; a run that
    waited for the broker would keep trying until the subprocess's timeout."""
    feed_url = serve_site(server)
    with _dead_broker() as (port, attempts):
        env = cli_env(tmp_path, BROKER_URL=f"redis://cw:{SECRET}@127.0.0.1:{port}/0")
        assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0
        assert attempts[0] == 0  # adding a feed does not need the broker
        r = claimwire(["run", "--until-idle"], env, tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert 1 <= attempts[0] <= MAX_BROKER_ATTEMPTS, attempts[0]
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, r.stderr
    assert f"cannot connect to the broker redis://cw:***@127.0.0.1:{port}/0" in lines[0]
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


def test_a_run_whose_every_feed_fails_names_them_and_exits_1(
    server: LocalServer, tmp_path: Path
) -> None:
    """Audit MEDIUM 5: the only feed answers 404; the run used to end with "idle.
    articles: none; claims: 0" and exit 0. It names the failing feed, where to look,
    and exits 1 because nothing new was read."""
    env = cli_env(tmp_path)
    missing = server.url("/gone.xml")
    assert claimwire(["feeds", "add", missing], env, tmp_path).returncode == 0
    r = claimwire(["run", "--until-idle"], env, tmp_path)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "claimwire: idle. articles: none; claims: 0; 1 of 1 feed(s) failing" in r.stderr
    assert f"claimwire:   feed 1 {missing}: " in r.stderr
    assert "404" in r.stderr
    assert "see `claimwire feeds list` and `claimwire feeds show ID`" in r.stderr
    assert "every feed failed its last poll" in r.stderr
    # the per-poll log line of the Celery workers is left out of the embedded run
    assert "feed_polled" not in r.stderr
    # the embedded broker names no host: kombu no longer warns about it (LOW 14)
    assert "No hostname was supplied" not in r.stderr


def test_a_run_with_one_failing_feed_of_two_warns_and_exits_0(
    server: LocalServer, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, EXTRACT_CLAIMS="false")
    good = serve_site(server)
    missing = server.url("/gone.xml")
    assert claimwire(["feeds", "add", good, missing], env, tmp_path).returncode == 0
    r = claimwire(["run", "--until-idle"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"processed {len(STORIES)}" in r.stderr
    assert "; 1 of 2 feed(s) failing" in r.stderr
    assert f"feed 2 {missing}: " in r.stderr
    assert "every feed failed" not in r.stderr
    # the run says "claimwire: idle." once: no log line of the stop besides it
    assert r.stderr.count("idle") == r.stderr.count("claimwire: idle.") == 1
    assert "nothing pending; stopping" not in r.stderr


def test_a_run_names_the_articles_it_gave_up_on(server: LocalServer, tmp_path: Path) -> None:
    """A page that kept failing ended the run with "quarantined 1" among the counts and
    nothing more; the run now says where the error is and how to try again."""
    env = cli_env(tmp_path, EXTRACT_CLAIMS="false", MAX_ATTEMPTS="1")
    feed = serve_site(server)
    slug = STORIES[0][0]
    server.routes[f"/news/{slug}"] = Reply(503, b"try later", content_type="text/plain")
    assert claimwire(["feeds", "add", feed], env, tmp_path).returncode == 0
    r = claimwire(["run", "--until-idle"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"processed {len(STORIES) - 1}, quarantined 1" in r.stderr
    assert (
        "claimwire: 1 article(s) quarantined: `claimwire status` "
        "shows the latest errors; `claimwire replay` tries the quarantined ones again"
    ) in r.stderr


def test_a_run_ends_at_once_on_links_to_hosts_that_do_not_exist(
    server: LocalServer, tmp_path: Path
) -> None:
    """A feed whose entries link to hosts that do not resolve (``.invalid``, the
    resolver's NXDOMAIN), and a feed on such a host: the run kept asking their
    robots.txt again every 5 minutes, five times, 20-25 minutes after its last good
    article (the subprocess's timeout ends it here). A name that does not exist is
    no transient failure: the articles are quarantined at once with the cause (for
    `claimwire replay`), the feed fails with it and keeps its later polls, and the run
    names both."""
    from worker.testing.content import BASE_DAY, rss

    env = cli_env(tmp_path, EXTRACT_CLAIMS="false")
    good = serve_site(server)
    lost = [(f"http://gone-{i}.invalid/news/{i}", f"Lost {i}", BASE_DAY) for i in range(2)]
    server.routes["/lost.xml"] = Reply(
        body=rss(server.url("/"), lost), content_type="application/rss+xml"
    )
    nowhere = "http://no-such-host.invalid/feed.xml"
    added = claimwire(["feeds", "add", good, server.url("/lost.xml"), nowhere], env, tmp_path)
    assert added.returncode == 0, added.stderr
    r = claimwire(["run", "--until-idle"], env, tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"processed {len(STORIES)}, quarantined 2" in r.stderr, r.stderr[-3000:]
    assert "`claimwire replay` tries the quarantined ones again" in r.stderr
    assert f"feed 3 {nowhere}: host not found: no-such-host.invalid" in r.stderr
    assert "(next poll in " in r.stderr

    rows = [
        json.loads(line)
        for line in claimwire(["export", "articles"], env, tmp_path).stdout.splitlines()
    ]
    lost_rows = [row for row in rows if row["host"].endswith(".invalid")]
    assert [row["status"] for row in lost_rows] == ["quarantined", "quarantined"]
    for row in lost_rows:
        assert "host not found: gone-" in row["failure_reason"], row
    listed = {
        row["url"]: row
        for row in map(
            json.loads, claimwire(["feeds", "list", "--json"], env, tmp_path).stdout.splitlines()
        )
    }
    failing = listed[nowhere]
    assert failing["state"] == "failing" and failing["next_poll_at"] is not None
    assert failing["last_error"] == (
        "host not found: no-such-host.invalid (a name under .invalid never resolves)"
    )
    # replayable: back in the pipeline, counted afresh
    replayed = claimwire(["replay"], env, tmp_path)
    assert replayed.returncode == 0 and replayed.stdout.startswith("2 article(s) sent back")


def test_the_progress_line_counts_the_pending_articles_retrying_after_an_error(
    configure: Any,
) -> None:
    """A run whose pages wait for a retry (a host whose robots.txt cannot be read is
    asked again every 5 minutes, five times) printed "13 pending" once and then nothing
    for twenty minutes: the line says they are retrying after an error."""
    configure(extract_claims="false")
    from schemas.types import utcnow
    from tests.support.webdata import _article
    from worker.core.db import init_db, unit_of_work
    from worker.reports.status import progress

    init_db()
    with unit_of_work() as s:
        for n, attempts in enumerate((0, 2, 1)):
            a = _article(
                s, f"https://r.example/{n}", "r.example", "t", "", utcnow(), state="discovered"
            )
            a.attempts = attempts
        done = _article(s, "https://r.example/d", "r.example", "t", "x", utcnow())
        done.attempts = 3  # (failed once, then processed: not retrying)
    with unit_of_work() as s:
        now = progress(s, utcnow())
    assert (now.pending, now.retrying) == (3, 2)
    assert "articles: 1 processed, 3 pending (2 retrying after an error), 0 failed" in now.line()


def test_progress_lines_come_only_when_due_and_changed(
    configure, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded run's progress line: counted at most every ``every`` seconds, and
    printed only when a count changed since the last line."""
    configure(extract_claims="false")
    from schemas.types import utcnow
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.embedded.run import ProgressReporter
    from worker.jobs.discovery import create_urls_job

    init_db()
    now = [0.0]
    lines: list[str] = []
    reporter = ProgressReporter(lines.append, utcnow(), every=15.0, clock=lambda: now[0])
    assert not reporter.due()
    now[0] = 15.0
    assert reporter.due()
    first = reporter.report()
    assert first == (
        "feeds: 0 polled, 0 failing; articles: 0 processed, 0 pending, 0 failed, "
        "0 skipped; claims: 0"
    )
    assert not reporter.due()
    now[0] = 30.0
    assert reporter.report() is None  # nothing changed: no line
    serve_site(server)
    with unit_of_work() as s:
        create_urls_job(s, [server.url(f"/news/{slug}") for slug, *_ in STORIES], get_settings())
    from tests.test_backfill_helpers import run_items

    with unit_of_work() as s:
        from worker.jobs import lifecycle

        job_id = int(lifecycle.list_jobs(s, 1)[0].id or 0)
    run_items(job_id)
    now[0] = 45.0
    line = reporter.report()
    assert line is not None and f"articles: {len(STORIES)} processed, 0 pending" in line
    assert lines == [first, line]


@pytest.mark.parametrize(
    ("setting", "cores", "expected"),
    [(-1, 1, 2), (-1, 2, 3), (-1, 3, 4), (-1, 16, 4), (-1, None, 2), (0, 8, 0), (6, 2, 6)],
)
def test_the_cpu_processes_are_one_more_than_the_cores_at_most_four(
    monkeypatch: pytest.MonkeyPatch, setting: int, cores: int | None, expected: int
) -> None:
    """The automatic count keeps the cores busy while a CPU process waits for SQLite's
    write lock (one more than the cores), within the laptop's ceiling; a set count is
    taken as it is, 0 included (the steps then run in the `run` process)."""
    from worker.core.settings import Settings
    from worker.embedded import cpu_pool

    monkeypatch.setattr(cpu_pool.os, "cpu_count", lambda: cores)
    assert cpu_pool.cpu_processes(Settings(embedded_cpu_processes=setting)) == expected


def test_the_watcher_does_not_stop_while_a_message_waits_in_a_queue(
    configure: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing pending in the database is not enough: a message waiting in the embedded
    broker's queue (here a claims message, as a group's new canonical gets after its
    commit) keeps `run --until-idle` going, check after check, until a worker takes
    it; then the run stops as idle."""
    import uuid

    from celery.worker import state as worker_state

    from worker.embedded import run as run_module

    assert callable(configure)
    settings = configure()
    made = claimwire(["init"], dict(os.environ), tmp_path)
    assert made.returncode == 0, made.stderr
    checks = [0]
    counted = run_module.pending_work_at_most

    def counting(session: object, at_most: int) -> int:
        checks[0] += 1
        return counted(session, at_most)  # type: ignore[arg-type]

    monkeypatch.setattr(run_module, "pending_work_at_most", counting)
    folder = settings.broker_dir / "queue"
    folder.mkdir(parents=True, exist_ok=True)
    waiting = folder / f"1_{uuid.uuid4()}.cpu.msg"
    waiting.write_text("{}")
    stop = threading.Event()
    ending: list[object] = []
    stopped: list[bool] = []
    watcher = threading.Thread(
        target=run_module._idle_watch,
        args=(stop, settings, ending, [lambda: stopped.append(True)]),
        kwargs={"tick": 0.05},
        daemon=True,
    )
    try:
        watcher.start()
        wait_until(lambda: checks[0] >= 8, 60, 0.02, "eight checks")
        assert ending == [] and stopped == [], "stopped with a message waiting"
        waiting.unlink()  # a worker took it
        watcher.join(timeout=60)
        assert not watcher.is_alive()
        assert ending == [run_module.Ending.IDLE] and stopped == [True]
    finally:
        stop.set()
        watcher.join(timeout=10)
        worker_state.should_stop = None


def test_the_watcher_dispatches_due_feeds_at_its_start_not_a_tick_later(
    configure: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --until-idle`'s first round (due feeds dispatched, jobs advanced, pending
    work counted) runs as the watcher starts: the run's first poll no longer waits a
    tick for it. With a tick of an hour, the first round still comes at once (it came
    an hour later before)."""
    from celery.worker import state as worker_state

    import tasks.schedule
    from worker.embedded import run as run_module

    assert callable(configure)
    settings = configure()
    made = claimwire(["init"], dict(os.environ), tmp_path)
    assert made.returncode == 0, made.stderr
    dispatched: list[bool] = []
    counted: list[bool] = []
    real_dispatch = tasks.schedule.dispatch_due_feeds
    real_count = run_module.pending_work_at_most

    def dispatch(*args: object, **kwargs: object) -> object:
        dispatched.append(True)
        return real_dispatch(*args, **kwargs)

    def count(session: object, at_most: int) -> int:
        counted.append(True)
        return real_count(session, at_most)  # type: ignore[arg-type]

    monkeypatch.setattr(tasks.schedule, "dispatch_due_feeds", dispatch)
    monkeypatch.setattr(run_module, "pending_work_at_most", count)
    stop = threading.Event()
    watcher = threading.Thread(
        target=run_module._idle_watch,
        args=(stop, settings, [], []),
        kwargs={"tick": 3600.0},
        daemon=True,
    )
    try:
        watcher.start()
        wait_until(lambda: bool(counted), 60, 0.02, "the first round")
        assert dispatched == [True] and counted == [True]
    finally:
        stop.set()
        watcher.join(timeout=10)
        worker_state.should_stop = None
