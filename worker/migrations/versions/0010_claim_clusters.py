"""claim clusters re-keyed and re-indexed: every cluster's speaker key recomputed with
the new ``speaker_key`` (titles, initials and spelling variants folded), and
claimclusterword rebuilt as every cluster's vocabulary: the content words (now Snowball
stems) of all its member claims, with the smallest member's word count

Revision ID: 0010_claim_clusters
Revises: 0009_claim_tracking
Create Date: 2026-12-06 10:30:00

Only rows change (no table is rebuilt). The rows are computed with the clustering's own
``content_words``: a later change to that function needs a migration that rebuilds
them again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_claim_clusters"
down_revision: str | None = "0009_claim_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    from worker.claims.clustering import _index_word, content_words, speaker_key, word_rows

    conn = op.get_bind()
    cluster = sa.table(
        "claimcluster",
        sa.column("id", sa.Integer),
        sa.column("speaker_key"),
        sa.column("speaker"),
        sa.column("text"),
    )
    claim = sa.table("claim", sa.column("cluster_id", sa.Integer), sa.column("text"))
    word = sa.table(
        "claimclusterword",
        sa.column("cluster_id", sa.Integer),
        sa.column("word"),
        sa.column("speaker_key"),
        sa.column("n_words", sa.Integer),
    )
    conn.execute(sa.delete(word))
    last = 0
    while True:
        batch = conn.execute(
            sa.select(cluster.c.id, cluster.c.speaker_key, cluster.c.text, cluster.c.speaker)
            .where(cluster.c.id > last)
            .order_by(cluster.c.id)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        texts: dict[int, list[str]] = {row[0]: [] for row in batch}
        for cid, text in conn.execute(
            sa.select(claim.c.cluster_id, claim.c.text).where(claim.c.cluster_id.in_(texts))
        ):
            texts[cid].append(text)
        rows = []
        for cid, old_key, text, speaker in batch:
            key = speaker_key(speaker) or old_key  # a key no name gives stays (no new member)
            if key != old_key:
                conn.execute(sa.update(cluster).where(cluster.c.id == cid).values(speaker_key=key))
            members = [{_index_word(w) for w in content_words(t)} for t in texts[cid] or [text]]
            vocabulary = set().union(*members)
            if vocabulary:
                rows += word_rows(
                    cid, key, vocabulary, min(len(m) for m in members if m) if any(members) else 0
                )
        if rows:
            conn.execute(sa.insert(word), rows)
        last = batch[-1][0]


def downgrade() -> None:
    from worker.claims.clustering import cluster_word_rows

    conn = op.get_bind()
    cluster = sa.table(
        "claimcluster", sa.column("id", sa.Integer), sa.column("speaker_key"), sa.column("text")
    )
    word = sa.table(
        "claimclusterword",
        sa.column("cluster_id", sa.Integer),
        sa.column("word"),
        sa.column("speaker_key"),
        sa.column("n_words", sa.Integer),
    )
    conn.execute(sa.delete(word))
    rows = []
    for cid, key, text in conn.execute(
        sa.select(cluster.c.id, cluster.c.speaker_key, cluster.c.text)
    ):
        rows += cluster_word_rows(cid, key, text)
        if len(rows) >= 20_000:
            conn.execute(sa.insert(word), rows)
            rows = []
    if rows:
        conn.execute(sa.insert(word), rows)
