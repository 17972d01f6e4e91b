"""claim clusters re-keyed for transliteration variants inside surnames: every cluster's
speaker key recomputed with the new ``speaker_key`` ("Shoygu"/"Shoigu",
"Yanukovych"/"Yanukovich", "Dostoyevsky"/"Dostoevsky" now give one key), its word rows
with it, and the clusters that now share a key merged where the clustering would have
put them together

Revision ID: 0016_speakerkeys
Revises: 0015_runproc_redirects
Create Date: 2026-12-06 22:10:00

Only rows change (no table is rebuilt). Two clusters that had different keys and now
share one are merged only where they hold the same statement, as the clustering decides
it: the younger cluster's founding claim must repeat the older one
(``clustering.cluster_score`` over its members, with its founder floor, at the default
``CLAIMWIRE_CLAIM_CLUSTER_THRESHOLD``), as it would have had the keys been one when it
was clustered; of several older clusters it repeats, the best (``scored_clusters``'s
order: score, members, age). Clusters that already shared a key were kept apart by the
clustering and stay apart. A merge moves the claims and the word rows
(``clustering.merge_clusters``) and recounts the cluster kept (articles, outlets, first
seen). The downgrade changes nothing: the old keys and the merged clusters are not
restored (the old keys still cluster correctly under the old code's own rules only for
claims clustered after it; ``claimwire reprocess`` rebuilds clusters either way).

The decisions use the clustering's own functions (as ``0010_claim_clusters`` did): a
later change to them does not change what this migration did.
"""

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_speakerkeys"
down_revision: str | None = "0015_runproc_redirects"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    from sqlmodel import Session

    from worker.claims.clustering import (
        cluster_score,
        content_words,
        merge_clusters,
        refresh_clusters,
        speaker_key,
    )
    from worker.core.settings import Settings

    threshold = float(Settings.model_fields["claim_cluster_threshold"].default)
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
        "claimclusterword", sa.column("cluster_id", sa.Integer), sa.column("speaker_key")
    )

    # 1. every cluster's key, recomputed; the keys that gained a cluster from another key
    rekeyed: set[str] = set()
    was: dict[int, str] = {}  # a re-keyed cluster's old key
    last = 0
    while True:
        batch = conn.execute(
            sa.select(cluster.c.id, cluster.c.speaker_key, cluster.c.speaker)
            .where(cluster.c.id > last)
            .order_by(cluster.c.id)
            .limit(_BATCH)
        ).all()
        if not batch:
            break
        for cid, old_key, speaker in batch:
            key = speaker_key(speaker) or old_key  # a key no name gives stays
            if key != old_key:
                conn.execute(sa.update(cluster).where(cluster.c.id == cid).values(speaker_key=key))
                conn.execute(
                    sa.update(word).where(word.c.cluster_id == cid).values(speaker_key=key)
                )
                rekeyed.add(key)
                was[cid] = old_key
        last = batch[-1][0]
    if not rekeyed:
        return

    # 2. within each such key, the clusters that came from different keys: the younger
    # joins the older one its founder repeats (best first), as the clustering decides
    # a claim's cluster; clusters of one old key were kept apart by it and stay apart
    old_keys: dict[int, str] = {}
    by_key: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for cid, key, text in conn.execute(
        sa.select(cluster.c.id, cluster.c.speaker_key, cluster.c.text)
        .where(cluster.c.speaker_key.in_(sorted(rekeyed)))
        .order_by(cluster.c.id)
    ):
        by_key[key].append((cid, text))
        old_keys[cid] = was.get(cid, key)
    session = Session(bind=conn)
    kept_into: set[int] = set()
    for clusters in by_key.values():
        if len({old_keys[cid] for cid, _ in clusters}) < 2:
            continue
        members: dict[int, list[str]] = defaultdict(list)
        for cid, text in conn.execute(
            sa.select(claim.c.cluster_id, claim.c.text).where(
                claim.c.cluster_id.in_([cid for cid, _ in clusters])
            )
        ):
            members[cid].append(text)
        kept: list[tuple[int, str]] = []
        for cid, founder in clusters:
            words = content_words(founder)
            best: tuple[float, int, int] | None = None
            for older, older_founder in kept:
                if old_keys[older] == old_keys[cid]:
                    continue
                texts = members[older] or [older_founder]
                score = cluster_score(words, older_founder, texts, threshold, founder)
                if score > 0 and (best is None or (-score, -len(texts), older) < best):
                    best = (-score, -len(texts), older)
            if best is None:
                kept.append((cid, founder))
                continue
            into = best[2]
            merge_clusters(session, into, cid)
            members[into] += members.pop(cid, [])
            kept_into.add(into)
    refresh_clusters(session, kept_into)
    session.flush()
    session.close()  # the migration's transaction commits the rows


def downgrade() -> None:
    pass
