"""claimclusterword: the content words of every claim cluster (the candidate index of
claim clustering: a new claim is compared only with its speaker's clusters that share
enough words with it), filled here for the clusters that exist

Revision ID: 0005_claim_cluster_words
Revises: 0004_step_starts
Create Date: 2026-11-25 22:30:00

The rows are computed with the clustering's own ``content_words``: a later change to
that function needs a migration that rebuilds this table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005_claim_cluster_words"
down_revision: str | None = "0004_step_starts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 2000


def upgrade() -> None:
    op.create_table(
        "claimclusterword",
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("word", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("speaker_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("n_words", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["cluster_id"], ["claimcluster.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cluster_id", "word"),
    )
    with op.batch_alter_table("claimclusterword", schema=None) as batch_op:
        batch_op.create_index(
            "ix_claimclusterword_lookup",
            ["speaker_key", "word", "cluster_id", "n_words"],
            unique=False,
        )
    _fill()


def _fill() -> None:
    from worker.claims.clustering import cluster_word_rows

    conn = op.get_bind()
    cluster = sa.table(
        "claimcluster", sa.column("id", sa.Integer), sa.column("speaker_key"), sa.column("text")
    )
    word = sa.table(
        "claimclusterword",
        sa.column("cluster_id", sa.Integer),
        sa.column("word"),
        sa.column("speaker_key"),
        sa.column("n_words", sa.Integer),
    )
    last = 0
    while True:
        batch = conn.execute(
            sa.select(cluster.c.id, cluster.c.speaker_key, cluster.c.text)
            .where(cluster.c.id > last)
            .order_by(cluster.c.id)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        rows = [r for cid, key, text in batch for r in cluster_word_rows(cid, key, text)]
        if rows:
            conn.execute(sa.insert(word), rows)
        last = batch[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("claimclusterword", schema=None) as batch_op:
        batch_op.drop_index("ix_claimclusterword_lookup")
    op.drop_table("claimclusterword")
