"""The clustering's bookkeeping of issue 16: the claims an article's step has placed are
members before their clusters are written, a refreshed cluster the session does not
hold is written directly, and dedup's per-process word hashes change no hash.

SQLite and a fresh PostgreSQL database (skipped without PostgreSQL unless CI=true).
Every text is invented.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from schemas.models import Claim, ClaimCluster
from tests.test_claims_cluster_index import add_claim, new_article
from tests.test_dedup import (
    any_settings,  # noqa: F401  (fixture)
    pg_settings,  # noqa: F401  (fixture)
    sqlite_settings,  # noqa: F401  (fixture)
)
from worker.claims.clustering import assign_clusters, content_words, refresh_cluster
from worker.core.db import get_engine
from worker.core.settings import Settings
from worker.dedup import sketch

FOUNDER = "the quarry permits ignored the river wetland survey"
# the founder's six words and four more: repeats the founder whole
LONGER = "the quarry permits ignored the river wetland survey and cut forestry office budgets"
# two of the founder's six words (0.33: above the founder floor, below the threshold),
# and all of its words in LONGER: it repeats the cluster only through that member
THROUGH_MEMBER = "the quarry permits cut forestry office budgets"


def test_the_words_of_the_three_claims() -> None:
    founder, longer, through = map(content_words, (FOUNDER, LONGER, THROUGH_MEMBER))
    assert len(founder) == 6 and founder < longer
    assert len(through & founder) == 2 and through < longer


def test_a_claim_placed_in_the_same_step_is_a_member(any_settings: Settings) -> None:  # noqa: F811
    """Three claims of one article in one step: the third joins the cluster through the
    second, placed in the same step and not yet written (as when each claim had its own
    step); the clusters are written, and counted, when the step's clustering ends."""
    engine = get_engine(any_settings)
    with Session(engine) as s:
        article = new_article(s)
        claims = [
            add_claim(s, article, "Maria Novak", body, start=i * 100)
            for i, body in enumerate((FOUNDER, LONGER, THROUGH_MEMBER))
        ]
        touched = assign_clusters(s, article, claims, any_settings.claim_cluster_threshold)
        assert len(touched) == 1
        assert {c.cluster_id for c in claims} == touched
        s.commit()
        article_id = article.id
    with Session(engine) as s:  # what the database holds
        rows = s.exec(select(Claim).where(Claim.article_id == article_id)).all()
        assert len(rows) == 3 and {c.cluster_id for c in rows} == touched
        cluster = s.get(ClaimCluster, touched.pop())
        assert cluster is not None
        assert cluster.text == FOUNDER
        assert (cluster.n_articles, cluster.n_outlets) == (1, 1)
        assert cluster.first_article_id == article_id


def test_the_same_claims_one_step_each_give_the_same_cluster(any_settings: Settings) -> None:  # noqa: F811
    engine = get_engine(any_settings)
    with Session(engine) as s:
        article = new_article(s)
        found = []
        for i, body in enumerate((FOUNDER, LONGER, THROUGH_MEMBER)):
            claim = add_claim(s, article, "Maria Novak", body, start=i * 100)
            assign_clusters(s, article, [claim], any_settings.claim_cluster_threshold)
            found.append(claim.cluster_id)
        assert found[0] is not None and found == [found[0]] * 3


def test_a_refresh_writes_a_cluster_the_session_does_not_hold(any_settings: Settings) -> None:  # noqa: F811
    engine = get_engine(any_settings)
    with Session(engine) as s:
        article = new_article(s)
        kept = add_claim(s, article, "Maria Novak", FOUNDER, start=0)
        gone = add_claim(s, article, "Karl Brandt", "the tunnel budget was cut in spring", 100)
        assign_clusters(s, article, [kept, gone], any_settings.claim_cluster_threshold)
        assert kept.cluster_id is not None and gone.cluster_id is not None
        kept_id, gone_id, article_id = kept.cluster_id, gone.cluster_id, article.id
        s.delete(gone)
        s.commit()
    with Session(engine) as s:
        # counts made stale by hand, then refreshed without loading the clusters
        s.execute(
            ClaimCluster.__table__.update()  # type: ignore[attr-defined]
            .where(ClaimCluster.__table__.c.id == kept_id)  # type: ignore[attr-defined]
            .values(n_articles=7, n_outlets=7, first_article_id=None)
        )
        refresh_cluster(s, kept_id)
        refresh_cluster(s, gone_id)  # no claims left: deleted
        assert s.get(ClaimCluster, kept_id) is not None  # (loaded only now)
        s.commit()
    with Session(engine) as s:
        cluster = s.get(ClaimCluster, kept_id)
        assert cluster is not None
        assert (cluster.n_articles, cluster.n_outlets) == (1, 1)
        assert cluster.first_article_id == article_id and cluster.first_seen_at is not None
        assert s.get(ClaimCluster, gone_id) is None
        assert s.exec(select(Claim.id).where(col(Claim.cluster_id) == gone_id)).all() == []


def test_word_hashes_kept_per_process_change_no_shingle() -> None:
    text = " ".join(f"w{i % 37} x{i % 11} y{i}" for i in range(120))
    tokens = sketch.words(text)
    sketch._WORD_HASHES.clear()
    cold = sketch.shingle_hashes(tokens, 5)
    warm = sketch.shingle_hashes(tokens, 5)  # every word from the process's hashes
    assert cold.tolist() == warm.tolist() and len(cold) == len(tokens) - 4
    assert set(tokens) <= set(sketch._WORD_HASHES)
    # the hashes are emptied at their bound, and hashed again the same
    saved = sketch._WORD_HASHES_MAX
    try:
        sketch._WORD_HASHES_MAX = 50
        sketch._WORD_HASHES.clear()
        sketch._WORD_HASHES.update({f"filler{i}": 0 for i in range(49)})
        bounded = sketch.shingle_hashes(tokens, 5)
        assert not any(w.startswith("filler") for w in sketch._WORD_HASHES)
    finally:
        sketch._WORD_HASHES_MAX = saved
        sketch._WORD_HASHES.clear()
    assert bounded.tolist() == cold.tolist()
