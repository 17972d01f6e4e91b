"""The clustering's stems come from Snowball's C library (PyStemmer, through
snowballstemmer) and are the stems of snowballstemmer's own pure-Python English
algorithm, the one claims were clustered with before (issue 16: stemming the words a
CPU process had not seen was a large part of the clustering's CPU).

Every word is invented or common English; none comes from a corpus.
"""

from __future__ import annotations

from snowballstemmer.english_stemmer import EnglishStemmer

from worker.claims import clustering
from worker.claims.clustering import _content_tokens, _stem

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
