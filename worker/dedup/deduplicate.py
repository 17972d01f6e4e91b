"""Deduplication: exact copies by a normalized text hash, near-copies by MinHash + LSH.

How an article is placed (``deduplicate_article``, one transaction, never commits):

1. the body text is normalized (Unicode NFKC, case folded, every run of punctuation or
   whitespace is one space) and hashed (SHA-256): ``text_hash``;
2. an article whose normalized text has another deduplicated article with the same hash
   joins that article's group (exact layer);
3. otherwise, if the text has at least ``MIN_NEAR_WORDS`` words, its word
   ``k``-shingles get a MinHash signature of ``num_perm`` 32-bit values, cut into
   ``bands`` bands of ``rows`` values; each band is hashed to one 64-bit bucket key.
   Every article sharing at least one bucket (table ``dedupband``, indexed on
   (band, hash)) is a candidate; candidates are confirmed from their stored signatures
   (table ``articlesignature``): estimated Jaccard >= ``settings.dedup_threshold`` or
   estimated containment of the smaller text in the larger >= ``settings.dedup_containment``;
   the best confirmed candidate's group is joined (and if the confirmed candidates
   are in several groups, those groups are merged into it: grouping does not depend on
   the order in which copies arrive);
   a second index (table ``dedupsample``) holds a hash-mod sample of every text's
   shingles (so a text contained in another has its samples among the other's): it
   finds short excerpts of long texts, which share no LSH bucket with them; those
   candidates are checked exactly, and such *excerpt* matches (containment only,
   Jaccard < 0.5) never merge groups, and a text joins the group of a text it contains
   only if it also matches that group's largest member (containment is not
   transitive: see ``_contained_group``);
4. otherwise the article starts a new group of its own.

The canonical article of a group is the earliest published one (``published_at``, else
``entry_published_at``, else ``discovered_at``; ties: ``discovered_at``, then id). Every
other member has ``duplicate_of_id`` = the canonical; the canonical has None.

Concurrency: on PostgreSQL the step takes transaction-scoped advisory locks on its text
hash, on each of its LSH buckets and on each of its sampled shingles (sorted, so two
workers never deadlock), so two copies of one text (or a text and an excerpt of it) are
placed one after the other and the second sees the first. On
SQLite the step starts with a no-op UPDATE, which takes the database write lock at
once (SQLite has one writer at a time). See docs/dedup.md.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from datasketch import MinHash
from sqlalchemy import TextClause, bindparam, delete, func, text, update
from sqlmodel import Session, col, select

from schemas.models import (
    Article,
    ArticleSignature,
    ArticleState,
    Claim,
    DedupBand,
    DedupSample,
    DupGroup,
)
from worker.core.db import insert_ignore, is_postgres
from worker.core.settings import Settings
from worker.core.states import set_state

U64 = np.uint64
UInt32Array = npt.NDArray[np.uint32]
UInt64Array = npt.NDArray[np.uint64]
Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True)
class DedupParams:
    """The MinHash/LSH parameters. The band index in the database is only valid for the
    parameters it was built with: changing them means re-deduplicating (reprocess)."""

    shingle_k: int = 5  # words per shingle
    num_perm: int = 128  # signature length (32-bit values): the estimate's accuracy
    bands: int = 32  # LSH bands ...
    rows: int = 4  # ... of this many values each, over the first bands * rows values
    margin: float = 0.0  # added to both thresholds when confirming an estimate
    # Estimates this close to a threshold are checked exactly from the two texts (0: off).
    verify_window: float = 0.1
    min_near_words: int = 30  # shorter texts: exact hash only, no near-duplicate search
    max_candidates: int = 200  # LSH candidates confirmed per article (most shared bands)
    # The containment index (table dedupsample): the shingles whose mixed hash is 0 mod
    # sample_rate (0: no containment index), at most sample_cap per article (the smallest
    # keys); a sampled shingle already stored for more than sample_df_max articles is
    # boilerplate: no longer stored, and ignored in lookups.
    sample_rate: int = 16
    sample_cap: int = 128
    sample_df_max: int = 100
    max_contained: int = 20  # containment-index candidates (not LSH ones) checked exactly
    # ... and only those sharing at least this share of expected_shared() samples
    min_sample_share: float = 0.3
    # A match by containment only whose Jaccard is below this (the short text is under
    # about half the long one) is an *excerpt* match: it never merges groups, and a
    # longer text joins the group of a text it contains only if it also matches that
    # group's largest member (_contained_group).
    excerpt_jaccard: float = 0.5
    max_weak_checks: int = 5  # excerpt matches whose group is tried

    def __post_init__(self) -> None:
        if self.bands * self.rows > self.num_perm:
            raise ValueError("bands * rows must not exceed num_perm")


DEFAULT_PARAMS = DedupParams()
MIN_NEAR_WORDS = DEFAULT_PARAMS.min_near_words

# Namespaces of the advisory lock keys (xor-ed in, so they never meet other locks' keys).
_LOCK_NS_HASH = 0x2F6D_5E31_9A0C_44B1
_LOCK_NS_BAND = 0x61C8_8646_80B5_83EB
_LOCK_NS_SAMPLE = 0x1B87_3593_CC9E_2D51
_SAMPLE_SALT = np.uint64(0x5851_F42D_4C95_7F2D)


# --- text --------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


def words(text: str | None) -> list[str]:
    """The normalized words of a text: NFKC, case folded, punctuation and underscores
    dropped (``"U.S." -> ["u", "s"]``, ``"don't" -> ["don", "t"]``)."""
    if not text:
        return []
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def normalized_text_hash(text: str | None) -> str:
    """SHA-256 (hex) of the text with case, whitespace and punctuation folded: two texts
    that differ only in those get the same hash."""
    return hashlib.sha256(" ".join(words(text)).encode("utf-8")).hexdigest()


# --- MinHash -----------------------------------------------------------------------


def _fmix64(x: UInt64Array) -> UInt64Array:
    """The MurmurHash3 64-bit finalizer (a bijection that mixes every bit)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> U64(33))
        x = x * U64(0xFF51AFD7ED558CCD)
        x = x ^ (x >> U64(33))
        x = x * U64(0xC4CEB9FE1A85EC53)
        x = x ^ (x >> U64(33))
    return x


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


