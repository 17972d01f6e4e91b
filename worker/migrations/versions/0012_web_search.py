"""claim search folds diacritics on PostgreSQL as on SQLite: a text search configuration
``claimwire_search`` (``simple`` with the ``unaccent`` dictionary first), and
``claim.search_vector`` computed with it

Revision ID: 0012_web_search
Revises: 0011_hardening
Create Date: 2026-12-06 10:00:00

SQLite's FTS5 tokenizer (``unicode61 remove_diacritics 2``) already folds "Kovač" to
"kovac"; PostgreSQL's ``simple`` configuration did not, so the same search found other
claims on the two databases. ``unaccent`` is in PostgreSQL's contrib package and a
*trusted* extension since PostgreSQL 13: the database's owner creates it, no superuser
needed. Where it cannot be created (contrib not installed, or no CREATE privilege on
the database) the configuration is a plain copy of ``simple``: search works but does
not fold, and the migration says so in the log.

The stored generated column is computed again (PostgreSQL before 17 cannot change a
generated column's expression, so it is dropped and added: a rewrite of the ``claim``
table, about a minute per million claims) and its GIN index built again. Nothing
changes on SQLite. ``worker/claims/fulltext.py`` spells the same expression
(``PG_DOCUMENT``, ``PG_CONFIG``): change both together.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_web_search"
down_revision: str | None = "0011_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

CONFIG = "claimwire_search"
# the token types of the default parser that can hold letters outside ASCII
_FOLDED_TOKENS = "word, hword, hword_part, numword, numhword, hword_numpart"


def _document(config: str) -> str:
    # worker.claims.fulltext.PG_DOCUMENT, frozen here
    return (
        f"setweight(to_tsvector('{config}'::regconfig, coalesce(speaker, '') || ' ' || "
        "coalesce(speaker_resolved, '')), 'A') || "
        f"setweight(to_tsvector('{config}'::regconfig, coalesce(text, '')), 'B') || "
        f"setweight(to_tsvector('{config}'::regconfig, coalesce(sentence, '')), 'C')"
    )


def _rebuild_column(config: str) -> None:
    op.execute("ALTER TABLE claim DROP COLUMN IF EXISTS search_vector")  # and its index
    op.execute(
        "ALTER TABLE claim ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS ({_document(config)}) STORED"
    )
    op.execute("CREATE INDEX ix_claim_search ON claim USING gin (search_vector)")


def _has_unaccent() -> bool:
    """Create the ``unaccent`` extension if it can be (in a savepoint, so a refusal
    leaves the migration's transaction usable)."""
    bind = op.get_bind()
    present = bind.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'unaccent'")
    ).scalar()
    if present:
        return True
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'unaccent'")
    ).scalar()
    if not available:
        log.warning(
            "claim search will not fold diacritics on this PostgreSQL: the unaccent "
            "extension is not installed (PostgreSQL's contrib package)"
        )
        return False
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS unaccent"))
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        log.warning(
            "claim search will not fold diacritics on this PostgreSQL: CREATE EXTENSION "
            "unaccent was refused (%s); the database's owner can create it, then run "
            "`claimwire migrate` on a fresh database or recreate the configuration",
            str(exc.orig).splitlines()[0] if exc.orig else exc,
        )
        return False
    savepoint.commit()
    return True


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # FTS5's tokenizer folds diacritics already
    op.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {CONFIG}")
    op.execute(f"CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = pg_catalog.simple)")
    if _has_unaccent():
        # unaccent hands the folded word on to simple, which lower-cases it
        op.execute(
            f"ALTER TEXT SEARCH CONFIGURATION {CONFIG} "
            f"ALTER MAPPING FOR {_FOLDED_TOKENS} WITH unaccent, simple"
        )
    _rebuild_column(CONFIG)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    _rebuild_column("simple")
    op.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {CONFIG}")
