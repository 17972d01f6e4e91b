"""Regex fast path for the two commonest news patterns, so they skip the parser.

1. A quote followed by its attribution and nothing else outside quotes:
   ``"We will win," the senator said.`` / ``"...," said Maria Novak.``
2. A sentence that opens with a short speaker and a speech verb:
   ``Novak said (that) the strike had been planned abroad.``

A sentence that does not match exactly goes to the parser; the patterns are strict so
the fast path never guesses where a parse would be needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.claims.cues import has_cue, verb_lemma, wordset

_TITLE = r"(?:(?:Mr|Mrs|Ms|Dr|Sen|Rep|Gov|Gen|Lt|Col|Prof|Rev|St)\.\s)"
_CAP = r"[A-Z][A-Za-z'’\-]+"
_NAME = rf"(?:{_TITLE}?{_CAP}(?:\s(?:{_CAP}|[A-Z]\.)){{0,3}})"
# A description's last word is its head, never an adverb of the cue ("The president also
# said": the speaker is "The president"). An auxiliary is not skipped: "The state had
# added ..." is left to the parser ("The state had" is no plausible speaker).
_CUE_ADVERBS = r"(?:also|later|then|previously|once)"
_DESC = (
    rf"(?:[Tt]he\s(?:[a-z]+\s){{0,2}}(?!{_CUE_ADVERBS}\b)[a-z]+|"
    r"(?:(?:senior|top|campaign|administration|state|federal|local|party|company|police|U\.S\.|Western|European)\s)?(?:officials|aides|"
    r"sources|analysts|experts|advisers|lawmakers|critics|supporters|officers|investigators|"
    r"prosecutors|residents|witnesses|organizers|economists|researchers|scientists|doctors|"
    r"police|Democrats|Republicans|diplomats|activists|observers|strategists|insiders))"
)
_PRON = r"(?:he|she|they|we|He|She|They|We)"
_NOT_NAME = (
    r"(?!(?:But|And|So|Yet|Still|Also|Then|Now|When|While|After|Before|If|In|On|At|Asked|As|"
    r"This|That|It|There|What|Why|How|Where|Who|Instead|Meanwhile|However|Later|Earlier)\b)"
)
SPEAKER = rf"(?:{_PRON}|{_NOT_NAME}{_NAME}|{_DESC})"
_VERBS = (
    "said|says|say|added|adds|wrote|writes|explained|explains|noted|notes|argued|argues|"
    "insisted|insists|warned|warns|recalled|stressed|claimed|claims|declared|tweeted|"
    "joked|continued|replied|acknowledged|admitted|announced|told\\sreporters|"
    "told\\s[A-Z][A-Za-z]+|told\\sthe\\s[A-Za-z]+|asked|suggested|conceded|predicted|"
    "believes|thinks|contended|maintained|emphasized|observed|remarked"
)
_CUE = rf"(?:(?:{_CUE_ADVERBS}|has|had|have|would)\s)?(?P<cue>{_VERBS})"
# Up to seven words after the cue ("said Friday in an interview with CNN") that hold no
# clause boundary.
_WHEN = (
    r"(?:\s+(?!(?:and|but|adding|saying|while|who|which|because|after|before|that|as|if)\b)"
    r"[^\s,;:“”\"—]+){0,7}"
)
# Indirect speech: only time and channel phrases may sit between the cue and the content
# ("tweeted Monday morning" is a time: "morning ..." is no content).
_WHEN_SHORT = (
    r"(?:\s(?:on\s)?(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|today|"
    r"yesterday|recently|earlier|later|last\sweek|last\smonth|this\sweek|on\sTwitter|"
    r"in\san\sinterview|in\sa\sstatement)(?:\s(?:morning|afternoon|evening|night))?)?"
)
_PEEL = r"[\s,.!?;:—–\-\"“”']*"
# Descriptive words before a name: "Democratic presidential candidate Bernie Sanders".
_LONG_NAME = rf"(?:{_NOT_NAME}(?:{_CAP}|[a-z]+)\s){{0,4}}{_NOT_NAME}{_NAME}"
_LONG_SPEAKER = rf"(?:{_PRON}|{_LONG_NAME}|{_DESC})"
# "said Ada Kerr, the chief executive of Norvale": an apposition after the speaker.
_APPOS = r"(?:,\s(?!adding|saying|explaining|noting|arguing|according)[^“”\"]{0,150}?)?"
# "Tom Reyes, a former aide to the mayor, said ...": between speaker and cue.
_MID_APPOS = r"(?:,\s(?:an?|the|[A-Z])[^,“”\"]{2,100},)?"
_ATTRIBUTION = (
    rf"(?:(?P<s1>{_LONG_SPEAKER}){_MID_APPOS}\s{_CUE}{_WHEN}|(?P<cue2>{_VERBS})\s(?P<s2>{_LONG_SPEAKER})"
    rf"(?:{_WHEN}|{_APPOS}))"
)
# What remains of a sentence outside its quotes, for pattern 1.
_AFTER_QUOTE_RE = re.compile(rf"{_PEEL}{_ATTRIBUTION}{_PEEL}$")
_INTERRUPT_RE = re.compile(rf"{_PEEL}{_ATTRIBUTION},?\s*$")
# Pattern 4, inverted indirect speech: "The talks failed, the admiral said."
_INVERTED_RE = re.compile(rf"(?P<content>[A-Z“\"‘'].{{11,}}?),\s{_ATTRIBUTION}[.!?]?$", re.DOTALL)
# The text before a sentence-final quote, for pattern 3: 'Novak said: "..."'.
_BEFORE_QUOTE_RE = re.compile(rf"(?P<s1>{_LONG_SPEAKER})\s{_CUE}{_WHEN}[,:]\s*$")
_PREFIX = r"(?:[A-Z][^,“”\"]{0,60},\s)?"
_INDIRECT_RE = re.compile(
    rf"{_PREFIX}(?P<s1>{_LONG_SPEAKER}){_MID_APPOS}\s{_CUE}{_WHEN_SHORT}(?:,)?\s"
    r"(?P<content>(?:that\s)?[A-Za-z“\"‘'].*)$",
    re.DOTALL,
)
# The start of an attribution that follows a quotation ending with "?" or "!" ('"Why
# sell?" Holub asked.'): a name or description and a cue, or a cue and its speaker. A
# pronoun is left out ('"Why sell?" He left.' starts a sentence of its own).
ATTRIBUTION_START_RE = re.compile(
    rf"(?:{_NOT_NAME}{_LONG_NAME}|{_DESC}){_MID_APPOS}\s{_CUE}\b|(?:{_VERBS})\s{_LONG_SPEAKER}"
)
# An attribution right after a quotation, whatever follows it ('"...," Trump tweeted
# Monday morning, blaming ...'); an inverted one ('"...," said Maria Novak') ends at a
# punctuation mark ('"Evening," said Putin goes into ...' is no attribution).
_QUOTE_ATTRIBUTION_RE = re.compile(
    rf"{_PEEL}(?:(?P<s1>{_LONG_SPEAKER}){_MID_APPOS}\s{_CUE}\b"
    rf"|(?P<cue2>{_VERBS})\s(?P<s2>{_LONG_SPEAKER})(?=[,.;:!?]))"
)
_FORBIDDEN_CONTENT = re.compile(r"^(?:to|about|of|for|on|with|in|at|by|as|it|this|so)\b")
_FUNCTION_WORDS = wordset(
    "that why what if when because and but or so as while how where which who whom after "
    "before since then to of in on at for with by from it this is was are were be has have "
    "had not do does did said says told asked the a an"
)
_CLAUSE_BREAK = re.compile(r"[,;]|\b(?:while|whereas|but)\b")


@dataclass(frozen=True)
class FastClaim:
    speaker_start: int
    speaker_end: int
    cue: str
    start: int
    end: int


def _lemma(cue: str) -> str:
    first = cue.split()[0]
    return verb_lemma(first) or first.lower()


def _plausible(speaker: str) -> bool:
    lower = [w for w in speaker.split() if w[:1].islower()]
    return len(lower) == len(speaker.split()) or not any(w in _FUNCTION_WORDS for w in lower)


def after_quote(
    text: str, start: int, end: int, quotes: list[tuple[int, int]]
) -> tuple[FastClaim, str] | None:
    """Patterns 1 and 3 over the sentence text[start:end]: a quote with its attribution
    before or after it and nothing else outside quotes. Returns the claim and cue lemma."""
    inside = [(a, b) for a, b in quotes if a < end and b > start]
    if len(inside) == 2:
        # '"The danger," said Lena Ortiz, an economist, "is that firms move."'
        (qa, qb), (qc, qd) = inside
        if qa <= start + 1 and qd >= end - 1:
            m = _INTERRUPT_RE.match(text, qb, qc)
            if m is not None:
                g = "s1" if m.group("s1") else "s2"
                cue = m.group("cue") or m.group("cue2")
                if cue is not None and _plausible(m.group(g)):
                    return FastClaim(m.start(g), m.end(g), cue, qa, qd), _lemma(cue)
        return None
    if len(inside) != 1:
        return None
    qa, qb = inside[0]
    if qb < end and (qa <= start + 1 or not has_cue(text[start:qa])):
        # 'Whatever he chooses, Sanders "has ...," Sroka said.': the content starts with
        # the sentence when a quote closes before the attribution.
        m = _AFTER_QUOTE_RE.match(text, qb, end)
        if m is None:
            return None
        g = "s1" if m.group("s1") else "s2"
        cue = m.group("cue") or m.group("cue2")
        qa = min(qa, start)
    elif qa > start + 1 and qb >= end - 1:
        m = _BEFORE_QUOTE_RE.match(text, start, qa)
        if m is None:
            return None
        g, cue = "s1", m.group("cue")
    else:
        return None
    if cue is None or not _plausible(m.group(g)):
        return None
    return FastClaim(m.start(g), m.end(g), cue, qa, qb), _lemma(cue)


_ACCORDING_FIRST_RE = re.compile(
    r"According\sto\s(?P<s>[^,;“”\"]{2,90}?),\s(?P<content>[^\s].{11,})$", re.DOTALL
)
_ACCORDING_LAST_RE = re.compile(
    r"(?P<content>[A-Z“\"].{11,}?),\saccording\sto\s(?P<s>[^,;“”\"]{2,90}?)[.!?]?$", re.DOTALL
)


def according(text: str, start: int, end: int, quotes: list[tuple[int, int]]) -> FastClaim | None:
    """'According to X, content.' and 'Content, according to X.' (speaker without commas)."""
    if any(qa < start or qb > end for qa, qb in quotes if qa < end and qb > start):
        return None
    m = _ACCORDING_FIRST_RE.match(text, start, end) or _ACCORDING_LAST_RE.match(text, start, end)
    if m is None:
        return None
    a, b = m.start("content"), m.end("content")
    while b > a and text[b - 1] in ".!? ":
        b -= 1
    if has_cue(text[a:b]) or has_cue(m.group("s")):
        return None
    return FastClaim(m.start("s"), m.end("s"), "according to", a, b)


def inverted(
    text: str, start: int, end: int, quotes: list[tuple[int, int]]
) -> tuple[FastClaim, str] | None:
    """Pattern 4: 'Content, the admiral said.' (no quotes in the sentence)."""
    if any(qa < end and qb > start for qa, qb in quotes):
        return None
    m = _INVERTED_RE.match(text, start, end)
    if m is None:
        return None
    g = "s1" if m.group("s1") else "s2"
    cue = m.group("cue") or m.group("cue2")
    if cue is None or not _plausible(m.group(g)) or cue.startswith(("told", "asked")):
        return None
    content = m.group("content")
    if any(has_cue(piece) for piece in _CLAUSE_BREAK.split(content)):
        return None
    return FastClaim(m.start(g), m.end(g), cue, m.start("content"), m.end("content")), _lemma(cue)


# The content of a "told X" / "told the X" cue that is still the one told: a name
# running on to "that" ("told the Washington Post that ...") or an outlet ("told the
# RIA Novosti news agency that", "told the Tass news agency on Monday that")
_TOLD_RUNS_ON = re.compile(
    r"[A-Z]\S*\s(?:\S+\s){0,3}?that\b|(?:\S+\s){0,3}?(?:news\s)?(?:agency|newspaper|"
    r"broadcaster|channel|network|radio|television|station|daily|magazine|website|paper|"
    r"outlet)\b"
)


def indirect(
    text: str, start: int, end: int, quotes: list[tuple[int, int]]
) -> tuple[FastClaim, str] | None:
    """Pattern 2: '(Prefix,) Speaker said (that) content.'"""
    m = _INDIRECT_RE.match(text, start, end)
    if m is None or not _plausible(m.group("s1")):
        return None
    content = m.group("content")
    a = m.start("content")
    if _FORBIDDEN_CONTENT.match(content):
        return None
    if any(qa < a or qb > end for qa, qb in quotes if qa < end and qb > start):
        return None  # a quote not wholly inside the content
    if any(has_cue(piece) for piece in _CLAUSE_BREAK.split(content)[1:]):
        return None  # a second cue ("..., while X insisted that ..."): parse it
    cue = m.group("cue")
    if cue.startswith("asked") or cue == "told":
        return None  # "asked whether", "told X to": leave these to the parser
    if cue.startswith("told ") and _TOLD_RUNS_ON.match(content):
        return None  # "told the RIA Novosti news agency that": the name runs on; parse it
    b = end
    while b > a and text[b - 1] in ".!? ":
        b -= 1
    if b - a < 12:
        return None
    return FastClaim(m.start("s1"), m.end("s1"), cue, a, b), _lemma(cue)


def attribution_after(text: str, qb: int, end: int) -> tuple[int, int, int] | None:
    """The attribution that follows a quotation ending at ``qb``, within text[qb:end]
    ('"...," Trump tweeted Monday morning, blaming ...', '"...," said Maria Novak'):
    (speaker start, speaker end, cue start), or None."""
    m = _QUOTE_ATTRIBUTION_RE.match(text, qb, end)
    if m is None:
        return None
    g, c = ("s1", "cue") if m.group("s1") else ("s2", "cue2")
    if not _plausible(m.group(g)):
        return None
    return m.start(g), m.end(g), m.start(c)
