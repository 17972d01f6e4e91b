"""dedupsample: sampled shingles of every indexed article (the containment candidate
index: short excerpts wholly contained in long texts)

Revision ID: 0003_dedup_samples
Revises: 0001
Create Date: 2026-11-25 17:05:00

Articles already deduplicated have no samples: re-deduplicate them (reprocess) for
them to be found as containers of later excerpts; everything placed after this
migration is indexed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_dedup_samples"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dedupsample",
        sa.Column("hash", sa.BigInteger(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["article.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("hash", "article_id"),
    )
    with op.batch_alter_table("dedupsample", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dedupsample_article_id"), ["article_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dedupsample", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dedupsample_article_id"))
    op.drop_table("dedupsample")
