"""Sites for backfill tests, served by the local test server: article pages, an RFC 5005
Atom archive, a WordPress-style ``?paged=N`` RSS feed, and robots.txt pointing at a
sitemap index with hundreds of URLs (plain, gzip-compressed, news sitemap). Plus
helpers that drive jobs in-process. (No tests here.)"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from worker.testing.content import article_html, distinct_stories, rss
from worker.testing.server import LocalServer, Reply

DAY0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class Site:
    pages: list[str] = field(default_factory=list)  # paths of article pages
    dates: dict[str, datetime] = field(default_factory=dict)  # path -> publication date

    def paths_between(self, since: datetime, until: datetime | None = None) -> set[str]:
        return {p for p, d in self.dates.items() if d >= since and (until is None or d <= until)}


def serve_articles(
    server: LocalServer, n: int, prefix: str, seed: int = 11, paragraphs: int = 3
) -> Site:
    """``n`` article pages, one a day from DAY0 (article i published DAY0 + i days)."""
    site = Site()
    for i, (slug, title, author, paras) in enumerate(
        distinct_stories(n, seed=seed, paragraphs=paragraphs)
    ):
        path = f"/{prefix}/{slug}"
        published = DAY0 + timedelta(days=i)
        server.routes[path] = Reply(body=article_html(slug, title, author, paras, published))
        site.pages.append(path)
        site.dates[path] = published
    return site


def _atom(server: LocalServer, site: Site, paths: list[str], links: dict[str, str]) -> bytes:
    entries = "\n".join(
        f"<entry><title>{escape(p)}</title><id>{escape(server.url(p))}</id>"
        f'<link href="{escape(server.url(p))}"/>'
        f"<published>{site.dates[p].isoformat()}</published>"
        f"<updated>{site.dates[p].isoformat()}</updated></entry>"
        for p in paths
    )
    link_xml = "".join(f'<link rel="{rel}" href="{escape(href)}"/>' for rel, href in links.items())
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Archive test</title>
<id>{escape(server.url("/atom/feed.xml"))}</id><updated>{DAY0.isoformat()}</updated>
{link_xml}
{entries}
</feed>""".encode()


def serve_atom_archive(server: LocalServer, site: Site, per_page: int) -> str:
    """RFC 5005: the subscription document holds the newest ``per_page`` entries and
    links ``prev-archive`` to older archive documents (/atom/archive-K.xml), oldest
    K=1. Returns the feed URL."""
    newest_first = sorted(site.pages, key=lambda p: site.dates[p], reverse=True)
    chunks = [newest_first[i : i + per_page] for i in range(0, len(newest_first), per_page)]
    n = len(chunks)
    for k, chunk in enumerate(chunks):
        number = n - k  # the subscription document is the newest
        path = "/atom/feed.xml" if k == 0 else f"/atom/archive-{number}.xml"
        links = {"self": server.url(path)}
        if k == 0:
            links["current"] = server.url(path)
        else:
            links["current"] = server.url("/atom/feed.xml")
        if number > 1:
            links["prev-archive"] = server.url(f"/atom/archive-{number - 1}.xml")
        server.routes[path] = Reply(
            body=_atom(server, site, chunk, links), content_type="application/atom+xml"
        )
    return server.url("/atom/feed.xml")


def serve_wordpress(server: LocalServer, site: Site, per_page: int) -> str:
    """A WordPress-style RSS feed: /wp/feed/ is page 1, /wp/feed/?paged=N older pages,
    a page past the last one answers 404 (as WordPress does). No paging links."""
    newest_first = sorted(site.pages, key=lambda p: site.dates[p], reverse=True)
    chunks = [newest_first[i : i + per_page] for i in range(0, len(newest_first), per_page)]

    def handler(req: Any) -> Reply:
        query = parse_qs(urlsplit(req.path).query)
        page = int(query.get("paged", ["1"])[0])
        if page < 1 or page > len(chunks):
            return Reply(404, b"<html>Page not found</html>")
        items = [(server.url(p), p, site.dates[p]) for p in chunks[page - 1]]
        return Reply(body=rss(server.url("/wp/"), items, "WP"), content_type="application/rss+xml")

    server.routes["/wp/feed/"] = handler
    return server.url("/wp/feed/")


def serve_rss_paged(server: LocalServer, site: Site, per_page: int, prefix: str) -> str:
    """An RFC 5005 *paged* feed in RSS: each page links the next (older) one with
    ``<atom:link rel="next">``; the last page has no such link. Pages are
    ``/{prefix}/rss.xml`` then ``/{prefix}/rss-2.xml``, ``/{prefix}/rss-3.xml``...
    Returns the feed URL."""
    newest_first = sorted(site.pages, key=lambda p: site.dates[p], reverse=True)
    chunks = [newest_first[i : i + per_page] for i in range(0, len(newest_first), per_page)]

    def path(k: int) -> str:
        return f"/{prefix}/rss.xml" if k == 1 else f"/{prefix}/rss-{k}.xml"

    for k, chunk in enumerate(chunks, start=1):
        items = "\n".join(
            f"<item><title>{escape(p)}</title><link>{escape(server.url(p))}</link>"
            f"<guid>{escape(server.url(p))}</guid>"
            f"<pubDate>{format_datetime(site.dates[p])}</pubDate></item>"
            for p in chunk
        )
        nxt = (
            f'<atom:link rel="next" href="{escape(server.url(path(k + 1)))}"/>'
            if k < len(chunks)
            else ""
        )
        body = f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>
