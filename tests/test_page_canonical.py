"""The two canonical URLs of an article (audit LOW 11): ``url``, its identity (the feed
or backfill link, canonicalized: dedup of URLs and sightings rests on it), and
``page_canonical_url``, what the page itself declares, even on another site."""

from __future__ import annotations

import io
import json

from sqlmodel import select

from schemas.models import Article
from tests.test_backfill_helpers import run_items
from worker.testing.content import STORIES, article_html
from worker.testing.server import Reply


def test_off_site_canonical_is_exported_and_identity_stays_the_link(configure, server) -> None:
    configure(extract_claims="false")
    from datetime import UTC, datetime

    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.discovery import create_urls_job
    from worker.reports.export import article_rows, write_rows

    slug, title, author, paragraphs = STORIES[0]
    html = (
        article_html(
            slug, title, author, paragraphs, datetime(2026, 3, 2, 9, tzinfo=UTC), "Syndicator"
        )
        .decode()
        .replace(
            f'<link rel="canonical" href="/news/{slug}">',
            '<link rel="canonical" href="https://origin.example.org/stories/1">',
        )
    )
    assert "origin.example.org" in html
    server.routes["/wire/1"] = Reply(body=html.encode())
    init_db()
    link = server.url("/wire/1?utm_source=feed")
    with unit_of_work() as s:
        job = int(create_urls_job(s, [link], get_settings()).job.id or 0)
    run_items(job)
    with unit_of_work() as s:
        art = s.exec(select(Article)).one()
        assert art.state == "processed"
        assert art.url == server.url("/wire/1")  # identity: the link, tracking removed
        assert art.page_canonical_url == "https://origin.example.org/stories/1"
        buf = io.StringIO()
        write_rows(article_rows(s), buf, "jsonl", ["url", "page_canonical_url", "host"])
    row = json.loads(buf.getvalue())
    assert row["url"] == server.url("/wire/1")
    assert row["page_canonical_url"] == "https://origin.example.org/stories/1"
    assert row["host"] == "127.0.0.1"
