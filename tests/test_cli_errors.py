"""Bad input on the command line and in settings: the real `claimwire` command (a
subprocess) prints one clear line, exits non-zero, shows no traceback, leaves nothing
half-done and never prints a password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import claimwire, cli_env


def _one_line_error(r: object, *needles: str, status: int = 2) -> str:
    from subprocess import CompletedProcess

    assert isinstance(r, CompletedProcess)
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {r.stderr!r}"
    line = str(lines[0])
    assert line.startswith("claimwire: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["feeds", "add", "not-a-url"], "not an absolute http(s) URL"),
        (["feeds", "add", "ftp://example.org/feed.xml"], "not an absolute http(s) URL"),
        (["feeds", "add", "http://"], "not an absolute http(s) URL"),
        (["feeds", "add", "javascript:alert(1)"], "not an absolute http(s) URL"),
        (["feeds", "add", "file:///etc/passwd"], "not an absolute http(s) URL"),
        (["feeds", "add", "http://[::1/feed"], "URL"),
        (["feeds", "remove", "999"], "no feed with id or URL '999'"),
        (["feeds", "remove", "https://nowhere.example/feed"], "no feed"),
        (["feeds", "poll", "12345"], "no feed with id or URL '12345'"),
        (["feeds", "poll"], "give a feed id or URL, or --all"),
        (["feeds", "import", "/nonexistent/subscriptions.opml"], "cannot read"),
        (["claims", "search", "--since", "yesterday"], "--since: not a date"),
        (["claims", "search", "--since", "2026-13-45"], "not a date"),
        (["replay", "abc"], "Invalid value"),
        (["replay", "999"], "no article with id 999; nothing replayed"),
        (["replay", "99999999999999999999"], "no article with id"),
        (["jobs", "show", "99999999999999999999"], "not a job id"),
        (["feeds", "remove", "99999999999999999999"], "no feed with id or URL"),
        (["feeds", "poll", "http://"], "no feed"),
        (["reprocess", "--since", "2026-02-30"], "--since: not a date"),
        (["reprocess", "--until", "next week"], "--until: not a date"),
        (["backfill", "sitemap", "https://example.org/s.xml", "--since", "soon"], "not a date"),
        (["backfill", "sitemap", "not a url", "--since", "2026-01-01"], "URL"),
        (["export", "comments"], "'articles' or 'claims'"),
        (["export", "articles", "--format", "xml"], "jsonl or csv"),
        (["status", "--no-such-option"], "No such option"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str], needle: str) -> None:
    env = cli_env(tmp_path)
    _one_line_error(claimwire(args, env, tmp_path, timeout=60), needle)


def test_bad_url_among_good_ones_adds_nothing(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    r = claimwire(
        ["feeds", "add", "https://a.example/feed", "not a url", "https://b.example/feed"],
        env,
        tmp_path,
    )
    _one_line_error(r, "not an absolute http(s) URL")
    listed = claimwire(["feeds", "list", "--json"], env, tmp_path)
    assert listed.returncode == 0 and listed.stdout.strip() == "", "nothing half-done"


def test_export_to_unwritable_place(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    r = claimwire(
        ["export", "articles", "--out", str(tmp_path / "no" / "dir" / "x.jsonl")], env, tmp_path
    )
    _one_line_error(r, "No such file or directory")


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("POLL_JITTER", "5", "CLAIMWIRE_POLL_JITTER='5': must be between 0 and 1"),
        ("MAX_ATTEMPTS", "many", "CLAIMWIRE_MAX_ATTEMPTS='many'"),
        ("STALE_AFTER", "soon", "CLAIMWIRE_STALE_AFTER"),
        ("ALLOW_PRIVATE_NETWORKS", "perhaps", "CLAIMWIRE_ALLOW_PRIVATE_NETWORKS"),
        ("DATABASE_URL", "mysql://root@127.0.0.1/news", "PostgreSQL (postgresql://"),
    ],
)
@pytest.mark.parametrize("command", [["status"], ["run", "--until-idle"], ["feeds", "list"]])
def test_invalid_settings(
    tmp_path: Path, variable: str, value: str, needle: str, command: list[str]
) -> None:
    env = cli_env(tmp_path, **{variable: value})
    line = _one_line_error(claimwire(command, env, tmp_path, timeout=60), "invalid setting", needle)
    assert len(line) < 200
    assert not (tmp_path / "data" / "claimwire.db").exists(), "nothing created"


SECRET = "Hunter2-secret"


@pytest.mark.parametrize(
    "command",
    [["init"], ["status"], ["run", "--until-idle"], ["feeds", "add", "https://x.example/f"]],
)
def test_database_that_cannot_connect(tmp_path: Path, command: list[str]) -> None:
    url = f"postgresql://alice:{SECRET}@127.0.0.1:1/news"
    env = cli_env(tmp_path, DATABASE_URL=url)
    r = claimwire(command, env, tmp_path, timeout=60)
    line = _one_line_error(r, "cannot connect to the database", "alice:***@127.0.0.1:1/news")
    assert SECRET not in r.stdout + r.stderr, line


@pytest.mark.postgres
@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
def test_database_that_does_not_exist_on_a_real_server(
    tmp_path: Path, pg_available: bool, log_level: str
) -> None:
    """A reachable PostgreSQL server, a database (and role) that do not exist, and a
    password in the URL: one masked line, even at DEBUG, and no database created."""
    from tests.conftest import PG_ADMIN_URL, need

    need(pg_available, "PostgreSQL at 127.0.0.1:5432")
    import psycopg

    host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    name = "cw_no_such_db_for_cli_errors"
    env = cli_env(tmp_path, DATABASE_URL=f"postgresql://bob:{SECRET}@{host}/{name}")
    env["CLAIMWIRE_LOG_LEVEL"] = log_level
    for command in (["status"], ["feeds", "add", "https://x.example/f"]):
        r = claimwire(command, env, tmp_path, timeout=60)
        _one_line_error(r, "cannot connect to the database", f"bob:***@{host}/{name}")
        assert SECRET not in r.stdout + r.stderr
    with psycopg.connect(PG_ADMIN_URL) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert row.fetchone() == (0,), "nothing created"


def test_config_masks_the_database_password(tmp_path: Path) -> None:
    env = cli_env(tmp_path, DATABASE_URL=f"postgresql://alice:{SECRET}@127.0.0.1:1/news")
    env["COLUMNS"] = "400"  # a table wrapped at 80 columns could split a password
    r = claimwire(["config"], env, tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    assert "alice:***@127.0.0.1:1/news" in r.stdout


def test_database_url_that_is_not_a_url(tmp_path: Path) -> None:
    env = cli_env(tmp_path, DATABASE_URL="definitely not a database")
    r = claimwire(["status"], env, tmp_path, timeout=60)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr


def test_passwords_masked_in_status_and_config(tmp_path: Path) -> None:
    """An unreachable broker with a password: status still answers (queues unknown)
    and prints no password; neither does `config`."""
    env = cli_env(tmp_path, BROKER_URL=f"redis://:{SECRET}@127.0.0.1:1/0")
    env["COLUMNS"] = "400"  # a table wrapped at 80 columns could split a password
    for args in (["status"], ["status", "--json"], ["config"], ["init"]):
        r = claimwire(args, env, tmp_path, timeout=60)
        assert r.returncode == 0, r.stderr
        assert SECRET not in r.stdout + r.stderr, args
    data = json.loads(claimwire(["status", "--json"], env, tmp_path).stdout)
    assert data["broker"] == "redis://:***@127.0.0.1:1/0"
    assert set(data["queues"].values()) == {None}


def test_help_and_no_arguments(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    assert claimwire(["--help"], env, tmp_path).returncode == 0
    r = claimwire([], env, tmp_path)
    assert r.returncode == 2 and "Usage" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