_SHINGLE_MULT = _fmix64(np.arange(1, 65, dtype=np.uint64)) | U64(1)  # odd multipliers


def shingle_hashes(tokens: Sequence[str], k: int) -> UInt64Array:
    """The distinct 64-bit hashes of the word ``k``-shingles (a text of fewer than ``k``
    words is one shingle). Order-sensitive: ``a b c`` and ``c b a`` differ."""
    if not tokens:
        return np.empty(0, dtype=np.uint64)
    cache: dict[str, int] = {}
    wh = np.fromiter(
        (cache[w] if w in cache else cache.setdefault(w, _word_hash(w)) for w in tokens),
        dtype=np.uint64,
        count=len(tokens),
    )
    k = min(k, len(wh))
    n = len(wh) - k + 1
    acc = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            acc = acc + wh[j : j + n] * _SHINGLE_MULT[j]
    return np.unique(_fmix64(acc))


_PERM_CACHE: dict[int, UInt64Array] = {}


def _permutations(num_perm: int) -> UInt64Array:
    """The ``(2, num_perm)`` affine maps ``(a, b)`` of the signatures, from a fixed seed
    (odd ``a``: each map is a bijection of 64-bit values)."""
    perms = _PERM_CACHE.get(num_perm)
    if perms is None:
        gen = np.random.Generator(np.random.PCG64(20240611))
        a = gen.integers(0, 2**63, size=num_perm, dtype=np.uint64) * U64(2) + U64(1)
        b = gen.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        perms = _PERM_CACHE[num_perm] = np.array([a, b], dtype=np.uint64)
    return perms


def minhash(hashes: UInt64Array, num_perm: int) -> UInt32Array:
    """MinHash signature of a set of shingle hashes: datasketch's ``MinHash`` with its
    ``affine64`` scheme (each shingle mixed, then ``a*h+b mod 2**64``), keeping the top 32
    bits of each minimum. The scheme and the permutations are named here, not left to the
    library's defaults, so a datasketch release that changes them (2.0 did) cannot change
    the signatures stored in the database."""
    m = MinHash(
        num_perm=num_perm,
        scheme="affine64",
        hashfunc=int,  # shingles are hashed already (``shingle_hashes``)
        permutations=_permutations(num_perm),
    )
    if hashes.size:
        m.update_batch(hashes.tolist())
    top: UInt32Array = (np.asarray(m.hashvalues, dtype=np.uint64) >> U64(32)).astype(np.uint32)
    return top


def band_hashes(signatures: UInt32Array, bands: int, rows: int) -> Int64Array:
    """The LSH bucket key of each band: ``(..., num_perm)`` -> ``(..., bands)`` signed
    64-bit integers (the band number is mixed in, so keys of different bands differ)."""
    sig = np.asarray(signatures, dtype=np.uint32)[..., : bands * rows]
    shaped = sig.reshape((*sig.shape[:-1], bands, rows)).astype(np.uint64)
    h = np.broadcast_to(_fmix64(np.arange(1, bands + 1, dtype=np.uint64)), shaped.shape[:-1])
    with np.errstate(over="ignore"):
        for j in range(rows):
            h = _fmix64((h ^ shaped[..., j]) * U64(0x9E3779B97F4A7C15))
    return np.ascontiguousarray(h).view(np.int64)


