"""an index on ``claim (cluster_id, id)``: a cluster's newest claim in one index probe

Revision ID: 0014_webpg_cluster_newest
Revises: 0013_cluster_time
Create Date: 2026-12-06 17:00:00

A cluster page keeps a large cluster's counts and timeline between views until the
cluster changes, and checks that with the id of the cluster's newest claim. With only
``ix_claim_cluster_id`` (cluster_id) PostgreSQL read every claim row of the cluster to
find it (a B-tree on one column orders equal keys by their place in the heap, not by
id): 2-3 s for a cluster of 100,000 claims on every page. With ``(cluster_id, id)`` it
is the last entry of the cluster's range, on both databases. Building it reads the
``claim`` table once (seconds per million claims).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_webpg_cluster_newest"
down_revision: str | None = "0013_cluster_time"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_claim_cluster_newest", "claim", ["cluster_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_claim_cluster_newest", table_name="claim")
