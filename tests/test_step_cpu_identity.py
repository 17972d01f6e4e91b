"""The claims and dedup steps' CPU cuts of issue 16 give what the code gave before: the
clustering's stems come from Snowball's C library (PyStemmer, through snowballstemmer)
and are the stems of snowballstemmer's own pure-Python English algorithm, the one
claims were clustered with before; the speakers' sentence starts are read from each
line's stops scanned once; dedup's MinHash fed in chunks is the signature of one batch.

Every word is invented or common English; none comes from a corpus.
"""

from __future__ import annotations

import numpy as np
from datasketch import MinHash
from snowballstemmer.english_stemmer import EnglishStemmer

from worker.claims import clustering
from worker.claims.clustering import _content_tokens, _stem
from worker.claims.speakers import Resolver
from worker.dedup import sketch

# inflections, -ly/-ness/-ational endings, apostrophes, hyphens, non-ASCII letters, the
# Snowball list of exceptions ("skies", "dying", "news", "gently"), digits
WORDS = """
funding funded funds planned planning plans generously generous nationalization
relational conditional hopefulness goodness arguing argued argues reopen reopening
skies dying lying tying news gently early only singly howe atlas cosmos bias andes
inning outing canning herring earring proceed exceed succeed knightly caresses ponies
ties caress cats feed agreed disabled matting mating meeting milling messing meetings
don't won't o'neill d'arcy ministers' coalition's well-known self-driving café naïve
déjà façade zoë über straße smörgåsbord 2026 1990s 3rd covid-19 x y ab abc
"""


def test_the_stemmer_in_use_is_snowballs_c_library() -> None:
    assert type(clustering._STEMMER).__module__ == "Stemmer"


def test_the_c_stems_are_the_pure_python_algorithms() -> None:
    reference = EnglishStemmer()
    for word in WORDS.split():
        assert _stem(word) == reference.stemWord(word), word


def test_content_tokens_are_unchanged() -> None:
    assert _content_tokens("The ministers' funding was generously planned, don't argue") == [
        "minist",
        "fund",
        "generous",
        "plan",
        "don't",
        "argu",
    ]


def test_sentence_starts_of_a_paragraph_in_any_order() -> None:
    """Where the sentence holding a position starts: after the last stop of its line
    that is no title's, initial's or abbreviation's period, or at the line's start; each
    line's stops are scanned once (issue 16), whatever order the positions are asked in."""
    text = (
        'Headline here\nMr. Lund met U.S. officials. J. Dvorak left! "Fine." Then '
        "he spoke.\nNo stop on this line"
    )
    resolver = Resolver([], text)
    line = text.index("Mr.")
    after_officials = text.index("J. Dvorak")
    after_left = text.index('"Fine."')
    after_fine = text.index("Then")
    expected = {
        text.index("Headline") + 3: 0,
        text.index("officials"): line,  # "Mr." and "U.S." end no sentence
        after_officials: after_officials,
        text.index("Dvorak"): after_officials,  # nor the initial "J."
        after_left + 2: after_left,
        after_fine + 2: after_fine,  # a stop inside closing quotation marks
        text.index("he spoke") + 8: after_fine,
        text.index("No stop") + 5: text.index("No stop"),
        len(text): text.index("No stop"),
    }
    for p in sorted(expected, reverse=True) + sorted(expected):
        assert resolver._sentence_start(p) == expected[p], text[:p]


def test_minhash_in_chunks_is_the_signature_of_one_batch() -> None:
    """The dedup step's MinHash fed to datasketch 256 shingles a call gives the signature
    that one call with every shingle gave (what the stored signatures hold)."""
    rng = np.random.default_rng(7)
    for n in (0, 1, 255, 256, 257, 1000, 3001):
        hashes = np.unique(rng.integers(0, 2**63, size=n, dtype=np.uint64))
        whole = MinHash(
            num_perm=128, scheme="affine64", hashfunc=int, permutations=sketch._permutations(128)
        )
        if n:
            whole.update_batch(hashes.tolist())
        expected = (np.asarray(whole.hashvalues, dtype=np.uint64) >> np.uint64(32)).astype(
            np.uint32
        )
        assert np.array_equal(sketch.minhash(hashes, 128), expected), n
