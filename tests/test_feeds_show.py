"""`claimwire feeds show`: one feed's health and its recent polls, as a user runs it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

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


def test_piped_tables_are_80_columns_or_columns_wide(tmp_path: Path) -> None:
    """Output to a pipe or a file (`feeds list | less`, `> f.txt`) was 240 columns wide
    whatever COLUMNS said: a pager on an 80-column terminal wrapped every line. It is
    80 columns without COLUMNS, COLUMNS wide with it; a line of text is not wrapped."""
    env = cli_env(tmp_path)
    env.pop("COLUMNS", None)
    url = "https://news.example.org/world/section-with-a-long-name/rss.xml"
    assert claimwire(["feeds", "add", url], env, tmp_path).returncode == 0
    listed = claimwire(["feeds", "list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines and max(len(line) for line in lines) == 80, listed.stdout
    assert "news.example…-long-name/rss.xml" in listed.stdout  # its host and end kept
    wide = claimwire(["feeds", "list"], {**env, "COLUMNS": "200"}, tmp_path)
    assert url in wide.stdout and max(len(line) for line in wide.stdout.splitlines()) <= 200
    narrow = claimwire(["feeds", "list"], {**env, "COLUMNS": "60"}, tmp_path)
    assert max(len(line) for line in narrow.stdout.splitlines()) == 60, narrow.stdout
    # a line of text stays one line, whatever its length (grep, a log, a URL copied)
    status = claimwire(["status"], {**env, "COLUMNS": "40"}, tmp_path)
    assert status.returncode == 0, status.stderr
    assert any(
        line.startswith("feeds: 1 total, 1 healthy,") and line.endswith(" due now")
        for line in status.stdout.splitlines()
    ), status.stdout


def test_a_feeds_next_poll_is_worked_out_when_shown(configure: Any, tmp_path: Path) -> None:
    """`feeds list` and `feeds show` say how far off a feed's next poll is as they run
    ("in 1h 4m") from the time the database keeps, not from a sentence stored with
    its error ("...; next poll in 63 min", still shown hours later)."""
    from sqlalchemy import update

    from schemas.models import Feed
    from schemas.types import utcnow
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.subscriptions import add_feeds

    settings = configure()
    init_db(settings)
    url = "https://down.example/rss.xml"
    with unit_of_work() as s:
        add_feeds(s, [(url, None, [])], settings)
        s.execute(
            update(Feed).values(
                state="failing",
                consecutive_failures=1,
                last_error="robots.txt of down.example unreachable: HTTP 503",
                next_poll_at=utcnow() + timedelta(minutes=95),
            )
        )
    env = {**cli_env(tmp_path), "COLUMNS": "200"}
    listed = claimwire(["feeds", "list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    # "in 1h 34m" (a minute less when the command is slow to start)
    assert re.search(r"│ in 1h 3\dm +│", listed.stdout), listed.stdout
    shown = claimwire(["feeds", "show", "1"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"next_poll_at +\d{4}-\d\d-\d\dT[0-9:.+]+ \(in 1h 3\dm\)", shown.stdout)
