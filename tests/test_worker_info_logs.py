"""What a Celery worker logs at INFO (audit MEDIUM 10): one line per feed poll, with its
new entries, and one per article step that moved an article on."""

from __future__ import annotations

from structlog.testing import capture_logs

from worker.testing.content import STORIES, serve_site


def test_a_poll_and_each_finished_step_log_one_info_line(configure, server) -> None:
    from tasks.articles import fetch_article
    from tasks.polls import _poll_one
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.polling import claim_due_feeds
    from worker.feeds.subscriptions import add_feeds

    settings = configure(extract_claims="false")
    init_db(settings)
    feed_url = serve_site(server)
    with unit_of_work() as s:
        add_feeds(s, [(feed_url, None, [])], settings)
    with unit_of_work() as s:
        [(feed_id, token)] = claim_due_feeds(s, settings)
    with capture_logs() as logs:
        _poll_one(feed_id, token, settings)
    polled = [e for e in logs if e["event"] == "feed_polled"]
    assert polled == [
        {
            "event": "feed_polled",
            "log_level": "info",
            "feed_id": feed_id,
            "outcome": "ok",
            "new": len(STORIES),
            "error": None,
        }
    ]
    with capture_logs() as logs:
        fetch_article.run(1)  # the first article: fetched and archived
        fetch_article.run(1)  # again: nothing to do, no line
    done = [e for e in logs if e["event"] == "article_step_done"]
    assert done == [
        {"event": "article_step_done", "log_level": "info", "step": "fetch", "article_id": 1}
    ]
