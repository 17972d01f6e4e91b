"""Clustering the same claim across outlets.

Two claims share a cluster when their resolved speakers have the same key (a person's
surname, or an organisation's normalized name) and their contents are similar
(overlap of content words, a measure that tolerates rewording around the same core
statement). Different speakers never share a cluster: the speaker key is part of the
lookup, not of the score.

Concurrency: clustering for one speaker key is serialized with a transaction-scoped
advisory lock on PostgreSQL, every key of an article's claims taken up front in one
sorted order (:func:`lock_speakers`), so two articles never deadlock on them; SQLite
serializes all writers.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import Float, Select, case, func, literal, text
from sqlalchemy import insert as sql_insert
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, select

from schemas.models import Article, Claim, ClaimCluster, ClaimClusterWord

# first seen and the members' time order live in firstseen (re-exported here)
from worker.claims.firstseen import ClusterMember as ClusterMember
from worker.claims.firstseen import cluster_members as cluster_members
from worker.claims.firstseen import refresh_cluster as refresh_cluster
from worker.core.db import is_postgres

_TITLES = {
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


def _plain(word: str) -> str:
    w = word.lower()
    return w[:-2] if w.endswith(("'s", "’s")) else w


def speaker_key(speaker: str) -> str:
    """The part of a speaker that names them across articles and outlets.

    A person is their surname, whatever precedes or follows it: ``Health Minister Maria
    Novak``, ``health minister Maria Novak``, ``Opposition leader Maria Novak``, ``Novak,
    the minister``, ``Novak's statement`` -> ``novak``. A body is its whole name without
    articles: ``the Health Ministry``, ``Health Ministry``, ``a statement from the Health
    Ministry`` -> ``health ministry`` (and ``Interior Ministry`` -> ``interior ministry``,
    another speaker); a person named in the speaker wins over a body (``Civic Party
    leader Maria Novak`` -> ``novak``). A description
    without a name keeps its words (``the minister`` -> ``minister``). Empty for an
    unknown speaker or a bare pronoun."""
    words = [w for w in _WORD.findall(speaker) if w]
    if not words:
        return ""
    plain = [_plain(w) for w in words if _plain(w) not in _STOP]
    # "the ministry's statement" is the ministry
    fallback = " ".join([w for w in plain if w not in _UTTERANCES] or plain)
    body: str | None = None
    # Runs of capitalized words (articles and other stop words break a run).
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        if words[i][:1].isupper() and _plain(words[i]) not in _STOP:
            j = i
            while j + 1 < len(words) and words[j + 1][:1].isupper():
                if _plain(words[j + 1]) in _STOP:
                    break
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    for a, b in runs:
        run = [_plain(w) for w in words[a : b + 1]]
        if any(w in _BODIES for w in run):
            body = body or " ".join(run)
            continue
        names = [w for w in run if w.rstrip(".") not in _TITLES]
        if not names:
            continue
        if a == 0 and b == 0 and len(words) > 1 and not words[1][:1].isupper():
            # "Opposition leader ...": a common noun capitalized at the start.
            nxt = _plain(words[1])
            if nxt not in _STOP and nxt not in _UTTERANCES:
                continue
        possessive = words[b].lower() != run[-1]
        if possessive and b + 1 < len(words) and _plain(words[b + 1]) not in _UTTERANCES:
            continue  # a person's possessive heads their words, or someone else
        return names[-1]
    # "a statement from the Health Ministry", "spokesman for the Health Ministry": the body
    return body or fallback


def content_words(content: str) -> set[str]:
    out = set()
    for w in _WORD.findall(content.lower()):
        if w in _STOP or len(w) < 3:
            continue
        out.add(w[:-1] if len(w) > 4 and w.endswith("s") else w)
    return out


def similarity(a: set[str], b: set[str]) -> float:
    """Overlap coefficient: shared content words over the smaller set."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


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
    """The :class:`~schemas.models.ClaimClusterWord` rows of a cluster: one per content
    word of its text, each with the number of them."""
    words = {_index_word(w) for w in content_words(text)}
    return [
        {"cluster_id": cluster_id, "word": w, "speaker_key": key, "n_words": len(words)}
        for w in sorted(words)
    ]


