"""Invented news content for tests: feeds and article pages written for claimwire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

BASE_DAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

STORIES = [
    (
        "harbour-strike",
        "Dock workers extend harbour strike",
        "Maria Novak",
        [
            "Dock workers in the port city of Varna extended their strike on Monday, leaving "
            "dozens of container ships waiting offshore.",
            "Health Minister Maria Novak said the strike had been planned abroad and "
            "financed by rival shipping interests.",
            "\u201cWe will not negotiate under pressure,\u201d Novak told reporters outside "
            "the ministry.",
            "Union leader Petr Danek rejected the claim. He said the workers only wanted "
            "the overtime pay promised to them last year.",
            "According to the port authority, more than forty vessels were delayed.",
        ],
    ),
    (
        "river-flood",
        "Flood waters reach the old town",
        "Jonas Berg",
        [
            "Flood waters from the swollen river reached the old town early on Tuesday, "
            "forcing shop owners to move goods to upper floors.",
            "Mayor Jonas Berg said the new barriers had saved the main square from the worst "
            "of the water.",
            "Emergency crews pumped water from basements through the night, and volunteers "
            "filled sandbags at the market hall.",
            "The weather service warned that more rain was expected over the weekend.",
        ],
    ),
    (
        "budget-vote",
        "Council delays budget vote",
        "Anna Kowal",
        [
            "The city council postponed its vote on next year's budget after a long and "
            "heated debate about school funding.",
            "Councillor Anna Kowal accused the finance committee of hiding the true cost of "
            "the new tram line.",
            "\u201cThe numbers do not add up, and everybody in this room knows it,\u201d "
            "Kowal said.",
            "The committee chairman insisted that every figure had been checked twice by "
            "independent auditors.",
        ],
    ),
    (
        "library-reopens",
        "Central library reopens after renovation",
        "Lena Fischer",
        [
            "The central library reopened its doors on Saturday after two years of "
            "renovation work that cost the city eleven million euros.",
            "Visitors queued from early morning to see the restored reading room with its "
            "painted ceiling and new reading lamps.",
            "Director Lena Fischer said the library would now stay open until ten in the "
            "evening on weekdays.",
            "A new children's wing offers story hours in four languages every afternoon.",
        ],
    ),
]


# Section (category), tags and lead image of the invented stories, as news sites put them
# in their <head> (article:section, article:tag, keywords, og:image); the image path is
# relative, as on many sites: the extractor resolves it against the page's URL.
STORY_META: dict[str, tuple[str, list[str], str]] = {
    "harbour-strike": ("Economy", ["strike", "shipping"], "/img/harbour-strike.jpg"),
    "river-flood": ("Local", ["flood", "weather"], "/img/river-flood.jpg"),
    "budget-vote": ("Politics", ["budget", "council"], "/img/budget-vote.jpg"),
    "library-reopens": ("Culture", ["library"], "/img/library-reopens.jpg"),
}


def article_html(
    slug: str,
    title: str,
    author: str,
    paragraphs: list[str],
    published: datetime,
    site: str = "The Daily Harbour",
    *,
    section: str | None = None,
    tags: list[str] | None = None,
    image: str | None = None,
) -> bytes:
    paras = "\n".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    nav = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(8))
    meta = "".join(
        [
            f'<meta property="article:section" content="{escape(section)}">\n' if section else "",
            *(f'<meta property="article:tag" content="{escape(t)}">\n' for t in tags or []),
            f'<meta property="og:image" content="{escape(image)}">\n' if image else "",
        ]
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(title)} | {escape(site)}</title>
<meta property="og:title" content="{escape(title)}">
<meta property="og:site_name" content="{escape(site)}">
<meta name="author" content="{escape(author)}">
<meta property="article:published_time" content="{published.isoformat()}">
{meta}<link rel="canonical" href="/news/{slug}">
</head><body>
<header><nav><ul>{nav}</ul></nav></header>
<main><article>
<h1>{escape(title)}</h1>
<p class="byline">By {escape(author)}, {published.strftime("%d %B %Y")}</p>
{paras}
</article></main>
<footer><p>Copyright {escape(site)}. All rights reserved.</p>
<p>Subscribe to our newsletter for daily updates.</p></footer>
</body></html>""".encode()


def rss(base_url: str, items: list[tuple[str, str, datetime]], title: str = "Test feed") -> bytes:
    entries = "\n".join(
        f"<item><title>{escape(t)}</title><link>{escape(link)}</link>"
        f"<guid>{escape(link)}</guid><pubDate>{format_datetime(d)}</pubDate></item>"
        for link, t, d in items
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>{escape(title)}</title><link>{escape(base_url)}</link>
<description>Invented news for tests</description>
{entries}
</channel></rss>""".encode()


def serve_site(
    server: object,
    prefix: str = "",
    site: str = "The Daily Harbour",
    stories: list[tuple[str, str, str, list[str]]] | None = None,
    tracking: str = "",
) -> str:
    """Register a feed and its article pages on ``server``; return the feed URL."""
    from tests.support.server import LocalServer, Reply

    assert isinstance(server, LocalServer)
    stories = stories if stories is not None else STORIES
    items = []
    for i, (slug, title, author, paragraphs) in enumerate(stories):
        published = BASE_DAY + timedelta(hours=i)
        path = f"{prefix}/news/{slug}"
        section, tags, image = STORY_META.get(slug, (None, None, None))
        server.routes[path] = Reply(
            body=article_html(
                slug,
                title,
                author,
                paragraphs,
                published,
                site,
                section=section,
                tags=tags,
                image=image,
            )
        )
        items.append((server.url(path) + tracking, title, published))
    server.routes[f"{prefix}/feed.xml"] = Reply(
        body=rss(server.url(prefix or "/"), items, title=site),
        content_type="application/rss+xml",
        headers={"ETag": f'"{prefix}-v1"'},
    )
    return server.url(f"{prefix}/feed.xml")
