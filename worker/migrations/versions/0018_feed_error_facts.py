"""a feed's last error is its cause alone: the sentence about its next poll ("; next
poll in 63 min (2026-11-26 01:02 UTC)") that a poll whose host's robots.txt could not
be read appended to it, still shown hours later, is taken off

Revision ID: 0018_feederrors
Revises: 0017_bodykeys
Create Date: 2026-12-08 00:40:00

When the feed is polled again is its ``next_poll_at``; the commands and the web view
show it as "in 1h 4m" when they are read (``worker.feeds.rows.next_poll``). The same
sentence is taken off the errors of the feed's poll history. The downgrade changes
nothing (the sentences were relative to a time that has passed).
"""

import re
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0018_feederrors"
down_revision: str | None = "0017_bodykeys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# what worker.feeds.polling wrote after the cause (its `_when`, now gone)
_NEXT_POLL = re.compile(
    r"; next poll (?:in \d+ (?:s|min) \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\)|not scheduled)$"
)


def upgrade() -> None:
    bind = op.get_bind()
    for table, column in (("feed", "last_error"), ("feedpoll", "error")):
        rows = bind.execute(
            text(f"SELECT id, {column} FROM {table} WHERE {column} LIKE :p"),
            {"p": "%; next poll %"},
        ).all()
        for row_id, value in rows:
            cause = _NEXT_POLL.sub("", value)
            if cause != value:
                bind.execute(
                    text(f"UPDATE {table} SET {column} = :v WHERE id = :i"),
                    {"v": cause, "i": row_id},
                )


def downgrade() -> None:
    pass
