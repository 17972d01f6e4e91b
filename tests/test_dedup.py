"""Deduplication: exact and near copies, canonical choice, containment, templates,
and two workers placing copies of one text at the same moment (PostgreSQL, SQLite).

Texts are invented here. PostgreSQL tests create a scratch database at 127.0.0.1:5432
(user postgres); without PostgreSQL they skip, unless CI=true (then they fail).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from schemas.models import (
    Article,
    ArticleSignature,
    ArticleState,
    Claim,
    DedupBand,
    DedupSample,
    DupGroup,
)
from worker.core.db import dispose_engines, get_engine, init_db
from worker.core.settings import Settings, reset_settings
from worker.dedup import deduplicate, sketch
from worker.dedup import groups as dedup_groups
from worker.dedup import index as dedup_index

T = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)

STORY = """HARLOW BAY (Wire) - Dock workers at the port of Harlow Bay walked off the job on
Tuesday after talks over pay and automation broke down late on Monday night, halting the
loading of container ships at the busiest harbour on the northern coast.
The union representing about 4,300 crane operators, checkers and lashers said its members
would stay out for at least 72 hours unless the port authority returned to the table with
a written guarantee that no jobs would be lost to the automated gantry cranes ordered last
year.
"We have asked for the same thing for eighteen months, and every time we are told to wait
for the next quarterly review," said union secretary Marta Quillon, speaking outside the
main gate as pickets gathered in the rain.
The port authority said in a statement that it regretted the action and that the offer on
the table, a raise of 4.5 percent over two years plus a retraining fund, was fair and
affordable. It said emergency cargo, including medicines and fuel for the island ferries,
would still be handled under an agreement reached with the union on Sunday.
Shipping lines began diverting vessels to the smaller terminals at Corrin and Eastwick,
where managers warned that yards could fill within days. Freight forwarders said the
stoppage could add a week to deliveries of furniture, electronics and car parts.
The regional transport minister, Oskar Brandt, urged both sides to accept mediation and
said the government was not planning to intervene for now. Analysts at Northgate Securities
estimated that each day of the strike would cost the regional economy about 38 million
crowns in delayed trade.
The last major stoppage at Harlow Bay, in 2019, lasted nine days and ended with a
three-year contract that expires at the end of this month."""

NEAR_MISS = """Harlow Bay's container port fell silent this week as stevedores began a
three-day strike, the first in five years, in a dispute centred on the arrival of
self-driving cranes. Union leader Marta Quillon told reporters the walkout could be
extended if managers refused to put job protections in writing. Port executives described
their proposal, which includes a pay rise of 4.5 percent and money for retraining, as
generous, and said that medicines and ferry fuel would continue to move. Several carriers
have rerouted ships to Corrin and Eastwick, and importers expect delays of about a week.
Transport minister Oskar Brandt called for mediation but ruled out government action for
the moment. One brokerage put the daily cost to the region at 38 million crowns. The
previous strike, in 2019, went on for nine days."""

SECOND_STORY = """The city council of Marrow Vale approved a plan on Thursday to turn the
disused tram depot on Linden Street into a covered market with sixty stalls, a public
kitchen and a rooftop garden, ending four years of argument over the site.
Councillors voted 23 to 9 in favour after a debate that ran past midnight. Supporters said
the market would bring life back to a neighbourhood that lost its department store and two
banks in the past decade; opponents questioned the cost, put at 41 million crowns, and the
plan to pay for part of it with a new parking levy.
Work is due to start in the spring and the first traders could move in within two years.
The depot, built in 1911, is listed, so its brick facade and iron roof must be kept. The
architects said the old inspection pits would become cold stores for the food stalls.
Local bakers and farmers who have sold from vans on the street for years said they hoped
rents would stay low enough for small businesses."""

BOILER_A_HEAD = "Advertisement. Skip to main content. Subscribe now for unlimited access."
BOILER_A_FOOT = (
    "Copyright 2024 The Coastal Herald. All rights reserved. This material may not be "
    "published, broadcast, rewritten or redistributed. Sign up for our morning newsletter."
)
BOILER_B_HEAD = "Breaking: live updates. Listen to this article. Share on social media."
BOILER_B_FOOT = (
    "More from Valley Times: weather, traffic, obituaries. Follow us on social media and "
    "download our app. Reporting by Wire staff; editing by the news desk."
)

# One site's template: the same long header and footer around every story.
TEMPLATE_HEAD = (
    "The Northern Ledger. Home. News. Business. Sport. Culture. Opinion. Weather. "
    "Your independent voice on the northern coast since 1887. Support our journalism: "
    "become a member today and get unlimited access to every article, our daily "
    "briefing, the crossword and the archive. Already a member? Log in."
)
TEMPLATE_FOOT = (
    "Read more: Business. Local. Region. Comments are closed for this article. "
    "The Northern Ledger is published by Ledger Media Group. Contact the newsroom, "
    "advertise with us, privacy policy, cookie settings, terms of use, careers, "
    "letters to the editor. Copyright 2024 Ledger Media Group."
)


# --- fixtures --------------------------------------------------------------------------


def _reset() -> None:
    dispose_engines()
    reset_settings()


@pytest.fixture()
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    _reset()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'deduplicate.db'}")
    init_db(settings)
    yield settings
    _reset()


@pytest.fixture()
def pg_settings(pg_url: str) -> Iterator[Settings]:
    """Settings on a fresh PostgreSQL database (conftest's ``pg_url``: fails under CI
    when PostgreSQL is missing, dropped afterwards), with claimwire's schema."""
    _reset()
    try:
        settings = Settings(database_url=pg_url)
        init_db(settings)
        yield settings
    finally:
        _reset()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_settings(request: pytest.FixtureRequest) -> Settings:
    name = "sqlite_settings" if request.param == "sqlite" else "pg_settings"
    settings: Settings = request.getfixturevalue(name)
    return settings