def candidate_query(key: str, words: set[str], threshold: float) -> Select[int, int, int]:
    """Cluster id, its number of content words and how many of ``words`` it shares, for
    every cluster of speaker ``key`` that shares enough of them to possibly reach
    ``threshold`` (see :func:`best_cluster`): one indexed lookup per word, grouped."""
    keyed = {_index_word(w) for w in words}
    n = len(keyed)
    w = ClaimClusterWord
    shared = func.count()
    smaller = case((col(w.n_words) < n, col(w.n_words)), else_=n)
    # float rounding must not drop a cluster at the threshold: the filter is a little
    # looser than the exact test that follows it
    enough = shared >= literal(threshold, Float) * smaller - 1e-9
    return (
        sql_select(col(w.cluster_id), col(w.n_words), shared)
        .where(col(w.speaker_key) == key, col(w.word).in_(sorted(keyed)))
        .group_by(col(w.cluster_id), col(w.n_words))
        .having(enough)
    )


def best_cluster(session: Session, key: str, words: set[str], threshold: float) -> int | None:
    """The cluster of speaker ``key`` whose text is most similar to ``words`` (a claim's
    content words), if that similarity is at least ``threshold`` and above 0.

    Exactly the choice of scoring every cluster of the key with :func:`similarity`, but
    only clusters sharing enough words with the claim are read: a cluster of ``m``
    content words sharing ``s`` of the claim's ``n`` scores ``s / min(m, n)``, so one
    with ``s < threshold * min(m, n)`` cannot reach the threshold. The words come from
    the index (``claimclusterword``, keyed by speaker key and word), counted per cluster
    in SQL; the exact score is then computed from the shared count and the word counts.

    Ties (several clusters with the best score) go to the lowest cluster id, the oldest
    cluster. The scan this replaces kept the first best in the order the database
    returned the speaker's clusters, with no ORDER BY: on SQLite the speaker-key index's
    order (ascending id, the same choice); on PostgreSQL the table's physical order,
    which an UPDATE of a cluster's counts can change."""
    if not words:
        return None
    n = len({_index_word(w) for w in words})
    rows = session.execute(candidate_query(key, words, threshold)).all()
    best: tuple[float, int | None] = (0.0, None)
    for cluster_id, n_words, n_shared in sorted(rows):
        score = n_shared / min(n_words, n)
        if score > best[0]:
            best = (score, cluster_id)
    return best[1] if best[0] >= threshold else None


def assign_clusters(
    session: Session, article: Article, claims: list[Claim], threshold: float
) -> set[int]:
    """Give every claim of ``article`` a cluster; return the clusters touched.

    A claim joins its speaker's most similar cluster (:func:`best_cluster`), or starts a
    new one, indexed by its content words."""
    touched: set[int] = set()
    keyed = [(claim, speaker_key(claim.speaker_resolved or claim.speaker)) for claim in claims]
    lock_speakers(session, {key for _, key in keyed if key})
    for claim, key in keyed:
        if not key:
            continue
        found = best_cluster(session, key, content_words(claim.text), threshold)
        if found is None:
            cluster = ClaimCluster(
                speaker_key=key, speaker=claim.speaker_resolved or claim.speaker, text=claim.text
            )
            session.add(cluster)
            session.flush()
            assert cluster.id is not None
            rows = cluster_word_rows(cluster.id, key, cluster.text)
            if rows:
                session.execute(sql_insert(ClaimClusterWord), rows)
            found = cluster.id
        claim.cluster_id = found
        touched.add(found)
    session.flush()
    for cluster_id in touched:
        refresh_cluster(session, cluster_id)
    return touched


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
