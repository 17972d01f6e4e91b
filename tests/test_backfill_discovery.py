"""Backfill discovery against the local server (SQLite, in-process): RFC 5005 archives,
WordPress ?paged=N, robots.txt -> sitemap index -> hundreds of URLs, date bounds,
resuming discovery from its cursor, and safe sitemap parsing."""

from __future__ import annotations

import gzip
from datetime import timedelta

import pytest
from sqlmodel import col, func, select

from schemas.models import Article, Feed, JobItem, Sighting
from tests.test_backfill_helpers import (
    DAY0,
    run_discovery,
    serve_articles,
    serve_atom_archive,
    serve_rss_paged,
    serve_sitemaps,
    serve_wordpress,
)
from worker.testing.server import Reply


def _add_feed(url: str) -> int:
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.feeds.subscriptions import add_feeds, find_feed

    init_db()
    with unit_of_work() as s:
        add_feeds(s, [(url, None, [])], get_settings())
        return int(find_feed(s, url).id or 0)


def _job_urls(job_id: int) -> set[str]:
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        rows = s.exec(
            select(Article.url)
            .join(JobItem, col(JobItem.article_id) == col(Article.id))
            .where(JobItem.job_id == job_id)
        ).all()
    return {str(u) for u in rows}


def _paths(urls: set[str], server) -> set[str]:
    return {u.removeprefix(server.url("")) for u in urls}


def test_rfc5005_archive_stops_at_since(configure, server) -> None:
    configure()
    site = serve_articles(server, 40, "atom")  # one article a day, 40 days
    feed_url = serve_atom_archive(server, site, per_page=8)  # 5 documents
    feed_id = _add_feed(feed_url)
    since = DAY0 + timedelta(days=20)
    until = DAY0 + timedelta(days=34)

    from worker.core.db import unit_of_work
    from worker.jobs.discovery import create_feed_job

    with unit_of_work() as s:
        job_id = int(create_feed_job(s, [feed_id], since, until).id or 0)
    run_discovery(job_id)

    assert _paths(_job_urls(job_id), server) == site.paths_between(since, until)
    # Newest document holds days 32-39, archive-4 24-31, archive-3 16-23 (crosses
    # --since), so archive-2 and archive-1 are never read.
    assert server.hits["/atom/feed.xml"] == 1
    assert server.hits["/atom/archive-4.xml"] == 1
    assert server.hits["/atom/archive-3.xml"] == 1
    assert server.hits["/atom/archive-2.xml"] == 0 and server.hits["/atom/archive-1.xml"] == 0
    # no article page is fetched by discovery; the feed sightings are recorded
    assert not any(p.startswith("/atom/story") for p in server.hits)
    with unit_of_work() as s:
        sightings = s.exec(
            select(func.count()).select_from(Sighting).where(Sighting.feed_id == feed_id)
        ).one()
        from worker.jobs import lifecycle

        job = lifecycle.get_job(s, job_id)
        assert job.params["discovery_done"] is True and job.params["pages"] == 3
        assert job.last_error is None
    assert sightings == len(site.paths_between(since, until))


def test_wordpress_paged_until_404_and_rerun_adds_nothing(configure, server) -> None:
    configure()
    site = serve_articles(server, 25, "wp")
    feed_url = serve_wordpress(server, site, per_page=10)  # pages 1..3, ?paged=4 is 404
    feed_id = _add_feed(feed_url)

    from worker.core.db import unit_of_work
    from worker.jobs.discovery import create_feed_job

    with unit_of_work() as s:
        job_id = int(create_feed_job(s, [feed_id], DAY0 - timedelta(days=1), None).id or 0)
    run_discovery(job_id)
    assert _paths(_job_urls(job_id), server) == set(site.pages)
    assert server.hits["/wp/feed/"] == 1
    assert server.hits["/wp/feed/?paged=2"] == 1 and server.hits["/wp/feed/?paged=3"] == 1
    assert server.hits["/wp/feed/?paged=4"] == 1  # the 404 that ends the walk

    # A second backfill of the same feed finds the same articles: no new rows.
    with unit_of_work() as s:
        before = s.exec(select(func.count()).select_from(Article)).one()
        job2 = int(create_feed_job(s, [feed_id], DAY0 - timedelta(days=1), None).id or 0)
    run_discovery(job2)
    with unit_of_work() as s:
        assert s.exec(select(func.count()).select_from(Article)).one() == before
        dup = s.exec(
            select(func.count()).select_from(Sighting).where(Sighting.feed_id == feed_id)
        ).one()
    assert dup == len(site.pages)
    assert _job_urls(job2) == _job_urls(job_id)