def add_article(
    settings: Settings,
    text: str | None,
    *,
    host: str = "a.example",
    published: datetime | None = T,
    discovered: datetime | None = None,
    title: str | None = None,
    state: ArticleState = ArticleState.extracted,
) -> int:
    key = uuid.uuid4().hex
    with Session(get_engine(settings)) as s:
        a = Article(
            url=f"https://{host}/news/{key}",
            url_hash=key,
            host=host,
            state=state,
            text=text,
            title=title,
            published_at=published,
            discovered_at=discovered or datetime.now(UTC),
        )
        s.add(a)
        s.commit()
        assert a.id is not None
        return a.id


def run(settings: Settings, article_id: int) -> deduplicate.DedupOutcome:
    with Session(get_engine(settings)) as s:
        out = deduplicate.deduplicate_article(s, article_id, settings)
        s.commit()
        return out


def get(settings: Settings, article_id: int) -> Article:
    with Session(get_engine(settings)) as s:
        a = s.get(Article, article_id)
        assert a is not None
        return a


def stored_claim(article_id: int, verb: str, kind: str, text: str, sentence: str) -> Claim:
    """A claim as an earlier claims step (extractor "v1") stored it."""
    return Claim(
        article_id=article_id,
        speaker="Marta Quillon",
        speaker_resolved="Marta Quillon",
        verb=verb,
        kind=kind,
        text=text,
        start=0,
        end=10,
        sentence=sentence,
        extractor_version="v1",
    )


def canonicals(settings: Settings, group_id: int) -> list[int]:
    with Session(get_engine(settings)) as s:
        return [
            a.id or 0
            for a in s.exec(
                select(Article).where(
                    Article.dup_group_id == group_id,
                    Article.duplicate_of_id == None,  # noqa: E711
                )
            )
        ]


# --- text layer ------------------------------------------------------------------------


def test_normalized_hash_folds_case_whitespace_and_punctuation() -> None:
    a = sketch.normalized_text_hash("Dock workers walked off -- the job, on Tuesday!")
    b = sketch.normalized_text_hash("  dock WORKERS walked\n\noff the job on tuesday ")
    c = sketch.normalized_text_hash("Dock workers walked off the job on Wednesday")
    assert a == b
    assert a != c
    assert len(a) == 64


def test_signature_estimates_track_exact_jaccard() -> None:
    p = sketch.DEFAULT_PARAMS
    a = sketch.sketch(STORY)
    b = sketch.sketch(BOILER_A_HEAD + "\n" + STORY + "\n" + BOILER_A_FOOT)
    c = sketch.sketch(SECOND_STORY)
    assert a.signature is not None and b.signature is not None and c.signature is not None
    assert a.shingles is not None and b.shingles is not None
    exact_j, _ = sketch.exact_similarity(a.shingles, b.shingles)
    assert abs(sketch.estimated_jaccard(a.signature, b.signature) - exact_j) < 0.12
    assert sketch.estimated_jaccard(a.signature, c.signature) < 0.1
    assert a.bands is not None and a.bands.shape == (p.bands,)
    # identical texts share every bucket, unrelated ones (almost surely) none
    assert c.bands is not None and not set(a.bands.tolist()) & set(c.bands.tolist())


# --- placement -------------------------------------------------------------------------


def test_wire_copy_on_another_host_is_a_duplicate_of_the_earlier(
    any_settings: Settings,
) -> None:
    s = any_settings
    first = add_article(
        s, f"{BOILER_A_HEAD}\n{STORY}\n{BOILER_A_FOOT}", host="herald.example", published=T
    )
    copy = add_article(
        s,
        f"{BOILER_B_HEAD}\n{STORY}\n{BOILER_B_FOOT}",
        host="valley.example",
        published=T + timedelta(hours=2),
    )
    assert run(s, first).matched_by is None
    out = run(s, copy)
    assert out.advanced and out.matched_by == "near"
    a, b = get(s, first), get(s, copy)
    assert b.duplicate_of_id == first and a.duplicate_of_id is None
    assert a.dup_group_id == b.dup_group_id is not None
    assert b.state == ArticleState.deduplicated
    assert b.text_hash != a.text_hash


