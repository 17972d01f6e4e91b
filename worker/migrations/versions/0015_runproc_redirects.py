"""article.redirects: the redirect hops a fetch in progress has followed

Revision ID: 0015_runproc_redirects
Revises: 0014_webpg_cluster_newest
Create Date: 2026-12-06 19:40:00

A redirect hop is a request of its own on its host's timeline: when the host is not
free, the fetch goes on from the hop's URL (``final_url``) at the host's turn, and the
hops it has followed so far count against ``CLAIMWIRE_MAX_REDIRECTS`` across turns.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_runproc_redirects"
down_revision: str | None = "0014_webpg_cluster_newest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("article") as batch_op:
        batch_op.add_column(
            sa.Column("redirects", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("article") as batch_op:
        batch_op.drop_column("redirects")
