"""`claimwire feeds show`: one feed's health and its recent polls, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import claimwire, cli_env
from worker.testing.content import STORIES, serve_site


def test_feeds_show_lists_health_and_recent_polls(server, tmp_path: Path) -> None:
    feed_url = serve_site(server)
    env = cli_env(tmp_path, EXTRACT_CLAIMS="false")
    assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0
    assert claimwire(["run", "--until-idle"], env, tmp_path).returncode == 0
    assert claimwire(["feeds", "poll", "1"], env, tmp_path).returncode == 0
    assert claimwire(["run", "--until-idle"], env, tmp_path).returncode == 0

    r = claimwire(["feeds", "show", feed_url, "--json"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["url"] == feed_url and shown["polls_total"] == 2
    # newest first: the re-poll found nothing new (304 or same body), the first found all
    assert [p["entries_new"] for p in shown["polls"]] == [0, len(STORIES)]
    assert shown["polls"][1]["outcome"] == "ok" and shown["polls"][1]["http_status"] == 200
    assert shown["polls"][0]["outcome"] in ("not_modified", "unchanged")

    table = claimwire(["feeds", "show", "1", "--polls", "1"], env, tmp_path)
    assert table.returncode == 0
    assert "recent polls" in table.stdout and feed_url in table.stdout

    missing = claimwire(["feeds", "show", "42"], env, tmp_path)
    assert missing.returncode == 2
    assert "no feed with id or URL '42'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_feeds_list_piped_is_not_squeezed_to_80_columns(tmp_path: Path) -> None:
    """Output to a pipe or a file (no terminal width) keeps whole URLs in the table."""
    env = cli_env(tmp_path)
    env.pop("COLUMNS", None)
    url = "https://news.example.org/world/section-with-a-long-name/rss.xml"
    assert claimwire(["feeds", "add", url], env, tmp_path).returncode == 0
    listed = claimwire(["feeds", "list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert url in listed.stdout