def containment_samples(hashes: UInt64Array, rate: int, cap: int) -> Int64Array:
    """The sampled shingles of a text (sorted signed 64-bit keys): the shingles whose
    mixed hash is 0 mod ``rate``; of more than ``cap``, the ``cap`` smallest keys. The
    choice depends on the shingle alone, so when A's shingles are a subset of B's, A's
    samples are a subset of B's (unless B has more than ``cap``: then those of A below
    B's cut-off are)."""
    if rate <= 0 or hashes.size == 0:
        return np.empty(0, dtype=np.int64)
    mixed = _fmix64(hashes ^ _SAMPLE_SALT)
    picked = np.sort(mixed[mixed % U64(rate) == U64(0)])[:cap]
    return np.ascontiguousarray(picked).view(np.int64)


@dataclass(frozen=True)
class TextSketch:
    """What dedup computes from an article's text."""

    text_hash: str
    n_words: int
    shingle_count: int
    signature: UInt32Array | None  # None: too short for near-duplicate search
    bands: Int64Array | None
    shingles: UInt64Array | None = None  # the distinct shingle hashes (not stored)
    samples: Int64Array | None = None  # the containment index's sampled shingles


def sketch(text: str | None, params: DedupParams = DEFAULT_PARAMS) -> TextSketch:
    tokens = words(text)
    text_hash = hashlib.sha256(" ".join(tokens).encode("utf-8")).hexdigest()
    if len(tokens) < params.min_near_words:
        return TextSketch(text_hash, len(tokens), 0, None, None)
    hashes = shingle_hashes(tokens, params.shingle_k)
    sig = minhash(hashes, params.num_perm)
    return TextSketch(
        text_hash,
        len(tokens),
        int(hashes.size),
        sig,
        band_hashes(sig, params.bands, params.rows),
        hashes,
        containment_samples(hashes, params.sample_rate, params.sample_cap),
    )


def signature_bytes(sig: UInt32Array) -> bytes:
    return np.asarray(sig, dtype="<u4").tobytes()


def signature_from_bytes(data: bytes) -> UInt32Array:
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def estimated_jaccard(a: UInt32Array, b: UInt32Array) -> float:
    if a.shape != b.shape:
        return 0.0
    return float(np.count_nonzero(a == b)) / float(a.size)


def estimated_containment(jaccard: float, count_a: int, count_b: int) -> float:
    """Share of the smaller shingle set found in the larger one, from the Jaccard
    estimate and the two set sizes: ``|A∩B| = J (|A|+|B|) / (1+J)``, over ``min(|A|,|B|)``
    (capped at 1)."""
    small = min(count_a, count_b)
    if small <= 0 or jaccard <= 0.0:
        return 0.0
    inter = jaccard * (count_a + count_b) / (1.0 + jaccard)
    return min(1.0, inter / small)


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


def confirm(
    sig_a: UInt32Array,
    count_a: int,
    sig_b: UInt32Array,
    count_b: int,
    threshold: float,
    containment_threshold: float,
) -> tuple[bool, float, float]:
    """The pair decision: (is a near-duplicate, estimated Jaccard, estimated containment)."""
    j = estimated_jaccard(sig_a, sig_b)
    c = estimated_containment(j, count_a, count_b)
    return (j >= threshold or c >= containment_threshold), j, c


def exact_similarity(a: UInt64Array, b: UInt64Array) -> tuple[float, float]:
    """Exact (Jaccard, containment of the smaller in the larger) of two shingle sets."""
    if a.size == 0 or b.size == 0:
        return 0.0, 0.0
    inter = int(np.intersect1d(a, b, assume_unique=True).size)
    return inter / (a.size + b.size - inter), inter / min(a.size, b.size)


