"""The `claimwire backfill / reprocess / jobs` commands as a user runs them (embedded
broker, SQLite): `--wait` works in-process on a laptop, the job commands, and bad
input giving one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import claimwire, cli_env
from tests.test_backfill_helpers import serve_articles


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from worker.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_backfill_urls_wait_runs_in_process(
    server, tmp_path: Path, configure, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = serve_articles(server, 15, "cli")
    url_file = tmp_path / "urls.txt"
    url_file.write_text("\n".join(server.url(p) for p in site.pages) + "\n# comment\nnope\n")
    env = cli_env(tmp_path, EXTRACT_CLAIMS="false", BACKFILL_CONCURRENCY="3")

    # A real process, as on a laptop: embedded broker, no `claimwire run` anywhere.
    r = claimwire(["backfill", "urls", str(url_file), "--wait"], env, tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "job 1 queued" in r.stdout
    assert "job 1 done: 15 discovered, 15 fetched, 15 done" in r.stderr
    assert "skipped invalid URL nope" in r.stderr
    assert all(server.hits[p] == 1 for p in site.pages)

    # Reprocess them from the archive, in-process too: nothing fetched again.
    r = claimwire(
        ["reprocess", "--outlet", "127.0.0.1", "--since", "2026-01-01", "--wait"],
        env,
        tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "job 2 queued (reprocess, 15 articles)" in r.stdout
    assert "job 2 done: 15 selected, 15 done, 0 skipped, 0 failed" in r.stderr
    assert r.stderr.count("jobs_finished") <= 1, r.stderr  # the end logged once (audit LOW 14)
    assert "fetched" not in r.stderr
    assert all(server.hits[p] == 1 for p in site.pages)

    # The same data directory in-process (faster): list, stdin, pause/resume/cancel.
    configure(extract_claims="false")
    code, out, _ = _main(["jobs", "list", "--json"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["kind"], r["state"], r["done"]) for r in rows] == [
        (2, "reprocess", "done", 15),
        (1, "backfill_urls", "done", 15),
    ]

    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(server.url(site.pages[0]) + "?x=1\n"))
    code, out, err = _main(["backfill", "urls", "-"], capsys)
    assert code == 0 and "job 3 queued" in out, err
    assert "claimwire run" in err
    for cmd, state in (("pause", "paused"), ("resume", "queued"), ("cancel", "cancelled")):
        code, out, err = _main(["jobs", cmd, "3"], capsys)
        assert code == 0 and f"job 3 {state}" in out, err
    code, out, err = _main(["jobs", "resume", "3"], capsys)
    assert code == 2 and "is cancelled" in err
    code, out, _ = _main(["jobs", "show", "3", "--json"], capsys)
    show = json.loads(out)
    assert show["state"] == "cancelled" and show["finished_at"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["backfill", "feed", "99", "--since", "2026-01-01"], "no feed with id or URL '99'"),
        (["backfill", "feed", "1", "--since", "last tuesday"], "--since: not a date"),
        (
            ["backfill", "feed", "1", "--since", "2026-02-01", "--until", "2026-01-01"],
            "is after --until",
        ),
        (["backfill", "urls", "/nonexistent/urls.txt"], "cannot read /nonexistent/urls.txt"),
        (["backfill", "sitemap", "ftp://example.org/s.xml", "--since", "2026-01-01"], "http"),
        (["jobs", "show", "42"], "no job with id 42"),
        (["jobs", "pause", "abc"], "not a job id"),
        (["reprocess", "--state", "discovered"], "--state 'discovered'"),
        (["reprocess", "--feed", "https://nowhere.example/feed"], "no feed with id or URL"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    configure, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    """Through the console entry point in-process (the subprocess path is the same
    `main`; the test above runs it as a subprocess)."""
    from worker.cli import main

    configure()
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert exc.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("claimwire: "), err
    assert needle in lines[0], lines[0]


def test_backfill_feeds_from_opml_and_the_jobs_table(configure, server, tmp_path: Path, capsys):
    from tests.test_backfill_helpers import serve_atom_archive

    configure()
    site = serve_articles(server, 6, "atom")
    feed_url = serve_atom_archive(server, site, per_page=3)
    code, _, err = _main(["feeds", "add", feed_url], capsys)
    assert code == 0, err
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head/><body>'
        f'<outline type="rss" text="a" xmlUrl="{feed_url}"/></body></opml>'
    )
    code, out, err = _main(
        ["backfill", "feed", "--opml", str(opml), "--since", "2026-01-01"], capsys
    )
    assert code == 0 and "job 1 queued (backfill feed, 1 feed" in out, err
    code, out, _ = _main(["jobs", "show", "1", "--json"], capsys)
    assert json.loads(out)["params"]["feeds"] == [1]

    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head/><body>'
        '<outline type="rss" text="b" xmlUrl="https://elsewhere.example/feed"/></body></opml>'
    )
    code, _, err = _main(["backfill", "feed", "--opml", str(opml), "--since", "2026-01-01"], capsys)
    assert code == 2 and "feeds import" in err
    code, out, _ = _main(["jobs", "list"], capsys)
    assert code == 0 and "feed" in out and "queued" in out and "0/0+" in out, out


def test_embedded_broker_never_shows_a_half_written_message(
    configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--wait` sends and consumes messages in one process over the filesystem broker.
    While a message is being written, a consumer must not see it (kombu's own transport
    creates the file first and writes it afterwards: a consumer moving it away then read
    an empty message, and the worker died on a JSONDecodeError)."""
    from kombu.utils import json as kombu_json

    import worker.embedded.broker
    from worker.celery_app import app

    configure()
    seen: list[object] = []
    real_dumps = kombu_json.dumps

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, worker.embedded.broker.Channel)

        def dumps_and_peek(obj: object) -> str:
            # mid-write: a consumer polling the queue right now
            try:
                seen.append(channel._get("backfill"))
            except Exception as exc:
                seen.append(type(exc).__name__)
            return str(real_dumps(obj))

        monkeypatch.setattr(worker.embedded.broker.json, "dumps", dumps_and_peek)
        channel._put("backfill", {"body": "x", "n": 1})
        monkeypatch.setattr(worker.embedded.broker.json, "dumps", real_dumps)
        assert seen == ["Empty"]  # nothing visible while it is being written
        assert channel._get("backfill") == {"body": "x", "n": 1}  # complete once visible