def test_sitemap_index_from_robots_with_hundreds_of_urls(configure, server) -> None:
    configure()
    site = serve_articles(server, 360, "sm", paragraphs=1)
    since = DAY0 + timedelta(days=120)
    serve_sitemaps(server, site, old_before=since)
    # A page listed in the sitemap but before --since is not taken; neither is the old
    # sitemap read at all (its lastmod in the index is older than --since).
    from worker.core.db import init_db, unit_of_work
    from worker.jobs.discovery import create_sitemap_job

    init_db()
    with unit_of_work() as s:
        job_id = int(create_sitemap_job(s, server.url("/"), since, None).id or 0)
    run_discovery(job_id)
    got = _paths(_job_urls(job_id), server)
    assert got == site.paths_between(since)
    assert len(got) == 240
    assert server.hits["/robots.txt"] >= 1
    assert server.hits["/sitemap_index.xml"] == 1
    assert server.hits["/sm/recent.xml"] == 1 and server.hits["/sm/middle.xml.gz"] == 1
    assert server.hits["/sm/old.xml"] == 0
    with unit_of_work() as s:
        # news:publication_date became the entry's publication date
        a = s.exec(select(Article).where(col(Article.url).endswith(site.pages[-1]))).one()
        assert a.entry_published_at == site.dates[site.pages[-1]]
        assert a.state == "discovered"


def test_discovery_resumes_from_its_cursor(configure, server) -> None:
    """A discovery interrupted after two documents resumes at the third: documents
    already read are not read again, and no item is created twice."""
    configure()
    site = serve_articles(server, 40, "atom")
    feed_url = serve_atom_archive(server, site, per_page=8)
    feed_id = _add_feed(feed_url)

    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs import discovery, lifecycle
    from worker.pipeline import resources

    settings = get_settings()
    with unit_of_work() as s:
        job_id = int(discovery.create_feed_job(s, [feed_id], DAY0, None).id or 0)
        lifecycle.advance(s, settings, job_ids=[job_id])
    for _ in range(2):
        with unit_of_work() as s:
            discovery.discover_step(
                s, job_id, resources.http_client(), resources.host_limiter(), settings
            )
    # "crash": a new process, fresh resources, same database
    resources.reset()
    run_discovery(job_id)
    for path in ("/atom/feed.xml", *(f"/atom/archive-{k}.xml" for k in range(1, 5))):
        assert server.hits[path] == 1, path
    assert _paths(_job_urls(job_id), server) == set(site.pages)


def test_unknown_or_broken_sources_end_discovery_with_an_error(configure, server) -> None:
    configure()
    from worker.core.db import init_db, unit_of_work
    from worker.jobs import discovery, lifecycle

    init_db()
    with unit_of_work() as s:
        job_id = int(discovery.create_sitemap_job(s, server.url("/nope.xml"), None, None).id or 0)
    run_discovery(job_id)
    from tests.test_backfill_helpers import run_items

    run_items(job_id)
    with unit_of_work() as s:
        job = lifecycle.get_job(s, job_id)
        assert job.state == "failed"
        assert "HTTP 404" in (job.last_error or "")


def test_sitemap_parser_reads_all_forms() -> None:
    from worker.jobs.sitemaps import SitemapError, parse_sitemap, robots_sitemaps

    text = b"https://example.org/a\nhttps://example.org/b\n"
    assert [u.loc for u in parse_sitemap(text, "https://example.org/", 1000).urls] == [
        "https://example.org/a",
        "https://example.org/b",
    ]
    big = gzip.compress(b"<urlset>" + b" " * 5000 + b"</urlset>")
    with pytest.raises(SitemapError, match="larger than"):
        parse_sitemap(big, "https://example.org/s.xml.gz", 1000)
    with pytest.raises(SitemapError):
        parse_sitemap(b"<html><body>hi</body></html>", "https://example.org/", 1000)
    assert robots_sitemaps(
        "User-agent: *\nSitemap: /a.xml\nsitemap: https://x.org/b.xml # c\n", "https://e.org/r"
    ) == ["https://e.org/a.xml", "https://x.org/b.xml"]


def _billion_laughs(levels: int = 10) -> bytes:
    ents = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, levels)
    )
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE urlset [{ents}]>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>https://example.org/a&lol{levels - 1};</loc></url>"
        "<url><loc>https://example.org/b</loc></url></urlset>"
    ).encode()


def test_sitemap_parser_refuses_entities_and_never_fetches_a_dtd(server) -> None:
    """Entity expansion ("billion laughs": 10^9 copies of "lol" if expanded) and
    external entities (a local file, a URL) are refused as a whole: no URL cut short at
    the entity, none expanded, nothing read from disk or fetched from the network."""
    from worker.jobs.sitemaps import SitemapError, parse_sitemap

    with pytest.raises(SitemapError, match="declares XML entities"):
        parse_sitemap(_billion_laughs(), "https://example.org/s.xml", 50_000_000)
    server.routes["/evil.dtd"] = Reply(body=b'<!ENTITY x "pwned">', content_type="text/plain")
    server.routes["/secret"] = Reply(body=b"secret", content_type="text/plain")
    xxe_file = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>https://example.org/a&xxe;</loc></url></urlset>"""
    xxe_net = f"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY % dtd SYSTEM "{server.url("/evil.dtd")}"> %dtd;