def test_republished_text_points_at_the_earliest(any_settings: Settings) -> None:
    s = any_settings
    first = add_article(s, STORY, host="wire.example", published=T)
    again = add_article(
        s, STORY.upper().replace(",", " ,"), host="wire.example", published=T + timedelta(days=1)
    )
    third = add_article(s, STORY, host="other.example", published=T + timedelta(days=2))
    for aid in (first, again, third):
        run(s, aid)
    assert get(s, again).duplicate_of_id == first
    assert get(s, third).duplicate_of_id == first
    assert get(s, first).duplicate_of_id is None
    # exact copies are found by hash and add nothing to the band index
    with Session(get_engine(s)) as sess:
        indexed = {r for r in sess.exec(select(DedupBand.article_id)).all()}
    assert indexed == {first}


def test_earlier_published_copy_found_later_becomes_canonical(any_settings: Settings) -> None:
    s = any_settings
    late = add_article(s, STORY, host="late.example", published=T + timedelta(hours=5))
    copy = add_article(
        s, BOILER_A_HEAD + STORY, host="copy.example", published=T + timedelta(hours=6)
    )
    run(s, late)
    run(s, copy)
    # the late one was processed as canonical and carries claims
    with Session(get_engine(s)) as sess:
        art = sess.get(Article, late)
        assert art is not None
        art.state = ArticleState.processed
        art.claims_version = "v1"
        art.claims_status = "extracted"
        sess.add(
            stored_claim(
                late, "said", "direct", "We have asked for the same thing", "We have asked."
            )
        )
        sess.commit()
    early = add_article(
        s,
        STORY + "\n" + BOILER_B_FOOT,
        host="early.example",
        published=T,  # published first, discovered last
        discovered=datetime.now(UTC) + timedelta(hours=1),
    )
    out = run(s, early)
    assert out.advanced and out.canonical_changed_to == early
    group = get(s, early).dup_group_id
    assert group is not None
    assert canonicals(s, group) == [early]
    assert get(s, late).duplicate_of_id == early
    assert get(s, copy).duplicate_of_id == early
    assert get(s, late).claims_version is None
    with Session(get_engine(s)) as sess:
        assert sess.exec(select(Claim).where(Claim.article_id == late)).all() == []
        g = sess.get(DupGroup, group)
        assert g is not None and g.canonical_article_id == early
    members = dedup_groups.group_members(Session(get_engine(s)), group)
    assert [m.article_id for m in members] == [early, late, copy]
    assert members[0].is_canonical and members[0].host == "early.example"
    assert {m.host for m in members} == {"early.example", "late.example", "copy.example"}


def test_tie_on_publication_goes_to_the_first_seen(sqlite_settings: Settings) -> None:
    s = sqlite_settings
    seen_second = add_article(s, STORY, host="b.example", discovered=T + timedelta(minutes=5))
    seen_first = add_article(s, STORY, host="a.example", discovered=T)
    run(s, seen_second)
    out = run(s, seen_first)
    assert out.canonical_changed_to == seen_first
    assert get(s, seen_second).duplicate_of_id == seen_first


def test_same_event_in_other_words_is_not_a_duplicate(any_settings: Settings) -> None:
    s = any_settings
    a = add_article(s, STORY, host="wire.example")
    b = add_article(s, NEAR_MISS, host="rewrite.example", published=T + timedelta(hours=1))
    run(s, a)
    out = run(s, b)
    assert out.matched_by is None
    assert get(s, b).duplicate_of_id is None
    assert get(s, a).dup_group_id != get(s, b).dup_group_id


