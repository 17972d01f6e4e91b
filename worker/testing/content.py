"""Invented news content for tests and benchmarks: feeds, article pages and stories with
attributed statements, written for claimwire (no real outlet's text)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from worker.testing.server import LocalServer, Reply

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
    server: LocalServer,
    prefix: str = "",
    site: str = "The Daily Harbour",
    stories: list[tuple[str, str, str, list[str]]] | None = None,
    tracking: str = "",
) -> str:
    """Register a feed and its article pages on ``server``; return the feed URL."""
    stories = stories if stories is not None else STORIES
    items: list[tuple[str, str, datetime]] = []
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


# ------------------------------------------------------------ many distinct stories


_FIRST = ["Maria", "Jonas", "Anna", "Lena", "Petr", "Ivo", "Sara", "Tomas", "Olga", "Karel"]
# Surnames built from syllables: 12 x 14 = 168 of them. Real news has many speakers;
# with a dozen names every story would quote the same few people and the claims step
# (one advisory lock per speaker, one cluster per repeated statement) would serialize
# and grow clusters of hundreds of members: a load pattern of its own, not a fault.
_LAST = [
    a + b
    for a in [
        "Nov",
        "Berg",
        "Kow",
        "Fisch",
        "Dan",
        "Hor",
        "Lind",
        "Mor",
        "Varg",
        "Ostr",
        "Brand",
        "Kell",
    ]
    for b in [
        "ak",
        "er",
        "ski",
        "qvist",
        "eau",
        "ova",
        "ek",
        "mann",
        "ic",
        "sen",
        "ard",
        "ow",
        "ani",
        "ley",
    ]
]
_ROLES = ["Minister", "Mayor", "Councillor", "Director", "Senator", "Union leader"]
_TOPICS = [
    "the harbour",
    "the new tram line",
    "school funding",
    "the flood barriers",
    "the hospital budget",
    "the library",
    "the bridge repairs",
    "the water supply",
    "the airport expansion",
    "the housing plan",
]
_VERBS = ["said", "told reporters", "insisted", "warned", "claimed", "argued"]
_FILLER = [
    "Residents gathered outside the town hall on {day} to follow the debate.",
    "Officials expect a decision on {topic} before the end of the month.",
    "The local newspaper counted {n} letters from readers about {topic}.",
    "Engineers inspected {topic} for {n} hours and published a short report.",
    "Shop owners near {topic} reported {n} fewer customers than last year.",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def distinct_stories(
    n: int, seed: int = 7, paragraphs: int = 6
) -> list[tuple[str, str, str, list[str]]]:
    """``n`` invented stories, each with different wording (so that deduplication keeps
    them apart) and attributed statements (so that the claims step has work)."""
    rnd = random.Random(seed)
    stories = []
    for i in range(n):
        first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
        role, topic = rnd.choice(_ROLES), rnd.choice(_TOPICS)
        paras = []
        for j in range(paragraphs):
            fill = rnd.choice(_FILLER).format(
                day=rnd.choice(_DAYS), topic=rnd.choice(_TOPICS), n=rnd.randint(2, 900)
            )
            quote = (
                f"{role} {first} {last} {rnd.choice(_VERBS)} that {topic} would cost "
                f"{rnd.randint(2, 99)} million euros more than planned."
            )
            # (no "according to story i": that would make "story" the speaker of every
            # article, one hot speaker for the claims step's clustering)
            paras.append(
                f"{fill} {quote} Reference number {i}-{j}-{rnd.randint(1000, 9999)} "
                f"of story {i}, paragraph {j}."
            )
        slug = f"story-{seed}-{i}"
        title = f"{role} {last} on {topic} (report {i})"
        stories.append((slug, title, f"{first} {last}", paras))
    return stories