<!ENTITY leak SYSTEM "{server.url("/secret")}">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>https://example.org/&leak;&x;</loc></url></urlset>""".encode()
    for doc in (xxe_file, xxe_net):
        with pytest.raises(SitemapError, match="declares XML entities"):
            parse_sitemap(doc, "https://example.org/s.xml", 1_000_000)
    # An external DTD without entity declarations is simply not loaded.
    ext_dtd = f"""<?xml version="1.0"?>
<!DOCTYPE urlset SYSTEM "{server.url("/evil.dtd")}">
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>https://example.org/ok</loc></url></urlset>""".encode()
    parsed = parse_sitemap(ext_dtd, "https://example.org/s.xml", 1_000_000)
    assert [u.loc for u in parsed.urls] == ["https://example.org/ok"]
    assert server.hits["/evil.dtd"] == 0 and server.hits["/secret"] == 0


def test_hostile_child_sitemap_is_refused_and_the_others_are_read(configure, server) -> None:
    """A billion-laughs child of a sitemap index ends as the job's last error; the
    other children are read and the job goes on."""
    configure()
    site = serve_articles(server, 30, "hx", paragraphs=1)
    since = DAY0 + timedelta(days=10)
    serve_sitemaps(server, site, old_before=since)
    index = server.routes["/sitemap_index.xml"]
    assert isinstance(index, Reply) and isinstance(index.body, bytes)
    server.routes["/sm/laughs.xml"] = Reply(body=_billion_laughs(), content_type="text/xml")
    index.body = index.body.replace(
        b"</sitemapindex>",
        f"<sitemap><loc>{server.url('/sm/laughs.xml')}</loc></sitemap></sitemapindex>".encode(),
    )
    from worker.core.db import init_db, unit_of_work
    from worker.jobs import lifecycle
    from worker.jobs.discovery import create_sitemap_job

    init_db()
    with unit_of_work() as s:
        job_id = int(create_sitemap_job(s, server.url("/sitemap_index.xml"), since, None).id or 0)
    run_discovery(job_id)
    assert _paths(_job_urls(job_id), server) == site.paths_between(since)
    assert server.hits["/sm/laughs.xml"] == 1
    with unit_of_work() as s:
        job = lifecycle.get_job(s, job_id)
        assert "laughs.xml: refused: the document declares XML entities" in (job.last_error or "")
        assert job.params["discovery_done"] is True and job.state == "running"


def test_one_job_walks_several_feeds_rss_next_links_and_paged(configure, server) -> None:
    """A list of feeds is one job: an RFC 5005 paged RSS feed (``atom:link rel="next"``)
    followed back to --since, then a WordPress feed (``?paged=N``); --until applies to
    both."""
    configure()
    a = serve_articles(server, 30, "rn", seed=21)
    b = serve_articles(server, 12, "wp", seed=22)
    rss_url = serve_rss_paged(server, a, per_page=7, prefix="rn")  # 5 pages
    wp_url = serve_wordpress(server, b, per_page=5)  # 3 pages
    ids = [_add_feed(rss_url), _add_feed(wp_url)]
    since, until = DAY0 + timedelta(days=10), DAY0 + timedelta(days=25)

    from worker.core.db import unit_of_work
    from worker.jobs.discovery import create_feed_job

    with unit_of_work() as s:
        job_id = int(create_feed_job(s, ids, since, until).id or 0)
    run_discovery(job_id)
    want = a.paths_between(since, until) | b.paths_between(since, until)
    assert _paths(_job_urls(job_id), server) == want
    # RSS pages hold days 29-23, 22-16, 15-9 (crosses --since): pages 4 and 5 unread
    assert [server.hits[f"/rn/rss{s}.xml"] for s in ("", "-2", "-3", "-4", "-5")] == [
        1,
        1,
        1,
        0,
        0,
    ]
    # WordPress pages (days 11-7 reach before --since on page 1): only page 1 is read
    assert server.hits["/wp/feed/"] == 1 and server.hits["/wp/feed/?paged=2"] == 0
    with unit_of_work() as s:
        for fid, site in zip(ids, (a, b), strict=True):
            n = s.exec(
                select(func.count()).select_from(Sighting).where(Sighting.feed_id == fid)
            ).one()
            assert n == len(site.paths_between(since, until))


def test_feed_model_is_untouched_by_backfill(configure, server) -> None:
    """A backfill does not move the feed's live schedule or conditional-GET state."""
    configure()
    site = serve_articles(server, 10, "atom")
    feed_url = serve_atom_archive(server, site, per_page=5)
    feed_id = _add_feed(feed_url)
    from worker.core.db import unit_of_work
    from worker.jobs.discovery import create_feed_job

    with unit_of_work() as s:
        before = s.get(Feed, feed_id)
        assert before is not None
        snapshot = (before.next_poll_at, before.etag, before.body_hash, before.polls_total)
        job_id = int(create_feed_job(s, [feed_id], DAY0, None).id or 0)
    run_discovery(job_id)
    with unit_of_work() as s:
        after = s.get(Feed, feed_id)
        assert after is not None
        assert (after.next_poll_at, after.etag, after.body_hash, after.polls_total) == snapshot
