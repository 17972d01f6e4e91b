"""feedpoll.entries_rejected and feedpoll.rejected: entries a poll refused, and why

Revision ID: 0011_hardening
Revises: 0008_claim_search
Create Date: 2026-12-06 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_hardening"
down_revision: str | None = "0008_claim_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feedpoll", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("entries_rejected", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("rejected", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedpoll", schema=None) as batch_op:
        batch_op.drop_column("rejected")
        batch_op.drop_column("entries_rejected")