def test_a_text_matching_two_groups_merges_them(any_settings: Settings) -> None:
    """Two outlets' copies wrapped in their own boilerplate are not duplicates of each
    other (J 0.66 for this short story) and make two groups; the bare text matches both:
    the groups become one, canonical the earliest, the demoted canonical's claims gone."""
    s = any_settings
    x = add_article(
        s,
        f"{BOILER_A_HEAD}\n{NEAR_MISS}\n{BOILER_A_FOOT}",
        host="x.example",
        published=T + timedelta(hours=2),
    )
    y = add_article(
        s,
        f"{BOILER_B_HEAD}\n{NEAR_MISS}\n{BOILER_B_FOOT}",
        host="y.example",
        published=T + timedelta(hours=1),
    )
    run(s, x)
    assert run(s, y).matched_by is None  # not a duplicate of x: a group of its own
    gx, gy = get(s, x).dup_group_id, get(s, y).dup_group_id
    assert gx != gy
    with Session(get_engine(s)) as sess:  # x was processed as its group's canonical
        art = sess.get(Article, x)
        assert art is not None
        art.claims_version, art.claims_status = "v1", "extracted"
        claim = stored_claim(
            x,
            "tell",
            "indirect",
            "the walkout could be extended",
            "The walkout could be extended.",
        )
        # where the claim is in x's text: in the lines the new canonical holds too
        claim.start = (art.text or "").index("the walkout")
        claim.end = claim.start + len("the walkout could be\nextended")
        sess.add(claim)
        sess.commit()
    bare = add_article(s, NEAR_MISS, host="wire.example", published=T + timedelta(hours=3))
    out = run(s, bare)
    assert out.matched_by == "near"
    groups = {get(s, aid).dup_group_id for aid in (x, y, bare)}
    assert len(groups) == 1
    group = groups.pop()
    assert group is not None and canonicals(s, group) == [y]
    assert get(s, x).duplicate_of_id == y and get(s, bare).duplicate_of_id == y
    assert get(s, x).claims_status == "duplicate" and get(s, x).claims_version is None
    with Session(get_engine(s)) as sess:
        assert sess.exec(select(Claim).where(Claim.article_id == x)).all() == []
        assert len(sess.exec(select(DupGroup)).all()) == 1
        g = sess.get(DupGroup, group)
        assert g is not None and g.canonical_article_id == y
        members = dedup_groups.group_members(sess, group)
    assert [m.article_id for m in members] == [y, x, bare]


