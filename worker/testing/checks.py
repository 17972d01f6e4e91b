"""Checks of the database after a run with faults: what exactly-once processing must
leave (nothing lost, duplicated or stuck; stored claims equal to a clean extraction).
PostgreSQL only (``psycopg``), read directly, not through claimwire's own code."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass
class Integrity:
    articles: int
    distinct_urls: int
    by_state: dict[str, int]
    pending: int
    sightings_dup: int
    claims: int
    claims_dup: int
    processed_without_claims_version: int

    @property
    def stuck(self) -> int:
        return self.pending

    @property
    def duplicated(self) -> int:
        return (self.articles - self.distinct_urls) + self.sightings_dup + self.claims_dup


def integrity(database_url: str) -> Integrity:
    """Facts about the article tables that exactly-once processing must satisfy."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=5) as conn:

        def one(sql: str) -> int:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        states = {
            str(s): int(n)
            for s, n in conn.execute("SELECT state, count(*) FROM article GROUP BY state")
        }
        return Integrity(
            articles=one("SELECT count(*) FROM article"),
            distinct_urls=one("SELECT count(DISTINCT url) FROM article"),
            by_state=states,
            pending=sum(
                states.get(s, 0) for s in ("discovered", "fetched", "extracted", "deduplicated")
            ),
            sightings_dup=one(
                "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM sighting "
                "GROUP BY article_id, feed_id) t"
            ),
            claims=one("SELECT count(*) FROM claim"),
            claims_dup=one(
                # one claim per (article, span, verb); the same words said twice in
                # one article (two paragraphs) are two claims, not a duplicate
                "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM claim "
                'GROUP BY article_id, start, "end", verb) t'
            ),
            processed_without_claims_version=one(
                "SELECT count(*) FROM article WHERE state = 'processed' AND claims_version IS NULL"
            ),
        )


def claims_mismatch(database_url: str) -> list[int]:
    """Processed articles whose stored claims differ from one clean extraction of their
    stored text (a claim lost or doubled by a re-run step); their ids. Loads the
    claims model (spaCy) on first use."""
    from worker.claims import extract_claims, load_nlp
    from worker.core.settings import Settings

    nlp = load_nlp(Settings().spacy_model)
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT id, text FROM article WHERE state = 'processed' "
            "AND claims_status = 'extracted' ORDER BY id"
        ).fetchall()
        stored: dict[int, set[tuple[int, int, str]]] = {}
        spans = conn.execute('SELECT article_id, start, "end", verb FROM claim')
        for aid, start, end, verb in spans:
            stored.setdefault(int(aid), set()).add((int(start), int(end), str(verb)))
    bad = []
    for aid, text in rows:
        fresh = {(c.start, c.end, c.verb) for c in extract_claims(str(text), nlp)}
        if stored.get(int(aid), set()) != fresh:
            bad.append(int(aid))
    return bad
