"""Full-text search over stored claims, through the index of migrations
``0008_claim_search`` and ``0012_web_search``: an FTS5 table on SQLite, a GIN index
over a stored, weighted tsvector column (``claim.search_vector``) on PostgreSQL.

What a user types is parsed here into words, ``"quoted phrases"`` and ``prefix*``
words; only words (letters and digits) reach either engine, so no input is an
engine-syntax error. Both engines match whole words, lower-cased, with no stemming,
diacritics folded ("Kovač" finds "Kovac" and the other way round): PostgreSQL's
``claimwire_search`` configuration (``unaccent``, then ``simple``), FTS5's
``unicode61 remove_diacritics 2`` tokenizer. Every word must match (AND).

:func:`find_claims` is the one claims query of the web view, its API and its
downloads: filters, best match first for a search (every word in the claim's own
content, then some only in its sentence), newest first within that (claim id
descending), keyset pagination on ``(tier, id)``.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, column, func, literal_column, table, text
from sqlmodel import Session, col, select

from schemas.models import Article, Claim, ClaimCluster

PG_CONFIG = "claimwire_search"
"""The text search configuration of migration ``0012_web_search``: ``simple`` (words
lower-cased, no stemming) with the ``unaccent`` dictionary first, so that "Kovač" is
"kovac" as in SQLite's FTS5 (a plain copy of ``simple`` where ``unaccent`` could not be
created)."""


def _pg_document(prefix: str = "") -> str:
    """The tsvector the GIN index is built on (keep in step with the migration):
    speaker names weight A, claim content B, sentence C."""
    p = prefix
    c = PG_CONFIG
    return (
        f"setweight(to_tsvector('{c}'::regconfig, coalesce({p}speaker, '') || ' ' || "
        f"coalesce({p}speaker_resolved, '')), 'A') || "
        f"setweight(to_tsvector('{c}'::regconfig, coalesce({p}text, '')), 'B') || "
        f"setweight(to_tsvector('{c}'::regconfig, coalesce({p}sentence, '')), 'C')"
    )


PG_DOCUMENT = _pg_document()
PG_COLUMN = "search_vector"  # claim.search_vector: PG_DOCUMENT, stored, GIN-indexed
FTS_TABLE = "claim_fts"
SEARCH_TABLES = frozenset(
    FTS_TABLE + suffix for suffix in ("", "_data", "_idx", "_docsize", "_config", "_content")
)
SEARCH_INDEXES = frozenset({"ix_claim_search"})

MAX_QUERY_CHARS = 500
MAX_TERMS = 16
MAX_WORD_CHARS = 64

_WORD = re.compile(r"[^\W_]+")
_CHUNK = re.compile(r'"([^"]*)"?|([^\s"]+)')


class SearchQueryError(ValueError):
    """A search the user must change (too long, too many words); the message says how."""


def is_search_index(name: str | None, type_: str) -> bool:
    """The search index's own tables and index, which no model declares (Alembic's
    ``include_object`` leaves them out of model/schema comparisons)."""
    if name is None:
        return False
    return (
        (type_ == "table" and name in SEARCH_TABLES)
        or (type_ == "index" and name in SEARCH_INDEXES)
        or (type_ == "column" and name == PG_COLUMN)
    )


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]  # one word, or the words of a phrase
    prefix: bool = False  # the last word is a prefix


def parse_terms(query: str | None, *, prefix_all: bool = False) -> list[Term]:
    """Words, ``"phrases"`` and ``word*`` prefixes of a search; punctuation separates
    words. ``prefix_all``: every word is a prefix."""
    if not query or not query.strip():
        return []
    if len(query) > MAX_QUERY_CHARS:
        raise SearchQueryError(f"search is too long: at most {MAX_QUERY_CHARS} characters")
    terms: list[Term] = []
    for match in _CHUNK.finditer(query):
        phrase, bare = match.group(1), match.group(2)
        chunk = phrase if phrase is not None else bare
        words = tuple(w.lower()[:MAX_WORD_CHARS] for w in _WORD.findall(chunk or ""))
        if not words:
            continue
        if phrase is not None:
            terms.append(Term(words, prefix=prefix_all))
            continue
        star = (bare or "").endswith("*")
        for i, word in enumerate(words):
            terms.append(Term((word,), prefix=prefix_all or (star and i == len(words) - 1)))
    if len(terms) > MAX_TERMS:
        raise SearchQueryError(f"search has too many words: at most {MAX_TERMS}")
    return terms


# ------------------------------------------------------------------ engine syntax


def fts5_expression(terms: list[Term], columns: tuple[str, ...]) -> str:
    """``{col1 col2} : ("word" AND "a phrase" AND "pre"*)``; words hold no quote."""
    parts = ['"' + " ".join(t.words) + '"' + ("*" if t.prefix else "") for t in terms]
    return "{" + " ".join(columns) + "} : (" + " AND ".join(parts) + ")"


def pg_tsquery(terms: list[Term], weights: str) -> str:
    """``'word':BC & ('a':BC <-> 'phrase':BC) & 'pre':*BC``; words hold no quote."""

    def lexeme(word: str, prefix: bool) -> str:
        return f"'{word}':{'*' if prefix else ''}{weights}"

    parts = []
    for t in terms:
        lexemes = [lexeme(w, t.prefix and i == len(t.words) - 1) for i, w in enumerate(t.words)]
        parts.append(lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")")
    return " & ".join(parts)


SPEAKER_COLUMNS = ("speaker", "speaker_resolved")
MATCH_CONTENT = 2  # every searched word is in the claim's own words
MATCH_SENTENCE = 1  # some only in the sentence around it
MATCH_ANY = 0  # no words searched: every claim of the filters
MATCH_NAMES = {MATCH_CONTENT: "content", MATCH_SENTENCE: "sentence", MATCH_ANY: None}
CONTENT_COLUMNS = ("text", "sentence")


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


_fts = table(FTS_TABLE, column("rowid", Integer))


def _pg_match(
    content: list[Term], speaker: list[Term], content_weights: str, *, tier: int = 0
) -> Any:
    """``claim.search_vector @@ to_tsquery(...)``. ``tier`` 2: every content term in
    the claim's content; 1: in its content or sentence but not every one in its content;
    0: in either (``content_weights``)."""
    parts = []
    if speaker:
        parts.append(pg_tsquery(speaker, "A"))
    if content:
        if tier == MATCH_CONTENT:
            parts.append(pg_tsquery(content, "B"))
        elif tier == MATCH_SENTENCE:
            parts.append(pg_tsquery(content, "BC"))
            parts.append("!(" + pg_tsquery(content, "B") + ")")
        else:
            parts.append(pg_tsquery(content, content_weights))
    query = " & ".join(parts)
    document: Any = literal_column(f"claim.{PG_COLUMN}")
    return document.op("@@")(func.to_tsquery(literal_column(f"'{PG_CONFIG}'::regconfig"), query))


def _fts5_match(
    content: list[Term], speaker: list[Term], content_cols: tuple[str, ...], *, tier: int = 0
) -> str:
    """The FTS5 query; ``tier`` as in :func:`_pg_match`."""
    parts = []
    if speaker:
        parts.append(fts5_expression(speaker, SPEAKER_COLUMNS))
    if content:
        if tier == MATCH_CONTENT:
            parts.append(fts5_expression(content, ("text",)))
        elif tier == MATCH_SENTENCE:
            parts.append(
                "("
                + fts5_expression(content, CONTENT_COLUMNS)
                + " NOT "
                + fts5_expression(content, ("text",))
                + ")"
            )
        else:
            parts.append(fts5_expression(content, content_cols))
    return " AND ".join(parts)


def text_condition(session: Session, words: str, *, content_only: bool = False) -> Any:
    """A WHERE condition on ``claim``: every word of ``words`` starts a word of the
    claim's content (``content_only``) or of its content or sentence. For `claims
    search`, which joins the claim with other tables as it likes."""
    terms = parse_terms(words, prefix_all=True)
    if not terms:
        return None
    if _is_postgres(session):
        return _pg_match(terms, [], "B" if content_only else "BC")
    expression = _fts5_match(terms, [], ("text",) if content_only else CONTENT_COLUMNS)
    ids = (
        select(_fts.c.rowid)
        .select_from(_fts)
        .where(text(f"{FTS_TABLE} MATCH :fts_words").bindparams(fts_words=expression))
    )
    return col(Claim.id).in_(ids)


# ------------------------------------------------------------------- the claims list


@dataclass(frozen=True)
class ClaimFilter:
    q: str | None = None  # words, "phrases", prefix* in the content or sentence
    speaker: str | None = None  # words of the speaker's name
    outlet: str | None = None  # the article's host, exactly
    kind: str | None = None  # direct, indirect, mixed, according_to
    since: datetime | None = None  # published at or after
    until: datetime | None = None  # published before
    min_outlets: int | None = None  # the claim's cluster reached this many outlets
    cluster_id: int | None = None
    article_id: int | None = None
    speaker_key: str | None = None  # the cluster's speaker key, exactly


SMALL_OUTLET_ARTICLES = 5000
RARE_MATCHES = 20_000
"""Below this many estimated matches, PostgreSQL takes every match from the GIN index."""
STATS_SECONDS = 600.0

_pg_stats: dict[str, tuple[float, dict[str, float], float]] = {}
_pg_stats_lock = threading.Lock()


def _pg_lexeme_stats(session: Session) -> tuple[dict[str, float], float] | None:
    """The most common lexemes of ``claim.search_vector`` with their frequencies, and
    the table's row count, from ANALYZE's statistics (kept for a few minutes); None
    before the table was analyzed."""
    key = str(session.get_bind().engine.url)
    now = time.monotonic()
    with _pg_stats_lock:
        cached = _pg_stats.get(key)
    if cached is not None and now - cached[0] < STATS_SECONDS:
        return cached[1], cached[2]
    row = session.execute(
        text(
            "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
            "WHERE schemaname = current_schema() AND tablename = 'claim' AND attname = :col"
        ),
        {"col": PG_COLUMN},
    ).first()
    rows = session.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = 'claim'::regclass")
    ).scalar()
    if row is None or row[0] is None or not rows or float(rows) <= 0:
        return None
    freqs = {str(k): float(v) for k, v in zip(row[0], row[1] or [], strict=False)}
    with _pg_stats_lock:
        _pg_stats[key] = (now, freqs, float(rows))
    return freqs, float(rows)


def fold(word: str) -> str:
    """A word without its diacritics ("kovač" -> "kovac"), as both engines index it."""
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class _Estimate:
    matches: float  # claims the terms match, at most (as the rarest term)
    joint: float  # claims the terms match, with the words independent of each other
    candidates: float  # claims with every word (independent): what the GIN index gives
    rows: float  # claims in the table


def _pg_estimate(session: Session, terms: list[Term]) -> _Estimate | None:
    """What the statistics tell about a search of these AND-ed terms (a word outside
    the most common ones: no claim; a phrase: a tenth of its words together); None
    without statistics."""
    stats = _pg_lexeme_stats(session)
    if stats is None or not terms:
        return None
    freqs, rows = stats
    share = 1.0
    joint = 1.0
    every: dict[str, float] = {}
    for t in terms:
        words: dict[str, float] = {}
        for i, w in enumerate(fold(w) for w in t.words):
            if t.prefix and i == len(t.words) - 1:
                words[w + "*"] = min(1.0, sum(f for lex, f in freqs.items() if lex.startswith(w)))
            else:
                words[w] = freqs.get(w, 0.0)
        phrase = 0.1 if len(t.words) > 1 else 1.0
        share = min(share, min(words.values()) * phrase)
        together = 1.0
        for f in words.values():
            together *= f
        joint *= together * phrase
        every.update(words)
    candidates = 1.0
    for f in every.values():
        candidates *= f
    return _Estimate(share * rows, joint * rows, candidates * rows, rows)


WINDOW_PAGES = 8
"""A search PostgreSQL answers from every match of the GIN index first reads the newest
claims only: as many as should hold this many pages of matches (see :func:`_pg_windows`)."""
WINDOW_SHARES = (1 / 64, 1 / 4)
"""The first window is at least, at most, this share of the claims."""
WINDOW_ROW_IDS = 20
"""Reading one candidate row costs about as much as putting this many ids of the
primary key in a bitmap (EXPLAIN ANALYZE at 1,000,000 claims, with a margin): a window
is worth it only when it spares more rows than that."""


def _pg_windows(estimate: _Estimate | None, limit: int) -> list[int]:
    """The id windows, newest first, in which to look for the matches of a search taken
    from the GIN index: PostgreSQL intersects the matches with a range of the primary
    key before it reads any row (each candidate row is read to recheck the weights and
    phrases the index does not keep), so only the candidates of the first window are
    read; it should hold :data:`WINDOW_PAGES` pages of matches. The next window is four
    times wider, then the rest, each read only when the windows before gave fewer than
    ``limit`` rows. [] (one query over every match) when the first window would be most
    of the table or the candidates are too few to be worth it."""
    if estimate is None or estimate.joint <= 0:
        return []
    low, high = WINDOW_SHARES
    share = WINDOW_PAGES * limit / estimate.joint
    if share >= high * 2:
        return []
    first = int(estimate.rows * min(high, max(low, share)))
    if first <= 0 or estimate.candidates * WINDOW_ROW_IDS < first:
        return []
    return [first, 4 * first]


def _small_outlet(session: Session, outlet: str) -> bool:
    """Whether the outlet has at most :data:`SMALL_OUTLET_ARTICLES` articles (an index
    count that stops there)."""
    some = (
        select(Article.id)
        .where(col(Article.host) == outlet.strip().lower())
        .limit(SMALL_OUTLET_ARTICLES + 1)
        .subquery()
    )
    n = session.exec(select(func.count()).select_from(some)).one()
    return int(n) <= SMALL_OUTLET_ARTICLES


def published_expr() -> Any:
    """When an article counts as published: the page's date, else the feed entry's,
    else when claimwire found it."""
    return func.coalesce(Article.published_at, Article.entry_published_at, Article.discovered_at)


def find_claims(
    session: Session,
    f: ClaimFilter,
    *,
    after: tuple[int, int] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Claims matching ``f`` in a stable order, each with its article, outlet, cluster
    and ``match`` (where its searched words are).

    With searched words the best matches come first: claims whose own content holds
    every word (``match`` "content"), then those where some are only in the sentence
    around it ("sentence"); newest first (by id) within each. Without, newest first.
    The order is the key ``(tier, id)`` descending, so ``after`` (the key of the last
    row shown) continues the list and rows added meanwhile never shift it. A claim's
    tier depends on its own text only, never on the rest of the store (as BM25's word
    statistics would), which is what keeps cursors stable."""
    content = parse_terms(f.q)
    speaker = parse_terms(f.speaker)
    tiers = [MATCH_CONTENT, MATCH_SENTENCE] if content else [MATCH_ANY]
    rows: list[dict[str, Any]] = []
    for tier in tiers:
        if after is not None and tier > after[0]:
            continue  # the pages already shown
        before_id = after[1] if after is not None and tier == after[0] else None
        rows += _find_tier(session, f, content, speaker, tier, before_id, limit - len(rows))
        if len(rows) >= limit:
            break
    return rows


def claim_key(row: dict[str, Any]) -> tuple[int, int]:
    """The sort key of a row of :func:`find_claims` (for its ``after``)."""
    tier = {name: t for t, name in MATCH_NAMES.items()}[row["match"]]
    return tier, int(row["id"])


def _find_tier(
    session: Session,
    f: ClaimFilter,
    content: list[Term],
    speaker: list[Term],
    tier: int,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    query = (
        select(Claim, Article, ClaimCluster)
        .join(Article, col(Article.id) == col(Claim.article_id))
        .outerjoin(ClaimCluster, col(ClaimCluster.id) == col(Claim.cluster_id))
    )
    order: Any = col(Claim.id)
    cursor_col: Any = col(Claim.id)
    windows: list[int] = []
    if content or speaker:
        if _is_postgres(session):
            query = query.where(_pg_match(content, speaker, "BC", tier=tier))
            estimate = _pg_estimate(session, content + speaker)
            if estimate is not None and estimate.matches < RARE_MATCHES:
                # few matches: take them all from the GIN index and sort them, rather
                # than walk the primary key backwards past rows that do not match (the
                # planner's guess for words outside its statistics is far too high);
                # the newest first when there are more than a few pages of them
                order = col(Claim.id) + 0
                windows = _pg_windows(estimate, limit)
        else:
            fts_query = _fts5_match(content, speaker, CONTENT_COLUMNS, tier=tier)
            if f.outlet and _small_outlet(session, f.outlet):
                # a small outlet's claims, each checked against the FTS matches: cheaper
                # than walking a common word's matches until enough are of that outlet
                matches = (
                    select(_fts.c.rowid)
                    .select_from(_fts)
                    .where(text(f"{FTS_TABLE} MATCH :fts_query").bindparams(fts_query=fts_query))
                )
                # "+claim.id": SQLite checks membership instead of driving the loop with it
                query = query.where(literal_column("+claim.id").in_(matches))
            else:
                # the FTS table drives the query: it yields ids newest first, and the
                # LIMIT stops it early
                query = (
                    select(Claim, Article, ClaimCluster)
                    .select_from(_fts)
                    .join(Claim, col(Claim.id) == _fts.c.rowid)
                    .join(Article, col(Article.id) == col(Claim.article_id))
                    .outerjoin(ClaimCluster, col(ClaimCluster.id) == col(Claim.cluster_id))
                    .where(text(f"{FTS_TABLE} MATCH :fts_query").bindparams(fts_query=fts_query))
                )
                order = cursor_col = _fts.c.rowid
    conditions: list[ColumnElement[bool]] = []
    if before_id is not None:
        conditions.append(cursor_col < before_id)
    if f.outlet:
        conditions.append(col(Article.host) == f.outlet.strip().lower())
    if f.kind:
        conditions.append(col(Claim.kind) == f.kind)
    if f.since is not None:
        conditions.append(published_expr() >= f.since)
    if f.until is not None:
        conditions.append(published_expr() < f.until)
    if f.min_outlets is not None and f.min_outlets > 1:
        conditions.append(func.coalesce(ClaimCluster.n_outlets, 1) >= f.min_outlets)
    if f.cluster_id is not None:
        conditions.append(col(Claim.cluster_id) == f.cluster_id)
    if f.article_id is not None:
        conditions.append(col(Claim.article_id) == f.article_id)
    if f.speaker_key is not None:
        conditions.append(col(ClaimCluster.speaker_key) == f.speaker_key)
    if conditions:
        query = query.where(*conditions)
    query = query.order_by(order.desc())
    found = []
    for c, a, cl in _windowed(session, query, windows, before_id, limit):
        hit = claim_hit(c, a, cl)
        hit["match"] = MATCH_NAMES[tier]
        found.append(hit)
    return found


def _windowed(
    session: Session, query: Any, windows: list[int], before_id: int | None, limit: int
) -> list[Any]:
    """The first ``limit`` rows of ``query`` (ordered by claim id, newest first), read
    window by window of claim ids (:func:`_pg_windows`): each window is a range of the
    primary key that PostgreSQL intersects with the GIN index's matches before reading
    any row, and the windows follow each other, so the rows are those of one query."""
    if not windows:
        return list(session.exec(query.limit(limit)).all())
    top = before_id
    if top is None:
        newest = session.exec(select(func.max(Claim.id))).one()
        if newest is None:
            return []
        top = int(newest) + 1
    rows: list[Any] = []
    high = top
    for size in [*windows, None]:
        low = None if size is None else high - size
        part = query if low is None else query.where(col(Claim.id) >= low)
        part = part.where(col(Claim.id) < high)
        rows += session.exec(part.limit(limit - len(rows))).all()
        if len(rows) >= limit or low is None or low <= 0:
            break
        high = low
    return rows


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def claim_hit(claim: Claim, art: Article, cluster: ClaimCluster | None) -> dict[str, Any]:
    return {
        "id": claim.id,
        "speaker": claim.speaker_resolved or claim.speaker,
        "speaker_as_written": claim.speaker,
        "verb": claim.verb,
        "kind": claim.kind,
        "text": claim.text,
        "sentence": claim.sentence,
        "start": claim.start,
        "end": claim.end,
        "article_id": claim.article_id,
        "article_url": art.url,
        "article_title": art.title or art.entry_title,
        "outlet": art.host,
        "published_at": _iso(art.published_at or art.entry_published_at),
        "cluster_id": claim.cluster_id,
        "cluster_articles": cluster.n_articles if cluster else 1,
        "cluster_outlets": cluster.n_outlets if cluster else 1,
        "cluster_first_seen": _iso(cluster.first_seen_at) if cluster else None,
        "cluster_first_seen_precision": cluster.first_seen_precision if cluster else None,
        "speaker_key": cluster.speaker_key if cluster else None,
        "match": None,
    }
