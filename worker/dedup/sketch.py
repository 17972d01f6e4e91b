"""What dedup computes from a text, with no database: words, hashes, MinHash, LSH bands.

* The text is normalized (Unicode NFKC, case folded, every run of punctuation or
  whitespace is one space) and hashed (SHA-256): ``text_hash``, the exact layer
  (``normalized_text_hash``).
* A text of at least ``MIN_NEAR_WORDS`` words has its word ``k``-shingles hashed
  (``shingle_hashes``) and gets a MinHash signature of ``num_perm`` 32-bit values
  (``minhash``), cut into ``bands`` bands of ``rows`` values; each band is hashed to one
  64-bit bucket key (``band_hashes``).
* A hash-mod sample of its shingles (``containment_samples``) is chosen by the shingle
  alone, so a text contained in another has its samples among the other's: what the
  containment index stores (``expected_shared`` and ``min_shared`` say how many two such
  texts share).
* A pair is confirmed from the two signatures (``confirm``): estimated Jaccard >=
  ``settings.dedup_threshold`` or estimated containment of the smaller text in the larger
  >= ``settings.dedup_containment``; near a threshold the exact values of the two shingle
  sets decide (``decide``).

``sketch`` computes all of it for one text (``TextSketch``). The database index built
from it is :mod:`worker.dedup.index`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from datasketch import MinHash

from worker.core.settings import Settings

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
    # group's largest member (worker.dedup.groups.contained_group).
    excerpt_jaccard: float = 0.5
    max_weak_checks: int = 5  # excerpt matches whose group is tried

    def __post_init__(self) -> None:
        if self.bands * self.rows > self.num_perm:
            raise ValueError("bands * rows must not exceed num_perm")


DEFAULT_PARAMS = DedupParams()
MIN_NEAR_WORDS = DEFAULT_PARAMS.min_near_words
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


# The word hashes of this process (``shingle_hashes``), emptied when it would exceed
# this many words (about 15 MB).
_WORD_HASHES: dict[str, int] = {}
_WORD_HASHES_MAX = 100_000

_SHINGLE_MULT = _fmix64(np.arange(1, 65, dtype=np.uint64)) | U64(1)  # odd multipliers


def shingle_hashes(tokens: Sequence[str], k: int) -> UInt64Array:
    """The distinct 64-bit hashes of the word ``k``-shingles (a text of fewer than ``k``
    words is one shingle). Order-sensitive: ``a b c`` and ``c b a`` differ."""
    if not tokens:
        return np.empty(0, dtype=np.uint64)
    # each distinct word hashed once per process (a text's words are mostly words of
    # earlier texts: the hashing was a third of the sketch, issue 16), then looked up by
    # C-level calls (a generator testing a cache word by word cost as much again)
    hashed = _WORD_HASHES
    missing = set(tokens).difference(hashed)
    if missing:
        if len(hashed) + len(missing) > _WORD_HASHES_MAX:
            hashed.clear()
            missing = set(tokens)
        hashed.update({w: _word_hash(w) for w in missing})
    wh = np.fromiter(map(hashed.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
    k = min(k, len(wh))
    n = len(wh) - k + 1
    acc = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            acc = acc + wh[j : j + n] * _SHINGLE_MULT[j]
    return np.unique(_fmix64(acc))


_PERM_CACHE: dict[int, UInt64Array] = {}
_MINHASH_CHUNK = 256  # shingles a call of datasketch's update_batch


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
    # in chunks: datasketch's update_batch makes a (shingles, num_perm) matrix of 64-bit
    # values and takes its column minima; a chunk's matrix (256 KB at 128 permutations)
    # stays in the CPU's cache, where a whole text's (1 MB at 1,000 shingles) did not:
    # 0.6 -> 0.5 ms a text, and a minimum of minima is the same minimum (issue 16)
    values = hashes.tolist()
    for at in range(0, len(values), _MINHASH_CHUNK):
        m.update_batch(values[at : at + _MINHASH_CHUNK])
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


# --- the containment index's sample counts -----------------------------------------


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


__all__ = [
    "DEFAULT_PARAMS",
    "MIN_NEAR_WORDS",
    "DedupParams",
    "Int64Array",
    "TextSketch",
    "UInt32Array",
    "UInt64Array",
    "band_hashes",
    "confirm",
    "containment_samples",
    "decide",
    "estimated_containment",
    "estimated_jaccard",
    "exact_similarity",
    "expected_shared",
    "min_shared",
    "minhash",
    "normalized_text_hash",
    "shingle_hashes",
    "signature_bytes",
    "signature_from_bytes",
    "sketch",
    "words",
]
