"""feedpoll.entries_rejected and feedpoll.rejected (entries a poll refused, and why);
ids never reused on SQLite (AUTOINCREMENT on feed, article and claimcluster)

SQLite without AUTOINCREMENT gives a new row the largest id in the table plus one: after
`feeds remove` of the newest feed (or a cancelled backfill's articles, or an orphaned
cluster), the next one took its id, and ids users had seen named something else.
PostgreSQL's sequences never go back, so nothing changes there.

On SQLite the three tables are rebuilt with AUTOINCREMENT (the only way to add it), with
foreign keys off (``worker.core.db.init_db`` turns them off around migrations: a table
dropped with them on would cascade to its children). The claim table, whose full-text
triggers come from 0008, is not touched. The rebuild copies every row once (the
article table with its text): on a large database it takes time and free disk of the
table's size.

Revision ID: 0011_hardening
Revises: 0010_claim_clusters
Create Date: 2026-12-06 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_hardening"
down_revision: str | None = "0010_claim_clusters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables whose ids users see and whose rows are deleted by the service.
NEVER_REUSED = ("feed", "article", "claimcluster")


def _autoincrement(table: str) -> bool:
    sql = op.get_bind().exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar()
    return "AUTOINCREMENT" in str(sql or "").upper()


def upgrade() -> None:
    with op.batch_alter_table("feedpoll", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("entries_rejected", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("rejected", sa.Text(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "0011_hardening rebuilds tables on SQLite and needs foreign keys off "
            "(PRAGMA foreign_keys=OFF), or dropping the old tables would delete their "
            "children: run it through `claimwire init`"
        )
    for table in NEVER_REUSED:
        if _autoincrement(table):
            continue
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
        # AUTOINCREMENT starts above the largest id copied; ids deleted above it before
        # this migration are unknown and may be taken once more, never again after.


def downgrade() -> None:
    with op.batch_alter_table("feedpoll", schema=None) as batch_op:
        batch_op.drop_column("rejected")
        batch_op.drop_column("entries_rejected")
