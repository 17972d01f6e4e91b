"""The dedup index in the database, and the advisory locks that keep it consistent.

Tables (written in the dedup step's transaction, shared by every worker):

* ``dedupband``: the LSH bucket keys of every indexed article, indexed on (band, hash);
  every article sharing at least one bucket with a text is a candidate;
* ``articlesignature``: its MinHash signature and shingle count, from which candidates
  are confirmed (estimated Jaccard or containment, see :mod:`worker.dedup.sketch`);
* ``dedupsample``: a hash-mod sample of its shingles (so a text contained in another
  has its samples among the other's): it finds short excerpts of long texts, which share
  no LSH bucket with them; those candidates are checked exactly. A sample stored for
  more than ``sample_df_max`` articles is boilerplate (*stopped*).

``find_near_matches`` gives a text's confirmed matches among the indexed articles.
Exact copies are not indexed (their buckets equal the first copy's).

Locks (PostgreSQL): transaction-scoped advisory locks on a text's hash, on each of its
LSH buckets and on each of its sampled shingles that is not stopped (``lock_keys``),
taken sorted in one statement (``take_locks``), so two workers placing two copies of one
text (or a text and an excerpt of it) go one after the other and never deadlock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import LargeBinary, TextClause, bindparam, delete, func, text
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleSignature, DedupBand, DedupSample
from schemas.tables import article as article_table
from schemas.tables import articlesignature as signature_table
from worker.core.settings import Settings
from worker.dedup.sketch import (
    DEFAULT_PARAMS,
    DedupParams,
    Int64Array,
    TextSketch,
    UInt64Array,
    decide,
    exact_similarity,
    min_shared,
    shingle_hashes,
    signature_bytes,
    signature_from_bytes,
    sketch,
    words,
)

# Namespaces of the advisory lock keys (xor-ed in, so they never meet other locks' keys).
_LOCK_NS_HASH = 0x2F6D_5E31_9A0C_44B1
_LOCK_NS_BAND = 0x61C8_8646_80B5_83EB
_LOCK_NS_SAMPLE = 0x1B87_3593_CC9E_2D51


def _key64(data: bytes, namespace: int) -> int:
    v = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") ^ namespace
    return v - (1 << 64) if v >= (1 << 63) else v


def text_hash_lock_key(text_hash: str) -> int:
    """The advisory lock key of a normalized text hash (one of ``lock_keys``)."""
    return _key64(text_hash.encode("ascii"), _LOCK_NS_HASH)


def _band_lock_key(band_key: int) -> int:
    v = (band_key & 0xFFFF_FFFF_FFFF_FFFF) ^ _LOCK_NS_BAND
    return v - (1 << 64) if v >= (1 << 63) else v


def _sample_lock_key(sample: int) -> int:
    v = (sample & 0xFFFF_FFFF_FFFF_FFFF) ^ _LOCK_NS_SAMPLE
    return v - (1 << 64) if v >= (1 << 63) else v


def lock_keys(sk: TextSketch, stopped: frozenset[int] = frozenset()) -> list[int]:
    """The advisory lock keys of an article: its text hash, each LSH bucket and each
    sampled shingle not ``stopped`` (boilerplate: never a candidate again), sorted."""
    keys = {text_hash_lock_key(sk.text_hash)}
    if sk.bands is not None:
        keys.update(_band_lock_key(int(b)) for b in sk.bands)
    if sk.samples is not None:
        keys.update(_sample_lock_key(x) for x in sk.samples.tolist() if x not in stopped)
    return sorted(keys)


def take_locks(session: Session, keys: list[int]) -> None:
    """Transaction-scoped advisory locks, taken in ascending key order in one statement
    (a function scan over the sorted array runs in array order): two workers whose key
    sets overlap wait for each other, and never deadlock."""
    session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(k)) "
            "FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY AS t(k, i)"
        ),
        {"keys": keys},
    )


@lru_cache(maxsize=8)
def _candidates_sql(bands: int) -> TextClause:
    # A plain statement built once per band count: compiling 32 ORM conditions on every
    # call cost more than running the query. Each (band, hash) pair is one index probe.
    probes = " OR ".join(f"(band = :b{i} AND hash = :h{i})" for i in range(bands))
    return text(
        f"SELECT article_id, count(*) AS shared FROM dedupband WHERE {probes} "
        "GROUP BY article_id ORDER BY shared DESC, article_id LIMIT :lim"
    )


@lru_cache(maxsize=8)
def _insert_bands_sql(bands: int) -> TextClause:
    values = ", ".join(f"(:b{i}, :h{i}, :a)" for i in range(bands))
    return text(
        f"INSERT INTO dedupband (band, hash, article_id) VALUES {values} "
        "ON CONFLICT (band, hash, article_id) DO NOTHING"
    )


def _band_params(bands: Int64Array) -> dict[str, int]:
    params: dict[str, int] = {}
    for i, h in enumerate(bands.tolist()):
        params[f"b{i}"] = i
        params[f"h{i}"] = int(h)
    return params


_STOPPED_SQL = text(
    "SELECT hash FROM dedupsample WHERE hash IN :hs GROUP BY hash HAVING count(*) > :df"
).bindparams(bindparam("hs", expanding=True))
_SAMPLE_CANDIDATES_SQL = text(
    "SELECT article_id, count(*) AS shared FROM dedupsample WHERE hash IN :hs "
    "GROUP BY article_id ORDER BY shared DESC, article_id LIMIT :lim"
).bindparams(bindparam("hs", expanding=True))


def stopped_samples(
    session: Session, sk: TextSketch, params: DedupParams = DEFAULT_PARAMS
) -> frozenset[int]:
    """The text's sampled shingles already stored for more than ``sample_df_max``
    articles: boilerplate, ignored by lookups and not stored again (so a sample's rows
    stay at most ``sample_df_max + 1`` and this count is bounded). Once stopped, a sample
    stays stopped (only a removal lowers the count), so it may be read before the locks."""
    if sk.samples is None or sk.samples.size == 0:
        return frozenset()
    rows = session.execute(
        _STOPPED_SQL, {"hs": sk.samples.tolist(), "df": params.sample_df_max}
    ).all()
    return frozenset(int(r[0]) for r in rows)


def _sample_candidates(session: Session, samples: list[int], limit: int) -> list[tuple[int, int]]:
    """(article, shared samples) of the articles sharing at least one (not stopped)
    sampled shingle, most shared first."""
    if not samples:
        return []
    rows = session.execute(_SAMPLE_CANDIDATES_SQL, {"hs": samples, "lim": limit}).all()
    return [(int(r[0]), int(r[1])) for r in rows]


_INSERT_SIGNATURE_SQL = text(
    "INSERT INTO articlesignature (article_id, signature, shingle_count) "
    "VALUES (:a, :sig, :n) ON CONFLICT (article_id) DO NOTHING"
).bindparams(bindparam("sig", type_=LargeBinary()))


# One row a parameter set, the rows given together (one ``executemany``): a statement of
# as many rows as samples (1 to ``sample_cap``) was compiled again for every new count
# in every process, and prepared again by the database for every count (issue 16).
_INSERT_SAMPLES_SQL = text(
    "INSERT INTO dedupsample (hash, article_id) VALUES (:s, :a) "
    "ON CONFLICT (hash, article_id) DO NOTHING"
)


def _candidates(session: Session, bands: Int64Array, limit: int) -> list[int]:
    """Articles sharing at least one LSH bucket, the most shared buckets first."""
    rows = session.execute(_candidates_sql(len(bands)), {**_band_params(bands), "lim": limit}).all()
    return [int(r[0]) for r in rows]


# The signatures of candidates placed in a group, and a candidate's text: built once,
# over the Core tables (built for every article, with its ``IN`` list, they cost more
# CPU than their run: issue 16).
_SIGNATURES = (
    select(
        signature_table.c.article_id,
        signature_table.c.signature,
        signature_table.c.shingle_count,
    )
    .join(article_table, article_table.c.id == signature_table.c.article_id)
    .where(
        signature_table.c.article_id.in_(bindparam("ids", expanding=True)),
        article_table.c.dup_group_id.is_not(None),
    )
)
_TEXT = select(article_table.c.text).where(article_table.c.id == bindparam("article_id"))


@dataclass(frozen=True)
class Match:
    article_id: int
    jaccard: float
    containment: float
    # False: an excerpt match (containment only, Jaccard below params.excerpt_jaccard)
    strong: bool = True
    shingle_count: int = 0  # the matched article's

    @property
    def score(self) -> float:
        return max(self.jaccard, self.containment)


def find_near_matches(
    session: Session,
    sk: TextSketch,
    settings: Settings,
    params: DedupParams = DEFAULT_PARAMS,
    exclude: int | None = None,
    stopped: frozenset[int] | None = None,
) -> list[Match]:
    """The confirmed near-duplicates of a sketched text among the indexed articles,
    best first. Only articles already placed in a group are returned.

    Candidates: the LSH candidates (shared buckets), and the containment index's (shared
    sampled shingles, ``stopped`` ones left out: computed here when not given), of which
    up to ``max_contained`` that are not LSH candidates are decided exactly from the two
    texts (their signatures say little: a 60-shingle excerpt of a 3,000-shingle text
    has a Jaccard of 0.02)."""
    if sk.signature is None or sk.bands is None:
        return []
    ids = [i for i in _candidates(session, sk.bands, params.max_candidates) if i != exclude]
    shared: list[tuple[int, int]] = []  # containment-index candidates, most shared first
    if sk.samples is not None and sk.samples.size and params.sample_rate > 0:
        if stopped is None:
            stopped = stopped_samples(session, sk, params)
        usable = [x for x in sk.samples.tolist() if x not in stopped]
        band_ids = set(ids)
        shared = [
            (i, n)
            for i, n in _sample_candidates(session, usable, params.max_candidates)
            if i != exclude and i not in band_ids
        ]
    if not ids and not shared:
        return []
    fetched = session.execute(_SIGNATURES, {"ids": ids + [i for i, _ in shared]}).all()
    by_id = {int(r[0]): r for r in fetched}
    # A pair with containment >= 0.9 shares about 0.9 x the smaller text's expected
    # samples; far fewer (one common phrase of two long texts) is not worth a text load.
    exact_only = [
        i
        for i, n in shared
        if i in by_id and n >= min_shared(sk.shingle_count, int(by_id[i][2]), params)
    ][: params.max_contained]
    rows = [by_id[i] for i in ids if i in by_id] + [by_id[i] for i in exact_only]
    exact_set = set(exact_only)

    def loader(aid: int) -> Callable[[], UInt64Array | None]:
        def load() -> UInt64Array | None:
            body = session.execute(_TEXT, {"article_id": aid}).scalar_one_or_none()
            return shingle_hashes(words(body), params.shingle_k) if body else None

        return load

    t = settings.dedup_threshold + params.margin
    ct = settings.dedup_containment + params.margin
    matches = []
    for aid, blob, count in rows:
        if int(aid) in exact_set:
            assert sk.shingles is not None
            theirs = loader(int(aid))()
            if theirs is None:
                continue
            j, c = exact_similarity(sk.shingles, theirs)
            ok = j >= t or c >= ct
        else:
            ok, j, c = decide(
                sk, signature_from_bytes(blob), int(count), loader(int(aid)), settings, params
            )
        if ok:
            strong = j >= t or j >= params.excerpt_jaccard
            matches.append(Match(int(aid), j, c, strong=strong, shingle_count=int(count)))
    matches.sort(key=lambda m: (-m.score, -m.jaccard, m.article_id))
    return matches


def index_article(
    session: Session, article_id: int, sk: TextSketch, stopped: frozenset[int] = frozenset()
) -> None:
    """Store an article's signature, LSH bands and sampled shingles (not the ``stopped``
    ones)."""
    assert sk.signature is not None and sk.bands is not None
    session.execute(
        _INSERT_SIGNATURE_SQL,
        {"a": article_id, "sig": signature_bytes(sk.signature), "n": sk.shingle_count},
    )
    session.execute(_insert_bands_sql(len(sk.bands)), {**_band_params(sk.bands), "a": article_id})
    samples = [] if sk.samples is None else [x for x in sk.samples.tolist() if x not in stopped]
    if samples:
        session.execute(_INSERT_SAMPLES_SQL, [{"s": x, "a": article_id} for x in samples])


def unindex_article(session: Session, article_id: int) -> bool:
    """Delete an article's bands, samples and signature. Returns whether it was indexed
    (it had a signature)."""
    had_signature = session.get(ArticleSignature, article_id) is not None
    session.execute(delete(DedupBand).where(col(DedupBand.article_id) == article_id))
    session.execute(delete(DedupSample).where(col(DedupSample.article_id) == article_id))
    session.execute(delete(ArticleSignature).where(col(ArticleSignature.article_id) == article_id))
    return had_signature


def reindex_copy(session: Session, text_hash: str, members: list[Article]) -> None:
    """Index the first of ``members`` whose text hash is ``text_hash`` (exact copies are
    not indexed: one takes the place of a removed text), unless one is indexed already."""
    copies = sorted(
        (m for m in members if m.text_hash == text_hash and m.id is not None),
        key=lambda m: m.id or 0,
    )
    for copy in copies:
        assert copy.id is not None
        if session.get(ArticleSignature, copy.id) is not None:
            return
        sk = sketch(copy.text)
        if sk.signature is not None:
            index_article(session, copy.id, sk, stopped_samples(session, sk))
            return


def index_stats(session: Session) -> dict[str, Any]:
    """Rows in the dedup index (for status output and benchmarks)."""
    bands = session.execute(select(func.count()).select_from(DedupBand)).scalar_one()
    sigs = session.execute(select(func.count()).select_from(ArticleSignature)).scalar_one()
    samples = session.execute(select(func.count()).select_from(DedupSample)).scalar_one()
    return {"band_rows": int(bands), "signatures": int(sigs), "sample_rows": int(samples)}


__all__ = [
    "Match",
    "find_near_matches",
    "index_article",
    "index_stats",
    "lock_keys",
    "reindex_copy",
    "stopped_samples",
    "take_locks",
    "text_hash_lock_key",
    "unindex_article",
]
