"""Claim clusters re-keyed after a change of ``speaker_key``: the work of the migrations
``0016_speakerkeys`` and ``0017_bodykeys`` (their docstrings say why each was needed)."""

from collections import defaultdict

import sqlalchemy as sa

_BATCH = 1000


def rekey_clusters(conn: sa.Connection) -> None:
    """Recompute every claim cluster's speaker key with the current
    ``clustering.speaker_key``, its word rows with it, and merge the clusters that came
    from different keys and now share one where the younger one's founder repeats the
    older one (the clustering's own decision). Migrations ``0016_speakerkeys`` and
    ``0017_bodykeys`` run it, each after a change of ``speaker_key``."""
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
