"""Issue 18, item 6: the `claimwire` command as a new user meets it. `--wait` on a
terminal (a real pseudo-terminal here), JSON on stdout and nothing else, `--version`,
`extract` refusing a Markdown file, the advice after a blocked address, tables at 80
columns, and the commands that need no model starting without importing one."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import claimwire, cli_env
from tests.test_backfill_helpers import serve_articles


def on_terminal(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120, columns: int = 100
) -> tuple[int | None, str]:
    """Run `claimwire ARGS` with stdin, stdout and stderr on a pseudo-terminal (what a
    user typing the command has); the exit status (None: still running at ``timeout``,
    then killed) and everything it wrote."""
    master, slave = pty.openpty()
    env = {**env, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=cwd,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the other side is closed
                    data = b""
                if data:
                    chunks.append(data)
                    continue
            if proc.poll() is not None and not ready:
                break
            if ready:  # EOF
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
                break
    except subprocess.TimeoutExpired:
        pass
    finally:
        os.close(master)
    status = proc.poll()
    if status is None:
        proc.kill()
        proc.wait()
    text = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
    return status, _ANSI.sub("", text)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_wait_on_a_terminal_finishes(server: Any, tmp_path: Path) -> None:
    """`backfill --wait`, `reprocess --wait` and `jobs show N --wait` on a terminal end
    with the job (they looped for ever at full CPU: rich's proxy of sys.stderr wrote
    through the console that wrote to sys.stderr)."""
    site = serve_articles(server, 3, "tty")
    urls = tmp_path / "urls.txt"
    urls.write_text("\n".join(server.url(p) for p in site.pages) + "\n")
    env = cli_env(tmp_path, EXTRACT_CLAIMS="false")

    status, output = on_terminal(["backfill", "urls", str(urls), "--wait"], env, tmp_path)
    assert status == 0, output[-2000:]
    assert "job 1 done: 3 discovered, 3 fetched, 3 done" in output

    status, output = on_terminal(
        ["reprocess", "--outlet", "127.0.0.1", "--since", "2026-01-01", "--wait"], env, tmp_path
    )
    assert status == 0, output[-2000:]
    assert "job 2 done: 3 selected, 3 done" in output

    r = claimwire(["backfill", "urls", str(urls)], env, tmp_path)  # queued, not run
    assert r.returncode == 0 and "job 3 queued" in r.stdout, r.stderr
    status, output = on_terminal(["jobs", "show", "3", "--wait"], env, tmp_path)
    assert status == 0, output[-2000:]
    assert "job 3 done" in output


def test_jobs_show_wait_json_is_only_json(server: Any, tmp_path: Path) -> None:
    """stdout carries the JSON and nothing else (Celery's "worker: Warm shutdown" went to
    file descriptor 1); progress and logs go to stderr."""
    site = serve_articles(server, 2, "json")
    urls = tmp_path / "urls.txt"
    urls.write_text("\n".join(server.url(p) for p in site.pages) + "\n")
    env = cli_env(tmp_path, EXTRACT_CLAIMS="false")
    r = claimwire(["backfill", "urls", str(urls)], env, tmp_path)
    assert r.returncode == 0, r.stderr
    r = claimwire(["jobs", "show", "1", "--wait", "--json"], env, tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads(r.stdout)
    assert row["id"] == 1 and row["state"] == "done" and row["done"] == 2
    assert "Warm shutdown" not in r.stdout


NOISE = ("SecurityWarning", "superuser", "--uid", "Warm shutdown", "poll_held_for_turn")
"""What the embedded run and `--wait` printed besides their own lines: Celery's warning
about root (nine lines, once per process: four times in a run with its CPU processes),
each CPU process's "worker: Warm shutdown (MainProcess)", a log line per feed poll held
for its host's turn, and a log line per article step under `--wait`'s progress bar."""


def test_run_and_wait_print_claimwire_lines_only(server: Any, tmp_path: Path) -> None:
    """What a new user reads after `claimwire run --until-idle` and `reprocess --wait`:
    claimwire's own lines. (The root warning is only printed for root, as in CI and in
    containers; the other lines for everyone.)"""
    from worker.testing.content import STORIES, serve_site

    # three feeds on one host, a second apart: the second and third polls wait their turn
    feeds = [serve_site(server, prefix=f"/s{i}", site=f"Site {i}") for i in range(3)]
    env = cli_env(tmp_path, EXTRACT_CLAIMS="false", HOST_MIN_INTERVAL="1")
    assert claimwire(["feeds", "add", *feeds], env, tmp_path).returncode == 0
    r = claimwire(["run", "--until-idle"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"processed {3 * len(STORIES)}" in r.stderr
    assert r.stdout == ""
    shown = [line for line in r.stderr.splitlines() if any(n in line for n in NOISE)]
    assert shown == [], r.stderr[-3000:]

    r = claimwire(["reprocess", "--outlet", "127.0.0.1", "--wait"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{3 * len(STORIES)} selected, {3 * len(STORIES)} done" in r.stderr
    noise = [
        line
        for line in r.stderr.splitlines()
        if any(n in line for n in (*NOISE, "article_step_done"))
    ]
    assert noise == [], r.stderr[-3000:]


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    r = claimwire(["--version"], cli_env(tmp_path), tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"claimwire {version('claimwire')}"
    assert not (tmp_path / "data").exists()  # no database made for it


def test_extract_refuses_a_markdown_file(tmp_path: Path) -> None:
    """A Markdown or plain-text file is not a web page: an error record and exit 1,
    not a made-up article. A page saved without a doctype is still read."""
    notes = tmp_path / "notes.md"
    notes.write_text(
        "# Council meeting\n\nThe mayor said the *tram line* would open in May. " * 20
        + "\n\n- one\n- two\n",
        encoding="utf-8",
    )
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Tram</title></head><body><article>"
        + "<p>The mayor said the tram line would open in May, two years late.</p>" * 6
        + "</article></body></html>",
        encoding="utf-8",
    )
    r = claimwire(["extract", "--jsonl", str(notes), str(page)], cli_env(tmp_path), tmp_path)
    assert r.returncode == 1, r.stderr
    md, html = [json.loads(line) for line in r.stdout.splitlines()]
    assert md["error"].startswith("not HTML: text without HTML markup") and md["text"] == ""
    assert "error" not in html and "tram line" in html["text"]
    assert "1 of 2 page(s) failed" in r.stderr


_IMPORTS_PROBE = """
import json, sys
from worker.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""