def test_exact_copy_follows_its_match_into_the_group_it_was_merged_into(
    pg_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exact copy is placed while another worker merges its match's group away (the
    merging article linked through another member of that group, so the two steps share
    no advisory lock): the copy joins the group its match is in now, not a new group."""
    s = pg_settings
    x = add_article(
        s,
        f"{BOILER_A_HEAD}\n{NEAR_MISS}\n{BOILER_A_FOOT}",
        host="x.example",
        published=T + timedelta(hours=2),
    )
    y_text = f"{BOILER_B_HEAD}\n{NEAR_MISS}\n{BOILER_B_FOOT}"
    y = add_article(s, y_text, host="y.example", published=T + timedelta(hours=1))
    run(s, x)
    run(s, y)
    gx, gy = get(s, x).dup_group_id, get(s, y).dup_group_id
    assert gx is not None and gy is not None and gx != gy
    copy = add_article(s, y_text, host="copy.example", published=T + timedelta(hours=4))

    original = dedup_groups.lock_group
    merged: list[bool] = []

    def merge_first(session: Session, group_id: int) -> DupGroup | None:
        if not merged:  # the copy has read its match's group (gy): merge gy into gx now
            merged.append(True)
            with Session(get_engine(s)) as other:
                into, gone = original(other, gx), original(other, gy)
                assert into is not None and gone is not None
                dedup_groups.merge_groups(other, into, [gone])
                other.commit()
        return original(session, group_id)

    monkeypatch.setattr(dedup_groups, "lock_group", merge_first)
    out = run(s, copy)
    monkeypatch.setattr(dedup_groups, "lock_group", original)
    assert merged and out.matched_by == "hash"
    assert get(s, y).dup_group_id == gx
    assert get(s, copy).dup_group_id == gx and get(s, copy).duplicate_of_id == y
    with Session(get_engine(s)) as sess:
        assert [g.id for g in sess.exec(select(DupGroup)).all()] == [gx]


def test_short_text_contained_in_a_longer_one(sqlite_settings: Settings) -> None:
    s = sqlite_settings
    paragraphs = STORY.split("\n")
    short = "\n".join(paragraphs[: int(len(paragraphs) * 0.6)])
    long_id = add_article(s, STORY, host="full.example", published=T)
    short_id = add_article(s, short, host="brief.example", published=T + timedelta(hours=1))
    run(s, long_id)
    out = run(s, short_id)
    assert out.matched_by == "near"
    assert get(s, short_id).duplicate_of_id == long_id
    # the other order: the short one first, the full story later joins its group
    s2_short = add_article(s, SECOND_STORY[:700], host="brief.example", published=T)
    s2_long = add_article(s, SECOND_STORY, host="full.example", published=T + timedelta(hours=1))
    run(s, s2_short)
    run(s, s2_long)
    assert get(s, s2_long).duplicate_of_id == s2_short
    # and a text sharing only its first third is not contained
    third = add_article(s, "\n".join(paragraphs[:3]) + "\n" + SECOND_STORY[700:], host="x.example")
    assert run(s, third).matched_by is None


def test_same_template_different_body_is_not_merged(any_settings: Settings) -> None:
    s = any_settings
    a = add_article(s, f"{TEMPLATE_HEAD}\n{NEAR_MISS}\n{TEMPLATE_FOOT}", host="ledger.example")
    b = add_article(s, f"{TEMPLATE_HEAD}\n{SECOND_STORY}\n{TEMPLATE_FOOT}", host="ledger.example")
    run(s, a)
    assert run(s, b).matched_by is None
    assert get(s, a).dup_group_id != get(s, b).dup_group_id


def test_stories_on_a_template_longer_than_them_are_not_merged(any_settings: Settings) -> None:
    """A page template that extraction left in, about three times as long as each story: the
    shared template shingles must not make different stories one group (they would
    only if the template were about 8 times the body: J = |T| / (|T| + 2|B|))."""
    s = any_settings
    menu = " ".join(f"Ledger section {i} link{i} more" for i in range(90))  # ~450 words
    stories = [NEAR_MISS, SECOND_STORY, STORY.split("\n\n")[0][:900]]
    ids = [
        add_article(
            s,
            f"{TEMPLATE_HEAD}\n{menu}\n{body}\n{TEMPLATE_FOOT}",
            host="ledger.example",
            published=T + timedelta(hours=i),
        )
        for i, body in enumerate(stories)
    ]
    for aid in ids:
        assert run(s, aid).matched_by is None
    assert len({get(s, aid).dup_group_id for aid in ids}) == len(ids)
    # while the same story again on that template is a copy
    copy = add_article(
        s,
        f"{TEMPLATE_HEAD}\n{menu}\n{SECOND_STORY}\n{TEMPLATE_FOOT}",
        host="ledger.example",
        published=T + timedelta(hours=5),
    )
    run(s, copy)
    assert get(s, copy).duplicate_of_id == ids[1]


def test_title_variants_do_not_split_a_group(any_settings: Settings) -> None:
    """The extractor keeps a page's headline as the text's first line (trafilatura, an
    <h1> inside <article>): title variants make the texts differ by those words."""
    s = any_settings
    titles = (
        "Harlow Bay dock workers strike",
        "Opinion | Harlow Bay dock workers strike – The Coastal Herald",
        "Live: port strike halts Harlow Bay",
    )
    a = add_article(s, f"{titles[0]}\n{STORY}", title=titles[0], host="wire.example")
    b = add_article(
        s,
        f"{titles[1]}\n{STORY}",
        title=titles[1],
        host="herald.example",
        published=T + timedelta(hours=1),
    )
    c = add_article(
        s,
        f"{titles[2]}\n{BOILER_A_HEAD}\n{STORY}",
        title=titles[2],
        host="live.example",
        published=T + timedelta(hours=2),
    )
    d = add_article(
        s, STORY, title=titles[0], host="bare.example", published=T + timedelta(hours=3)
    )
    outcomes = [run(s, aid) for aid in (a, b, c, d)]
    assert [o.matched_by for o in outcomes] == [None, "near", "near", "near"]
    assert all(get(s, x).duplicate_of_id == a for x in (b, c, d))


def test_redelivery_and_other_states_do_nothing(sqlite_settings: Settings) -> None:
    s = sqlite_settings
    a = add_article(s, STORY)
    assert run(s, a).advanced
    before = get(s, a)
    again = run(s, a)
    assert not again.advanced and again.canonical_changed_to is None
    assert get(s, a).state_changed_at == before.state_changed_at
    fetched = add_article(s, STORY, state=ArticleState.fetched)
    assert not run(s, fetched).advanced
    assert get(s, fetched).dup_group_id is None
    assert not run(s, 10**9).advanced  # a missing article


def test_short_texts_use_the_hash_only(sqlite_settings: Settings) -> None:
    s = sqlite_settings
    short = "Port strike: dock workers walk out at Harlow Bay over automation."
    assert len(sketch.words(short)) < sketch.MIN_NEAR_WORDS
    a = add_article(s, short)
    b = add_article(s, short.lower(), published=T + timedelta(hours=1))
    c = add_article(s, short.replace("Harlow Bay", "Corrin"), published=T + timedelta(hours=2))
    e1 = add_article(s, "")
    e2 = add_article(s, None)
    for aid in (a, b, c, e1, e2):
        assert run(s, aid).advanced
    assert get(s, b).duplicate_of_id == a
    assert get(s, c).duplicate_of_id is None
    assert get(s, e1).dup_group_id != get(s, e2).dup_group_id
    with Session(get_engine(s)) as sess:
        assert sess.exec(select(ArticleSignature)).all() == []


def test_remove_article_hands_the_group_to_the_next_earliest(sqlite_settings: Settings) -> None:
    s = sqlite_settings
    a = add_article(s, STORY, published=T)
    b = add_article(s, STORY, published=T + timedelta(hours=1))
    c = add_article(s, BOILER_A_HEAD + STORY, published=T + timedelta(hours=2))
    for aid in (a, b, c):
        run(s, aid)
    with Session(get_engine(s)) as sess:
        assert deduplicate.remove_article(sess, a) == b
        sess.commit()
    assert get(s, a).dup_group_id is None and get(s, a).text_hash is None
    assert get(s, b).duplicate_of_id is None and get(s, c).duplicate_of_id == b
    with Session(get_engine(s)) as sess:
        indexed = set(sess.exec(select(DedupBand.article_id)).all())
        sampled = set(sess.exec(select(DedupSample.article_id)).all())
    assert a not in indexed and b in indexed  # the exact copy took over the index entry
    assert a not in sampled and b in sampled  # and its samples
    # a new copy still finds the group through the index
    d = add_article(s, BOILER_B_HEAD + STORY, published=T + timedelta(hours=3))
    run(s, d)
    assert get(s, d).duplicate_of_id == b


# --- containment index: short excerpts of long texts ------------------------------------

_LEXICON_TEXT = (
    "harbour council minister union strike port cranes workers talks pay automation "
    "ferry fuel medicine cargo vessel terminal freight delay market depot tram street "
    "market stall kitchen garden roof brick iron facade levy parking budget crowns vote "
    "debate midnight spring traders bakers farmers rents business neighbourhood bank "
    "store decade supporters opponents cost plan site argument architect pit cold food "
    "analyst securities economy trade contract month year week day night morning rain "
    "gate picket secretary statement offer raise fund retraining agreement emergency "
    "island coast north south east west river bridge road rail station airport school "
    "hospital police court judge lawyer witness report survey figure percent rise fall "
    "price energy power grid wind solar storm flood drought harvest wheat milk fishing "
    "boat crew captain engine repair yard inspection safety rule law bill parliament "
    "election mayor governor party leader speech promise plan reform tax grant loan"
)
_LEXICON = _LEXICON_TEXT.split()


def long_story(seed: int, n_words: int) -> str:
    """An invented text of n_words words (random words of a small lexicon, sentences of
    9 to 20 words): its 5-shingles are, in practice, its own."""
    rnd = random.Random(seed)
    out: list[str] = []
    sentence: list[str] = []
    length = rnd.randint(9, 20)
    for _ in range(n_words):
        sentence.append(rnd.choice(_LEXICON))
        if len(sentence) == length:
            out.append(" ".join(sentence).capitalize() + ".")
            sentence, length = [], rnd.randint(9, 20)
    if sentence:
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


def excerpt(text: str, start: int, n_words: int) -> str:
    return " ".join(text.split()[start : start + n_words])


def test_samples_of_a_contained_text_are_among_the_longer_texts_samples() -> None:
    """The sampling is per shingle (hash mod rate), so an excerpt's samples are a subset
    of its story's; and a 60-word excerpt of a 900-word story has enough samples to be
    checked (at least min_shared of them) for most positions: about 97 % (one in
    16 shingles sampled, 56 shingles: no sample at all with probability 0.027)."""
    found = total = 0
    for seed in range(20):
        story = sketch.sketch(long_story(seed, 900))
        assert story.samples is not None and story.shingles is not None
        for start in range(0, 800, 80):
            ex = sketch.sketch(excerpt(long_story(seed, 900), start, 60))
            assert ex.samples is not None
            assert set(ex.samples.tolist()) <= set(story.samples.tolist())
            need = sketch.min_shared(ex.shingle_count, story.shingle_count)
            total += 1
            found += int(ex.samples.size >= need)
    assert total == 200
    assert found / total >= 0.9, found


def test_short_excerpt_of_a_long_story_is_found_as_contained(any_settings: Settings) -> None:
    s = any_settings
    story = long_story(1, 900)
    brief = excerpt(story, 400, 60)
    sk_story, sk_brief = sketch.sketch(story), sketch.sketch(brief)
    assert sk_story.bands is not None and sk_brief.bands is not None
    # no LSH bucket in common (J ~ 0.06): only the containment index can find it
    assert not set(sk_story.bands.tolist()) & set(sk_brief.bands.tolist())
    assert sk_story.shingles is not None and sk_brief.shingles is not None
    j, c = sketch.exact_similarity(sk_story.shingles, sk_brief.shingles)
    assert j < 0.1 and c == 1.0
    long_id = add_article(s, story, host="full.example", published=T)
    short_id = add_article(s, brief, host="brief.example", published=T + timedelta(hours=1))
    assert run(s, long_id).matched_by is None
    with Session(get_engine(s)) as sess:
        rows = sess.exec(select(DedupSample).where(DedupSample.article_id == long_id)).all()
        assert len(rows) == sk_story.samples.size > 0  # type: ignore[union-attr]
    out = run(s, short_id)
    assert out.matched_by == "contained"
    assert get(s, short_id).duplicate_of_id == long_id
    # the other order: the excerpt first (and published first), the story joins its group
    story2 = long_story(2, 900)
    brief2 = add_article(s, excerpt(story2, 300, 60), host="brief.example", published=T)
    long2 = add_article(s, story2, host="full.example", published=T + timedelta(hours=1))
    assert run(s, brief2).matched_by is None
    assert run(s, long2).matched_by == "contained"
    assert get(s, long2).duplicate_of_id == brief2
    # an unrelated long story is nobody's duplicate
    other = add_article(s, long_story(3, 900), host="other.example")
    assert run(s, other).matched_by is None


def test_without_the_containment_index_the_excerpt_is_missed(sqlite_settings: Settings) -> None:
    """What the test above would see without the sampled-shingle index (the LSH bands
    alone): the excerpt starts a group of its own."""
    s = sqlite_settings
    params = sketch.DedupParams(sample_rate=0)
    story = long_story(1, 900)
    long_id = add_article(s, story, published=T)
    short_id = add_article(s, excerpt(story, 400, 60), published=T + timedelta(hours=1))
    for aid in (long_id, short_id):
        with Session(get_engine(s)) as sess:
            out = deduplicate.deduplicate_article(sess, aid, s, params)
            sess.commit()
        assert out.matched_by is None


def _template_site(name: str, seed: int) -> tuple[str, list[str], str]:
    """A site template (~190 words with the head and foot), five 500-word stories on it
    and a page that is only the template and a 10-word body."""
    menu = " ".join(f"{name} section {i} link{i} more" for i in range(24))  # ~120 words
    template = f"{TEMPLATE_HEAD}\n{menu}\n{{body}}\n{TEMPLATE_FOOT}"
    stories = [template.format(body=long_story(seed + i, 500)) for i in range(5)]
    page = template.format(body="Page not found. Try the search box or the front page.")
    sk_page = sketch.sketch(page)
    for story in stories:  # the page is >= 90 % contained in each story, at J < 0.5
        sk = sketch.sketch(story)
        assert sk_page.shingles is not None and sk.shingles is not None
        j, c = sketch.exact_similarity(sk_page.shingles, sk.shingles)
        assert c >= 0.9 and j < sketch.DEFAULT_PARAMS.excerpt_jaccard, (j, c)
    return template, stories, page


def test_common_samples_are_stopped_stored_no_more_and_ignored(
    sqlite_settings: Settings,
) -> None:
    """A passage carried by more articles than sample_df_max: its samples stop being
    stored (their rows stay at sample_df_max + 1) and lookups leave them out, so a
    lookup reads a bounded number of rows however common a phrase is."""
    s = sqlite_settings
    params = sketch.DedupParams(sample_df_max=2)
    boiler = long_story(50, 200)
    texts = [f"{long_story(51 + i, 600)} {boiler}" for i in range(5)]
    ids = [add_article(s, t, published=T + timedelta(hours=i)) for i, t in enumerate(texts)]
    for aid in ids:
        with Session(get_engine(s)) as sess:
            out = deduplicate.deduplicate_article(sess, aid, s, params)
            sess.commit()
        assert out.matched_by is None  # 200 shared words of 800: not duplicates
    sk = sketch.sketch(boiler, params)
    assert sk.samples is not None and sk.samples.size > 0
    common = set(sk.samples.tolist())
    with Session(get_engine(s)) as sess:
        rows = sess.exec(select(DedupSample.hash, DedupSample.article_id)).all()
        stopped = dedup_index.stopped_samples(sess, sk, params)
    per_hash: dict[int, int] = {}
    for h, _ in rows:
        per_hash[h] = per_hash.get(h, 0) + 1
    assert {h for h in common if per_hash.get(h) == 3} == common  # 5 carriers, 3 rows
    assert stopped == common
    assert dedup_index.lock_keys(sk, stopped) == dedup_index.lock_keys(
        sketch.TextSketch(sk.text_hash, sk.n_words, sk.shingle_count, sk.signature, sk.bands)
    )  # stopped samples take no lock


def test_template_page_does_not_pull_stories_on_that_template_together(
    any_settings: Settings,
) -> None:
    """Stories on one site template, and a page that is almost only that template: the
    page is contained in every story, but containment is not transitive. The stories
    never share a group, whichever comes first; the page is in the group of at most one
    of them (the first story containing it, when the page came first)."""
    s = any_settings
    # three stories, the page, two more stories
    template, bodies, page = _template_site("Ledger", 10)
    stories = [
        add_article(s, body, host="ledger.example", published=T + timedelta(hours=i))
        for i, body in enumerate(bodies)
    ]
    page_id = add_article(s, page, host="ledger.example", published=T + timedelta(hours=2))
    for aid in stories[:3]:
        assert run(s, aid).matched_by is None
    run(s, page_id)
    for aid in stories[3:]:
        assert run(s, aid).matched_by is None
    assert len({get(s, aid).dup_group_id for aid in stories}) == len(stories)
    assert all(get(s, aid).duplicate_of_id is None for aid in stories)
    # unrelated stories sharing the template are not contained in any of them
    for seed in (20, 21):
        other = add_article(s, template.format(body=long_story(seed, 500)))
        assert run(s, other).matched_by is None
    # the page first (and published first): the first story containing it joins its
    # group, the next ones contain it too but do not match that story: groups of their own
    template, bodies, page = _template_site("Courier", 30)
    page_id = add_article(s, page, host="courier.example", published=T)
    stories = [
        add_article(s, body, host="courier.example", published=T + timedelta(hours=1 + i))
        for i, body in enumerate(bodies)
    ]
    assert run(s, page_id).matched_by is None
    assert run(s, stories[0]).matched_by == "contained"
    for aid in stories[1:]:
        assert run(s, aid).matched_by is None
    groups = [get(s, aid).dup_group_id for aid in stories]
    assert len(set(groups)) == len(stories)
    assert get(s, page_id).dup_group_id == groups[0]


def test_excerpt_joins_its_story_and_a_story_quoting_it_does_not(
    any_settings: Settings,
) -> None:
    """A wire brief (60 words) published first, the full story containing it, and a live
    blog quoting the brief among other text: the story joins the brief's group, the live
    blog (which contains the brief but does not match the story) does not."""
    s = any_settings
    story = long_story(40, 900)
    brief = excerpt(story, 200, 60)
    blog = f"{long_story(41, 300)} {brief} {long_story(42, 300)}"
    brief_id = add_article(s, brief, host="wire.example", published=T)
    story_id = add_article(s, story, host="wire.example", published=T + timedelta(hours=1))
    blog_id = add_article(s, blog, host="live.example", published=T + timedelta(hours=2))
    assert run(s, brief_id).matched_by is None
    assert run(s, story_id).matched_by == "contained"
    assert run(s, blog_id).matched_by is None
    assert get(s, story_id).dup_group_id == get(s, brief_id).dup_group_id
    assert get(s, blog_id).dup_group_id != get(s, brief_id).dup_group_id


# --- concurrency -----------------------------------------------------------------------


def _race(settings: Settings, ids: list[int]) -> list[BaseException]:
    barrier = threading.Barrier(len(ids))
    errors: list[BaseException] = []

    def work(aid: int) -> None:
        try:
            barrier.wait(timeout=30)
            with Session(get_engine(settings)) as sess:
                out = deduplicate.deduplicate_article(sess, aid, settings)
                sess.commit()
                assert out.advanced
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(aid,)) for aid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def _check_one_group(settings: Settings, ids: list[int], earliest: int) -> None:
    arts = [get(settings, aid) for aid in ids]
    groups = {a.dup_group_id for a in arts}
    assert len(groups) == 1 and None not in groups, groups
    group = groups.pop()
    assert group is not None
    assert canonicals(settings, group) == [earliest]
    assert all(a.duplicate_of_id == earliest for a in arts if a.id != earliest)
    with Session(get_engine(settings)) as sess:
        g = sess.get(DupGroup, group)
        assert g is not None and g.canonical_article_id == earliest


def _copies(settings: Settings, story: str, n: int) -> tuple[list[int], int]:
    """n copies of one story (exact and near), the earliest published created last."""
    variants = [story, BOILER_A_HEAD + story, story + BOILER_B_FOOT, story.upper()]
    ids = [
        add_article(
            settings,
            variants[i % len(variants)],
            host=f"outlet{i}.example",
            published=T + timedelta(minutes=10 * (n - i)),
        )
        for i in range(n)
    ]
    return ids, ids[-1]


def _excerpt_round(settings: Settings, seed: int, excerpt_first: bool) -> None:
    """A long story, copies of it and a 60-word excerpt at once: the excerpt shares no
    LSH bucket with them, only sampled shingles (their advisory locks order it)."""
    story = long_story(seed, 900)
    variants = [story, BOILER_A_HEAD + story, story + BOILER_B_FOOT, story.upper()]
    ids = [
        add_article(
            settings,
            v,
            host=f"outlet{i}.example",
            published=T + timedelta(minutes=10 * (i + 1)),
        )
        for i, v in enumerate(variants)
    ]
    brief = add_article(
        settings,
        excerpt(story, 500, 60),
        host="brief.example",
        published=T if excerpt_first else T + timedelta(hours=5),
    )
    errors = _race(settings, [*ids, brief])
    assert not errors, errors
    _check_one_group(settings, [*ids, brief], brief if excerpt_first else ids[0])


def _race_rounds(settings: Settings) -> None:
    for story in (STORY, SECOND_STORY, NEAR_MISS):
        ids, earliest = _copies(settings, story, 6)
        errors = _race(settings, ids)
        assert not errors, errors
        _check_one_group(settings, ids, earliest)
    with Session(get_engine(settings)) as sess:
        assert len(sess.exec(select(DupGroup)).all()) == 3
    for seed, first in ((31, True), (32, False), (33, True)):
        _excerpt_round(settings, seed, first)
    with Session(get_engine(settings)) as sess:
        assert len(sess.exec(select(DupGroup)).all()) == 6


@pytest.mark.timeout(300)
def test_parallel_workers_on_postgresql_make_one_group(pg_settings: Settings) -> None:
    _race_rounds(pg_settings)


@pytest.mark.timeout(300)
def test_parallel_workers_on_sqlite_make_one_group(sqlite_settings: Settings) -> None:
    _race_rounds(sqlite_settings)