def decide(
    sk: TextSketch,
    other_signature: UInt32Array,
    other_count: int,
    other_shingles: Callable[[], UInt64Array | None],
    settings: Settings,
    params: DedupParams = DEFAULT_PARAMS,
) -> tuple[bool, float, float]:
    """The near-duplicate decision for one LSH candidate: (duplicate, Jaccard,
    containment). The signatures give the estimates; when an estimate lies within
    ``params.verify_window`` of its threshold (where the MinHash error, about
    ``sqrt(J(1-J)/num_perm)``, could flip the answer), the exact values are computed
    from the two texts' shingles (``other_shingles`` loads the candidate's)."""
    assert sk.signature is not None
    t = settings.dedup_threshold + params.margin
    ct = settings.dedup_containment + params.margin
    ok, j, c = confirm(sk.signature, sk.shingle_count, other_signature, other_count, t, ct)
    w = params.verify_window
    if w <= 0.0 or sk.shingles is None:
        return ok, j, c
    if j >= t + w:
        return True, j, c
    if j < t - w and c < ct - w:
        return False, j, c
    theirs = other_shingles()
    if theirs is None:
        return ok, j, c
    ej, ec = exact_similarity(sk.shingles, theirs)
    return (ej >= t or ec >= ct), ej, ec


# --- the pipeline step -------------------------------------------------------------


@dataclass(frozen=True)
class DedupOutcome:
    """What ``deduplicate_article`` did.

    ``advanced``: the article moved from ``extracted`` to ``deduplicated`` (False: nothing
    was done, e.g. a redelivered message). ``canonical_changed_to``: the id of the article
    that became canonical of an existing group, replacing an earlier canonical whose
    claims were deleted (today this is always the article itself, whose own claims step
    follows; a task layer should queue claim extraction for it if it is not this
    article). ``group_id``/``duplicate_of_id``: where the article was placed.
    """

    advanced: bool
    canonical_changed_to: int | None = None
    group_id: int | None = None
    duplicate_of_id: int | None = None
    # "hash", "near" (Jaccard), "contained" (containment only) or None (a new group)
    matched_by: str | None = None


def order_key(article: Article) -> tuple[datetime, datetime, int]:
    """Sort key of the canonical choice: earliest publication, then first seen, then id."""
    published = article.published_at or article.entry_published_at or article.discovered_at
    return (published, article.discovered_at, article.id or 0)


def _key64(data: bytes, namespace: int) -> int:
    v = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") ^ namespace
    return v - (1 << 64) if v >= (1 << 63) else v


def _band_lock_key(band_key: int) -> int:
    v = (band_key & 0xFFFF_FFFF_FFFF_FFFF) ^ _LOCK_NS_BAND
    return v - (1 << 64) if v >= (1 << 63) else v


def _sample_lock_key(sample: int) -> int:
    v = (sample & 0xFFFF_FFFF_FFFF_FFFF) ^ _LOCK_NS_SAMPLE
    return v - (1 << 64) if v >= (1 << 63) else v


def lock_keys(sk: TextSketch, stopped: frozenset[int] = frozenset()) -> list[int]:
    """The advisory lock keys of an article: its text hash, each LSH bucket and each
    sampled shingle not ``stopped`` (boilerplate: never a candidate again), sorted."""
    keys = {_key64(sk.text_hash.encode("ascii"), _LOCK_NS_HASH)}
    if sk.bands is not None:
        keys.update(_band_lock_key(int(b)) for b in sk.bands)
    if sk.samples is not None:
        keys.update(_sample_lock_key(x) for x in sk.samples.tolist() if x not in stopped)
    return sorted(keys)


def _take_locks(session: Session, keys: list[int]) -> None:
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