def test_jobs_list_counts_skipped_and_failed_items_as_finished(
    configure, server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit LOW 14: a done job whose items were partly skipped showed "142/200" (done
    only over found). The first column counts every finished item; done has its own."""
    from tests.test_backfill_helpers import job_row, run_items
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.discovery import create_urls_job
    from worker.testing.server import Reply

    configure(extract_claims="false")
    site = serve_articles(server, 2, "mix")
    server.routes["/paper.pdf"] = Reply(body=b"%PDF-1.4 not a page", content_type="application/pdf")
    urls = [server.url(p) for p in site.pages] + [server.url("/paper.pdf"), server.url("/gone")]
    init_db()
    with unit_of_work() as s:
        job_id = int(create_urls_job(s, urls, get_settings()).job.id or 0)
    run_items(job_id)
    row = job_row(job_id)
    assert (row["state"], row["done"], row["skipped"], row["failed"]) == ("done", 2, 1, 1), row
    from worker.cli import console

    # captured output is piped: 80 columns, where the table drops columns; every one here
    monkeypatch.setattr(console.out, "width", 300)
    code, out, _ = _main(["jobs", "list"], capsys)
    assert code == 0
    assert "finished/found" in out and "finished = done + skip + fail" in out, out
    line = next(ln for ln in out.splitlines() if ln.strip().lstrip("│┃ ").startswith(str(job_id)))
    cells = [c.strip() for c in line.replace("┃", "│").split("│") if c.strip()]
    assert cells[3:8] == ["4/4", "2", "2", "1", "1"], cells