NOT_AT_STARTUP = (
    "spacy",
    "thinc",
    "trafilatura",
    "lxml",
    "celery",
    "fastapi",
    "alembic",
    "redis",
    "httpx",
    "feedparser",
    "courlan",
)
"""Libraries a command that reads the database needs none of with the embedded broker
(issue 18: `status`, `claims search` and `export` took about 2 s, most of it importing
these)."""


@pytest.mark.parametrize(
    "command",
    [["status"], ["claims", "search", "--speaker", "mayor"], ["export", "claims"], ["--version"]],
    ids=["status", "claims-search", "export", "version"],
)
def test_commands_that_need_no_model_import_none(command: list[str], tmp_path: Path) -> None:
    """The set of modules imported, in a fresh interpreter, by a command on a migrated
    database (the first command on a new database migrates it: Alembic then loads)."""
    env = cli_env(tmp_path)
    r = claimwire(["status"], env, tmp_path)  # create and migrate the database
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-c", _IMPORTS_PROBE, *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    modules = set(json.loads(r.stderr.strip().splitlines()[-1]))
    loaded = sorted(m for m in NOT_AT_STARTUP if m in modules)
    assert loaded == [], f"{command} imported {loaded}"


def test_blocked_feed_advice_names_feeds_poll(tmp_path: Path) -> None:
    """A feed blocked by the private-network guard backs off; once the setting allows it,
    the next runs would repeat the old error until the back-off ends. The advice says
    `claimwire feeds poll ID` polls it now, and it does."""
    url = "http://127.0.0.1:9/feed.xml"  # nothing listens on the discard port
    blocked = cli_env(tmp_path, ALLOW_PRIVATE_NETWORKS="false")
    assert claimwire(["feeds", "add", url], blocked, tmp_path).returncode == 0
    r = claimwire(["run", "--until-idle"], blocked, tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "blocked address" in r.stderr
    assert "(next poll in " in r.stderr
    assert "once the cause is fixed, `claimwire feeds poll 1` retries now" in r.stderr
    r = claimwire(["status"], blocked, tmp_path)
    assert "or now: `claimwire feeds poll 1`" in " ".join(r.stdout.split()), r.stdout

    allowed = cli_env(tmp_path, ALLOW_PRIVATE_NETWORKS="true")
    r = claimwire(["run", "--until-idle"], allowed, tmp_path)  # not due: the old error
    assert "blocked address" in r.stderr
    r = claimwire(["feeds", "poll", "1"], allowed, tmp_path)
    assert r.returncode == 0 and "1 feed(s) due now" in r.stdout, r.stderr
    claimwire(["run", "--until-idle"], allowed, tmp_path)
    shown = json.loads(claimwire(["feeds", "show", "1", "--json"], allowed, tmp_path).stdout)
    assert shown["polls_total"] == 2
    assert "blocked address" not in (shown["last_error"] or "")  # polled: refused instead


def _cells(line: str) -> int:
    from rich.cells import cell_len

    return cell_len(line)


def test_tables_fit_80_columns_with_whole_values_and_one_duration_format(
    tmp_path: Path,
) -> None:
    """At 80 columns: no line is wider, short values (ids, states, times, counts) are
    whole, long text ends in "…" instead of being cut silently, and durations read
    "37m 30s" / "1h 15m" everywhere (they read "2250s" next to "75m")."""
    from tests.support.webdata import seed
    from worker.core.settings import get_settings, reset_settings

    env = cli_env(tmp_path)
    os.environ["CLAIMWIRE_DATA_DIR"] = env["CLAIMWIRE_DATA_DIR"]
    try:
        reset_settings()
        seed(get_settings())
    finally:
        del os.environ["CLAIMWIRE_DATA_DIR"]
        reset_settings()
    long_url = "https://www.example-regional-newspaper.org/sections/local-politics/feed.rss"
    assert claimwire(["feeds", "add", long_url], env, tmp_path).returncode == 0
    assert claimwire(["feeds", "set", "4", "--interval", "2250"], env, tmp_path).returncode == 0
    r = claimwire(["feeds", "set", "1", "--interval", "75m"], env, tmp_path)
    assert r.stdout.strip().endswith("polled every 1h 15m"), r.stdout
    outputs = {}
    for command in (
        ["feeds", "list"],
        ["feeds", "show", "4"],
        ["jobs", "list"],
        ["jobs", "show", "1"],
        ["status"],
        ["claims", "search"],
    ):
        status, output = on_terminal(command, env, tmp_path, columns=80)
        assert status == 0, output
        wide = [line for line in output.splitlines() if _cells(line) > 80]
        assert wide == [], (command, wide)
        outputs[" ".join(command)] = output
    listing = outputs["feeds list"]
    rows = [line for line in listing.splitlines() if line.startswith("│")]
    assert len(rows) == 4  # one line per feed
    assert "37m 30s*" in listing and "1h 15m*" in listing
    (row4,) = [r for r in rows if r.split("│")[1].strip() == "4"]
    # a URL too long for its cell keeps its host's start and its path's end
    url4 = row4.split("│")[3].strip()
    assert url4.startswith("www.exampl") and url4.endswith("/feed.rss") and "…" in url4, url4
    (row2,) = [r for r in rows if r.split("│")[1].strip() == "2"]
    assert row2.split("│")[2].strip() == "failing" and "HTTP 503…" in row2
    assert "37m 30s" in outputs["feeds show 4"]
    assert "2250" not in outputs["feeds show 4"]
    assert " reprocess " in outputs["jobs list"] and " running " in outputs["jobs list"]
    search = outputs["claims search"]
    # the claim wraps at words: every word of it is there whole
    words = " ".join(_column(search, "claim")).split()
    for word in ["the", "steelworks", "in", "Korlin", "will", "reopen", "by", "spring"]:
        assert word in words, (word, search)


def _column(table: str, header: str) -> list[str]:
    """The cells of one column of a rich table, found by its header, top to bottom."""
    lines = table.splitlines()
    (head,) = [line for line in lines if line.startswith("┃")]
    index = [cell.strip() for cell in head.split("┃")].index(header)
    return [line.split("│")[index].strip() for line in lines if line.startswith("│")]


def test_at_80_columns_names_claims_urls_and_settings_stay_readable(tmp_path: Path) -> None:
    """At 80 columns `claims search` gave the claim 16 cells and the speaker 12, cut to
    its title ("Director…", "Councillor…": every speaker a title); `feeds list` showed
    every feed of one site as the same "http://127.0.0…"; `config` cut the variables'
    names ("CLAIMWIRE_SQLITE_BUSY_…"). Now: the claim has 30 cells or more, a speaker
    keeps the end of their name, a URL its host and the end of its path, and every
    variable's name is whole."""
    from tests.support.webdata import seed
    from worker.core.settings import get_settings, reset_settings, settings_table

    env = cli_env(tmp_path)
    os.environ["CLAIMWIRE_DATA_DIR"] = env["CLAIMWIRE_DATA_DIR"]
    try:
        reset_settings()
        seed(get_settings())
    finally:
        del os.environ["CLAIMWIRE_DATA_DIR"]
        reset_settings()
    site = "https://www.example-regional-newspaper.org/sections"
    feeds = [f"{site}/local-politics/feed.rss", f"{site}/business-and-economy/feed.rss"]
    assert claimwire(["feeds", "add", *feeds], env, tmp_path).returncode == 0
    outputs = {}
    for command in (["claims", "search", "--speaker", "Novak"], ["feeds", "list"], ["config"]):
        status, output = on_terminal(command, env, tmp_path, columns=80)
        assert status == 0, output
        assert [line for line in output.splitlines() if _cells(line) > 80] == [], output
        outputs[command[0]] = output
    search = outputs["claims"]
    head = next(line for line in search.splitlines() if line.startswith("┃")).split("┃")
    claim_cell = head[[cell.strip() for cell in head].index("claim")]
    assert _cells(claim_cell) - 2 >= 30, search  # (a space either side)
    assert "Maria Novak" in _column(search, "speaker"), search
    urls = _column(outputs["feeds"], "url")
    assert urls[-2] != urls[-1], urls  # the two feeds of one site told apart
    assert urls[-2].endswith("/feed.rss") and urls[-1].endswith("/feed.rss"), urls
    names = _column(outputs["config"], "variable")
    assert [var for var, _, _ in settings_table()] == [n for n in names if n], names


def test_mistakes_are_named_and_notes_wrap_at_words(tmp_path: Path) -> None:
    """A search from a later day to an earlier one said "no stored claim" as if nothing
    matched; one bad URL among several said only what was wrong with it, not that the
    others were not added either; a note wider than the terminal broke in the middle of
    a word; the frontier's turns read "285.8 s" beside "1h 15m"."""
    from tests.support.webdata import seed
    from worker.core.settings import get_settings, reset_settings

    env = cli_env(tmp_path)
    r = claimwire(
        ["claims", "search", "--since", "2026-03-02", "--until", "2026-03-01"], env, tmp_path
    )
    assert r.returncode == 2, r.stderr
    assert "--since 2026-03-02 is after --until 2026-03-01" in r.stderr
    r = claimwire(["feeds", "add", "https://fine.example/feed.xml", "not a url"], env, tmp_path)
    assert r.returncode == 2 and "none of the others was added either" in r.stderr, r.stderr
    assert claimwire(["feeds", "list", "--json"], env, tmp_path).stdout == ""

    os.environ["CLAIMWIRE_DATA_DIR"] = env["CLAIMWIRE_DATA_DIR"]
    try:
        reset_settings()
        seed(get_settings())
    finally:
        del os.environ["CLAIMWIRE_DATA_DIR"]
        reset_settings()
    status, output = on_terminal(["claims", "search", "--limit", "1"], env, tmp_path, columns=80)
    assert status == 0, output
    note = output[: output.index("┏")]
    assert "--limit N shows more)" in " ".join(note.split()), note  # every word whole

    from worker.cli.service_commands import _turn_in

    assert _turn_in(285.8) == "4m 46s" and _turn_in(0.35) == "0.3s"


def test_help_paragraphs_are_wrapped_to_the_terminal_not_to_the_source(tmp_path: Path) -> None:
    """Typer's help kept the line breaks of a command's docstring: at 80 columns
    `run --help` read "...With --until-idle the" / "exit status says ...", a line of
    one word between two full ones, all through. Paragraphs are joined, then wrapped
    to the terminal's width."""
    env = {**cli_env(tmp_path), "COLUMNS": "80"}
    for args in (["run", "--help"], ["--help"], ["claims", "--help"]):
        r = claimwire(args, env, tmp_path)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80
        start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 1
        end = next(i for i, line in enumerate(lines) if line.startswith("╭─"))
        paragraphs: list[list[str]] = [[]]
        for line in lines[start:end]:
            if line.strip():
                paragraphs[-1].append(line.strip())
            elif paragraphs[-1]:
                paragraphs.append([])
        for paragraph in paragraphs:
            for line in paragraph[:-1]:  # every line but a paragraph's last is full
                assert len(line) >= 60, (args, paragraph)
    commands = claimwire(["--help"], env, tmp_path).stdout
    # the commands' panel: `web`'s line breaks made "search claims, see" / "how a..."
    assert "search claims, see how a claim spread" in " ".join(
        line.strip("│ ") for line in commands.splitlines()
    )
