"""Database helpers shared by the tests (through the configured settings)."""

from __future__ import annotations

from datetime import datetime

from schemas.models import Article, ArticleState


def load_article(article_id: int) -> Article:
    """The article as stored now, detached from its session."""
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        a = s.get(Article, article_id)
        assert a is not None
        s.expunge(a)
        return a


def discovered_article(url: str, at: datetime | None = None) -> int:
    """A newly discovered article of ``url`` (its fetch not yet sent), discovered ``at``
    (now by default); its id."""
    from schemas.types import utcnow
    from worker.core.db import unit_of_work
    from worker.network.urls import host_of, url_hash

    at = at or utcnow()
    with unit_of_work() as s:
        a = Article(
            url=url,
            url_hash=url_hash(url),
            host=host_of(url),
            state=ArticleState.discovered,
            discovered_at=at,
            state_changed_at=at,
        )
        s.add(a)
        s.flush()
        assert a.id is not None
        return a.id


ALLOW_ALL = "User-agent: *\nDisallow:\n"


def cached_robots(url: str, body: str = ALLOW_ALL, status: int = 200) -> None:
    """A good copy of the robots.txt of ``url``'s origin in the shared cache, as if a
    worker had just downloaded it: for tests whose subject is not robots.txt, so that a
    host's first request is the one they look at (robots.txt, when it must be
    downloaded, takes the host's slot: ``worker.network.robots``)."""
    from schemas.models import RobotsTxt
    from schemas.types import utcnow
    from worker.core.db import unit_of_work, upsert
    from worker.network.urls import origin_of

    with unit_of_work() as s:
        values = {"origin": origin_of(url), "fetched_at": utcnow(), "status": status, "body": body}
        upsert(s, RobotsTxt, values, ["origin"])
