"""The claim clusters' word index (``claimclusterword``): clustering through it chooses
exactly what scoring every cluster of the speaker chooses, the migration fills it for
clusters that existed before it, and a deleted cluster takes its words with it.

SQLite and a fresh PostgreSQL database (skipped without PostgreSQL unless CI=true).
Every text is generated from invented words.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleState, Claim, ClaimCluster, ClaimClusterWord
from tests.test_dedup import (
    any_settings,  # noqa: F401  (fixture)
    pg_settings,  # noqa: F401  (fixture)
    sqlite_settings,  # noqa: F401  (fixture)
)
from worker.claims import store
from worker.claims.clustering import (
    assign_clusters,
    best_cluster,
    cluster_score,
    cluster_word_rows,
    content_words,
    orphan_clusters,
    refresh_cluster,
    speaker_key,
)
from worker.core.db import alembic_config, dispose_engines, get_engine, init_db
from worker.core.settings import Settings

SPEAKERS = ["Maria Novak", "Karl Brandt", "the Health Ministry", "police", "Anna Holub"]
# a small vocabulary per speaker: near-duplicates and ties are frequent
VOCAB = [
    "strike",
    "steelworks",
    "agitators",
    "abroad",
    "planned",
    "hospital",
    "wing",
    "opens",
    "budget",
    "deficit",
    "tunnel",
    "railway",
]
LONG = "z" * 70  # a junk word longer than the index keeps as it is


def _scores(
    session: Session, key: str, words: set[str], threshold: float
) -> list[tuple[float, int, int]]:
    """Every cluster of the key scored on its founder and all its members, in id order."""
    out = []
    clusters = session.exec(
        select(ClaimCluster).where(ClaimCluster.speaker_key == key).order_by(col(ClaimCluster.id))
    )
    for cluster in clusters:
        assert cluster.id is not None
        members = [
            c.text for c in session.exec(select(Claim).where(Claim.cluster_id == cluster.id))
        ]
        texts = members or [cluster.text]
        out.append((cluster_score(words, cluster.text, texts, threshold), len(texts), cluster.id))
    return out


def scan(session: Session, key: str, words: set[str], threshold: float) -> int | None:
    """The choice of a scan without the index: every cluster of the key scored on all
    its members (and its founder); the best score wins, then the most members, then the
    lowest id."""
    best: tuple[float, int, int | None] = (0.0, 0, None)
    for score, size, cluster_id in _scores(session, key, words, threshold):
        if score > best[0] or (score == best[0] and score > 0 and size > best[1]):
            best = (score, size, cluster_id)
    return best[2]


def ties(session: Session, key: str, words: set[str], threshold: float) -> bool:
    """Whether several clusters of the key share the best score (at the threshold)."""
    scores = [score for score, _, _ in _scores(session, key, words, threshold)]
    top = max(scores, default=0.0)
    return top >= threshold and top > 0 and scores.count(top) > 1


def claim_text(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.05:
        return "It was 12 of the 40 on 3 May."  # no content word
    words = rng.sample(VOCAB, rng.randint(1, 5))
    if r < 0.1:
        words.append(LONG)
    # stop words and plurals around them, as in real quotations
    return "The " + " and ".join(w + ("s" if rng.random() < 0.2 else "") for w in words) + "."


def new_article(s: Session) -> Article:
    key = uuid.uuid4().hex
    article = Article(
        url=f"https://a.example/{key}",
        url_hash=key,
        host="a.example",
        state=ArticleState.deduplicated,
        text="(generated)",
        published_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    s.add(article)
    s.flush()
    return article


def add_claim(s: Session, article: Article, speaker: str, body: str, start: int) -> Claim:
    assert article.id is not None
    claim = Claim(
        article_id=article.id,
        speaker=speaker,
        speaker_resolved=speaker,
        verb="said",
        kind="indirect",
        text=body,
        start=start,
        end=start + len(body),
        sentence=body,
        extractor_version="test",
    )
    s.add(claim)
    s.flush()
    return claim


def test_index_chooses_what_the_scan_chooses(any_settings: Settings) -> None:  # noqa: F811
    rng = random.Random(20261125)
    threshold = 0.5
    seen = {"joined": 0, "new": 0, "ties": 0, "empty": 0, "long": 0}
    with Session(get_engine(any_settings)) as s:
        article = new_article(s)
        for i in range(400):
            speaker = rng.choice(SPEAKERS)
            body = claim_text(rng)
            claim = add_claim(s, article, speaker, body, start=i * 100)
            key = speaker_key(speaker)
            words = content_words(body)
            expected = scan(s, key, words, threshold)
            seen["ties"] += ties(s, key, words, threshold)
            seen["empty"] += not words
            seen["long"] += LONG in words
            before = set(s.exec(select(ClaimCluster.id)).all())
            assign_clusters(s, article, [claim], threshold)
            if expected is None:
                seen["new"] += 1
                assert claim.cluster_id not in before, body
            else:
                seen["joined"] += 1
                assert claim.cluster_id == expected, body
        # the generated claims exercised every path
        assert min(seen.values()) >= 5, seen

        # every cluster, every probe, several thresholds (0: any shared word will do)
        clusters = s.exec(select(ClaimCluster)).all()
        assert {c.speaker_key for c in clusters} == {speaker_key(p) for p in SPEAKERS} - {""}
        probes = [content_words(claim_text(rng)) for _ in range(60)] + [set(), {"unknown"}]
        for threshold in (0.0, 0.3, 0.5, 2 / 3, 0.8, 1.0, 1.5):
            for key in {c.speaker_key for c in clusters}:
                for words in probes:
                    assert best_cluster(s, key, words, threshold) == scan(
                        s, key, words, threshold
                    ), (key, words, threshold)


def test_a_cluster_quoting_the_same_words_is_a_candidate(any_settings: Settings) -> None:  # noqa: F811
    """A claim that shares only a quoted phrase with a cluster (fewer words than the
    threshold asks of its size) is still scored against it, as the scan would."""
    founder = 'the mill would close by winter, "a dark day for the valley"'
    claim = 'it was "a dark day" and the unions should meet the owners next month in Graz'
    words = content_words(claim)
    assert len(words & content_words(founder)) == 2 and len(content_words(founder)) == 6
    with Session(get_engine(any_settings)) as s:
        article = new_article(s)
        first = add_claim(s, article, "Maria Novak", founder, start=0)
        assign_clusters(s, article, [first], 0.5)
        assert first.cluster_id is not None
        # by its words alone the claim is no repeat (2 of 6), nor does the index offer it
        assert cluster_score(words, founder, [founder], 0.5) == 0.0
        assert best_cluster(s, "novak", words, 0.5) is None
        # the quoted phrase makes it one, and the index finds the cluster for it
        assert cluster_score(words, founder, [founder], 0.5, claim) == 0.5
        assert best_cluster(s, "novak", words, 0.5, claim) == first.cluster_id
        second = add_claim(s, article, "Novak", claim, start=100)
        assign_clusters(s, article, [second], 0.5)
        assert second.cluster_id == first.cluster_id


def test_index_rows_are_the_clusters_content_words(any_settings: Settings) -> None:  # noqa: F811
    with Session(get_engine(any_settings)) as s:
        article = new_article(s)
        bodies = [
            "Novak said the strikes at the steelworks were planned abroad.",
            "It was 12 of the 40.",
            f"The {LONG} and the {LONG}x were seen.",
        ]
        claims = [add_claim(s, article, "Maria Novak", b, i * 100) for i, b in enumerate(bodies)]
        assign_clusters(s, article, claims, 0.5)
        for claim in claims:
            assert claim.cluster_id is not None
            rows = s.exec(
                select(ClaimClusterWord)
                .where(ClaimClusterWord.cluster_id == claim.cluster_id)
                .order_by(col(ClaimClusterWord.word))
            ).all()
            assert [r.model_dump() for r in rows] == cluster_word_rows(
                claim.cluster_id, "novak", claim.text
            )
            assert {r.n_words for r in rows} <= {len(content_words(claim.text))}
        assert len(content_words(bodies[1])) == 0
        long_words = s.exec(
            select(ClaimClusterWord.word).where(ClaimClusterWord.cluster_id == claims[2].cluster_id)
        ).all()
        # two long words, two digests, each far shorter than the word
        assert len([w for w in long_words if w.startswith("#")]) == 2
        assert all(len(w) <= 64 for w in long_words)


def _words_without_cluster(s: Session) -> int:
    return int(
        s.exec(
            select(func.count())
            .select_from(ClaimClusterWord)
            .where(col(ClaimClusterWord.cluster_id).not_in(select(ClaimCluster.id)))
        ).one()
    )


def _word_count(s: Session) -> int:
    return int(s.exec(select(func.count()).select_from(ClaimClusterWord)).one())


def test_deleted_clusters_leave_no_words(any_settings: Settings) -> None:  # noqa: F811
    engine = get_engine(any_settings)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    with Session(engine) as s:
        articles = [new_article(s) for _ in range(3)]
        texts = ["strike steelworks agitators", "hospital wing opens", "budget deficit tunnel"]
        for article, body in zip(articles, texts, strict=True):
            claim = add_claim(s, article, "Maria Novak", body, 0)
            assign_clusters(s, article, [claim], 0.5)
            assert claim.cluster_id is not None
        s.commit()
        assert s.exec(select(func.count()).select_from(ClaimCluster)).one() == 3
        assert _word_count(s) == 9

        # refresh_cluster deletes a cluster whose claims are gone
        first = s.exec(select(Claim).where(Claim.article_id == articles[0].id)).one()
        cluster_id = first.cluster_id
        assert cluster_id is not None
        s.execute(delete(Claim).where(col(Claim.id) == first.id))
        refresh_cluster(s, cluster_id)
        s.commit()
        assert s.get(ClaimCluster, cluster_id) is None
        assert _word_count(s) == 6 and _words_without_cluster(s) == 0

        # orphan_clusters, after claims were deleted outside clustering
        s.execute(delete(Claim).where(col(Claim.article_id) == articles[1].id))
        assert orphan_clusters(s) == 1
        s.commit()
        assert _word_count(s) == 3 and _words_without_cluster(s) == 0

        # replace_claims (reprocessing) with extraction off: the article's claims go, and
        # with them its cluster and the cluster's words
        settings = any_settings.model_copy(update={"extract_claims": False})
        store.replace_claims(s, articles[2], settings)
        s.commit()
        assert s.exec(select(func.count()).select_from(ClaimCluster)).one() == 0
        assert _word_count(s) == 0


def _upgrade(settings: Settings, revision: str) -> None:
    engine = get_engine(settings)
    with engine.connect() as conn:
        cfg = alembic_config(settings.effective_database_url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def _migration_fills_old_clusters(settings: Settings) -> None:
    _upgrade(settings, "0004_step_starts")
    texts = {
        "novak": [
            "the strikes at the steelworks were planned abroad",
            "the hospital wing opens in May",
            "It was 12 of the 40.",  # no content word: no rows
            f"a {LONG} junk word",
        ],
        "health ministry": ["the hospital wing opens in May"],
    }
    with get_engine(settings).begin() as conn:
        for key, bodies in texts.items():
            for body in bodies:
                conn.execute(
                    text(
                        "INSERT INTO claimcluster (speaker_key, speaker, text, n_articles,"
                        " n_outlets, created_at) VALUES (:k, :k, :t, 1, 1, :now)"
                    ),
                    {"k": key, "t": body, "now": datetime.now(UTC)},
                )
        # keyed by the old speaker_key ("U.S." gave "s"); 0010 re-keys it
        conn.execute(
            text(
                "INSERT INTO claimcluster (speaker_key, speaker, text, n_articles,"
                " n_outlets, created_at) VALUES ('s', :sp, :t, 1, 1, :now)"
            ),
            {
                "sp": "U.S. Ambassador Ana Kovač",
                "t": "the embassy would reopen in spring",
                "now": datetime.now(UTC),
            },
        )
    dispose_engines()
    init_db(settings)  # upgrade to head: 0005 fills the index, 0010 rebuilds it
    with Session(get_engine(settings)) as s:
        clusters = s.exec(select(ClaimCluster).order_by(col(ClaimCluster.id))).all()
        assert len(clusters) == 6
        assert clusters[5].speaker_key == "kovac"
        assert best_cluster(s, "kovac", content_words("the embassy reopens in spring"), 0.5) == (
            clusters[5].id
        )
        expected = [
            r for c in clusters for r in cluster_word_rows(c.id or 0, c.speaker_key, c.text)
        ]
        got = s.exec(
            select(ClaimClusterWord).order_by(
                col(ClaimClusterWord.cluster_id), col(ClaimClusterWord.word)
            )
        ).all()
        assert [r.model_dump() for r in got] == expected
        ids = [c.id for c in clusters]
        assert {r["cluster_id"] for r in expected} == set(ids) - {ids[2]}
        # clustering finds the old clusters through the index, per speaker
        assert (
            best_cluster(s, "novak", content_words("hospital wing opened"), 0.5) == clusters[1].id
        )
        assert (
            best_cluster(s, "health ministry", content_words("hospital wing opened"), 0.5)
            == clusters[4].id
        )
        # one shared (junk) word is no repeat, nor are two: a claim of fewer than five
        # content words is compared as if it had five
        assert best_cluster(s, "novak", content_words(f"the {LONG}"), 0.5) is None
        assert best_cluster(s, "novak", content_words(f"the {LONG} word"), 0.5) is None
        assert (
            best_cluster(s, "novak", content_words(f"the {LONG} junk word"), 0.5) == clusters[3].id
        )
    dispose_engines()


def test_migration_fills_old_clusters_on_sqlite(tmp_path: Path) -> None:
    dispose_engines()
    _migration_fills_old_clusters(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}"))


@pytest.mark.postgres
def test_migration_fills_old_clusters_on_postgres(pg_url: str) -> None:
    dispose_engines()
    _migration_fills_old_clusters(Settings(database_url=pg_url))
