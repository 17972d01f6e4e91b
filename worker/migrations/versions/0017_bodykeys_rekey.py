"""claim clusters re-keyed for bodies named with "of" (extractor ``rules-11``'s
``speaker_key``): "the Department of Justice" was the key ``department`` (every
department one speaker) and "Department of Homeland Security" the surname
``securiti``; both are now their name before the body word, as "the Justice
Department" and "the Homeland Security Department" always were (``justice department``,
``homeland security department``)

Revision ID: 0017_bodykeys
Revises: 0016_speakerkeys
Create Date: 2026-12-07 14:00:00

The same work as ``0016_speakerkeys``, run again with the current ``speaker_key``: every
cluster's key recomputed from its speaker, its word rows with it, and clusters that
came from different keys and now share one merged only where the younger one's founder
repeats the older one (the clustering's own decision); see that migration. The
downgrade changes nothing; ``claimwire reprocess`` re-extracts the claims with the new
extractor (its speakers too) and rebuilds the clusters either way.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017_bodykeys"
down_revision: str | None = "0016_speakerkeys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from worker.migrations.rekey import rekey_clusters

    rekey_clusters(op.get_bind())


def downgrade() -> None:
    pass
