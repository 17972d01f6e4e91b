"""article.published_precision, published_offset, published_sort_at and
claimcluster.first_seen_precision: publication times with their precision (issue 15)

Revision ID: 0009_claim_tracking
Revises: 0008_claim_search
Create Date: 2026-12-06 10:00:00

Only columns are added (the claim table and its search triggers are untouched). Rows of
an older database keep NULL: their times sort as before (published_at, else the feed
entry's time, else discovery) until ``claimwire reprocess`` reads them again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import schemas.types

revision: str = "0009_claim_tracking"
down_revision: str | None = "0008_claim_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "published_precision", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True
            )
        )
        batch_op.add_column(sa.Column("published_offset", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("published_sort_at", schemas.types.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("claimcluster", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "first_seen_precision", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("claimcluster", schema=None) as batch_op:
        batch_op.drop_column("first_seen_precision")
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.drop_column("published_sort_at")
        batch_op.drop_column("published_offset")
        batch_op.drop_column("published_precision")