def _take_write_lock(session: Session, article_id: int) -> None:
    """SQLite: take the database write lock before reading anything (a no-op UPDATE is
    the transaction's first write, so the RESERVED lock is held from here to commit and
    every read after it sees the newest data). PostgreSQL: lock the article's row."""
    if is_postgres(session):
        session.execute(select(Article.id).where(col(Article.id) == article_id).with_for_update())
    else:
        session.execute(
            update(Article)
            .where(col(Article.id) == article_id)
            .values(state=Article.state)
            .execution_options(synchronize_session=False)
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


def expected_shared(count_a: int, count_b: int, params: DedupParams = DEFAULT_PARAMS) -> float:
    """How many sampled shingles two texts of these shingle counts share when the
    smaller is wholly contained in the larger: the smaller's shingles at the larger's
    sampling rate (``1/sample_rate``, lower when the larger is capped)."""
    small, large = min(count_a, count_b), max(count_a, count_b)
    if params.sample_rate <= 0 or small <= 0:
        return 0.0
    return small * min(1.0 / params.sample_rate, params.sample_cap / large)


def min_shared(count_a: int, count_b: int, params: DedupParams = DEFAULT_PARAMS) -> int:
    """The shared samples a containment-index candidate needs to be checked: at least
    one, and ``min_sample_share`` of ``expected_shared`` (a pair with containment 0.9
    shares about 0.9 of it; with 0.3, one in a hundred such pairs is lost when ten
    samples are expected, fewer when more are)."""
    return max(1, int(params.min_sample_share * expected_shared(count_a, count_b, params)))


@lru_cache(maxsize=256)
def _insert_samples_sql(n: int) -> TextClause:
    values = ", ".join(f"(:s{i}, :a)" for i in range(n))
    return text(
        f"INSERT INTO dedupsample (hash, article_id) VALUES {values} "
        "ON CONFLICT (hash, article_id) DO NOTHING"
    )


def _candidates(session: Session, bands: Int64Array, limit: int) -> list[int]:
    """Articles sharing at least one LSH bucket, the most shared buckets first."""
    rows = session.execute(_candidates_sql(len(bands)), {**_band_params(bands), "lim": limit}).all()
    return [int(r[0]) for r in rows]


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
    fetched = session.execute(
        select(
            ArticleSignature.article_id, ArticleSignature.signature, ArticleSignature.shingle_count
        )
        .join(Article, col(Article.id) == col(ArticleSignature.article_id))
        .where(
            col(ArticleSignature.article_id).in_(ids + [i for i, _ in shared]),
            col(Article.dup_group_id).is_not(None),
        )
    ).all()
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
            body = session.execute(
                select(Article.text).where(col(Article.id) == aid)
            ).scalar_one_or_none()
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


def _index(
    session: Session, article_id: int, sk: TextSketch, stopped: frozenset[int] = frozenset()
) -> None:
    assert sk.signature is not None and sk.bands is not None
    insert_ignore(
        session,
        ArticleSignature,
        [
            {
                "article_id": article_id,
                "signature": signature_bytes(sk.signature),
                "shingle_count": sk.shingle_count,
            }
        ],
        ["article_id"],
    )
    session.execute(_insert_bands_sql(len(sk.bands)), {**_band_params(sk.bands), "a": article_id})
    samples = [] if sk.samples is None else [x for x in sk.samples.tolist() if x not in stopped]
    if samples:
        session.execute(
            _insert_samples_sql(len(samples)),
            {**{f"s{i}": x for i, x in enumerate(samples)}, "a": article_id},
        )


def _lock_group(session: Session, group_id: int) -> DupGroup | None:
    return session.exec(
        select(DupGroup)
        .where(col(DupGroup.id) == group_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def _demote(session: Session, article: Article) -> None:
    """A canonical article becomes a copy: its claims go (the canonical carries them),
    and the claim clusters they were in are recounted."""
    assert article.id is not None
    clusters = {
        c
        for c in session.exec(select(Claim.cluster_id).where(Claim.article_id == article.id))
        if c is not None
    }
    session.execute(delete(Claim).where(col(Claim.article_id) == article.id))
    article.claims_version = None
    if article.claims_status is not None:
        article.claims_status = "duplicate"
    if clusters:
        session.flush()
        from worker.claims.clustering import refresh_cluster

        for cluster_id in sorted(clusters):
            refresh_cluster(session, cluster_id)


def _set_canonical(session: Session, group: DupGroup, canonical_id: int) -> None:
    assert group.id is not None
    group.canonical_article_id = canonical_id
    session.execute(
        update(Article)
        .where(col(Article.dup_group_id) == group.id, col(Article.id) != canonical_id)
        .values(duplicate_of_id=canonical_id)
        .execution_options(synchronize_session="fetch")
    )
    session.execute(
        update(Article)
        .where(col(Article.id) == canonical_id)
        .values(duplicate_of_id=None)
        .execution_options(synchronize_session="fetch")
    )


def _join(session: Session, article: Article, group_id: int) -> tuple[DupGroup, int | None] | None:
    """Put ``article`` in the group (row-locked while it is changed). Returns the group
    and, if the article displaced an earlier-chosen canonical, the article's id."""
    assert article.id is not None
    group = _lock_group(session, group_id)
    if group is None:
        return None
    current = (
        session.get(Article, group.canonical_article_id, populate_existing=True)
        if group.canonical_article_id is not None
        else None
    )
    article.dup_group_id = group.id
    if (
        current is not None
        and current.id != article.id
        and order_key(current) <= order_key(article)
    ):
        article.duplicate_of_id = current.id
        return group, None
    if current is not None and current.id != article.id and is_postgres(session):
        # It is demoted: lock its row and read it again. Its claims step may be running
        # (holding that row from start to commit), and the demotion must remove the
        # claims and set the claims_status that step commits, not the ones read before
        # it. Only on a demotion: a copy joining a group leaves the canonical's row alone,
        # so it never makes the canonical's claims step skip as "in flight". The lock is
        # the one an UPDATE takes (FOR NO KEY UPDATE), not FOR UPDATE: claims steps of
        # copies take KEY SHARE locks on this row through foreign keys (a claim cluster's
        # first article) while we wait for their rows, which with FOR UPDATE deadlocks.
        # (SQLite: the database write lock already orders the two.)
        current = session.get(
            Article,
            current.id,
            populate_existing=True,
            with_for_update={"key_share": True},  # FOR NO KEY UPDATE: FK checks pass
        )
        assert current is not None
    session.flush()
    _set_canonical(session, group, article.id)
    article.duplicate_of_id = None
    if current is None or current.id == article.id:
        return group, None
    current.duplicate_of_id = article.id
    _demote(session, current)
    return group, article.id


def _match_groups(session: Session, article_ids: list[int]) -> list[int]:
    """The distinct groups of the given articles, in the articles' order (read afresh)."""
    rows = session.execute(
        select(Article.id, Article.dup_group_id).where(col(Article.id).in_(article_ids))
    ).all()
    by_id = {int(aid): gid for aid, gid in rows}
    out: list[int] = []
    for aid in article_ids:
        gid = by_id.get(aid)
        if gid is not None and int(gid) not in out:
            out.append(int(gid))
    return out


def _lock_groups(session: Session, article_ids: list[int]) -> list[DupGroup]:
    """Lock the groups of the matched articles, in ascending id order (two steps merging
    the same groups never deadlock), and return them, the best match's group first. A
    group merged into another while we waited for its lock is gone: the members' groups
    are read again (READ COMMITTED: every statement sees the newest commits)."""
    for _ in range(20):
        gids = _match_groups(session, article_ids)
        locked = {gid: g for gid in sorted(gids) if (g := _lock_group(session, gid)) is not None}
        if len(locked) == len(gids) and _match_groups(session, article_ids) == gids:
            return [locked[gid] for gid in gids]
    raise RuntimeError("dedup: the matched articles' groups kept changing")


def _merge(session: Session, into: DupGroup, others: list[DupGroup]) -> None:
    """One newcomer confirmed matches in several groups: they are one group. The members
    of ``others`` move into ``into`` and the earliest of the groups' canonicals becomes
    its canonical; the others are demoted (their claims go, see ``_demote``), and the
    new canonical's claim clusters are recounted (its new copies are more outlets). The
    caller holds every group's row lock."""
    assert into.id is not None
    canonical_ids = [
        g.canonical_article_id for g in (into, *others) if g.canonical_article_id is not None
    ]
    canonicals = [
        a
        for cid in canonical_ids
        if (
            a := session.get(
                Article,
                cid,
                populate_existing=True,
                with_for_update={"key_share": True} if is_postgres(session) else False,
            )
        )
        is not None
    ]
    for g in others:
        session.execute(
            update(Article)
            .where(col(Article.dup_group_id) == g.id)
            .values(dup_group_id=into.id)
            .execution_options(synchronize_session="fetch")
        )
    session.flush()
    for g in others:
        session.delete(g)
    session.flush()
    if not canonicals:
        return
    winner = min(canonicals, key=order_key)
    assert winner.id is not None
    _set_canonical(session, into, winner.id)
    for loser in canonicals:
        if loser.id != winner.id:
            loser.duplicate_of_id = winner.id
            _demote(session, loser)
    session.flush()
    clusters = {
        c
        for c in session.exec(select(Claim.cluster_id).where(Claim.article_id == winner.id))
        if c is not None
    }
    if clusters:
        from worker.claims.clustering import refresh_cluster

        for cluster_id in sorted(clusters):
            refresh_cluster(session, cluster_id)


def _matches_text(
    session: Session, sk: TextSketch, article_id: int, settings: Settings, params: DedupParams
) -> bool:
    """Exact pair decision between a sketched text and a stored article's text."""
    assert sk.shingles is not None
    body = session.execute(
        select(Article.text).where(col(Article.id) == article_id)
    ).scalar_one_or_none()
    if not body:
        return False
    j, c = exact_similarity(sk.shingles, shingle_hashes(words(body), params.shingle_k))
    return (
        j >= settings.dedup_threshold + params.margin
        or c >= settings.dedup_containment + params.margin
    )


def _largest_member(session: Session, group_id: int) -> int | None:
    """The indexed member of a group with the most shingles (ties: lowest id)."""
    row = session.execute(
        select(Article.id)
        .join(ArticleSignature, col(ArticleSignature.article_id) == col(Article.id))
        .where(col(Article.dup_group_id) == group_id)
        .order_by(col(ArticleSignature.shingle_count).desc(), col(Article.id))
        .limit(1)
    ).first()
    return int(row[0]) if row is not None else None


def _contained_group(
    session: Session,
    sk: TextSketch,
    matches: list[Match],
    settings: Settings,
    params: DedupParams,
) -> int | None:
    """The group to join when every match is an excerpt match (containment only,
    Jaccard below ``excerpt_jaccard``), or None (a group of its own).

    Containment is not transitive: a short text inside two different stories (a shared
    passage, a page that is mostly a site's template) says nothing about those stories.
    So excerpt matches never merge groups, and:

    * a text contained in a match (the smaller of the two) joins the match's group;
    * a text containing a match (the larger) joins the match's group only if it also
      matches (exactly) that group's largest member, when that is not the match itself:
      a story containing a template page does not join the group of another story on
      that template that contains the same page, and a live blog quoting a wire brief
      does not join the group of the full wire story.

    The best match whose group passes is joined (its row locked, and the check made
    again if the group's largest member changed meanwhile); at most one group row is
    locked here, so there is no lock-order cycle with a merge."""
    for m in matches[: params.max_weak_checks]:
        gids = _match_groups(session, [m.article_id])
        if not gids:
            continue
        largest: int | None = None
        if sk.shingle_count > m.shingle_count:  # the newcomer contains the match
            largest = _largest_member(session, gids[0])
            if largest not in (None, m.article_id) and not _matches_text(
                session, sk, largest, settings, params
            ):
                continue
        locked = _lock_groups(session, [m.article_id])
        if not locked:
            return None
        g = locked[0]
        assert g.id is not None
        if sk.shingle_count <= m.shingle_count:
            return g.id
        now = _largest_member(session, g.id)
        if now in (None, m.article_id, largest) or (
            now is not None and _matches_text(session, sk, now, settings, params)
        ):
            return g.id
        return None
    return None


def deduplicate_article(
    session: Session,
    article_id: int,
    settings: Settings,
    params: DedupParams = DEFAULT_PARAMS,
) -> DedupOutcome:
    """Place an ``extracted`` article in its duplicate group and move it to
    ``deduplicated``. Any other state: nothing happens (returns ``advanced=False``), so a
    redelivered message is harmless. Never commits."""
    _take_write_lock(session, article_id)
    article = session.get(Article, article_id, populate_existing=True)
    if article is None or article.state != ArticleState.extracted:
        return DedupOutcome(False)
    sk = sketch(article.text, params)
    # boilerplate samples: read before the locks (a stopped sample stays stopped), so
    # that every article carrying a common phrase does not wait on one lock key
    stopped = stopped_samples(session, sk, params) if sk.signature is not None else frozenset()
    if is_postgres(session) and sk.n_words > 0:  # an empty text matches nothing: no lock
        _take_locks(session, lock_keys(sk, stopped))

    group_id: int | None = None
    matched_by: str | None = None
    if sk.n_words > 0:  # an empty text is never anyone's duplicate
        row = session.execute(
            select(Article.id)
            .where(
                col(Article.text_hash) == sk.text_hash,
                col(Article.dup_group_id).is_not(None),
                col(Article.id) != article_id,
            )
            .order_by(col(Article.id))
            .limit(1)
        ).first()
        if row is not None:
            # The match's group is read again under its row lock: a step merging that
            # group into another (through another of its members: no advisory lock in
            # common with this one) may have deleted it since.
            hash_groups = _lock_groups(session, [int(row[0])])
            if hash_groups:
                assert hash_groups[0].id is not None
                group_id, matched_by = hash_groups[0].id, "hash"
    if group_id is None and sk.signature is not None:
        matches = find_near_matches(
            session, sk, settings, params, exclude=article_id, stopped=stopped
        )
        strong = [m for m in matches if m.strong]
        if strong:
            groups = _lock_groups(session, [m.article_id for m in strong])
            if groups:
                if len(groups) > 1:
                    _merge(session, groups[0], groups[1:])
                assert groups[0].id is not None
                group_id, matched_by = groups[0].id, "near"
        elif matches:
            group_id = _contained_group(session, sk, matches, settings, params)
            if group_id is not None:
                matched_by = "contained"

    article.text_hash = sk.text_hash
    changed: int | None = None
    joined = _join(session, article, group_id) if group_id is not None else None
    if joined is not None:
        changed = joined[1]
    else:
        matched_by = None
        group = DupGroup(canonical_article_id=article_id)
        session.add(group)
        session.flush()
        article.dup_group_id = group.id
        article.duplicate_of_id = None
    # Exact copies add nothing to the LSH index (their buckets equal the first copy's):
    # buckets stay small however many outlets carry a wire story.
    if sk.signature is not None and matched_by != "hash":
        _index(session, article_id, sk, stopped)
    set_state(article, ArticleState.deduplicated)
    session.flush()
    return DedupOutcome(
        True,
        canonical_changed_to=changed,
        group_id=article.dup_group_id,
        duplicate_of_id=article.duplicate_of_id,
        matched_by=matched_by,
    )


# --- removal (reprocess) -----------------------------------------------------------


def remove_article(session: Session, article_id: int) -> int | None:
    """Take an article out of the dedup index and of its group (reprocess places it
    again from its new text). If it was its group's canonical, the next earliest member
    becomes canonical, and its id is returned: that article carries no claims yet (it
    was a copy), so the caller should have its claims extracted. Never commits."""
    _take_write_lock(session, article_id)
    article = session.get(Article, article_id, populate_existing=True)
    if article is None:
        return None
    if is_postgres(session) and article.text_hash:
        _take_locks(session, [_key64(article.text_hash.encode("ascii"), _LOCK_NS_HASH)])
    had_signature = session.get(ArticleSignature, article_id) is not None
    session.execute(delete(DedupBand).where(col(DedupBand.article_id) == article_id))
    session.execute(delete(DedupSample).where(col(DedupSample.article_id) == article_id))
    session.execute(delete(ArticleSignature).where(col(ArticleSignature.article_id) == article_id))
    new_canonical: int | None = None
    group_id = article.dup_group_id
    text_hash = article.text_hash
    article.dup_group_id = None
    article.duplicate_of_id = None
    article.text_hash = None
    session.flush()
    if group_id is not None:
        group = _lock_group(session, group_id)
        if group is not None:
            members = list(session.exec(select(Article).where(Article.dup_group_id == group_id)))
            if not members:
                session.delete(group)
            elif group.canonical_article_id == article_id or group.canonical_article_id is None:
                first = min(members, key=order_key)
                assert first.id is not None
                _set_canonical(session, group, first.id)
                new_canonical = first.id
            if had_signature and text_hash and members:
                # exact copies were not indexed: index one in place of the removed text
                _reindex_copy(session, text_hash, members)
    session.flush()
    return new_canonical


def _reindex_copy(session: Session, text_hash: str, members: list[Article]) -> None:
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
            _index(session, copy.id, sk, stopped_samples(session, sk))
            return


# --- queries -----------------------------------------------------------------------


@dataclass(frozen=True)
class GroupMember:
    article_id: int
    host: str
    url: str
    published_at: datetime | None
    entry_published_at: datetime | None
    discovered_at: datetime
    duplicate_of_id: int | None
    is_canonical: bool


def group_members(session: Session, group_id: int) -> list[GroupMember]:
    """Every member of a duplicate group (its outlet, URL and times), canonical first,
    then in canonical order (earliest publication first)."""
    arts = list(session.exec(select(Article).where(Article.dup_group_id == group_id)))
    arts.sort(key=order_key)
    out = [
        GroupMember(
            article_id=a.id or 0,
            host=a.host,
            url=a.url,
            published_at=a.published_at,
            entry_published_at=a.entry_published_at,
            discovered_at=a.discovered_at,
            duplicate_of_id=a.duplicate_of_id,
            is_canonical=a.duplicate_of_id is None,
        )
        for a in arts
    ]
    out.sort(key=lambda m: not m.is_canonical)
    return out


def index_stats(session: Session) -> dict[str, Any]:
    """Rows in the dedup index (for status output and benchmarks)."""
    bands = session.execute(select(func.count()).select_from(DedupBand)).scalar_one()
    sigs = session.execute(select(func.count()).select_from(ArticleSignature)).scalar_one()
    samples = session.execute(select(func.count()).select_from(DedupSample)).scalar_one()
    return {"band_rows": int(bands), "signatures": int(sigs), "sample_rows": int(samples)}


__all__ = [
    "DEFAULT_PARAMS",
    "MIN_NEAR_WORDS",
    "DedupOutcome",
    "DedupParams",
    "GroupMember",
    "Match",
    "TextSketch",
    "band_hashes",
    "confirm",
    "containment_samples",
    "deduplicate_article",
    "estimated_containment",
    "estimated_jaccard",
    "expected_shared",
    "find_near_matches",
    "group_members",
    "index_stats",
    "lock_keys",
    "min_shared",
    "minhash",
    "normalized_text_hash",
    "order_key",
    "remove_article",
    "shingle_hashes",
    "sketch",
    "stopped_samples",
    "words",
]