<title>Paged {prefix}</title><link>{escape(server.url("/" + prefix + "/"))}</link>
<description>paged</description>
<atom:link rel="self" href="{escape(server.url(path(k)))}"/>{nxt}
{items}
</channel></rss>""".encode()
        server.routes[path(k)] = Reply(body=body, content_type="application/rss+xml")
    return server.url(path(1))


def _urlset(server: LocalServer, site: Site, paths: list[str], news: bool) -> bytes:
    ns = ' xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"' if news else ""
    rows = []
    for p in paths:
        date = site.dates[p].isoformat()
        if news:
            rows.append(
                f"<url><loc>{escape(server.url(p))}</loc><news:news><news:publication>"
                "<news:name>Harbour</news:name><news:language>en</news:language>"
                f"</news:publication><news:publication_date>{date}</news:publication_date>"
                f"<news:title>{escape(p)}</news:title></news:news></url>"
            )
        else:
            rows.append(f"<url><loc>{escape(server.url(p))}</loc><lastmod>{date}</lastmod></url>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"{ns}>\n'
        + "\n".join(rows)
        + "\n</urlset>"
    ).encode()


def serve_sitemaps(server: LocalServer, site: Site, old_before: datetime) -> dict[str, str]:
    """robots.txt -> /sitemap_index.xml -> three sitemaps splitting ``site``'s pages:
    /sm/recent.xml (news sitemap), /sm/middle.xml.gz (gzip, lastmod), and
    /sm/old.xml, whose index ``lastmod`` is before ``old_before`` (so a backfill
    --since old_before never reads it). Returns the URLs."""
    ordered = sorted(site.pages, key=lambda p: site.dates[p])
    old = [p for p in ordered if site.dates[p] < old_before]
    rest = [p for p in ordered if site.dates[p] >= old_before]
    middle, recent = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    server.routes["/sm/recent.xml"] = Reply(
        body=_urlset(server, site, recent, news=True), content_type="application/xml"
    )
    server.routes["/sm/middle.xml.gz"] = Reply(
        body=gzip.compress(_urlset(server, site, middle, news=False)),
        content_type="application/x-gzip",
    )
    server.routes["/sm/old.xml"] = Reply(
        body=_urlset(server, site, old, news=False), content_type="application/xml"
    )

    def lastmod(paths: list[str]) -> str:
        return max(site.dates[p] for p in paths).isoformat()

    index = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"<sitemap><loc>{server.url('/sm/recent.xml')}</loc>"
        f"<lastmod>{lastmod(recent)}</lastmod></sitemap>\n"
        f"<sitemap><loc>/sm/middle.xml.gz</loc><lastmod>{lastmod(middle)}</lastmod></sitemap>\n"
        f"<sitemap><loc>{server.url('/sm/old.xml')}</loc>"
        f"<lastmod>{lastmod(old)}</lastmod></sitemap>\n"
        "</sitemapindex>"
    ).encode()
    server.routes["/sitemap_index.xml"] = Reply(body=index, content_type="application/xml")
    server.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nDisallow: /private/\n\nSitemap: /sitemap_index.xml\n",
        content_type="text/plain",
    )
    return {"root": server.url("/"), "index": server.url("/sitemap_index.xml")}


# ------------------------------------------------------------------ in-process driving


def run_discovery(job_id: int, max_steps: int = 500) -> int:
    """Start the job and run its discovery to the end in this process; returns pages."""
    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs import discovery, lifecycle
    from worker.pipeline import resources

    settings = get_settings()
    with unit_of_work() as s:
        lifecycle.advance(s, settings, job_ids=[job_id])
    steps = 0
    while steps < max_steps:
        with unit_of_work() as s:
            step = discovery.discover_step(
                s, job_id, resources.http_client(), resources.host_limiter(), settings
            )
        steps += 1
        if not step.more:
            break
    return steps


def run_items(job_id: int, rounds: int = 10_000, limit: int | None = None) -> int:
    """Process the job's items in this process, as workers would (advance, then each
    dispatched item's task body); stop after ``limit`` items. Returns items run."""
    from tasks.job_steps import process_item
    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs import lifecycle

    settings = get_settings()
    ran = 0
    for _ in range(rounds):
        with unit_of_work() as s:
            # Sequential: nothing is in flight between rounds, and the messages that
            # process_item's own scheduling round sent to the (unconsumed) embedded
            # broker are taken back.
            plan = lifecycle.advance(s, settings, job_ids=[job_id], reclaim=True)
            state = lifecycle.get_job(s, job_id).state
        if state in ("done", "failed", "cancelled"):
            return ran
        if not plan.items and not plan.discover:
            if state == "paused":
                return ran
            continue
        for jid, aid in plan.items:
            if limit is not None and ran >= limit:
                return ran
            process_item(jid, aid)
            ran += 1
    return ran


def job_row(job_id: int) -> dict[str, Any]:
    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs import lifecycle

    with unit_of_work() as s:
        job = lifecycle.get_job(s, job_id)
        return lifecycle.job_row(job, lifecycle.progress(s, job_id, get_settings()))
