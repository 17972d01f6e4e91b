"""The whole path, as a user runs it: feed -> queue -> fetch -> clean text -> database ->
export, through the real `claimwire` command and real Celery workers."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import claimwire, cli_env
from worker.testing.content import STORIES, STORY_META, serve_site

ROOT = Path(__file__).resolve().parents[1]

ARTICLE_FIELDS = {
    "id",
    "url",
    "title",
    "author",
    "published_at",
    "language",
    "sitename",
    "text",
    "status",
    "duplicate_of",
    "feeds",
    "categories",
    "tags",
    "image",
    "page_canonical_url",
    "extractor",
    "encoding",
}
CLAIM_FIELDS = {
    "id",
    "article_url",
    "speaker",
    "verb",
    "text",
    "kind",
    "start",
    "end",
    "sentence",
    "cluster_id",
    "extractor_version",
}


def _export(what: str, env: dict[str, str], cwd: Path) -> list[dict[str, object]]:
    r = claimwire(["export", what], env, cwd)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def _check_articles(rows: list[dict[str, object]], feed_url: str) -> None:
    assert len(rows) == len(STORIES)
    by_title = {r["title"]: r for r in rows}
    for slug, title, author, paragraphs in STORIES:
        row = by_title[title]
        assert ARTICLE_FIELDS <= set(row)
        assert row["status"] == "processed", row
        assert str(row["url"]).endswith(f"/news/{slug}")
        assert row["author"] == author
        assert str(row["published_at"]).startswith("2026-03-02T")
        assert row["feeds"] == [feed_url]
        assert row["duplicate_of"] is None
        section, tags, image = STORY_META[slug]
        assert row["categories"] == [section]
        assert row["tags"] == tags
        assert row["image"] == str(row["url"]).replace(f"/news/{slug}", image)
        assert row["page_canonical_url"] == row["url"]
        assert row["extractor"] == "trafilatura"
        assert row["encoding"] == "utf-8"
        text = str(row["text"])
        # the body is there, the navigation and footer boilerplate are not
        assert paragraphs[0] in text
        assert "Subscribe to our newsletter" not in text
        assert "Section 3" not in text


def test_until_idle_on_embedded_default(server, tmp_path: Path) -> None:
    feed_url = serve_site(server)
    env = cli_env(tmp_path)
    assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0

    r = claimwire(["run", "--until-idle"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    _check_articles(_export("articles", env, tmp_path), feed_url)
    assert (tmp_path / "data" / "claimwire.db").exists()

    claims = _export("claims", env, tmp_path)
    assert claims, "the invented stories contain attributed statements"
    assert CLAIM_FIELDS <= set(claims[0])
    speakers = {c["speaker_resolved"] for c in claims} | {c["speaker"] for c in claims}
    assert any("Novak" in str(s) for s in speakers)
    from worker.claims import EXTRACTOR_VERSION

    assert {c["extractor_version"] for c in claims} == {EXTRACTOR_VERSION}

    pages_before = {p: n for p, n in server.hits.items() if p.startswith("/news/")}
    assert all(n == 1 for n in pages_before.values()) and len(pages_before) == len(STORIES)

    # A fresh look at unchanged feeds adds nothing and downloads no page twice.
    assert claimwire(["feeds", "poll", "--all"], env, tmp_path).returncode == 0
    r = claimwire(["run", "--until-idle"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert server.hits["304:/feed.xml"] == 1
    assert {p: n for p, n in server.hits.items() if p.startswith("/news/")} == pages_before
    assert len(_export("articles", env, tmp_path)) == len(STORIES)
    assert len(_export("claims", env, tmp_path)) == len(claims)

    csv_out = claimwire(["export", "articles", "--format", "csv"], env, tmp_path)
    assert csv_out.returncode == 0
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert len(rows) == len(STORIES) and ARTICLE_FIELDS <= set(rows[0])
    assert json.loads(rows[0]["feeds"]) == [feed_url]
    by_title = {r["title"]: r for r in rows}
    for slug, title, _author, _paragraphs in STORIES:
        section, tags, _image = STORY_META[slug]
        assert json.loads(by_title[title]["categories"]) == [section]
        assert json.loads(by_title[title]["tags"]) == tags
        assert by_title[title]["encoding"] == "utf-8"
    claims_csv = claimwire(["export", "claims", "--format", "csv"], env, tmp_path)
    assert claims_csv.returncode == 0
    claim_csv_rows = list(csv.DictReader(io.StringIO(claims_csv.stdout)))
    assert {r["extractor_version"] for r in claim_csv_rows} == {EXTRACTOR_VERSION}

    status = claimwire(["status", "--json"], env, tmp_path)
    data = json.loads(status.stdout)
    assert data["articles"]["processed"] == len(STORIES)
    assert data["feeds"] == {
        "total": 1,
        "healthy": 1,
        "failing": 0,
        "dead": 0,
        "paused": 0,
        "due": 0,
    }


@pytest.mark.postgres
@pytest.mark.redis
def test_until_idle_on_postgres_through_redis(
    server, tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    feed_url = serve_site(server)
    env = cli_env(tmp_path, DATABASE_URL=pg_url, BROKER_URL=redis_url)
    assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0
    r = claimwire(["run", "--until-idle"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    _check_articles(_export("articles", env, tmp_path), feed_url)
    assert not (tmp_path / "data" / "claimwire.db").exists(), "must not fall back to SQLite"


WEB_TOKEN = "compose-web-token-0123456789"


def _compose_commands() -> dict[str, list[str]]:
    """The `command` of every claimwire service in docker-compose.yml."""
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {
        name: [str(part) for part in svc["command"]]
        for name, svc in spec["services"].items()
        if isinstance(svc.get("command"), list) and svc["command"][0] in ("claimwire", "celery")
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_docker_compose_services_run_the_pipeline(
    server, tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    """docker-compose.yml describes a deployment that works: its migrate command, its
    io/cpu/backfill workers, its scheduler and Flower, run verbatim (only the schedule
    file and Flower's port are moved) against the real PostgreSQL and Redis, process a
    local feed end to end, and Flower answers."""
    commands = _compose_commands()
    assert {
        "migrate",
        "worker-io",
        "worker-cpu",
        "worker-backfill",
        "scheduler",
        "flower",
        "web",
    } <= set(commands)
    feed_url = serve_site(server)
    env = cli_env(tmp_path, DATABASE_URL=pg_url, BROKER_URL=redis_url, DISPATCH_INTERVAL="1")
    migrate = commands["migrate"]
    assert migrate[0] == "claimwire"
    assert claimwire(migrate[1:], env, tmp_path).returncode == 0
    assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0

    flower_port = _free_port()
    web_port = _free_port()
    procs = []
    for name in ("worker-io", "worker-cpu", "worker-backfill", "scheduler", "flower", "web"):
        cmd = [
            str(tmp_path / "beat-schedule")
            if part == "/data/beat-schedule"
            else f"--port={flower_port}"
            if part.startswith("--port=")
            else part
            for part in commands[name]
        ]
        if name == "web":  # `claimwire web ... --port 8000`: on a free port here
            cmd[cmd.index("--port") + 1] = str(web_port)
            cmd = ["worker.cli", *cmd[1:]]
        else:
            assert cmd[0] == "celery"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", *cmd],
                env={**env, "CLAIMWIRE_WEB_TOKEN": WEB_TOKEN} if name == "web" else env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        deadline = time.monotonic() + 120
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            rows = _export("articles", env, tmp_path)
            if len(rows) == len(STORIES) and all(r["status"] == "processed" for r in rows):
                break
            time.sleep(1)
        _check_articles(rows, feed_url)
        page = ""
        while time.monotonic() < deadline and "<html" not in page.lower():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/", timeout=5) as r:
                    page = r.read().decode("utf-8", "replace")
            except OSError:
                time.sleep(1)
        assert "flower" in page.lower(), "Flower did not serve its dashboard"
        # the web service reads the same database
        body: dict[str, object] = {}
        while time.monotonic() < deadline and not body:
            try:
                url = f"http://127.0.0.1:{web_port}/api/v1/articles?state=processed"
                with urllib.request.urlopen(url, timeout=5) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(1)
        items = body.get("items")
        assert isinstance(items, list) and len(items) == len(STORIES), body
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/status", timeout=5) as r:
            assert "processed" in r.read().decode()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
