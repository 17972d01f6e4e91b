"""A small invented store for the web view's tests: outlets repeating one claim (verbatim,
reworded, and as a copy of a whole article), another speaker, feeds in every state, a
job, and hostile values (script in titles, authors, speakers, text, feed titles).

Every text here is made up for the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlmodel import col, select

from schemas.models import (
    Article,
    Claim,
    ClaimCluster,
    DupGroup,
    Feed,
    Job,
    JobItem,
    Sighting,
)
from worker.claims.clustering import speaker_key
from worker.claims.firstseen import page_at
from worker.core.db import init_db, unit_of_work
from worker.network.urls import url_hash

BIG_T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)

T0 = datetime(2026, 11, 3, 7, 30, tzinfo=UTC)

XSS_TITLE = (
    '<script>window.__xss_title = 1</script>Port strike <img src=x onerror="window.__xss_img=1">'
)
XSS_AUTHOR = "<script>window.__xss_author = 1</script>"
XSS_SPEAKER = "Lena <b>Vos</b><script>window.__xss_speaker=1</script>"
XSS_FEED = '<svg onload="window.__xss_feed=1">Feed'
XSS_TEXT = (
    "Dockworkers walked out on Monday. "
    "<script>window.__xss_text = 1</script> "
    "Lena <b>Vos</b><script>window.__xss_speaker=1</script> said the harbour would stay "
    'closed <img src=x onerror="window.__xss_claim=1"> until Friday.\n\n'
    "Talks resume next week."
)

CLAIM = "the steelworks in Korlin will reopen by spring"
REWORDED = "the Korlin steelworks would reopen in the spring"


@dataclass
class Seeded:
    cluster_id: int = 0
    first_article_id: int = 0
    copy_article_id: int = 0
    hostile_article_id: int = 0
    hostile_claim_id: int = 0
    claim_ids: list[int] = field(default_factory=list)
    feed_ids: list[int] = field(default_factory=list)
    job_id: int = 0
    outlets: list[str] = field(default_factory=list)


def _article(
    session: Any, url: str, host: str, title: str, text: str, at: datetime, **kw: Any
) -> Article:
    a = Article(
        url=url,
        url_hash=url_hash(url),
        host=host,
        state=kw.pop("state", "processed"),
        title=title,
        text=text,
        published_at=at,
        discovered_at=at + timedelta(minutes=5),
        language="en",
        claims_status="extracted",
        **kw,
    )
    session.add(a)
    session.flush()
    return a


def _claim(
    session: Any,
    article: Article,
    speaker: str,
    verb: str,
    content: str,
    cluster: int | None,
    kind: str = "indirect",
) -> Claim:
    text = article.text or ""
    start = text.index(content)
    sentence_start = text.rfind(". ", 0, start) + 2 if text.rfind(". ", 0, start) >= 0 else 0
    sentence_end = text.find(".", start + len(content))
    c = Claim(
        article_id=int(article.id or 0),
        speaker=speaker,
        speaker_resolved=speaker,
        verb=verb,
        kind=kind,
        text=content,
        start=start,
        end=start + len(content),
        sentence=text[sentence_start : sentence_end + 1 if sentence_end >= 0 else len(text)],
        extractor_version="rules-test",
        cluster_id=cluster,
        article_at=page_at(article),  # as the claims step writes it
    )
    session.add(c)
    session.flush()
    return c


def seed(settings: Any) -> Seeded:
    init_db(settings)
    out = Seeded()
    with unit_of_work(settings) as s:
        feeds = [
            Feed(
                url="https://northern-herald.example/rss",
                title="Northern Herald",
                state="active",
                last_success_at=T0,
                entries_new_total=40,
                created_at=T0 - timedelta(days=10),
            ),
            Feed(
                url="https://dailyledger.example/feed.xml",
                title=XSS_FEED,
                state="failing",
                consecutive_failures=3,
                last_error="HTTP 503 <script>window.__xss_error=1</script>",
                created_at=T0 - timedelta(days=3),
            ),
            Feed(
                url="https://wire.example/atom",
                title="Wire Service",
                state="paused",
                created_at=T0 - timedelta(days=1),
            ),
        ]
        for f in feeds:
            s.add(f)
        s.flush()
        out.feed_ids = [int(f.id or 0) for f in feeds]

        cluster = ClaimCluster(
            speaker_key=speaker_key("Maria Novak"), speaker="Maria Novak", text=CLAIM
        )
        s.add(cluster)
        s.flush()
        cid = int(cluster.id or 0)
        out.cluster_id = cid

        body = (
            "Workers gathered outside the gates on Tuesday morning. "
            f"Health Minister Maria Novak said {CLAIM}. "
            "Union leaders welcomed the news but asked for guarantees.\n\n"
            "The plant closed two years ago after a fire."
        )
        first = _article(
            s,
            "https://northern-herald.example/2026/steelworks",
            "northern-herald.example",
            "Korlin steelworks to reopen, minister says",
            body,
            T0,
            author="J. Hollis",
        )
        dup_group = DupGroup(canonical_article_id=first.id)
        s.add(dup_group)
        s.flush()
        first.dup_group_id = dup_group.id
        c1 = _claim(s, first, "Maria Novak", "said", CLAIM, cid)
        second = _article(
            s,
            "https://dailyledger.example/news/korlin",
            "dailyledger.example",
            "Minister: steelworks will reopen",
            f"A short report. Maria Novak told reporters {CLAIM}. More follows.",
            T0 + timedelta(hours=3),
        )
        c2 = _claim(s, second, "Maria Novak", "told", CLAIM, cid)
        third = _article(
            s,
            "https://riverside-post.example/korlin-plant",
            "riverside-post.example",
            "Hope for Korlin plant",
            f"Residents were cautious. Novak said {REWORDED}. Nobody gave a date.",
            T0 + timedelta(days=1, hours=2),
        )
        c3 = _claim(s, third, "Novak", "said", REWORDED, cid)
        copy = _article(
            s,
            "https://aggregator.example/a/123",
            "aggregator.example",
            "Korlin steelworks to reopen, minister says",
            body,
            T0 + timedelta(days=2),
            duplicate_of_id=first.id,
            dup_group_id=dup_group.id,
        )
        out.copy_article_id = int(copy.id or 0)
        cluster.first_seen_at = T0
        cluster.first_article_id = first.id
        cluster.n_articles = 4
        cluster.n_outlets = 4
        out.first_article_id = int(first.id or 0)
        out.claim_ids = [int(c.id or 0) for c in (c1, c2, c3)]
        out.outlets = [
            "northern-herald.example",
            "dailyledger.example",
            "riverside-post.example",
            "aggregator.example",
        ]

        other_cluster = ClaimCluster(
            speaker_key=speaker_key("the Health Ministry"),
            speaker="the Health Ministry",
            text="vaccination centres open on Saturday",
            first_seen_at=T0 - timedelta(days=4),
            n_articles=1,
            n_outlets=1,
        )
        s.add(other_cluster)
        s.flush()
        ministry = _article(
            s,
            "https://wire.example/health/centres",
            "wire.example",
            "Centres to open",
            "In a statement, the Health Ministry announced "
            "vaccination centres open on Saturday. Queues are expected.",
            T0 - timedelta(days=4),
        )
        other_cluster.first_article_id = ministry.id
        _claim(
            s,
            ministry,
            "the Health Ministry",
            "announced",
            "vaccination centres open on Saturday",
            other_cluster.id,
            kind="direct",
        )

        hostile = _article(
            s,
            "https://dailyledger.example/port-strike",
            "dailyledger.example",
            XSS_TITLE,
            XSS_TEXT,
            T0 + timedelta(days=3),
            author=XSS_AUTHOR,
            page_canonical_url="javascript:window.__xss_href=1",
        )
        out.hostile_article_id = int(hostile.id or 0)
        hostile_cluster = ClaimCluster(
            speaker_key=speaker_key(XSS_SPEAKER) or "vos",
            speaker=XSS_SPEAKER,
            text="the harbour would stay closed",
            first_seen_at=hostile.published_at,
            first_article_id=hostile.id,
            n_articles=1,
            n_outlets=1,
        )
        s.add(hostile_cluster)
        s.flush()
        hc = _claim(
            s,
            hostile,
            XSS_SPEAKER,
            "said",
            'the harbour would stay closed <img src=x onerror="window.__xss_claim=1"> until Friday',
            hostile_cluster.id,
        )
        out.hostile_claim_id = int(hc.id or 0)
        for a in (first, second, third, copy):
            s.add(Sighting(article_id=int(a.id or 0), feed_id=out.feed_ids[0]))
        job = Job(
            kind="reprocess",
            state="running",
            params={"discovery_done": True, "count": 4},
            started_at=T0,
        )
        s.add(job)
        s.flush()
        out.job_id = int(job.id or 0)
        for a, state in ((first, "done"), (second, "done"), (third, "pending"), (copy, "pending")):
            s.add(JobItem(job_id=out.job_id, article_id=int(a.id or 0), state=state))
    return out


def big_cluster(settings: Any, repeats: int, outlets: int) -> tuple[int, list[int]]:
    """A cluster repeated ``repeats`` times across ``outlets`` outlets, one an hour and
    a half, a fifth of them reworded, and two copies of its first article; the article
    ids in time order."""
    with unit_of_work(settings) as s:
        cl = ClaimCluster(speaker_key="brandt", speaker="Ivo Brandt", text="rates will fall")
        s.add(cl)
        s.flush()
        cid = int(cl.id or 0)
        arts = []
        for i in range(repeats):
            url = f"https://o{i % outlets}.example/{cid}/{i}"
            arts.append(
                {
                    "url": url,
                    "url_hash": url_hash(url),
                    "host": f"o{i % outlets}.example",
                    "state": "processed",
                    "published_at": BIG_T0 + timedelta(minutes=90 * i),
                    "discovered_at": BIG_T0 + timedelta(minutes=90 * i),
                    "title": f"Rates {i}",
                }
            )
        s.execute(insert(Article), arts)
        art_ids = [
            a.id
            for a in s.exec(
                select(Article)
                .where(col(Article.url).like(f"%/{cid}/%"))
                .order_by(col(Article.published_at))
            ).all()
        ]
        claims = []
        for i, aid in enumerate(art_ids):
            content = "rates will fall" if i % 5 else "rates are to fall"
            if i == 0:
                content = "rates will fall"
            claims.append(
                {
                    "article_id": aid,
                    "speaker": "Ivo Brandt",
                    "speaker_resolved": "Ivo Brandt",
                    "verb": "said",
                    "kind": "indirect",
                    "text": content,
                    "start": 0,
                    "end": len(content),
                    "sentence": f"Ivo Brandt said {content}.",
                    "extractor_version": "test",
                    "cluster_id": cid,
                    "article_at": BIG_T0 + timedelta(minutes=90 * i),
                }
            )
        s.execute(insert(Claim), claims)
        for k in range(2):
            url = f"https://copies{k}.example/{cid}"
            s.add(
                Article(
                    url=url,
                    url_hash=url_hash(url),
                    host=f"copies{k}.example",
                    state="processed",
                    published_at=BIG_T0 + timedelta(days=40 + k),
                    discovered_at=BIG_T0 + timedelta(days=40 + k),
                    duplicate_of_id=art_ids[0],
                )
            )
        cl.first_seen_at = BIG_T0
        cl.first_article_id = art_ids[0]
        cl.n_articles = repeats + 2
        cl.n_outlets = outlets + 2
    return cid, [int(a or 0) for a in art_ids]


# A word longer than any line (a part number run together), and text written right to
# left (invented Arabic: "the port will open on Monday"; "the bridge stays closed").
LONG_WORD = "Xq" + "tramlinepartnumber" * 12
RTL_CLAIM = "إن الميناء سيفتح يوم الاثنين"
RTL_SENTENCE = f"قالت الوزيرة {RTL_CLAIM}."
RTL_OTHER = "الجسر يبقى مغلقا"


@dataclass
class Unruly:
    article_id: int = 0
    rtl_article_id: int = 0
    cluster_id: int = 0
    rtl_cluster_id: int = 0


def seed_unruly(settings: Any) -> Unruly:
    """Text that must neither widen a page nor read backwards: a word longer than any
    line in a feed's title and URL, an article's title and text, a speaker's name and a
    claim; an article and a claim in Arabic."""
    init_db(settings)
    out = Unruly()
    at = T0 + timedelta(days=5)
    with unit_of_work(settings) as s:
        s.add(
            Feed(
                url=f"https://{LONG_WORD.lower()}.example/{LONG_WORD}.xml",
                title=LONG_WORD,
                state="failing",
                consecutive_failures=1,
                last_error=f"HTTP 404 for https://unruly.example/{LONG_WORD}",
                created_at=at,
            )
        )
        speaker = f"Engineer {LONG_WORD}"
        content = f"the part {LONG_WORD} was ordered twice"
        article = _article(
            s,
            f"https://unruly.example/{LONG_WORD}",
            "unruly.example",
            f"Parts {LONG_WORD} ordered twice",
            f"Crews waited all week. {speaker} said {content}. Nobody was hurt.",
            at,
            author=LONG_WORD,
        )
        cluster = ClaimCluster(
            speaker_key=speaker_key(speaker) or LONG_WORD.lower(),
            speaker=speaker,
            text=content,
            first_seen_at=at,
            first_article_id=article.id,
            n_articles=1,
            n_outlets=1,
        )
        s.add(cluster)
        s.flush()
        _claim(s, article, speaker, "said", content, cluster.id)
        out.article_id, out.cluster_id = int(article.id or 0), int(cluster.id or 0)
        rtl = _article(
            s,
            "https://unruly.example/rtl",
            "unruly.example",
            RTL_OTHER,
            f"{RTL_SENTENCE}\n\n{RTL_OTHER}.",
            at + timedelta(hours=1),
        )
        rtl_cluster = ClaimCluster(
            speaker_key="dana rahimi",
            speaker="Dana Rahimi",
            text=RTL_CLAIM,
            first_seen_at=rtl.published_at,
            first_article_id=rtl.id,
            n_articles=1,
            n_outlets=1,
        )
        s.add(rtl_cluster)
        s.flush()
        _claim(s, rtl, "Dana Rahimi", "said", RTL_CLAIM, rtl_cluster.id)
        out.rtl_article_id, out.rtl_cluster_id = int(rtl.id or 0), int(rtl_cluster.id or 0)
    return out
