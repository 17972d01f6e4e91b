"""Migration 0016_speakerkeys: clusters stored under the old speaker keys are re-keyed
with the new folding of surnames ("Shoygu" and "Shoigu" one key), and clusters that now
share a key are merged only where they hold one statement. SQLite and PostgreSQL; every
text is invented for this test."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleState, Claim, ClaimCluster, ClaimClusterWord
from tests.test_dedup import T
from worker.claims.clustering import best_cluster, cluster_word_rows, content_words, speaker_key
from worker.core.db import alembic_config, dispose_engines, get_engine, init_db
from worker.core.settings import Settings

TROOPS = "the troops would leave the border region within two weeks"
TROOPS_AGAIN = "troops would leave the border region in two weeks, he told reporters"
HELICOPTERS = "the ministry would buy forty new helicopters for the northern fleet"
PESKOV = "the talks in Geneva had been useful for both delegations"


OLD_CLUSTERS = (
    ("troops", "shoigu", "Sergei Shoigu", TROOPS),
    ("troops_again", "shoygu", "Defence Minister Sergey Shoygu", TROOPS_AGAIN),
    ("helicopters", "shoygu", "Shoygu", HELICOPTERS),
    ("peskov", "peskov", "Dmitry Peskov", PESKOV),
)


def _old_database(
    settings: Settings,
    revision: str = "0015_runproc_redirects",
    clusters: tuple[tuple[str, str, str, str], ...] = OLD_CLUSTERS,
) -> dict[str, int]:
    """A database at ``revision`` with clusters keyed the old way, (name, old key,
    speaker, text) each, one claim and one article a cluster: by default "shoigu"
    (Shoigu), "shoygu" (Shoygu, the same statement reworded, and a different
    statement), "peskov"."""
    engine = get_engine(settings)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # as init_db runs migrations
        cfg = alembic_config(settings.effective_database_url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
    ids: dict[str, int] = {}
    with Session(engine) as s:
        for n, (name, old_key, speaker, text) in enumerate(clusters):
            article = Article(
                url=f"https://o{n}.example/news/{n}",
                url_hash=f"h{n}",
                host=f"o{n}.example",
                state=ArticleState.processed,
                text=f"{speaker} said {text}.",
                published_at=T + timedelta(hours=n),
                discovered_at=T + timedelta(hours=n),
            )
            s.add(article)
            s.flush()
            cluster = ClaimCluster(
                speaker_key=old_key,
                speaker=speaker,
                text=text,
                first_seen_at=T + timedelta(hours=n),
                first_article_id=article.id,
                n_articles=1,
                n_outlets=1,
            )
            s.add(cluster)
            s.flush()
            assert cluster.id is not None and article.id is not None
            s.add(
                Claim(
                    article_id=article.id,
                    speaker=speaker,
                    speaker_resolved=speaker,
                    verb="said",
                    kind="indirect",
                    text=text,
                    start=0,
                    end=len(text),
                    sentence=text,
                    extractor_version="rules-7",
                    cluster_id=cluster.id,
                    article_at=article.published_at,
                )
            )
            for row in cluster_word_rows(cluster.id, old_key, text):
                s.add(ClaimClusterWord(**row))  # type: ignore[arg-type]
            ids[name] = cluster.id
        s.commit()
    return ids


def _rekeyed_and_merged(settings: Settings) -> None:
    ids = _old_database(settings)
    init_db(settings)  # runs 0016
    engine = get_engine(settings)
    with Session(engine) as s:
        clusters = {c.id: c for c in s.exec(select(ClaimCluster)).all()}
        # the reworded statement under the other spelling joined the older cluster,
        # with its claim, and the cluster counts both outlets from the first article
        assert ids["troops_again"] not in clusters
        troops = clusters[ids["troops"]]
        assert troops.speaker_key == "shoigu" and troops.text == TROOPS
        assert troops.n_articles == 2 and troops.n_outlets == 2
        assert troops.first_seen_at is not None
        claims = s.exec(select(Claim).where(col(Claim.cluster_id) == troops.id)).all()
        assert sorted(c.text for c in claims) == sorted([TROOPS, TROOPS_AGAIN])
        # a different statement of the same speaker is re-keyed but stays apart
        heli = clusters[ids["helicopters"]]
        assert heli.speaker_key == "shoigu" and heli.n_articles == 1
        # another speaker is untouched
        assert clusters[ids["peskov"]].speaker_key == "peskov"
        assert len(clusters) == 3
        # the word index follows: every row under the new key, the merged cluster's
        # vocabulary the union of both members', none left for the cluster gone
        rows = s.exec(select(ClaimClusterWord)).all()
        assert "shoygu" not in {r.speaker_key for r in rows}
        by_cluster: dict[int, set[str]] = {}
        for r in rows:
            by_cluster.setdefault(r.cluster_id, set()).add(r.word)
        assert ids["troops_again"] not in by_cluster
        assert by_cluster[ids["troops"]] == content_words(TROOPS) | content_words(TROOPS_AGAIN)
        assert {r.n_words for r in rows if r.cluster_id == ids["troops"]} == {
            min(len(content_words(TROOPS)), len(content_words(TROOPS_AGAIN)))
        }
        # new claims under either spelling find the clusters through the index
        words = content_words(TROOPS_AGAIN)
        key = speaker_key("Shoygu")
        assert best_cluster(s, key, words, 0.5, TROOPS_AGAIN) == ids["troops"]
        words = content_words(HELICOPTERS)
        assert best_cluster(s, key, words, 0.5, HELICOPTERS) == ids["helicopters"]
    dispose_engines()


def test_speaker_keys_migration_on_sqlite(tmp_path) -> None:
    _rekeyed_and_merged(Settings(data_dir=tmp_path))


@pytest.mark.postgres
def test_speaker_keys_migration_on_postgres(pg_url: str, tmp_path) -> None:
    _rekeyed_and_merged(Settings(data_dir=tmp_path, database_url=pg_url))
