"""Clustering the same claim across outlets.

A claim joins a cluster when its resolved speaker has the cluster's key (a person's
surname, folded across spellings, or an organisation's normalized name; none for a
speaker without a name) and it repeats one of the cluster's members (overlap of
content-word stems, a measure that tolerates rewording around the same core statement,
with a name of several words counted as one, or the same words in quotation marks)
while staying close enough to the claim that founded it; of clusters it repeats
equally well, it joins the one with most members.
A member quoting two statements does not pull the other statement's claims in when
that statement has a cluster of its own: of clusters a claim repeats, one it reaches
only through the other statement's sentence of such a member gives way to one it
repeats on its own statement. A shared quotation counts only when it is a fair part of
the claim joining (a fifth of its own words), not a phrase two long statements happen
to share, nor a phrase a short member holds that a long claim also quotes. Different
speakers never share a cluster: the speaker key is part of the lookup, not of the
score. Two clusters of one speaker that both hold the same wording (the same content
words, at least five) are one statement split by a poor founder: the claim that finds
its wording in both merges them. So does a claim quoting one sentence whole of which
the two clusters' founders are separate pieces (:func:`parts_of_one_sentence`): outlets
quote a speaker's sentence in pieces that share no word; the merged cluster is then
founded by the whole sentence. Measured against a
hand-made gold: docs/claims-eval.md ("Clusters against the gold").

Concurrency: clustering (and merging) for one speaker key is serialized with a
transaction-scoped advisory lock on PostgreSQL, every key of an article's claims taken up
front in one sorted order (:func:`lock_speakers`), so two articles never deadlock on
them; SQLite serializes all writers.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

import snowballstemmer
from sqlalchemy import (
    Float,
    Integer,
    Select,
    Text,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    text,
    true,
    update,
)
from sqlalchemy import insert as sql_insert
from sqlalchemy import select as sql_select
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from schemas.models import Article, Claim, ClaimCluster
from schemas.tables import claim as claim_table
from schemas.tables import claimcluster as claimcluster_table
from schemas.tables import claimclusterword as claimclusterword_table
from schemas.types import UTCDateTime, utcnow

# first seen and the members' time order live in firstseen (re-exported here)
from worker.claims.firstseen import ClusterMember as ClusterMember
from worker.claims.firstseen import cluster_members as cluster_members
from worker.claims.firstseen import refresh_cluster as refresh_cluster
from worker.claims.firstseen import refresh_clusters
from worker.core.db import is_postgres

_TITLES = {
    "pm",  # "British PM May": prime minister
    "fm",  # foreign minister
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "sir",
    "dame",
    "president",
    "minister",
    "senator",
    "sen",
    "rep",
    "gov",
    "governor",
    "secretary",
    "chairman",
    "chairwoman",
    "chair",
    "ceo",
    "mayor",
    "judge",
    "general",
    "gen",
    "chief",
    "director",
    "spokesman",
    "spokeswoman",
    "spokesperson",
    "prime",
    "health",
    "foreign",
    "interior",
    "finance",
    "defence",
    "defense",
    "deputy",
    "vice",
    "former",
    "candidate",
    "democratic",
    "republican",
    "leader",
    "king",
    "queen",
    "pope",
    "ambassador",
    "adviser",
    "advisor",
    "envoy",
    "attorney",
    "justice",
    "congressman",
    "congresswoman",
    "representative",
    "speaker",
    "commissioner",
    "chancellor",
    "premier",
    "editor",
    "lawmaker",
    "lt",
    "col",
    "sgt",
    "capt",
    "adm",
    "maj",
    "rev",
    "hon",
    "jr",
    "sr",
}
# What may follow a surname ("Jr.") without making the name a role
_SUFFIXES = {"jr", "sr", "ii", "iii", "iv"}
# Capitalized words that are not a name: country initials ("U.S.", "UK"), and common
# nouns capitalized at a sentence start or in a header ("Officials said", "The Latest")
_NOT_NAMES = {
    "us",
    "uk",
    "eu",
    "un",
    "usa",
    "latest",
    "officials",
    "official",
    "experts",
    "analysts",
    "critics",
    "sources",
    "source",
    "lawmakers",
    "people",
    "residents",
    "witnesses",
    "observers",
    "readers",
    "reporters",
    "someone",
    "everyone",
    "nobody",
    "many",
    "some",
    "others",
    "both",
    "each",
}
# What an organisation or a person issues: not a speaker of its own
_DOCUMENTS = {
    "statement",
    "report",
    "study",
    "letter",
    "indictment",
    "memo",
    "document",
    "documents",
    "filing",
    "complaint",
    "lawsuit",
    "ruling",
    "poll",
    "survey",
    "data",
    "analysis",
    "release",
    "tweet",
    "post",
    "video",
    "article",
    "story",
    "editorial",
}
_STOP = {
    "the",
    "a",
    "an",
    "of",
    "and",
    "or",
    "to",
    "in",
    "on",
    "for",
    "with",
    "at",
    "by",
    "from",
    "that",
    "this",
    "these",
    "those",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "it",
    "its",
    "as",
    "he",
    "she",
    "they",
    "we",
    "i",
    "you",
    "his",
    "her",
    "their",
    "our",
    "my",
    "has",
    "have",
    "had",
    "will",
    "would",
    "could",
    "should",
    "can",
    "may",
    "might",
    "not",
    "no",
    "but",
    "if",
    "so",
    "than",
    "then",
    "there",
    "which",
    "who",
    "whom",
    "what",
    "said",
    "says",
    "say",
    "also",
    "about",
    "into",
    "over",
    "after",
    "before",
    "very",
    "just",
    "all",
}
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?|\d+", re.UNICODE)


# A capitalized run holding one of these words names a body, not a person: the whole
# name is its key ("Health Ministry" and "Interior Ministry" must not both be "ministry").
_BODIES = {
    "ministry",
    "department",
    "office",
    "government",
    "party",
    "council",
    "commission",
    "committee",
    "agency",
    "police",
    "army",
    "court",
    "union",
    "bank",
    "company",
    "corporation",
    "corp",
    "inc",
    "ltd",
    "group",
    "association",
    "institute",
    "university",
    "authority",
    "service",
    "board",
    "federation",
    "organization",
    "organisation",
    "administration",
    "campaign",
    "embassy",
    "parliament",
    "senate",
    "congress",
    "house",
    "cabinet",
    "assembly",
    "coalition",
    "foundation",
    "fund",
    "center",
    "centre",
    "forces",
    "command",
    "bureau",
    "network",
    "news",
    "times",
    "post",
    "press",
    "secretariat",
    "kremlin",
    "pentagon",
    "airlines",
    "airways",
    "rail",
    "railways",
    "holdings",
    "industries",
    "technologies",
    "motors",
    "plc",
    "llc",
}
# Role nouns (besides titles) that a capitalized word before them modifies ("a Putin
# aide", "the Kremlin official")
_ROLES = {
    "aide",
    "aides",
    "official",
    "officials",
    "spokesman",
    "spokeswoman",
    "spokesperson",
    "lawmaker",
    "lawmakers",
    "diplomat",
    "diplomats",
    "leader",
    "leaders",
    "president",
    "prime",
    "minister",
    "counterpart",
    "ally",
    "allies",
    "adviser",
    "advisers",
    "advisor",
    "critic",
    "critics",
    "lawyer",
    "source",
    "sources",
}
# What a person's possessive may head and still be that person's words ("Holub's
# statement"); "Novak's spokesman" is someone else.
_UTTERANCES = {
    "statement",
    "remarks",
    "comments",
    "words",
    "letter",
    "speech",
    "testimony",
    "interview",
    "message",
    "post",
    "tweet",
    "claim",
    "claims",
    "announcement",
}
# What a person's possessive may also head and still be that person's claim: their own
# writings ("Hofeller's 2015 study"). Not words: "the Mueller report" keeps no key.
_WRITINGS = {"study", "memo", "analysis", "report", "notes", "email"}


def _plain(word: str) -> str:
    w = word.lower()
    return w[:-2] if w.endswith(("'s", "’s")) else w


def fold_name(name: str) -> str:
    """A surname as a key that spelling variants share, readable still: without
    diacritics ("Kovač" -> "kovac") and with the common variants of transliterations
    from Cyrillic folded, inside the name as at its end:

    * "Zh"/"J" ("Zhelenko", "Jelenko"), "Dzh"/"J", "Kh"/"H", "Tch"/"Ch" ("Tchaikovsky");
    * a "y" next to a vowel is "i" ("Shoygu"/"Shoigu", "Yanukovych" -> "ianukovich",
      "Aleksey"), and "i" before "e" goes after a vowel or at the start ("Dostoyevsky",
      "Dostoievsky", "Dostoevsky" -> "dostoevski"; "Sergeyev"/"Sergeev";
      "Yeltsin"/"Eltsin");
    * "-ych" is "-ich" ("Yanukovych"/"Yanukovich": the Ukrainian ending);
    * the end "-iy"/"-yy"/"-ij"/"-ii"/"-y" is "-i" ("Zelenskyy", "Zelenskiy", "Zelensky",
      "Zelenski" -> "zelenski"), and "-off"/"-eff" is "-ov"/"-ev" ("Rachmaninoff");
    * doubled letters are one ("Sergeev" -> "sergev", "Kelly" -> "keli").

    A "y" between two consonants stays ("Bystrov" -> "bystrov"): it is the Russian "ы",
    never written "i" (so "Tymoshenko" and "Timoshenko", a Ukrainian "и", stay two keys).
    """
    n = unicodedata.normalize("NFKD", name.lower())
    n = "".join(c for c in n if not unicodedata.combining(c))
    n = n.replace("dzh", "j").replace("zh", "j").replace("kh", "h").replace("tch", "ch")
    n = re.sub(r"ych\b", "ich", n)
    n = re.sub(r"(?<=[aeiou])y|y(?=[aeiou])", "i", n)
    n = re.sub(r"(?<=[aeiou])i(?=e)|^i(?=e)", "", n)
    n = re.sub(r"(?:iy|ij|yy|ii|y)$", "i", n)
    n = re.sub(r"([oe])ff$", r"\1v", n)
    return re.sub(r"(.)\1+", r"\1", n)


# The plaintiffs of a lawsuit are a key of their own ("the plaintiffs": the resolver gives it to
# the plaintiffs' lawyers, the groups that sued and their filings)
_LAWSUIT_PARTIES = {"plaintiffs"}
# What goes before the month "May" in a date, not before the surname ("Last May")
_BEFORE_A_MONTH = {"last", "next", "early", "late", "mid", "since", "until", "in", "by", "of"}


def _surname_may(words: list[str], k: int) -> bool:
    """Whether ``words[k]`` is the surname "May" ("Theresa May", "British PM May"), not
    the month or the verb: capitalized, after a capitalized word of the run that is no
    date word, and the run's last word (nothing capitalized follows: "Trump May Visit"
    is a headline)."""
    if _plain(words[k]) != "may" or not words[k][:1].isupper() or k == 0:
        return False
    if _plain(words[k - 1]) in _BEFORE_A_MONTH or not words[k - 1][:1].isupper():
        return False
    return k + 1 == len(words) or not words[k + 1][:1].isupper()


def _names_the_body(words: list[str], end: int, after: tuple[int, int]) -> bool:
    """Whether the capitalized run ``after`` names the body whose run ends at ``end``:
    "of" (or "of the") between them ("Department of Justice", "Ministry of the
    Interior")."""
    between = [_plain(w) for w in words[end + 1 : after[0]]]
    return between in (["of"], ["of", "the"])


def speaker_key(speaker: str) -> str:
    """The part of a speaker that names them across articles and outlets.

    A person is their surname, whatever precedes or follows it, folded
    (:func:`fold_name`): ``Health Minister Maria Novak``, ``health minister Maria Novak``,
    ``Opposition leader Maria Novak``, ``Novak, the minister``, ``Novak's statement``,
    ``U.S. Ambassador Anna Nováková`` -> ``novak`` / ``novakova``. A body is its whole name
    without articles: ``the Health Ministry``, ``Health Ministry``, ``a statement from the
    Health Ministry`` -> ``health ministry`` (and ``Interior Ministry`` -> ``interior
    ministry``, another speaker); a person named in the speaker wins over a body
    (``Civic Party leader Maria Novak`` -> ``novak``). Empty, so the claim is not
    clustered, for an unknown speaker, a bare pronoun, and a speaker with no name at
    all: a key is never a common noun ("the minister", "the company", "officials") nor
    a document ("the statement", "the report"). The resolver gives a description its
    name where the article supports it (``worker.claims.speakers``)."""
    words = [w for w in _WORD.findall(speaker) if w]
    if not words:
        return ""
    plain = [_plain(w) for w in words if _plain(w) not in {"the", "a", "an"}]
    if len(plain) == 1 and plain[0] in _LAWSUIT_PARTIES:
        return plain[0]  # "the plaintiffs": one side of a lawsuit (the resolver's)
    body: str | None = None
    # Runs of capitalized words (articles and other stop words break a run).
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        if words[i][:1].isupper() and _plain(words[i]) not in _STOP:
            j = i
            while j + 1 < len(words) and words[j + 1][:1].isupper():
                if _plain(words[j + 1]) in _STOP and not _surname_may(words, j + 1):
                    break
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    named_body: set[int] = set()  # runs that name a body after "of" ("of Justice")
    for k, (a, b) in enumerate(runs):
        run = [_plain(w) for w in words[a : b + 1]]
        if k in named_body:
            continue
        if any(w in _BODIES for w in run):
            if run[-1] in _BODIES and k + 1 < len(runs) and _names_the_body(words, b, runs[k + 1]):
                # "the Department of Justice" is "the Justice Department", "Ministry of
                # Foreign Affairs" "Foreign Affairs Ministry": the name before the body
                of_run = runs[k + 1]
                named_body.add(k + 1)
                run = run[:-1] + [_plain(w) for w in words[of_run[0] : of_run[1] + 1]] + run[-1:]
            body = body or " ".join(run)
            continue
        if (
            k + 1 < len(runs)
            and runs[k + 1][0] == b + 2
            and words[b + 1].islower()
            and (words[b + 1] in _TITLES or words[b + 1] in _ROLES)
        ):
            continue  # "Harbour Watch president Ada Lind": the name after the title
        names = [
            w
            for w in run
            if w.rstrip(".") not in _TITLES | _SUFFIXES and w not in _NOT_NAMES and len(w) > 1
        ]
        # a generational suffix ends a name, not a role: "Jon M. Huntsman Jr."
        last = next((w for w in reversed(run) if w.rstrip(".") not in _SUFFIXES), run[-1])
        if not names or last.rstrip(".") in _TITLES:
            continue  # "The Norwegian President": a role, no name
        possessive = words[b].lower() != run[-1]
        after = b + 1
        while possessive and after + 1 < len(words) and words[after].isdigit():
            after += 1  # a year: "Hofeller's 2015 study"
        if a == b and after < len(words) and not words[after][:1].isupper():
            # "Opposition leader ...": a common noun capitalized at the start; "the
            # American president", "a Putin aide", "12 Russian nationals", "the Trump
            # administration", "a former Novak campaign aide": a single
            # capitalized word before a common noun modifies it, it is not who speaks
            nxt = _plain(words[after])
            own = _UTTERANCES | _WRITINGS if possessive else _UTTERANCES
            if nxt not in _STOP and nxt not in own:
                continue
            if nxt.rstrip(".") in _TITLES or nxt in _ROLES:
                continue
        if (
            possessive
            and after < len(words)
            and _plain(words[after]) not in _UTTERANCES | _WRITINGS
        ):
            continue  # a person's possessive heads their words, or someone else
        return fold_name(names[-1])
    # "a statement from the Health Ministry", "spokesman for the Health Ministry": the body
    return body or ""


# snowballstemmer hands out PyStemmer's stemmer (the Snowball project's C library,
# libstemmer_c) when it is installed, as it is with claimwire: the same algorithm and the
# same stems as its pure-Python one (tests/test_step_cpu_identity.py), about 14 times faster;
# the words a CPU process had not stemmed yet were 0.8 s of 12 s of 300 claims steps
# under cProfile (issue 16).
_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def _content_tokens(content: str) -> list[str]:
    """The content words of a text in order, as Snowball (English) stems: "funding" and
    "funded" are "fund", "planned" and "planning" "plan". spaCy's lemmas are not
    available here: the claims' pipeline loads the parser only (no tagger, so no
    lemmatizer), and the fast paths skip even the parse."""
    out = []
    for w in _WORD.findall(content.lower()):
        w = w.replace("’", "'")
        if w.endswith("'s"):
            w = w[:-2]
        if w in _STOP or len(w) < 3:
            continue
        out.append(_stem(w))
    return out


def content_words(content: str) -> set[str]:
    """A claim's content words (stems, see :func:`_content_tokens`)."""
    return set(_content_set(content))


@lru_cache(maxsize=1 << 14)
def _content_set(content: str) -> frozenset[str]:
    """:func:`content_words`, kept per text: a cluster's founder and members are scored
    again for every claim that may join it (issue 16)."""
    return frozenset(_content_tokens(content))


# A quotation: double marks (straight, curly, guillemets), or single marks that open
# after a non-letter and close before one (so "don't" and "the workers' union" are not).
_DOUBLE_QUOTED = re.compile(r'[“"«]([^“”"«»]+)[”"»]')
_SINGLE_QUOTED = re.compile(r"(?<!\w)[‘']([^‘’'\"“”]*?[^\s‘’'])[’'](?!\w)")
# The fewest content words of a quoted phrase that is a signal of its own when another
# claim quotes it whole ("an 'extraordinary relationship'", "'pretty silly'"), and of a
# run of quoted words two quotations share.
_PHRASE_WORDS = 2
_RUN_WORDS = 3


def _quoted_segments(text: str) -> list[str]:
    """The quotations in a claim's text as written (single marks inside double ones
    included)."""
    segments = [m.group(1) for m in _DOUBLE_QUOTED.finditer(text)]
    segments += [m.group(1) for m in _SINGLE_QUOTED.finditer(_DOUBLE_QUOTED.sub(" ", text))]
    segments += [m.group(1) for s in list(segments) for m in _SINGLE_QUOTED.finditer(s)]
    return segments


@lru_cache(maxsize=1 << 14)
def quoted_phrases(text: str) -> tuple[tuple[str, ...], ...]:
    """The quotations in a claim's text (single marks inside double ones included), each
    as its content words in order (:func:`_content_tokens`); quotations without content
    words are left out."""
    tokens = (tuple(_content_tokens(s)) for s in _quoted_segments(text))
    return tuple(dict.fromkeys(t for t in tokens if t))


def _longest_run(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """The length of the longest run of words ``a`` and ``b`` share, in order."""
    return _longest_run_end(a, b)[0]


def _longest_run_end(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[int, int]:
    """The length of the longest run of words ``a`` and ``b`` share, in order, and
    where it ends in ``a`` (the first such run)."""
    best, end = 0, 0
    prev = [0] * (len(b) + 1)
    for i, x in enumerate(a, 1):
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best:
                    best, end = cur[j], i
        prev = cur
    return best, end


def shared_quotations(a: str, b: str) -> set[tuple[str, ...]]:
    """The quoted words two claims share (see :func:`shares_quotation`): each run of at
    least three content words in quotations of both, and each whole quoted phrase of at
    least two content words of one inside a quotation of the other."""
    out: set[tuple[str, ...]] = set()
    for x in quoted_phrases(a):
        for y in quoted_phrases(b):
            run, end = _longest_run_end(x, y)
            if run >= _RUN_WORDS or (run >= _PHRASE_WORDS and run in (len(x), len(y))):
                out.add(x[end - run : end])
    return out


def shares_quotation(a: str, b: str) -> bool:
    """Whether two claims quote the same words: a run of at least three content words
    in quotations of both, or a whole quoted phrase of at least two content words of one
    inside a quotation of the other ("lasting partnership" in "I believe we will end
    up building a lasting partnership")."""
    return bool(shared_quotations(a, b))


def quoted_words(text: str) -> set[str]:
    """The content words of a claim's quotations."""
    return {w for phrase in quoted_phrases(text) for w in phrase}


def similarity(a: set[str], b: set[str]) -> float:
    """Overlap coefficient: shared content words over the smaller set."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


# The smallest denominator of :func:`repeats`: a claim of one or two content words ("a
# witch hunt", "Putin") would otherwise match every member holding them, and once a
# member it would pull unrelated claims into its cluster. Five, not four: with four, a
# short claim sharing two words with another statement of the speaker (a wish to impress
# the other leader) founded or joined its cluster, earlier than the statement
# itself, and became its wrong first seen (docs/claims-eval.md).
_FEWEST = 5
# How close a claim joining through any member must still be to the cluster's founder:
# matching members only would let a cluster drift from one statement to the next
# through long claims that hold two of them.
FOUNDER_FLOOR = 0.3


def repeats(a: AbstractSet[str], b: AbstractSet[str]) -> float:
    """How far a claim of content words ``a`` repeats one of content words ``b``: the
    shared words over the smaller set, or over five when both are smaller."""
    if not a or not b:
        return 0.0
    return len(a & b) / max(min(len(a), len(b)), _FEWEST)


# A name of two to four capitalized words ("Democratic National Committee", "Barack
# Obama"); a longer run is a headline in title case, not a name.
_NAME_RUN = re.compile(r"(?<![\w’'])(?:[A-Z][\w’'.-]*[ \t]+)+[A-Z][\w’'.-]*")
_NAME_WORDS_MAX = 4


@lru_cache(maxsize=1 << 14)
def name_groups(text: str) -> tuple[frozenset[str], ...]:
    """The content words (stems) of each name of two or more words in a claim's text
    (a run of two to four capitalized words holding two content words or more):
    "the Democratic National Committee" -> {democrat, nation, committe}."""
    out = []
    for m in _NAME_RUN.finditer(text):
        run = m.group(0).split()
        if len(run) > _NAME_WORDS_MAX or sum(w.isupper() for w in run) > 1:
            continue  # a line in title case or in capitals
        stems = frozenset(_content_tokens(m.group(0)))
        if len(stems) >= 2:
            out.append(stems)
    return tuple(dict.fromkeys(out))


def _units(words: AbstractSet[str], groups: tuple[frozenset[str], ...]) -> int:
    """How many things ``words`` name when each name of ``groups`` counts once."""
    n = len(words)
    for g in groups:
        n -= max(0, len(words & g) - 1)
    return n


def repeats_named(
    a: AbstractSet[str], b: AbstractSet[str], groups: tuple[frozenset[str], ...]
) -> float:
    """:func:`repeats`, with each name of two or more words of the claim (``groups``,
    :func:`name_groups`) counted as one word: three words of "Democratic National
    Committee" are one piece of evidence that two claims are one statement, not three.
    Never more than :func:`repeats` (so the index's candidate filter stays exact), and
    1 for the same words."""
    plain = repeats(a, b)
    if not groups or plain == 0.0:
        return plain
    shared = a & b
    named = _units(shared, groups) / max(min(_units(a, groups), _units(b, groups)), _FEWEST)
    return min(plain, named)


def speaker_lock_key(key: str) -> int:
    """The advisory lock key of a speaker key (a signed 64-bit digest)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def lock_speakers(session: Session, keys: set[str]) -> None:
    """Transaction-scoped advisory locks on every speaker key of a step, taken up front
    in ascending lock-key order in one statement (a function scan over the sorted array
    runs in array order). Two articles quoting the same speakers in opposite order wait
    for each other instead of each holding one speaker and waiting for the other's (a
    deadlock PostgreSQL breaks by aborting one). SQLite serializes writers already."""
    if not keys or not is_postgres(session):
        return
    session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(k)) "
            "FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY AS t(k, i)"
        ),
        {"keys": sorted({speaker_lock_key(k) for k in keys})},
    )


def _index_word(word: str) -> str:
    """A content word as the index stores it: a word longer than 64 characters (junk
    text) as ``#`` and a digest, so that an index entry stays small (PostgreSQL limits a
    btree entry to about 2.7 kB); ``#`` never occurs in a content word."""
    if len(word) <= 64:
        return word
    return "#" + hashlib.blake2b(word.encode(), digest_size=16).hexdigest()


def cluster_word_rows(cluster_id: int, key: str, text: str) -> list[dict[str, object]]:
    """The :class:`~schemas.models.ClaimClusterWord` rows of a cluster of one claim
    ``text``: one per content word, each with the number of them."""
    return word_rows(cluster_id, key, {_index_word(w) for w in content_words(text)})


def word_rows(
    cluster_id: int, key: str, words: set[str], n_words: int | None = None
) -> list[dict[str, object]]:
    n = len(words) if n_words is None else n_words
    return [
        {"cluster_id": cluster_id, "word": w, "speaker_key": key, "n_words": n}
        for w in sorted(words)
    ]


def candidate_query(
    key: str, words: set[str], threshold: float, quoted: set[str] | None = None
) -> Select[int, int, int]:
    """Cluster id, its smallest member's number of content words and how many of
    ``words`` its vocabulary holds, for every cluster of speaker ``key`` that shares
    enough of them for one of its members to possibly reach ``threshold``, or that
    holds two of the claim's ``quoted`` words (a member may quote the same words: see
    :func:`shares_quotation`): one indexed lookup per word, grouped. The values bound
    into :func:`_candidate_statement` (the claims step runs that one, built once)."""
    statement, params = _candidate_params(key, words, threshold, quoted)
    return statement.params(params)


@cache
def _candidate_statement(with_quotes: bool) -> Select[int, int, int]:
    """:func:`candidate_query`'s statement over the Core table, its values bound
    (``key``, ``words``, ``n``, ``threshold``, and ``quotes`` when ``with_quotes``):
    built once per process, where building it anew for every claim (its conditions,
    its ``IN`` list) cost more CPU than running it (issue 16)."""
    w = claimclusterword_table.c
    n = bindparam("n", type_=Integer())
    shared = func.count()
    smaller = case((w.n_words < n, w.n_words), else_=n)
    # float rounding must not drop a cluster at the threshold: the filter is a little
    # looser than the exact test that follows it
    enough = shared >= bindparam("threshold", type_=Float()) * smaller - 1e-9
    if with_quotes:
        in_quotes = func.sum(case((w.word.in_(bindparam("quotes", expanding=True)), 1), else_=0))
        enough = or_(enough, in_quotes >= _PHRASE_WORDS)
    return (
        sql_select(w.cluster_id, w.n_words, shared)
        .where(w.speaker_key == bindparam("key"), w.word.in_(bindparam("words", expanding=True)))
        .group_by(w.cluster_id, w.n_words)
        .having(enough)
    )


def _candidate_params(
    key: str, words: AbstractSet[str], threshold: float, quoted: AbstractSet[str] | None
) -> tuple[Select[int, int, int], dict[str, object]]:
    """The statement of :func:`candidate_query` and its values."""
    keyed = {_index_word(w) for w in words}
    quotes = sorted({_index_word(q) for q in quoted or set()} & keyed)
    params: dict[str, object] = {
        "key": key,
        "words": sorted(keyed),
        "n": len(keyed),
        "threshold": threshold,
    }
    with_quotes = len(quotes) >= _PHRASE_WORDS
    if with_quotes:
        params["quotes"] = quotes
    return _candidate_statement(with_quotes), params


def cluster_score(
    words: set[str], founder: str, members: list[str], threshold: float, text: str = ""
) -> float:
    """How well a claim of content ``words`` (and ``text``) repeats a cluster: the best
    :func:`repeats` over its members (:func:`repeats_named`: each name of several words
    in ``text`` counted once), if at least ``threshold``, or ``threshold`` when it
    quotes the same words as a member (:func:`shares_quotation`), provided the claim is
    still at least :data:`FOUNDER_FLOOR` close to the cluster's founding text; else 0."""
    return _score(words, founder, members, threshold, text).score


# A quoted phrase a claim shares with a member is a signal that the claim is the
# member's statement only when it is at least this share of the claim's own content
# words: three quoted words shared by two long statements are a phrase the speaker
# used in both, not the statement; and once a short claim that is mostly the phrase
# has joined a cluster, a long claim quoting the phrase in another statement must not
# join through it (the share of the smaller claim would let it: the short member
# becomes a bridge from every statement holding the phrase).
_QUOTE_SHARE = 0.2


@dataclass
class _Scored:
    score: float  # :func:`cluster_score`
    same: bool  # a member has the claim's wording (:func:`is_same_wording`)
    single: float  # the score with every member counted on the cluster's statement only


def _score(
    words: AbstractSet[str], founder: str, members: list[str], threshold: float, text: str
) -> _Scored:
    """:func:`cluster_score`, whether a member has the claim's wording
    (:func:`is_same_wording`), from one pass over the members' content words, and the
    score with each member holding two statements counted for the cluster's statement
    only (:func:`on_statement`)."""
    founder_words = _content_set(founder)
    groups = name_groups(text) if text else ()
    if repeats_named(words, founder_words, groups) < FOUNDER_FLOOR:
        return _Scored(0.0, False, 0.0)
    best = single = 0.0
    same = False
    for member in members:
        theirs = _content_set(member)
        score = repeats_named(words, theirs, groups)
        if score < threshold <= 1.0 and is_short_same_wording(words, theirs):
            # the same few words as a member ('the meeting as "unstructured"' in two
            # outlets): the same wording, which the smallest denominator must not split
            score = threshold
        best = max(best, score)
        if score >= threshold and score > single:
            on = on_statement(member, founder)
            single = max(single, score if on is None else min(score, repeats(words, on)))
        # the same wording repeats a member whole (score 1): only then compare the sets
        same = same or (score >= 1.0 and is_same_wording(words, theirs))
    if best >= threshold and best > 0:
        return _Scored(best, same, single if single >= threshold else 0.0)
    if text and quoted_phrases(text):
        for member in members:
            if _shares_distinctive_quotation(text, words, member, founder):
                return _Scored(threshold, False, threshold)
    return _Scored(0.0, False, 0.0)


def _shares_distinctive_quotation(
    text: str, words: AbstractSet[str], member: str, founder: str
) -> bool:
    """Whether a claim (``text``, content ``words``) quotes the same words as a
    ``member`` of the cluster founded by ``founder`` (:func:`shared_quotations`), in a
    phrase that is at least :data:`_QUOTE_SHARE` of the claim's own content words (not
    of the smaller of the two: a short member is no bridge for a long claim) and, when
    the member holds two statements, inside its sentences on the cluster's
    (:func:`on_statement`)."""
    found = shared_quotations(text, member)
    if not found:
        return False
    found = {r for r in found if len(r) >= _QUOTE_SHARE * len(words)}
    on = on_statement(member, founder) if found else None
    return any(on is None or on.issuperset(r) for r in found)


# Where a claim's text holds a new sentence: after ".", "!" or "?" (and the closing
# quotation marks after them), before a capital (opening marks allowed)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’»]*\s+(?=[\"“‘«]?[A-Z])")


@lru_cache(maxsize=1 << 14)
def _sentences(text: str) -> tuple[frozenset[str], ...]:
    """The content words of each sentence of a claim's text (sentences without content
    words left out)."""
    units = (_content_set(part) for part in _SENTENCE_END.split(text))
    return tuple(u for u in units if u)


@lru_cache(maxsize=1 << 14)
def on_statement(member: str, founder: str) -> frozenset[str] | None:
    """The content words of the sentences of a cluster's ``member`` that are on the
    statement of the cluster founded by ``founder`` (each at least
    :data:`FOUNDER_FLOOR` close to it, by :func:`repeats`), when the member also holds
    sentences that are not (a quotation running over two statements: the chaining
    case); ``None`` when the whole member counts (one sentence, all of them on the
    statement, or none). A claim then repeats the member only as far as it repeats
    those sentences, so that a claim holding two statements joins one cluster and does
    not bring the other statement's claims into it."""
    if not _SENTENCE_END.search(member):
        return None  # one sentence (most claims): no split, no words to count
    units = _sentences(member)
    if len(units) < 2:
        return None
    founder_words = _content_set(founder)
    on = [u for u in units if repeats(u, founder_words) >= FOUNDER_FLOOR]
    if not on or len(on) == len(units):
        return None
    return frozenset().union(*on)


@lru_cache(maxsize=1 << 14)
def quoted_sentences(text: str) -> tuple[tuple[str, ...], ...]:
    """Each sentence of each quotation in a claim's text, as its content words in order
    (sentences without content words left out)."""
    out = (
        tuple(_content_tokens(part))
        for segment in _quoted_segments(text)
        for part in _SENTENCE_END.split(segment)
    )
    return tuple(dict.fromkeys(t for t in out if t))


# The fewest content words in a row that a cluster's founder must share with a quoted
# sentence to count as one of its parts (:func:`parts_of_one_sentence`): four, so that a common
# phrase ("a good thing", "a witch hunt") is no part.
_PART_WORDS = 4


def _part_of(sentence: tuple[str, ...], founder: str) -> tuple[int, int] | None:
    """Where in a quoted ``sentence`` (content words) the founder's words run for at
    least :data:`_PART_WORDS` in a row (the longest such run), or ``None``."""
    run, end = _longest_run_end(sentence, tuple(_content_tokens(founder)))
    return (end - run, end) if run >= _PART_WORDS else None


def parts_of_one_sentence(text: str, founder: str, other: str) -> bool:
    """Whether a claim (``text``, one sentence) quotes a sentence of which the founders
    of two clusters (``founder``, ``other``) are two different parts: each founder's
    words run in it for :data:`_PART_WORDS` content words or more, in places that do not
    overlap. Outlets quote one sentence of a speaker (a tweet, one line of an answer) in
    pieces: "has NEVER been emptier" in one report, "many years of ministry neglect"
    in another, sharing no words, so each piece founds a cluster; the report
    quoting the whole sentence shows them one statement. Two sentences are not one
    statement by this rule (a quotation running over two statements is the chaining
    case, :func:`on_statement`), nor is a claim of more than one sentence."""
    if _SENTENCE_END.search(text):
        return False
    for sentence in quoted_sentences(text):
        if len(sentence) < 2 * _PART_WORDS:
            continue
        a = _part_of(sentence, founder)
        b = _part_of(sentence, other) if a is not None else None
        if a is not None and b is not None and (a[1] <= b[0] or b[1] <= a[0]):
            return True
    return False


# The fewest content words of a short claim that joins a member with exactly its words
# (:func:`is_short_same_wording`).
_SHORT_SAME = 2


def is_short_same_wording(a: AbstractSet[str], b: AbstractSet[str]) -> bool:
    """Whether a claim of content words ``a`` has exactly the words of a member ``b``,
    at least :data:`_SHORT_SAME` of them: two outlets reporting one statement in the
    same few words ('described the talks as "chaotic"': ``talk``,
    ``chaotic``). The smallest denominator (:data:`_FEWEST`) keeps a short claim
    from joining a member that merely holds its words (2 of 5 is under the threshold),
    which also kept two identical short wordings apart, each founding a cluster of
    its own. A claim identical to a member is no bridge: it brings no word the member
    lacks, and the founder floor still applies. One word is not a wording."""
    return len(a) >= _SHORT_SAME and a == b


def is_same_wording(a: AbstractSet[str], b: AbstractSet[str]) -> bool:
    """Whether two claims are the same wording: the same content words (stems), at least
    :data:`_FEWEST` of them (two claims of one or two shared words, "a witch hunt",
    are not evidence of one statement)."""
    return len(a) >= _FEWEST and a == b


# The day a report gives a statement: a reporting verb with a day name ("said Friday",
# "tweeted on Saturday", "told Radio Nord on Sunday", "on Sunday night said", "said
# yesterday"), read in the claim's sentence outside its content.
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_CUES = (
    r"(?:said|says|told|tweeted|wrote|added|stated|declared|insisted|argued|remarked"
    r"|posted|explained)"
)
_DAY_WORD = "|".join(_DAY_NAMES)
_DAY_AFTER_CUE = re.compile(
    rf"\b{_DAY_CUES}\b[^.;:!?\"“”]{{0,40}}?\b(?:(?:on|last|earlier|this)\s+)?"
    rf"({_DAY_WORD}|yesterday)\b(?!\s*['’]s)",
    re.IGNORECASE,
)
_DAY_BEFORE_CUE = re.compile(
    rf"\b(?:on|last)\s+({_DAY_WORD})\b[^.;:!?\"“”]{{0,40}}?\b{_DAY_CUES}\b", re.IGNORECASE
)
# Statements whose reports date them this many days apart or more are two occasions: one
# day apart is still one ("recorded Saturday, aired Sunday"; "Sunday night" in the
# speaker's zone is Monday in UTC).
OCCASION_DAYS = 2


@lru_cache(maxsize=1 << 14)
def statement_day(sentence: str, text: str, at: datetime | None) -> date | None:
    """The day a claim's report says its statement was made, when the report says it: a
    reporting verb with a day name in the claim's ``sentence`` outside its content
    ``text`` ("Trump said Friday", "tweeted on Saturday", "said yesterday"), the latest
    such day on or before the report's date (``at``, its publication time). ``None``
    when the sentence names no day ("Monday's summit" is no day of a statement)."""
    if not sentence or at is None:
        return None
    i = sentence.find(text) if text else -1
    if i < 0:
        return None
    outside = f"{sentence[:i]} {sentence[i + len(text) :]}"
    m = _DAY_AFTER_CUE.search(outside) or _DAY_BEFORE_CUE.search(outside)
    if m is None:
        return None
    word = m.group(1).lower()
    reported = at.date()
    if word == "yesterday":
        return reported - timedelta(days=1)
    return reported - timedelta(days=(reported.weekday() - _DAY_NAMES.index(word)) % 7)


def other_occasion(day: date | None, days: AbstractSet[date]) -> bool:
    """Whether a claim dated ``day`` (:func:`statement_day`) reports another occasion
    than a cluster whose members are dated ``days``: both dated, and no member within
    :data:`OCCASION_DAYS` of it. One speaker says near-same words on two occasions (a
    tweet on Saturday, an answer on Monday, both blaming the same predecessor), which
    words alone cannot tell apart; the reports that date them can."""
    return (
        day is not None and bool(days) and all(abs((day - d).days) >= OCCASION_DAYS for d in days)
    )


@dataclass
class Candidate:
    """A cluster a claim repeats (:func:`cluster_score` above 0)."""

    cluster_id: int
    score: float
    n_members: int
    same_wording: bool  # a member has the claim's wording (:func:`is_same_wording`)
    founder: str = ""  # the cluster's founding text (:func:`parts_of_one_sentence`)


def scored_clusters(
    session: Session,
    key: str,
    words: AbstractSet[str],
    threshold: float,
    text: str = "",
    pending: dict[int, list[tuple[str, date | None]]] | None = None,
    day: date | None = None,
) -> list[Candidate]:
    """Every cluster of speaker ``key`` that a claim of content ``words`` (and ``text``)
    repeats (:func:`cluster_score` above 0), best first: the highest score, then the
    cluster with the most members (the one most outlets carry, not a stray founded by a
    fragment of the statement), then the oldest (lowest id).

    Every member counts, not only the claim that founded the cluster, so a cluster
    grows as outlets reword it. The index (``claimclusterword``) holds each cluster's
    vocabulary (the content words of all its members) and its smallest member's word
    count: a member of ``m`` content words sharing ``s`` of the claim's ``n`` scores at
    most ``s / min(m, n)``, and the vocabulary shares at least ``s``, so a cluster whose
    vocabulary shares fewer than ``threshold * min(m_min, n)`` holds no member that can
    match by its words; a cluster holding two of the words the claim ``text`` quotes is
    kept too, as a member may quote the same words (:func:`shares_quotation`). Only the
    texts of the clusters left (founder and members) are read and scored.

    ``pending``: members not written yet (the texts and days of claims the caller has
    placed in each cluster since its last write: :func:`assign_clusters`), counted with
    those read. ``day``: the day the claim's report gives its statement
    (:func:`statement_day`); a cluster whose members are dated another occasion
    (:func:`other_occasion`) is not repeated, however close the words."""
    if not words:
        return []
    statement, params = _candidate_params(key, words, threshold, quoted_words(text))
    rows = session.execute(statement, params).all()
    if not rows:
        return []
    candidates = sorted({r[0] for r in rows})
    founders: dict[int, str] = {}
    members: dict[int, list[str]] = {cid: [] for cid in candidates}
    days: dict[int, set[date]] = {cid: set() for cid in candidates}
    # the founders' and the members' texts in one statement (a member's order does not
    # change the score: :func:`_score` takes the best of them); the members' sentences and
    # report times only for a dated claim, the only one whose occasion can differ
    dated = day is not None
    for row in session.execute(_TEXTS_DATED if dated else _TEXTS, {"ids": candidates}):
        cluster_id, is_member, body = row[0], row[1], row[2]
        if is_member:
            members[cluster_id].append(body)
            if dated and (said := statement_day(row[3], body, row[4])) is not None:
                days[cluster_id].add(said)
        else:
            founders[cluster_id] = body
    for cluster_id, held in (pending or {}).items():
        if cluster_id in members:
            members[cluster_id].extend(body for body, _ in held)
            days[cluster_id].update(said for _, said in held if said is not None)
    out: list[Candidate] = []
    single: dict[int, float] = {}
    for cluster_id in candidates:
        founder = founders.get(cluster_id)
        if founder is None or other_occasion(day, days[cluster_id]):
            continue
        texts = members[cluster_id] or [founder]
        scored = _score(words, founder, texts, threshold, text)
        if scored.score > 0:
            out.append(Candidate(cluster_id, scored.score, len(texts), scored.same, founder))
            single[cluster_id] = scored.single
    if len(out) > 1 and any(single[c.cluster_id] > 0 for c in out):
        # a claim repeating two clusters joins one it repeats on that cluster's
        # statement, not one it reaches only through a member holding two statements
        out = [c for c in out if single[c.cluster_id] > 0]
    out.sort(key=lambda c: (-c.score, -c.n_members, c.cluster_id))
    return out


def best_cluster(
    session: Session, key: str, words: set[str], threshold: float, text: str = ""
) -> int | None:
    """The cluster of speaker ``key`` that a claim of content ``words`` repeats best
    (:func:`scored_clusters`), if any."""
    found = scored_clusters(session, key, words, threshold, text)
    return found[0].cluster_id if found else None


def merge_clusters(session: Session, keep: int, gone: int) -> None:
    """Move every claim of cluster ``gone`` into cluster ``keep`` (of the same speaker
    key), with its words into ``keep``'s vocabulary, and delete ``gone``. The caller
    holds the speaker's lock (:func:`lock_speakers`) and refreshes ``keep``."""
    w = claimclusterword_table.c
    session.execute(update(Claim).where(col(Claim.cluster_id) == gone).values(cluster_id=keep))
    rows = session.execute(
        sql_select(w.word, w.n_words, w.speaker_key).where(w.cluster_id == gone)
    ).all()
    session.execute(delete(claimclusterword_table).where(w.cluster_id == gone))
    if rows:
        _add_words(session, keep, rows[0][2], {r[0] for r in rows}, min(r[1] for r in rows))
    cluster = session.get(ClaimCluster, gone)
    if cluster is not None:
        session.delete(cluster)
    session.flush()


def _grow_index(session: Session, cluster_id: int, key: str, words: AbstractSet[str]) -> None:
    """Add a new member's content words to its cluster's vocabulary, and keep the
    smallest member's word count on every row of the cluster."""
    keyed = {_index_word(w) for w in words}
    _add_words(session, cluster_id, key, keyed, len(keyed))


# The statements of the clustering's loop, over the Core tables and built once with
# bound values (issue 16): per claim they were built anew (their ``IN`` lists, the ORM
# entities' columns), and an ORM statement flushed the session before it ran.
_W = claimclusterword_table.c
_IDS: Any = bindparam("ids", expanding=True)
_TEXTS = (
    sql_select(claimcluster_table.c.id, literal(0, Integer()), claimcluster_table.c.text)
    .where(claimcluster_table.c.id.in_(_IDS))
    .union_all(
        sql_select(claim_table.c.cluster_id, literal(1, Integer()), claim_table.c.text).where(
            claim_table.c.cluster_id.in_(_IDS)
        )
    )
)
# The same with each member's sentence and report time (:func:`statement_day`).
_TEXTS_DATED = (
    sql_select(
        claimcluster_table.c.id,
        literal(0, Integer()),
        claimcluster_table.c.text,
        literal(None, Text()),
        literal(None, UTCDateTime()),
    )
    .where(claimcluster_table.c.id.in_(_IDS))
    .union_all(
        sql_select(
            claim_table.c.cluster_id,
            literal(1, Integer()),
            claim_table.c.text,
            claim_table.c.sentence,
            claim_table.c.article_at,
        ).where(claim_table.c.cluster_id.in_(_IDS))
    )
)
_WORDS_OF = sql_select(_W.word, _W.n_words).where(_W.cluster_id == bindparam("cluster_id"))
_SET_SMALLEST = (
    update(claimclusterword_table)
    .where(_W.cluster_id == bindparam("cid"))
    .values(n_words=bindparam("smallest"))
)
_INSERT_WORDS = sql_insert(claimclusterword_table)
_SET_TEXT = (
    update(claimcluster_table)
    .where(claimcluster_table.c.id == bindparam("cid"))
    .values(text=bindparam("text"))
)
_NEW_CLUSTER = (
    sql_insert(claimcluster_table)
    .values(
        speaker_key=bindparam("speaker_key"),
        speaker=bindparam("speaker"),
        text=bindparam("text"),
        n_articles=0,
        n_outlets=0,
        created_at=bindparam("created_at", type_=UTCDateTime()),
    )
    .returning(claimcluster_table.c.id)
)
_SET_CLUSTER = (
    update(claim_table)
    .where(claim_table.c.id == bindparam("claim_id"))
    .values(cluster_id=bindparam("cid"))
)


def _add_words(
    session: Session, cluster_id: int, key: str, keyed: AbstractSet[str], n_words: int
) -> None:
    """Add index words ``keyed`` of a member of ``n_words`` content words (or of a
    merged cluster whose smallest member had that many) to ``cluster_id``'s vocabulary,
    keeping the smallest member's word count on every row of the cluster."""
    have = dict(session.execute(_WORDS_OF, {"cluster_id": cluster_id}).all())
    smallest = min([n_words, *have.values()])
    if have and smallest < min(have.values()):
        session.execute(_SET_SMALLEST, {"cid": cluster_id, "smallest": smallest})
    new = keyed - set(have)
    if new:
        session.execute(_INSERT_WORDS, word_rows(cluster_id, key, set(new), smallest))


def _write_pending(
    session: Session,
    placed: list[tuple[Claim, int]],
    pending: dict[int, list[tuple[str, date | None]]],
) -> None:
    """Write the clusters of the claims placed since the last write (one statement for
    all of them) and mark them written on the claims' objects."""
    if placed:
        session.execute(
            _SET_CLUSTER,
            [{"claim_id": claim.id, "cid": found} for claim, found in placed],
        )
        for claim, found in placed:
            set_committed_value(claim, "cluster_id", found)
    placed.clear()
    pending.clear()


def assign_clusters(
    session: Session,
    article: Article,
    claims: list[Claim],
    threshold: float,
    *,
    refresh: bool = True,
) -> set[int]:
    """Give every claim of ``article`` a cluster; return the clusters touched.

    A claim joins the cluster of its speaker it repeats best (:func:`scored_clusters`)
    and adds its words to the cluster's vocabulary, or starts a new cluster. When the
    claim has the same wording (:func:`is_same_wording`) as a member of the cluster it
    joins and as a member of another cluster it repeats, the two clusters hold one
    statement (a poor founder, a fragment or a neighbouring sentence, kept its later
    wordings out of the first cluster): the other cluster is merged into the one joined
    (:func:`merge_clusters`; the speaker's lock is held). The same when the claim quotes
    one sentence of which the founders of the cluster it joins and of another it
    repeats are separate pieces (:func:`parts_of_one_sentence`); the merged cluster's
    text (its founder) is then the claim's, the whole sentence. A claim merely
    repeating two clusters, such as a long quotation holding two statements, merges
    nothing.

    The claims' clusters are written together at the end (or before a merge, which
    moves claims in the database): until then the claims placed are counted as members
    from memory (``pending``), as the clusters' vocabulary is written as it grows.
    ``refresh=False`` leaves the touched clusters' counts and first seen to the caller
    (:func:`recluster` refreshes them once at its end)."""
    touched: set[int] = set()
    keyed = [(claim, speaker_key(claim.speaker_resolved or claim.speaker)) for claim in claims]
    lock_speakers(session, {key for _, key in keyed if key})
    placed: list[tuple[Claim, int]] = []  # claims placed, their cluster not written yet
    pending: dict[int, list[tuple[str, date | None]]] = {}  # their texts and days, by cluster
    with session.no_autoflush:
        for claim, key in keyed:
            if not key:
                continue
            words = _content_set(claim.text)
            day = statement_day(claim.sentence, claim.text, claim.article_at)
            scored = scored_clusters(session, key, words, threshold, claim.text, pending, day)
            if not scored:
                speaker = claim.speaker_resolved or claim.speaker
                found = int(
                    session.execute(
                        _NEW_CLUSTER,
                        {
                            "speaker_key": key,
                            "speaker": speaker,
                            "text": claim.text,
                            "created_at": utcnow(),
                        },
                    ).scalar_one()
                )
                rows = cluster_word_rows(found, key, claim.text)
                if rows:
                    session.execute(_INSERT_WORDS, rows)
            else:
                found = scored[0].cluster_id
                founder = scored[0].founder
                gone: set[int] = set()
                for other in scored[1:]:
                    if parts_of_one_sentence(claim.text, founder, other.founder):
                        # two pieces of the sentence the claim quotes whole: one
                        # statement, founded now by the whole sentence, so that later
                        # reports of either piece are close to its founder
                        _write_pending(session, placed, pending)
                        merge_clusters(session, found, other.cluster_id)
                        session.execute(_SET_TEXT, {"cid": found, "text": claim.text})
                        founder = claim.text
                        gone.add(other.cluster_id)
                        touched.discard(other.cluster_id)
                if scored[0].same_wording:
                    for other in scored[1:]:
                        if other.same_wording and other.cluster_id not in gone:
                            _write_pending(session, placed, pending)
                            merge_clusters(session, found, other.cluster_id)
                            touched.discard(other.cluster_id)
                _grow_index(session, found, key, words)
            placed.append((claim, found))
            pending.setdefault(found, []).append((claim.text, day))
            touched.add(found)
        _write_pending(session, placed, pending)
    if refresh:
        refresh_clusters(session, touched)
    return touched


def claim_order(article: Article, claim: Claim) -> tuple[Any, ...]:
    """Where a claim comes in :func:`recluster`: its article's time in the order of who
    was first (:func:`worker.claims.firstseen.order_key`'s time: the publication time, a
    day at its end, else the feed entry's time, else discovery), then the article's URL
    (its identity, the same in every database; not its id or discovery time, which
    follow the order the articles arrived in), then the claim's place in the text."""
    at = (
        article.published_sort_at
        or article.published_at
        or article.entry_published_at
        or article.discovered_at
    )
    return (at, article.url, claim.start, claim.end, claim.verb, claim.text)


def recluster(session: Session, threshold: float, keys: AbstractSet[str] | None = None) -> int:
    """Cluster the stored claims of speaker ``keys`` (every clustered claim when
    ``None``) again from nothing, in an order that depends on the articles only
    (:func:`claim_order`), and return how many clusters they make.

    Live clustering is online: a claim joins the best cluster there is when its article
    is read, so the same articles read in another order can leave a claim in another
    cluster (a claim repeating two statements founds one cluster when it comes first
    and joins whichever it repeats best when it comes last). The same stored claims
    reclustered here give the same clusters whatever order they arrived in, and two
    databases holding the same articles agree. Clusters go with their word rows; each
    article's claims of those keys are then placed by :func:`assign_clusters`, as the
    claims step places them, with every speaker lock of ``keys`` held for the whole
    run (live claims of those speakers wait). The counts and first seen are refreshed
    once, at the end. Nothing is committed."""
    k = claimcluster_table.c
    of_keys = k.speaker_key.in_(sorted(keys)) if keys is not None else true()
    if keys is None:
        keys = set(session.scalars(sql_select(k.speaker_key).distinct()).all())
    lock_speakers(session, set(keys))
    if not keys:
        return 0
    clusters = sql_select(k.id).where(of_keys).scalar_subquery()
    claim_ids = list(
        session.scalars(sql_select(claim_table.c.id).where(claim_table.c.cluster_id.in_(clusters)))
    )
    session.execute(
        update(claim_table).where(claim_table.c.cluster_id.in_(clusters)).values(cluster_id=None)
    )
    session.execute(delete(claimclusterword_table).where(_W.cluster_id.in_(clusters)))
    session.execute(delete(claimcluster_table).where(of_keys))
    session.expire_all()
    by_article: dict[int, list[Claim]] = {}
    for chunk in range(0, len(claim_ids), 500):
        ids = claim_ids[chunk : chunk + 500]
        for claim in session.exec(select(Claim).where(col(Claim.id).in_(ids))):
            by_article.setdefault(claim.article_id, []).append(claim)
    articles = {
        a.id: a
        for chunk in range(0, len(by_article), 500)
        for a in session.exec(
            select(Article).where(col(Article.id).in_(list(by_article)[chunk : chunk + 500]))
        )
    }
    order = sorted(
        ((claim_order(articles[aid], c), aid, c.id) for aid, cs in by_article.items() for c in cs),
    )
    claim_of = {c.id: c for cs in by_article.values() for c in cs}
    touched: set[int] = set()
    i = 0
    while i < len(order):
        aid = order[i][1]
        j = i
        while j < len(order) and order[j][1] == aid:
            j += 1
        claims = [claim_of[cid] for _, _, cid in order[i:j]]
        touched |= assign_clusters(session, articles[aid], claims, threshold, refresh=False)
        i = j
    ids = sorted(touched)
    alive = [
        cid
        for chunk in range(0, len(ids), 500)
        for cid in session.scalars(sql_select(k.id).where(k.id.in_(ids[chunk : chunk + 500])))
    ]
    for chunk in range(0, len(alive), 500):
        refresh_clusters(session, alive[chunk : chunk + 500])
    return len(alive)


def orphan_clusters(session: Session) -> int:
    """Delete clusters left without claims (after reprocessing); return how many."""
    empty = session.exec(
        select(ClaimCluster.id)
        .outerjoin(Claim, col(Claim.cluster_id) == ClaimCluster.id)
        .group_by(col(ClaimCluster.id))
        .having(func.count(col(Claim.id)) == 0)
    ).all()
    for cid in empty:
        obj = session.get(ClaimCluster, cid)
        if obj is not None:
            session.delete(obj)
    return len(empty)
