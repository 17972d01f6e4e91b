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

from collections.abc import Sequence

from alembic import op

revision: str = "0016_speakerkeys"
down_revision: str | None = "0015_runproc_redirects"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from worker.migrations.rekey import rekey_clusters

    rekey_clusters(op.get_bind())


def downgrade() -> None:
    pass
