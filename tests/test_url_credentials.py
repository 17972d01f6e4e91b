"""A feed URL or article URL carrying ``user:password@`` never shows its password: not in
the logs of a run (at DEBUG), not in `feeds add/list/show` (table or JSON), not in
`status` (text or JSON), not in the errors recorded for failing feeds and articles.
Database and broker passwords: tests/test_faults.py and tests/test_cli_errors.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import claimwire, cli_env
from worker.testing.content import BASE_DAY, STORIES, article_html, rss
from worker.testing.server import LocalServer, Reply

FEED_SECRET = "feedpw-7781"  # lower case: canonical URLs lower-case the host part
ARTICLE_SECRET = "articlepw-3390"
BROKEN_SECRET = "brokenpw-5512"


def _with_credentials(url: str, user: str, password: str) -> str:
    return url.replace("http://", f"http://{user}:{password}@", 1)


def test_url_passwords_masked_in_logs_listings_status_and_errors(
    tmp_path: Path, server: LocalServer
) -> None:
    items = []
    for slug, title, author, paragraphs in STORIES[:3]:
        path = f"/news/{slug}"
        server.routes[path] = Reply(
            body=article_html(slug, title, author, paragraphs, BASE_DAY, "The Daily Harbour")
        )
        items.append((_with_credentials(server.url(path), "bob", ARTICLE_SECRET), title, BASE_DAY))
    # an article that is gone: recorded as failed, with its error
    server.routes["/news/gone"] = Reply(status=404, body=b"gone")
    gone = _with_credentials(server.url("/news/gone"), "bob", ARTICLE_SECRET)
    items.append((gone, "x", BASE_DAY))
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items), content_type="application/rss+xml"
    )
    good = _with_credentials(server.url("/feed.xml"), "alice", FEED_SECRET)
    broken = _with_credentials(server.url("/missing.xml"), "carol", BROKEN_SECRET)
    env = cli_env(tmp_path, LOG_LEVEL="DEBUG", MAX_ATTEMPTS="1")
    outputs: list[str] = []

    def run(*args: str) -> Any:
        r = claimwire(list(args), env, tmp_path)
        outputs.append(f"{r.stdout}\n{r.stderr}")  # (the command line holds the passwords)
        return r

    assert run("init").returncode == 0
    added = run("feeds", "add", good, broken)
    assert added.returncode == 0, added.stderr
    assert "alice:***@" in added.stdout and "carol:***@" in added.stdout
    r = run("run", "--until-idle")
    assert r.returncode == 0, r.stderr[-2000:]
    for args in (
        ["feeds", "list"],
        ["feeds", "list", "--json"],
        ["feeds", "show", "1"],
        ["feeds", "show", "2", "--json"],
        ["status"],
        ["status", "--json"],
    ):
        assert run(*args).returncode == 0, args

    everything = "\n".join(outputs)
    # the run did what it should, so there was something to print
    status = outputs[-1]
    assert '"processed": 3' in status and '"failed": 1' in status, status
    assert "carol:***@" in status and "404" in status  # the broken feed and its error
    assert "bob:***@" in status  # the failed article
    assert "fetching" in everything.lower() or "fetch" in everything  # DEBUG logs ran
    for secret in (FEED_SECRET, ARTICLE_SECRET, BROKEN_SECRET):
        assert secret not in everything, f"password printed: {secret}"
        assert secret.upper() not in everything.upper(), f"password printed: {secret}"


def test_log_lines_are_masked(configure: Any, capsys: Any) -> None:
    """Whatever a log line carries (an event field, an exception message, a traceback,
    a standard-library logger such as Celery's) is printed without URL passwords."""
    import io
    import logging

    import structlog

    from worker.core.logs import configure_logging

    # a handler already on the root logger, as Celery's is in a worker process
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(levelname)s/%(processName)s] %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        configure_logging(configure(log_level="DEBUG"))
        url = f"https://dana:{FEED_SECRET}@feeds.example/rss"
        log = structlog.get_logger("claimwire.test")
        log.info("polled", url=url)
        try:
            raise RuntimeError(f"cannot fetch {url}")
        except RuntimeError:
            log.exception("step_failed")
        logging.getLogger("celery.test").error("Task failed for %s", url)
    finally:
        logging.getLogger().removeHandler(handler)
    printed = capsys.readouterr().err
    assert printed.count("dana:***@feeds.example") == 2, printed  # the field, the error
    assert "[ERROR/MainProcess] Task failed for https://dana:***@feeds.example" in (
        stream.getvalue()
    )
    assert FEED_SECRET not in printed + stream.getvalue()
