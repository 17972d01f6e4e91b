"""Reporting cues: verbs, nouns and phrases that introduce an attributed statement.

The verb list follows news usage (speech, writing, belief and stance verbs). Inflected
forms are generated here so the extractor needs neither spaCy's tagger-driven
lemmatizer nor its attribute ruler: a word form maps straight to its lemma.
"""

from __future__ import annotations

import re


def wordset(words: str) -> frozenset[str]:
    """A set of whitespace-separated words (keeps long word lists compact)."""
    return frozenset(words.split())


# Verbs whose clausal or quoted complement is the content of a claim.
SPEECH_VERBS: frozenset[str] = wordset(
    """
    say tell state announce add stress emphasize emphasise accuse claim warn insist note
    describe promise indicate suggest assert call argue explain write report acknowledge
    admit deny confirm believe think declare reply respond recall predict contend maintain
    allege charge concede conclude estimate reveal disclose ask urge demand vow pledge
    tweet post testify observe point remark comment answer boast brag complain criticize
    criticise blast slam attack praise condemn question agree disagree dispute doubt fear
    hope expect feel know show find cite mention reiterate repeat continue joke quip muse
    recount insinuate imply hint signal caution advise counter retort rebut object protest
    lament assure guarantee forecast project want plan propose recommend threaten blame
    credit label dub brand term characterize characterise portray decry denounce reject
    refuse decline support endorse oppose defend highlight underscore wonder speculate
    theorize surmise recognize realize understand learn discover determine decide order
    instruct
    """
)

# Verbs that only make a claim with a clausal complement (``that ...``) or a quote,
# never with a bare object ("she knew Smith" is no claim).
CLAUSE_ONLY: frozenset[str] = wordset(
    """
    know feel find learn understand realize recognize discover determine decide show think
    continue add want plan hope expect fear post write report note point order answer tell
    ask reply respond comment repeat reiterate mention refuse decline project signal object
    protest observe recount recall confirm announce reveal disclose state say agree
    disagree question doubt believe estimate forecast predict indicate suggest imply hint
    explain argue claim deny admit acknowledge insist assert declare warn caution advise
    promise vow pledge guarantee assure concede conclude contend maintain allege testify
    stress emphasize emphasise joke quip muse wonder speculate theorize surmise insinuate
    counter retort rebut lament complain boast brag remark tweet underscore highlight
    instruct propose recommend threaten
    """
)

# Nouns that carry a claim: "X's statement that ...", "in a statement, X ...".
NOUN_CUES: frozenset[str] = wordset(
    """
    statement statements claim claims remark remarks comment comments announcement warning
    assertion allegation allegations argument belief view testimony tweet interview speech
    letter post op-ed release response message memo report accusation accusations
    insistence promise pledge vow suggestion admission denial prediction contention charge
    charges
    """
)

_IRREGULAR: dict[str, tuple[str, ...]] = {
    "say": ("says", "said", "saying"),
    "tell": ("tells", "told", "telling"),
    "write": ("writes", "wrote", "written", "writing"),
    "think": ("thinks", "thought", "thinking"),
    "know": ("knows", "knew", "known", "knowing"),
    "find": ("finds", "found", "finding"),
    "feel": ("feels", "felt", "feeling"),
    "understand": ("understands", "understood", "understanding"),
    "learn": ("learns", "learned", "learnt", "learning"),
    "show": ("shows", "showed", "shown", "showing"),
    "forecast": ("forecasts", "forecasted", "forecasting"),
    "testify": ("testifies", "testified", "testifying"),
    "reply": ("replies", "replied", "replying"),
    "deny": ("denies", "denied", "denying"),
    "imply": ("implies", "implied", "implying"),
    "theorize": ("theorizes", "theorized", "theorizing"),
    "speculate": ("speculates", "speculated", "speculating"),
    "dub": ("dubs", "dubbed", "dubbing"),
    "plan": ("plans", "planned", "planning"),
    "quip": ("quips", "quipped", "quipping"),
    "slam": ("slams", "slammed", "slamming"),
    "refer": ("refers", "referred", "referring"),
    "admit": ("admits", "admitted", "admitting"),
    "regret": ("regrets", "regretted", "regretting"),
}


def _regular_forms(base: str) -> tuple[str, ...]:
    if base in _IRREGULAR:
        return _IRREGULAR[base]
    if base.endswith("e"):
        return (base + "s", base + "d", base[:-1] + "ing")
    if base.endswith(("s", "sh", "ch", "x", "z")):
        return (base + "es", base + "ed", base + "ing")
    if base.endswith("y") and base[-2:-1] not in "aeiou":
        return (base[:-1] + "ies", base[:-1] + "ied", base + "ing")
    return (base + "s", base + "ed", base + "ing")


def _build_forms() -> dict[str, str]:
    forms: dict[str, str] = {}
    for base in sorted(SPEECH_VERBS):
        forms.setdefault(base, base)
        for form in _regular_forms(base):
            forms.setdefault(form, base)
    return forms


VERB_FORMS: dict[str, str] = _build_forms()

# Word forms too ambiguous or too rarely a cue (mostly nouns: "state", "plans", "speech")
# to make a sentence worth parsing on their own; measured on PolNeAR train, they cost
# far more parse time than the claims they yield. They still count as cues in a sentence
# parsed for another reason.
WEAK_TRIGGERS: frozenset[str] = wordset(
    """
    state states point points plan plans attack attacks tweet tweets speech speeches
    comment comments interview interviews remark remarks order orders ordered post posts
    posted project projects projected term terms termed release response message messages
    announcement testimony argument belief view views charge charges charged doubt doubts
    estimate estimates mention mentioned mentions protest protests threaten threatens know
    knows known knowing continue continues continuing feel feels feeling understand
    understanding learn learning decide recognize fear fears expect expects expected
    expecting observe recall underscore signal signals credit brand counter maintain
    maintains maintained portray assure recount determine dispute complain propose proposed
    highlight cite finding findings letter letters memo op-ed support question questions
    report statement respond find planned
    """
)

TRIGGERS: frozenset[str] = frozenset({*VERB_FORMS, *NOUN_CUES, "according"} - WEAK_TRIGGERS)
_WORD_RE = re.compile(r"[a-z]+(?:-[a-z]+)?")


def has_cue(sentence: str) -> bool:
    """A cheap test: could ``sentence`` hold a reporting cue?"""
    return not TRIGGERS.isdisjoint(_WORD_RE.findall(sentence.lower()))


def verb_lemma(word: str) -> str | None:
    """The cue lemma of a word form, or None when it is no reporting verb."""
    return VERB_FORMS.get(word.lower())
