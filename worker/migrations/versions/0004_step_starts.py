"""article.step_starts and step_started_at: starts of a step not known to have ended
(a worker process that dies during a step leaves its start counted)

Revision ID: 0004_step_starts
Revises: 0003_dedup_samples
Create Date: 2026-11-25 16:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import schemas.types

revision: str = "0004_step_starts"
down_revision: str | None = "0003_dedup_samples"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("step_starts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("step_started_at", schemas.types.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.drop_column("step_started_at")
        batch_op.drop_column("step_starts")
