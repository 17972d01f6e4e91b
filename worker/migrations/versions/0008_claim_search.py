"""claim full-text search: an FTS5 table kept in sync by triggers on SQLite, a GIN index
over a weighted tsvector of the claim on PostgreSQL; both filled for existing claims

Revision ID: 0008_claim_search
Revises: 0005_claim_cluster_words
Create Date: 2026-12-06 08:00:00

The index holds the speaker (as written and as resolved; weight A on PostgreSQL), the
claim's content (B) and its sentence (C); on PostgreSQL it is a stored generated column
``claim.search_vector``, which no model declares (the ORM neither reads nor writes it). ``worker/claims/fulltext.py`` queries it and spells the same expression
(``PG_DOCUMENT``, ``PG_COLUMN``, ``FTS_TABLE``): change both together. On SQLite a later migration
that rebuilds the ``claim`` table (Alembic's batch mode copies it) drops the triggers
and must create them again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_claim_search"
down_revision: str | None = "0005_claim_cluster_words"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# worker.claims.fulltext.PG_DOCUMENT, frozen here
_PG_DOCUMENT = (
    "setweight(to_tsvector('simple'::regconfig, coalesce(speaker, '') || ' ' || "
    "coalesce(speaker_resolved, '')), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(text, '')), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(sentence, '')), 'C')"
)

_COLUMNS = "speaker, speaker_resolved, text, sentence"
_NEW = "new.id, new.speaker, new.speaker_resolved, new.text, new.sentence"
_OLD = "old.id, old.speaker, old.speaker_resolved, old.text, old.sentence"

_SQLITE = [
    # external content: the text stays in `claim`, the FTS table holds only the index
    "CREATE VIRTUAL TABLE claim_fts USING fts5(" + _COLUMNS + ", content='claim', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER claim_fts_insert AFTER INSERT ON claim BEGIN "
    f"INSERT INTO claim_fts(rowid, {_COLUMNS}) VALUES ({_NEW}); END",
    "CREATE TRIGGER claim_fts_delete AFTER DELETE ON claim BEGIN "
    f"INSERT INTO claim_fts(claim_fts, rowid, {_COLUMNS}) VALUES ('delete', {_OLD}); END",
    "CREATE TRIGGER claim_fts_update AFTER UPDATE OF speaker, speaker_resolved, text, "
    "sentence ON claim BEGIN "
    f"INSERT INTO claim_fts(claim_fts, rowid, {_COLUMNS}) VALUES ('delete', {_OLD}); "
    f"INSERT INTO claim_fts(rowid, {_COLUMNS}) VALUES ({_NEW}); END",
    "INSERT INTO claim_fts(claim_fts) VALUES ('rebuild')",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE:
            op.execute(statement)
    else:
        # a stored column: rows found through the index are checked (phrases, weights)
        # and filtered without computing their tsvector again
        op.execute(
            "ALTER TABLE claim ADD COLUMN search_vector tsvector "
            f"GENERATED ALWAYS AS ({_PG_DOCUMENT}) STORED"
        )
        op.execute("CREATE INDEX ix_claim_search ON claim USING gin (search_vector)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("claim_fts_insert", "claim_fts_delete", "claim_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS claim_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_claim_search")
        op.execute("ALTER TABLE claim DROP COLUMN IF EXISTS search_vector")
