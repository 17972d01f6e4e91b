"""Polling tasks."""

from __future__ import annotations

from typing import Any

from tasks.base import ENVIRONMENT_ERRORS, backoff, log, send
from worker import polling, runtime
from worker.celery_app import app
from worker.db import unit_of_work
from worker.settings import get_settings


@app.task(bind=True, name="tasks.polling.poll_feed")
def poll_feed(self: Any, feed_id: int, lease: str | None = None) -> int:
    """Poll one leased feed; queue a fetch for every article it brought.

    ``lease`` is the token of the claim that sent this message; a message without one
    (sent by an older version) or with an outdated one does nothing."""
    from tasks.fetching import fetch_article

    if lease is None:
        log.info("poll_without_lease", feed_id=feed_id)
        return 0
    settings = get_settings()
    try:
        with unit_of_work() as session:
            result = polling.poll_feed(
                session, feed_id, lease, runtime.http_client(), runtime.host_limiter(), settings
            )
    except polling.LeaseLost:
        log.info("poll_lease_lost", feed_id=feed_id)
        return 0
    except ENVIRONMENT_ERRORS as exc:
        raise self.retry(countdown=backoff(self.request.retries), max_retries=None) from exc
    except Exception:  # noqa: BLE001 (the lease expires and the dispatcher tries again)
        log.exception("poll_crashed", feed_id=feed_id)
        return 0
    if result.outcome == "skipped":
        log.info("poll_skipped_not_lease_holder", feed_id=feed_id)
    for article_id in result.new_article_ids:
        send(fetch_article, article_id)
    return len(result.new_article_ids)
