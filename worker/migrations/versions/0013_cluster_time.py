"""claim.article_at (the time a cluster page lists the claim's article at) with the index
``ix_claim_cluster_at`` (cluster_id, article_at, article_id, id); an index on
``claimcluster.first_article_id``

Revision ID: 0013_cluster_time
Revises: 0012_web_search
Create Date: 2026-12-06 14:00:00

A cluster page lists a cluster's repeats in their articles' time order. The time was
only on ``article``, so a page of a cluster with 100,000 repeats read and sorted all of
them (2-3 s on PostgreSQL); with the time on the claim row a page is a keyset read of
the new index. The column is back-filled from each claim's article
(``coalesce(published_at, discovered_at)``, what ``worker.claims.firstseen.page_at``
computes). On PostgreSQL the update rewrites every claim row (its stored
``search_vector`` is computed again): minutes per million claims, and free disk of the
table's size until VACUUM. On SQLite the full-text triggers of 0008 fire only for the
text columns, so they stay quiet.

``claimcluster.first_article_id`` references ``article`` with ON DELETE SET NULL:
without an index, deleting an article scanned the whole ``claimcluster`` table on
PostgreSQL (SQLite too), once per deleted article.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schemas.types import UTCDateTime

revision: str = "0013_cluster_time"
down_revision: str | None = "0012_web_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a plain ADD COLUMN on SQLite too (a batch would rebuild the table and lose the
    # full-text triggers of 0008)
    op.add_column("claim", sa.Column("article_at", UTCDateTime(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE claim SET article_at = coalesce(a.published_at, a.discovered_at) "
            "FROM article a WHERE a.id = claim.article_id"
        )
    else:
        op.execute(
            "UPDATE claim SET article_at = (SELECT coalesce(a.published_at, a.discovered_at) "
            "FROM article a WHERE a.id = claim.article_id)"
        )
    op.create_index(
        "ix_claim_cluster_at", "claim", ["cluster_id", "article_at", "article_id", "id"]
    )
    op.create_index(
        "ix_claimcluster_first_article_id", "claimcluster", ["first_article_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_claimcluster_first_article_id", table_name="claimcluster")
    op.drop_index("ix_claim_cluster_at", table_name="claim")
    op.drop_column("claim", "article_at")
