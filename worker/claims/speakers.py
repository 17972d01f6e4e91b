"""Speaker resolution within one article.

Mentions are harvested with a regex over the whole text (capitalized word sequences,
which costs no parse): "Novak", "Mr. Novak", "the minister" and "she" map to the fullest
earlier mention ("Health Minister Maria Novak"). Pronouns take the most recent claim's
person speaker, honouring a gender learned from earlier he/she resolutions or titles.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from worker.claims.cues import wordset

PRONOUNS = frozenset({"he", "she", "they", "him", "her", "them", "we", "i", "it", "you"})
RELATIVE = frozenset({"who", "which", "that", "whom"})
_MALE_TITLES = ("mr.", "mr ")
_FEMALE_TITLES = ("mrs.", "ms.", "mrs ", "ms ", "miss ")
TITLE_WORDS = wordset(
    """
    mr mrs ms miss dr sen rep gov gen prof rev president senator governor minister
    secretary spokesman spokeswoman spokesperson chairman chairwoman director mayor judge
    justice ambassador representative congressman congresswoman chancellor commissioner
    chief general attorney speaker leader candidate nominee adviser advisor manager officer
    official head king queen prince premier lawyer professor economist analyst executive
    ceo founder vice deputy prime former
    """
)
ORG_WORDS = wordset(
    """
    ministry department party campaign committee council post times news inc corp
    university court house senate congress agency association union bank fund organization
    organisation commission office service police government institute center centre
    foundation group company administration bureau board network journal press reuters cnn
    fbi cia pac poll survey authority army navy federation league club church state states
    nations republicans democrats gop team staff media newspaper magazine broadcaster
    """
)
_STOP_CAPS = wordset(
    """
    the a an but and or in on at for with as by if when while after before this that these
    those it he she they we i his her their its our my then there here so yet still also
    now even according said says asked speaking monday tuesday wednesday thursday friday
    saturday sunday january february march april may june july august september october
    november december from to of not what who why how where meanwhile however last next
    more
    """
)
# A run of capitalized words, initials ("U.S.") and name particles, on one line: a line
# break ends it ("Back to Gallery" over "President Ana Kovac" is two mentions).
_MENTION_RE = re.compile(
    r"(?:(?:[A-Z]\.){2,}|[A-Z][A-Za-z'’\-]*\.?|[A-Z]\.)"
    r"(?:[ \t](?:(?:[A-Z]\.){2,}|[A-Z][A-Za-z'’\-]*\.?|[A-Z]\."
    r"|(?:de|van|von|bin)(?![\w'’-])|al-[A-Z][a-z]+))*"
)
_INITIALS_RE = re.compile(r"(?:[A-Z]\.){2,}")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’\-]*")
_TOKEN_RE = re.compile(r"\S+")
# Words ending with a period that go before a name ("Sen. Ted Cruz", "St. Louis"), and
# those that end one ("Arne Holm Jr."); any other capitalized word of three characters
# or more ending with a period ends its sentence, and with it the mention.
_TITLE_ABBREVIATIONS = wordset(
    """
    mr mrs ms dr gov sen rep gen lt col sgt capt cmdr adm maj prof rev hon pres atty supt
    st mt ft messrs
    """
)
_SUFFIX_ABBREVIATIONS = wordset("jr sr inc co corp ltd bros")


def words(s: str) -> list[str]:
    return [w.lower().strip("'’") for w in _WORD_RE.findall(s)]


@dataclass
class Mention:
    start: int
    text: str
    tokens: list[str]


def _clean_mention(text: str, start: int) -> Mention | None:
    parts = text.split()
    while parts and parts[0].lower().strip(".") in _STOP_CAPS:
        start += len(parts[0]) + 1
        parts = parts[1:]
    while parts and parts[-1].lower().strip(".") in _STOP_CAPS:
        parts = parts[:-1]
    if not parts:
        return None
    mtext = " ".join(parts)
    if mtext.endswith(("'s", "’s")) and len(parts[-1]) > 3:
        mtext = mtext[:-2]  # "President Dana Whitfield's plane": the name
    toks = words(mtext)
    if not toks:
        return None
    return Mention(start, mtext, toks)


def _sentence_parts(match: re.Match[str]) -> Iterator[tuple[str, int]]:
    """A run of capitalized words split where a sentence ends inside it: "... led by Petra
    Lindqvist. Lindqvist said" gives "Petra Lindqvist" and "Lindqvist" (the period
    dropped; a suffix keeps it: "Arne Holm Jr."), never "Petra Lindqvist. Lindqvist"."""
    text, base = match.group(0), match.start()
    begin = 0
    for tok in _TOKEN_RE.finditer(text):
        word = tok.group(0)
        if (
            not word.endswith(".")
            or len(word) <= 2
            or word[:-1].lower() in _TITLE_ABBREVIATIONS
            or _INITIALS_RE.fullmatch(word)  # "U.S. President Donald Trump"
        ):
            continue
        keep = 0 if word[:-1].lower() in _SUFFIX_ABBREVIATIONS else 1
        yield text[begin : tok.end() - keep], base + begin
        begin = tok.end()
        while begin < len(text) and text[begin].isspace():
            begin += 1
    if begin < len(text):
        yield text[begin:], base + begin


def harvest_mentions(text: str) -> list[Mention]:
    out: list[Mention] = []
    for m in _MENTION_RE.finditer(text):
        for part, start in _sentence_parts(m):
            mention = _clean_mention(part, start)
            if mention is not None:
                out.append(mention)
    return out


_NAME_RE = re.compile(
    r"(?:[A-Z][a-z][A-Za-z'’\-]*|[A-Z]\.)"
    r"(?:[ \t](?:[A-Z][a-z][A-Za-z'’\-]*|[A-Z]\.|de|van|von|bin|al-[A-Z][a-z]+)){0,3}"
)


def looks_like_name(text: str) -> bool:
    """A person's name: one to four capitalized words ("Tomas Beran", "J. Dvorak"), not
    all of them titles ("Minister"), the first no stop word ("Monday", "The"), none an
    organization word ("Transport Ministry")."""
    if _NAME_RE.fullmatch(text) is None:
        return False
    toks = words(text)
    if toks[0].strip(".") in _STOP_CAPS or is_org(toks):
        return False
    return bool(_name_tokens(toks))


# A fuller form of a name has at most this many name words of two letters or more
# ("Russian President Vladimir Putin"): a longer capitalized run ending with the name
# is a headline ("Hadn't Thought About Asking Putin"), not the name.
_MOST_NAME_WORDS = 4


def _fuller_form(m: Mention) -> bool:
    """Whether a mention can stand for a person's full name: not a headline in capitals
    ("MAYOR SAYS SHE WILL STAND AGAIN NEXT YEAR") and no more than
    :data:`_MOST_NAME_WORDS` name words."""
    if len(m.tokens) > 1 and m.text.isupper():
        return False
    return len([t for t in _name_tokens(m.tokens) if len(t) > 1]) <= _MOST_NAME_WORDS


def is_description(surface: str) -> bool:
    """A speaker given by role, not by name: the head (last word) is a lower-case noun
    ("the interior minister", "The union's chairman"), not a pronoun; or, whatever the
    case of its head, a phrase led by an article or a possessive that is no name ("The
    top Democrat", "The Newspaper's Editor")."""
    parts = surface.split()
    if not parts or surface.lower() in PRONOUNS or surface.lower() in RELATIVE:
        return False
    head = parts[-1]
    if head.isalpha() and head.islower():
        return True
    led = parts[0].lower() in {"the", "a", "an"} or any(p.endswith(("'s", "’s")) for p in parts)
    return len(parts) > 1 and led and not looks_like_name(surface)


def is_org(tokens: list[str]) -> bool:
    return any(t in ORG_WORDS for t in tokens)


def _name_tokens(tokens: list[str]) -> list[str]:
    """The words of a name without titles and suffixes: the surname is the last one."""
    return [
        t
        for t in tokens
        if t.strip(".") not in TITLE_WORDS and t.strip(".") not in _SUFFIX_ABBREVIATIONS
    ]


# heads of state and government a description "the ... leader" can name
_LEADERS = frozenset({"president", "premier", "chancellor", "leader", "king", "queen", "prime"})
# a description's nationality and the words of a mention that carry it ("U.S." is "u s")
_NATION_WORDS: dict[str, set[str]] = {
    "american": {"american", "us", "america", "s"},
    "us": {"american", "us", "america", "s"},
    "british": {"british", "uk", "britain"},
    "kremlin": {"russian", "russia", "kremlin"},
}


# The last word of a law's or a treaty's name ("the Voting Rights Act"): no person
_LAWS = frozenset({"act", "treaty", "amendment", "accord", "accords", "convention"})
# Words of a mention that are no name: country initials ("U.S." is "u s", "US")
_NOT_A_NAME = frozenset({"u", "s", "us", "uk", "eu", "un", "usa"})
_NOT_A_NAME_CAPS = frozenset({"US", "UK", "EU", "UN", "USA"})


# Words before a title that make another role of it ("Vice President", "Former
# President"): no holder of the bare title unless the description says them too
_ROLE_CHANGERS = frozenset({"vice", "deputy", "former", "ex", "late", "acting", "assistant"})
# Abbreviated titles as the title they stand for ("Sen. Rand Paul" is a senator)
_TITLE_ABBREVIATED = {
    "sen": "senator",
    "rep": "representative",
    "gov": "governor",
    "pres": "president",
    "gen": "general",
    "atty": "attorney",
    "supt": "superintendent",
}


def _title(word: str) -> str:
    return _TITLE_ABBREVIATED.get(word, word)


def _bare(word: str) -> str:
    """A word without its possessive ("russia's" -> "russia")."""
    return word.removesuffix("'s").removesuffix("’s")


def _is_nationality(word: str) -> bool:
    """A word of a mention before a title that gives the holder's country: "russian",
    "u"/"s" (of "U.S."), a possessive ("russia's president")."""
    bare = _bare(word)
    return (
        bare != word
        or bare in _NOT_A_NAME
        or bare in _NATION_WORDS
        or bare.endswith(("an", "ese", "ish", "ch"))
    )


def _nation_words(nation: str) -> set[str]:
    """The words of a mention that carry a nationality: the adjective and its country
    ("russian": "russian", "russia"; "american" also "us", "america")."""
    known = _NATION_WORDS.get(nation)
    if known is not None:
        return known
    out = {nation}
    if nation.endswith("an"):
        out.add(nation[:-1])  # russian -> russia, korean -> korea
    return out


def _role(surface: str) -> tuple[str, set[str], list[str]] | None:
    """A role-only description: its head title, its lower-case modifiers and its
    nationalities ("the Russian leader" -> ("leader", set(), ["russian"]), "the deputy
    minister" -> ("minister", {"deputy"}, [])). None when the surface is not one: a
    capitalized word that is no nationality ("the Health Ministry", "the Kremlin
    spokesman") or a head that is no title ("the statement")."""
    parts = [p.strip(",.;:") for p in surface.split()]
    article = bool(parts) and parts[0].lower() in {"the", "a", "an"}
    if article:
        parts = parts[1:]
    if not parts:
        return None
    head = parts[-1].lower()
    # "the President", "The US President": a title capitalized after an article is
    # still a role ("President Kovac" without one is a name)
    if head not in TITLE_WORDS or not (parts[-1].islower() or (article and parts[-1].istitle())):
        return None
    modifiers: set[str] = set()
    nations: list[str] = []
    for w in parts[:-1]:
        if _INITIALS_RE.fullmatch(w) or w in {"US", "UK"}:
            nations.append(w.replace(".", "").lower())
        elif w[:1].isupper():
            low = w.lower()
            if low not in _NATION_WORDS and not low.endswith(("an", "ian", "ese", "ish", "ch")):
                return None
            nations.append(low)
        elif w.isalpha():
            modifiers.add(w)
        else:
            return None
    return head, modifiers, nations


_CORPORATE = wordset(
    """company inc corp corporation ltd plc llc co group holdings airlines airline airways
    air motors industries technologies systems energy rail railways lines"""
)
# A role-only body ("the company", "the carrier", "the agency") and the words a named
# body's mention must hold to be the one it stands for ("Nordic Rail", "Acme Corp.").
_BODY_ROLES: dict[str, frozenset[str]] = {
    "company": _CORPORATE,
    "firm": _CORPORATE,
    "operator": _CORPORATE,
    "carrier": frozenset({"airlines", "airline", "airways", "air", "rail", "railways", "lines"}),
    "airline": frozenset({"airlines", "airline", "airways", "air"}),
    "agency": frozenset({"agency", "administration", "bureau", "service", "authority"}),
    "regulator": frozenset({"agency", "authority", "commission", "regulator", "office"}),
    **{
        w: frozenset({w})
        for w in wordset(
            """ministry department government bank union party police university
            committee commission council court campaign embassy office authority
            administration"""
        )
    },
}
# Who speaks for a body ("the ministry's spokesman"), and what a body issues ("the
# ministry's statement"): the body is the speaker.
_FOR_BODY = wordset(
    """spokesman spokeswoman spokesperson official officials representative statement
    report letter"""
)
# Documents: never speakers of their own; "the statement said" is its issuer's claim.
DOCUMENTS = wordset(
    """statement report study letter memo document filing complaint lawsuit ruling
    release indictment analysis survey poll"""
)
_ISSUED_RE = re.compile(
    r"\b(?:a|an|its|his|her|their)\s+(?:[a-z]+\s+){0,2}((?:[A-Z][\w.’'-]*\s+){0,4})("
    + "|".join(sorted(DOCUMENTS))
    + r")\b"
)
# What a person's own staff says is the person's: "Finnish President Sauli Niinisto's
# office", "Harlan's campaign" (a spokesman is :meth:`Resolver.for_principal`'s).
_OWN_STAFF_RE = re.compile(r"^(?:[Tt]he\s+)?(.*?\S)['’]s\s+(?:office|campaign|camp|team)$")


def _body_role(surface: str) -> str | None:
    """The head of a role-only body: "the company" -> "company", "the ministry's
    spokesman" -> "ministry"; None for anything else."""
    parts = [p.strip(",.;:").lower() for p in surface.split()]
    if len(parts) < 2 or parts[0] != "the" or not surface.split()[1].islower():
        return None
    if len(parts) == 2 and parts[1] in _BODY_ROLES:
        return parts[1]
    if len(parts) == 3 and parts[2] in _FOR_BODY:
        head = parts[1].removesuffix("'s").removesuffix("’s")
        if head != parts[1] and head in _BODY_ROLES:
            return head
    return None


# Whom a person's possessive role names: "Putin's spokesman", "Russian President Vladimir
# Putin's spokesman", "the president's lawyer" -> (the principal, the role).
_FOR_PERSON_ROLES = wordset(
    """spokesman spokeswoman spokesperson aide adviser advisor lawyer attorney"""
)
_PRINCIPAL_RE = re.compile(
    r"^(?:[Tt]he\s+)?(?:[\w.’'-]+\s+){0,4}?([A-Z][\w’'-]*?)['’]s\s+(?:[a-z]+\s+){0,2}("
    + "|".join(sorted(_FOR_PERSON_ROLES))
    + r")$"
)


# The sides of a lawsuit: in an article that tells of one (it names its plaintiffs or
# challengers, or someone sued or is suing), the plaintiffs' lawyers, the groups that
# sued and what they filed speak for one party, "the plaintiffs" (issue 15's gold keys
# them so). A side is a lower-case group noun ("lawyers", "the groups", "immigrant
# advocacy groups", "the plaintiffs' lawyers"), or a filing of the suit ("A new court
# filing", "A suit", "the letter") whose issuer the text does not name; never one said
# to act for the other side ("Lawyers for the governor's administration", "a
# letter from the state attorney general", "lawyers for" whom the article says was sued).
LAWSUIT_PARTY = "the plaintiffs"
_LAWSUIT_RE = re.compile(r"\b(?:plaintiffs?|challengers|sued|suing|lawsuits?)\b", re.IGNORECASE)
_PARTY_RE = re.compile(
    r"^(?:the\s+|a\s+)?(?:plaintiffs['’]\s+)?(?:[a-z-]+\s+){0,2}"
    r"(?:lawyers|attorneys|plaintiffs|groups|challengers|opponents)$",
    re.IGNORECASE,
)
_SUIT_PAPER_RE = re.compile(
    r"^(?:the\s+|a\s+|an\s+)?(?:new\s+)?(?:court\s+)?"
    r"(?:suit|lawsuit|filing|filings|letter|evidence|motion|complaint)$",
    re.IGNORECASE,
)
# "lawyers for ...", "a letter from ...": whom the (first five) words after a side name
_FOR_SIDE_RE = re.compile(r"\s+(?:for|representing|from|of|by)\s+((?:[\w.’'-]+\s+){0,4}[\w.’'-]+)")
_OTHER_SIDE = wordset(
    """administration government department ministry office justice commerce doj state
    states defendants defendant president bureau secretary officials agency city county
    council"""
)
# whom the article says was sued ("sued the Freedonia Housing Office"): the other side
_SUED_RE = re.compile(r"\b(?:sued|suing)\s+(?:the\s+)?((?:[A-Z][\w.’'-]*\s*){1,5})")


# A politician named by state and party ("the Kentucky Republican", "the Virginia
# Democrat") or by rank and party ("the top Democrat on the committee"): the last
# speaker, when a legislator or governor by a title the article gives them
# (:meth:`Resolver.party_member`)
_PARTY_MEMBER_RE = re.compile(
    r"^[Tt]he\s+(?:(?:[A-Z][\w.’'-]*\s+){1,2}|(?:top|ranking|senior)\s+)"
    r"(?:Republican|Democrat|Independent)$"
)
_ELECTED_TITLES = wordset(
    """sen senator senators rep representative congressman congresswoman gov governor"""
)


# a preposition before a name ("For Putin, she added"), and the word after a subject
_PREPOSITION_END_RE = re.compile(
    r"\b(?:for|to|of|with|by|from|about|against|on|in|at|like|than|and|or|as)\s+$",
    re.IGNORECASE,
)
_NEXT_WORD_RE = re.compile(r"\s+([a-z]+)\b|(,)")
_PARENTHESIS_RE = re.compile(r"[ \t]*\([^()\n]{1,30}\)")
# A stop is found where no word character or period is before it: a match starting
# inside a run of those is one the run's start would have made, so the lookbehind drops
# no match of a scan from a line's start and saves trying every position of a word.
_SENTENCE_STOP_RE = re.compile(r"(?<![\w.])([\w.]*)([.?!])[\"”’)]*\s")


# An organisation by its initials ("the ACLU", "a DOJ spokesperson", "ACLU attorneys"):
# the body the article spells out with those initials ("the American Civil Liberties
# Union (ACLU)", or a name whose initials they are, "Department of Justice" for DOJ);
# who speaks for it, or what it files, is the body (:meth:`Resolver.initials_body`).
_INITIALS_SPEAKER_RE = re.compile(
    r"^(?:[Tt]he\s+|[Aa]n?\s+)?([A-Z]{2,6})(?:\s+(?:spokesman|spokeswoman|spokesperson"
    r"|official|officials|representative|lawyers|attorneys|statement|filing|letter))?$"
)
# A name of capitalized words, with "of", "for", "on", "and" (and "the") inside it
_BODY_NAME_RE = re.compile(
    r"\b[A-Z][a-z]+(?:\s+(?:(?:of|for|on|and)\s+(?:the\s+)?)?[A-Z][a-z]+){1,6}"
    r"(?:\s*\(([A-Z]{2,6})\))?"
)
# The few initials so common that articles do not spell them out (their keys are those
# of the full names: ``clustering.speaker_key("Justice Department")``).
COMMON_INITIALS = {
    "DOJ": "the Justice Department",
    "DHS": "the Homeland Security Department",
    "DOD": "the Defense Department",
}
# A dateline before the first sentence of a story ("HELSINKI: ...", "GLASGOW, Scotland
# — ...", "MOSCOW (Reuters) - ..."): a place in capitals, never who speaks.
_DATELINE_AFTER_RE = re.compile(
    r"(?:,\s+[A-Z][\w.’'-]*(?:\s+[A-Z][\w.’'-]*)*)?\s*(?:\([A-Za-z .]+\)\s*)?[:—–-]"
)


# A form of address set off by commas ("The wiser course, Mr. President, would be ..."):
# who is spoken to, never who speaks
_VOCATIVE_RE = re.compile(
    r"^(?:Mr\.?|Mister|Madam|Madame)\s+(?:President|Speaker|Chairman|Secretary|Mayor"
    r"|Prime\s+Minister|Vice\s+President)$"
)
# An embedded post's credit line after its text: "— Ben Vale (@benvale) July 16, 2018"
_POST_CREDIT_RE = re.compile(r"[—–]\s*([A-Z][\w.’'-]*(?:\s+[A-Z][\w.’'-]*){0,3})\s*\(@\w+\)")

# A transcript's turn label: a name in capitals, with its title, and a colon ("CHUCK
# TODD:", "AMBASSADOR JON HUNTSMAN:"), at the start of a line or right after the end of
# the turn before it; the "I" and "we" of the turn that follows are that speaker's
_TURN_LABEL_RE = re.compile(
    r"(?:^|(?<=[.?!\"”])\s*)([A-Z][A-Z.'’-]+(?:[ \t]+[A-Z][A-Z.'’-]+){0,3}):", re.MULTILINE
)
# Ads and documents whose author follows them ("an advert by the newspaper Nordposten
# stating ...", "a statement from the ministry said"): the author is the speaker
_ADS = wordset("advert advertisement ad billboard banner poster")
_DEPARTMENT_RE = re.compile(
    r"\b([A-Z][a-z]{3,})\s+Department\b|\bDepartment\s+of\s+(?:the\s+)?([A-Z][a-z]{3,})\b"
)
_BY_AUTHOR_RE = re.compile(r"[ \t]+(?:by|from)[ \t]+")
# A newspaper by role ("the newspaper", "the news organization"), and how an article
# introduces the one it means: "newspaper Helsingin Posti", "Helsingin Posti, a
# Helsinki-based newspaper"
_NEWSPAPER_ROLES = frozenset(
    {"the newspaper", "the paper", "the daily", "the news organization", "the news organisation"}
)
_NAME = r"[A-Z][\w'’-]*(?:[ \t]+[A-Z][\w'’-]*){0,3}"
_NEWSPAPER_NAMED_RE = re.compile(
    rf"\b(?:newspaper|daily)[ \t]+({_NAME})"
    rf"|\b({_NAME}),[ \t]+(?:an?|the)[ \t]+[^,.;\n]{{0,50}}?\b(?:newspaper|daily)\b"
)
# the words that may stand between "by" and the author's name ("by the newspaper ...")
_AUTHOR_WORDS = wordset(
    """the newspaper paper daily magazine broadcaster network website agency group company
    firm organization organisation"""
)


def initials(name: str) -> set[str]:
    """The initials a name may go by: of its capitalized words ("American Civil
    Liberties Union" -> "ACLU") and of all its words ("Department of Justice" ->
    "DOJ")."""
    parts = [p for p in name.split() if p[:1].isalpha()]
    return {
        "".join(p[0] for p in parts if p[:1].isupper()).upper(),
        "".join(p[0] for p in parts).upper(),
    }


def surname_of(surface: str) -> str | None:
    """The last name word of a surface speaker ("Sen. Mark Lund" -> "lund"), if any."""
    names = _name_tokens(words(surface))
    return names[-1] if names else None


@dataclass
class Resolver:
    """Resolves surface speakers in document order; keeps gender and alias memory."""

    mentions: list[Mention]
    text: str = ""  # the article, for finding who issued a document
    aliases: dict[str, str] = field(default_factory=dict)
    gender: dict[str, str] = field(default_factory=dict)
    history: list[tuple[int, str, str]] = field(default_factory=list)  # (pos, surface, resolved)
    # surnames of the article's surface speakers (a "he" may stand for one of them)
    speaker_names: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._lawsuit: bool | None = None  # whether the text tells of a lawsuit (lazily)
        self._sued: frozenset[str] = frozenset()  # the words of whom it says was sued
        self._spelled: dict[str, str] | None = None  # initials -> the name (lazily)
        self._departments: set[str] | None = None  # "Justice" of "Justice Department"
        self._by_surname: dict[str, list[Mention]] = {}
        # line start -> where its sentences start (:meth:`_sentence_start`), scanned once
        self._stops: dict[int, list[int]] = {}
        # surnames given with a first name or title somewhere ("State Mike Pompeo"), not
        # after "the" ("the Daily Mail", "the Voting Rights Act")
        self._full_surnames: set[str] = set()
        for m in self.mentions:
            full = _name_tokens(m.tokens)
            if len(m.tokens) < 2 or not full or full[-1] != m.tokens[-1] or m.text.isupper():
                continue
            if self.text[max(0, m.start - 4) : m.start].lower() != "the ":
                self._full_surnames.add(full[-1])
        for m in self.mentions:
            names = _name_tokens(m.tokens)
            if names and not is_org(m.tokens):
                self._by_surname.setdefault(names[-1], []).append(m)

    def fullest(self, surname: str, pos: int, given: frozenset[str] = frozenset()) -> str | None:
        """The longest mention whose name part ends with ``surname`` (earlier ones first)
        that can be a fuller form of a name holding the ``given`` words (its first
        names): it holds them, and it is a name, not a headline or a phrase ending with
        the name (:func:`_fuller_form`)."""
        best: Mention | None = None
        for m in self._by_surname.get(surname, ()):
            if m.start > pos and best is not None:
                break
            if not _fuller_form(m) or not given <= set(m.tokens):
                continue
            if best is None or len(m.tokens) > len(best.tokens):
                best = m
        return best.text if best else None

    def add_alias(self, description: str, resolved: str) -> None:
        key = " ".join(w for w in words(description) if w not in {"the", "a", "an"})
        if key:
            self.aliases[key] = resolved

    def _gender_of_title(self, surface: str) -> str | None:
        low = surface.lower()
        if low.startswith(_MALE_TITLES):
            return "m"
        if low.startswith(_FEMALE_TITLES):
            return "f"
        return None

    def _person_named(self, resolved: str) -> bool:
        """Whether a resolved speaker names a person: a capitalized word that is no title
        nor stop word ("the report", "The report" do not), and a surname the article
        gives with a first name or a title somewhere, or capitalized inside a sentence
        ("Lawmakers" at a sentence's start only is none)."""
        parts = [p.strip(",.;:") for p in resolved.split()]
        caps = [
            p
            for p in parts
            if p[:1].isupper()
            and _bare(p.lower()).strip(".") not in TITLE_WORDS
            and p.lower() not in _STOP_CAPS
        ]
        if not caps or (parts[-1].isalpha() and parts[-1].islower()):
            return False  # no name, or a common noun's phrase ("friendly TV networks")
        # any name word: "Sen. Mark T. Lund of Ohio" is Lund
        names = [n for n in _name_tokens(words(resolved)) if len(n) > 1 and n not in _NOT_A_NAME]
        if not names or names[-1] in _LAWS:
            return False  # "U.S.", "the Voting Rights Act"
        if any(n in self._full_surnames for n in names):
            return True
        # a name given alone ("Nielsen"), capitalized inside a sentence somewhere
        return re.search(rf"(?:\b[a-z]+|[,;])\s+{re.escape(caps[-1])}\b", self.text) is not None

    def _sentence_start(self, p: int) -> int:
        """Where the sentence holding ``p`` starts (roughly: after the last ". ", "? " or
        "! " that is no title's or initial's period, or a line break)."""
        line = self.text.rfind("\n", 0, p) + 1
        stops = self._stops.get(line)
        if stops is None:
            # The line's stops, scanned once to its end (issue 16: each call scanned its
            # line from the start, 0.7 ms a call on long paragraphs): a stop that ends by
            # ``p`` is one a scan ending at ``p`` finds (it must end with a space, and
            # no other way of matching from its start ends earlier).
            end = self.text.find("\n", line)
            stops = self._stops[line] = [
                stop.end()
                for stop in _SENTENCE_STOP_RE.finditer(
                    self.text, line, len(self.text) if end < 0 else end
                )
                if not (
                    stop.group(2) == "."
                    and (
                        len(stop.group(1)) == 1
                        or stop.group(1).lower() in _TITLE_ABBREVIATIONS
                        or "." in stop.group(1)
                    )
                )
            ]
        # the last stop that ends by p
        i = bisect.bisect_right(stops, p)
        return stops[i - 1] if i else line

    def _in_quotation(self, p: int) -> bool:
        """Whether ``p`` lies inside a quotation of its paragraph (an odd number of
        straight marks before it on its line, or more opening than closing curly ones)."""
        line = self.text[self.text.rfind("\n", 0, p) + 1 : p]
        return line.count('"') % 2 == 1 or line.count("“") > line.count("”")

    def _is_person_mention(self, m: Mention) -> str | None:
        """The surname of a mention that names a person, else None: its last name word
        is the last word of some mention of two words or more ("Mike Pompeo" in
        "Secretary of State Mike Pompeo"), not a headline in capitals."""
        names = _name_tokens(m.tokens)
        if not names or (len(m.tokens) > 1 and m.text.isupper()):
            return None
        last = names[-1]
        if len(last) < 2 or _bare(last) in _NOT_A_NAME or last in ORG_WORDS:
            return None
        return last if last in self._full_surnames else None

    def _subject_named_since(
        self, since: int, pos: int, want: str, *, speaks: bool = True
    ) -> str | None:
        """The person a "he"/"she" at ``pos`` stands for when its own sentence names one
        as its subject, after the last claim's speaker (at ``since``): the first person
        named in the sentence, outside quotation marks, after no preposition and before a
        lower-case word or a comma ("In the interview, Trump declined to discuss it --
        "...," he said"; "Trump, appearing after her, cited problems that he blamed on
        ..."; not "For Putin, she added"). The person must speak somewhere in the
        article (unless ``speaks`` is False). None when there is none, or their known
        gender is the other one."""
        sentence = self._sentence_start(pos)  # (also each mention's in it, before pos)
        start = max(since + 1, sentence)
        found: tuple[Mention, str] | None = None
        for m in self.mentions:
            if m.start >= pos:
                break
            if m.start < start or self._in_quotation(m.start):
                continue
            surname = self._is_person_mention(m)
            if surname is None:
                continue
            if speaks and surname not in self.speaker_names:
                break  # a person who says nothing in the article is named first
            after_prep = _PREPOSITION_END_RE.search(self.text[sentence : m.start])
            end = m.start + len(m.text)
            if not speaks:
                if after_prep:
                    continue  # "In Texas, Novak calculated ...": no subject, read on
                party = _PARENTHESIS_RE.match(self.text, end)  # "Sen. Ron Lund (R-Wis.),"
                end = party.end() if party else end
            after = _NEXT_WORD_RE.match(self.text, end)
            if (
                not after_prep
                and after is not None
                and (after.group(2) or after.group(1) not in _STOP_CAPS)
            ):
                found = (m, surname)
            break  # only the first person named in the sentence
        if found is None:
            return None
        resolved = self.fullest(found[1], pos) or found[0].text
        g = self.gender.get(resolved) or self._gender_of_title(resolved)
        if g and g != want:
            return None
        return resolved

    def _subject_before(self, since: int, pos: int, want: str) -> str | None:
        """The person a "he"/"she" opening its sentence at ``pos`` stands for when the
        sentence before holds no claim (the last claim is at ``since``, before it) and
        opens with a person as its subject ("Trump is again blaming his predecessor,
        Barack Obama. He says ..."): that person, if they speak somewhere in the
        article. None otherwise, or when their known gender is the other one."""
        start = self._sentence_start(pos)
        if self.text[start:pos].strip(" \t\"“‘'(") or start == 0:
            return None  # the pronoun does not open its sentence
        before = start - 1
        while before > 0 and self.text[before - 1].isspace():
            before -= 1
        previous = self._sentence_start(before)
        if since >= previous:
            return None  # the sentence before holds a claim: its speaker is the antecedent
        for m in self.mentions:
            if m.start < previous:
                continue
            if m.start >= before or self.text[previous : m.start].strip():
                return None  # the sentence before opens with no name
            surname = self._is_person_mention(m)
            after = _NEXT_WORD_RE.match(self.text, m.start + len(m.text))
            if surname is None or surname not in self.speaker_names or after is None:
                return None
            if after.group(1) in _STOP_CAPS:
                return None  # "Trump and Putin ...", "Trump in Helsinki ...": no lone subject
            resolved = self.fullest(surname, pos) or m.text
            g = self.gender.get(resolved) or self._gender_of_title(resolved)
            return None if g and g != want else resolved
        return None

    def _subject_before_quote(self, since: int, pos: int, want: str) -> str | None:
        """The person a "he"/"she" right after a quotation that opens its sentence
        stands for ('In Texas, Novak calculated that ... . "A switch would help," he
        wrote.'): the subject of the sentence before the quotation, found as
        :meth:`_subject_named_since` finds one, when that sentence holds no claim (the
        last claim is at ``since``, before it). None otherwise."""
        line = self.text.rfind("\n", 0, pos) + 1
        close = re.search(r"[\"”][ \t]*$", self.text[line:pos])
        if close is None:
            return None
        end = line + close.start()  # the closing mark
        opened = max(self.text.rfind('"', line, end), self.text.rfind("“", line, end))
        if opened < 0:
            return None
        before = self.text[line:opened].rstrip()
        if before and before[-1] not in ".?!":
            return None  # the quotation does not open its sentence
        if not before:
            return None  # a paragraph of its own: the sentence before is another one's
        previous = self._sentence_start(line + len(before) - 1)
        if since >= previous:
            return None  # the sentence before holds a claim: its speaker is the antecedent
        # the quotation's own attribution makes its subject a speaker
        return self._subject_named_since(since, line + len(before), want, speaks=False)

    def turn_speaker(self, pos: int) -> str | None:
        """Who "I" or "we" at ``pos`` is in a transcript: the label of the turn it is
        in, the last one before it on its line ("CHUCK TODD: ... AMBASSADOR JON
        HUNTSMAN: Well, I don't think ..."). None outside a labelled turn."""
        line = self.text.rfind("\n", 0, pos) + 1
        label = None
        for m in _TURN_LABEL_RE.finditer(self.text, line, pos):
            label = m
        if label is None or self._in_quotation(label.start(1)):
            return None
        name = label.group(1)
        if not _name_tokens(words(name)) or self.dateline(name, label.start(1)) is not None:
            return None
        return self.canonical(name, label.start(1))

    def author(self, surface: str, pos: int) -> str | None:
        """Who made an ad or issued a document that the text names right after it
        ("an advert by the newspaper Nordposten", "a statement from the
        Health Ministry"): that named body or person. None for any other speaker."""
        toks = words(surface)
        if not 2 <= len(toks) <= 3 or toks[0] not in {"the", "a", "an"}:
            return None
        if toks[-1] not in DOCUMENTS and toks[-1] not in _ADS:
            return None
        at = self.text.find(surface.strip(), max(0, pos - 5))
        if at < 0 or at > pos + 5:
            return None
        by = _BY_AUTHOR_RE.match(self.text, at + len(surface.strip()))
        if by is None:
            return None
        gap: list[str] = []  # the words between "by" and the name
        at = by.end()
        for m in self.mentions:
            if m.start < at:
                continue
            gap.extend(words(self.text[at : m.start]))
            if len(m.tokens) == 1 and _is_nationality(m.tokens[0]):
                at = m.start + len(m.text)
                continue  # "by Norwegian newspaper Nordposten": the name follows
            if len(gap) > 3 or not set(gap) <= _AUTHOR_WORDS:
                return None  # "a report by the committee on Monday": no author named
            if re.match(r"[ \t]+(?:and|or)[ \t]", self.text[m.start + len(m.text) :]):
                return None  # "by Lake College and the University of ...": authors, not one
            if is_org(m.tokens) or _name_tokens(m.tokens):
                return m.text if is_org(m.tokens) else self.canonical(m.text, m.start)
            return None
        return None

    def newspaper(self, surface: str) -> str | None:
        """The newspaper "the newspaper" or "the news organization" stands for: the one
        the article introduces as a newspaper ("Finnish newspaper Helsingin Posti",
        "Helsingin Posti, a Helsinki-based newspaper"), when it introduces one only.
        None otherwise: the description stays unresolved."""
        if " ".join(surface.lower().split()) not in _NEWSPAPER_ROLES:
            return None
        named = {
            (m.group(1) or m.group(2)).strip() for m in _NEWSPAPER_NAMED_RE.finditer(self.text)
        }
        named = {n for n in named if words(n)[0] not in _STOP_CAPS}
        return named.pop() if len(named) == 1 else None

    def department(self, surface: str) -> str | None:
        """The department a capitalized word alone stands for ("Justice said ..."):
        "the Justice Department" when the article names it so or as "the Department
        of Justice". None for any other speaker."""
        word = surface.strip()
        if self._departments is None:  # the article's departments, read once
            self._departments = (
                {a or b for a, b in _DEPARTMENT_RE.findall(self.text)}
                if "Department" in self.text
                else set()
            )
        if word not in self._departments:
            return None
        return f"the {word} Department"

    def _pronoun(self, pron: str, pos: int) -> str | None:
        if pron in ("i", "we") and (turn := self.turn_speaker(pos)) is not None:
            return turn
        want = {"he": "m", "him": "m", "she": "f", "her": "f"}.get(pron)
        if want:
            since = self.history[-1][0] if self.history else -1
            named = (
                self._subject_named_since(since, pos, want)
                or self._subject_before(since, pos, want)
                or self._subject_before_quote(since, pos, want)
            )
            if named is not None:
                self.gender.setdefault(named, want)
                return named
        for hpos, _surface, resolved in reversed(self.history):
            if pos - hpos > 1500:
                break
            toks = words(resolved)
            if not toks or toks[0] in PRONOUNS:
                continue
            if pron in ("they", "them", "we"):
                if is_org(toks) or toks[-1].endswith("s"):
                    return resolved
                continue
            if pron == "it":
                if is_org(toks):
                    return resolved
                continue
            if is_org(toks) or len(_name_tokens(toks)) == 0 or not self._person_named(resolved):
                continue
            g = self.gender.get(resolved) or self._gender_of_title(resolved)
            if want and g and g != want:
                continue
            if want:
                self.gender.setdefault(resolved, want)
            return resolved
        if pron not in ("he", "him", "she", "her"):
            return None
        # No earlier claim: the most recent multi-word person mention.
        for m in reversed(self.mentions):
            if m.start >= pos or pos - m.start > 1500:
                continue
            if (
                len(_name_tokens(m.tokens)) >= 2
                and not is_org(m.tokens)
                and self._person_named(m.text)
            ):
                g = self.gender.get(m.text) or self._gender_of_title(m.text)
                if want and g and g != want:
                    continue
                return self.canonical(m.text, m.start)
        return None

    def canonical(self, surface: str, pos: int) -> str:
        toks = words(surface)
        names = [t for t in _name_tokens(toks) if t not in {"the", "a", "an"}]
        if not names:
            return surface
        caps = [w for w in surface.split() if w[:1].isupper()]
        if not caps or is_org(toks):
            return surface
        if len(names) == 1 and self._gender_of_title(surface) is not None:
            nearest = self.nearest_named(names[0], pos, self._gender_of_title(surface))
            if nearest is not None:
                return nearest
        full = self.fullest(names[-1], pos, frozenset(n for n in names[:-1] if len(n) > 1))
        if full and len(words(full)) >= len(toks):
            return full
        return surface

    def nearest_named(self, surname: str, pos: int, gender: str | None) -> str | None:
        """Whom a titled surname ("Mrs. Novak", "Mr. Novak") stands for when the article
        names two or more people of that surname ("President Karl Novak", "first lady
        Maria Novak"): the one named last before ``pos`` with a first name, whose known
        gender is not the other one. None when the surname names one person only."""
        full = [
            m
            for m in self._by_surname.get(surname, ())
            if len(_name_tokens(m.tokens)) >= 2
            and _fuller_form(m)
            and not m.text.isupper()
            # a first name, not a word of the sentence capitalized at its start ("Did Trump")
            and re.search(rf"\b{re.escape(_name_tokens(m.tokens)[-2])}\b", self.text) is None
        ]
        if len({_name_tokens(m.tokens)[-2] for m in full}) < 2:
            return None
        for m in reversed(full):
            if m.start >= pos:
                continue
            g = self.gender.get(m.text) or self._gender_of_title(m.text)
            if gender and g and g != gender:
                continue
            given = frozenset({_name_tokens(m.tokens)[-2]})
            return self.fullest(surname, pos, given) or m.text
        return None

    def by_role(self, surface: str, pos: int) -> str | None:
        """The person a role-only description names ("the president", "the Russian
        leader", "the deputy minister"): among the article's named people whose mentions
        carry the role (and the nationality, when the description gives one), the one
        the article names most often (the one it is about, not merely the last one
        named), ties to the one named last before ``pos``. A holder must be named before
        ``pos`` (with the role, or by name alone before the role is given: "Whitfield
        arrived ... the president said ... President Dana Whitfield"), except for an
        indefinite description ("a federal judge ..., Judge Dana Sabraw wrote"). A
        former holder ("Former President ...") or a deputy ("Vice President ...") is no
        holder of "the president", and a mention with no name ("US President") none of
        any role. A description with a nationality no holder is given ("the American
        president") takes the one holder given none, when that person is named with no
        other. None when no named person carries the role: the description stays
        unresolved."""
        role = _role(surface)
        if role is None:
            return None
        head, modifiers, nations = role
        heads = _LEADERS if head == "leader" else {head}
        indefinite = surface.split()[0].lower() in {"a", "an"}
        holders: list[tuple[int, str]] = []  # (words of the role matched or -1, surname)
        qualified_as: dict[str, set[str]] = {}  # surname -> words of its nationalities
        for m in self.mentions:
            names = _name_tokens(m.tokens)
            if not names or is_org(m.tokens) or len(m.tokens) < 2:
                continue
            if not any(len(n) > 1 and _bare(n) not in _NOT_A_NAME for n in names):
                continue  # "US President": a role, no name
            at = next((i for i, t in enumerate(m.tokens) if _title(t) in heads), None)
            if at is None or names[-1] in heads:
                continue
            if m.start >= pos and not indefinite:
                named = self._by_surname.get(names[-1], [])
                if not named or named[0].start >= pos:
                    continue  # not named before the description: not whom it means
            before = set(m.tokens[:at])
            if before & _ROLE_CHANGERS and not before & _ROLE_CHANGERS & modifiers:
                continue
            nation = {_bare(t) for t in before if _is_nationality(t)}
            qualified_as.setdefault(names[-1], set()).update(nation)
            if nations and not all(nation & _nation_words(n) for n in nations):
                holders.append((-1, names[-1]))  # another nationality: the fallback's only
                continue
            holders.append((len(set(m.tokens) & modifiers), names[-1]))
        fits = [h for h in holders if h[0] >= 0]
        if not fits and nations:
            # "the American president" of an article naming "President Dana Whitfield"
            # only: the one holder named without a nationality, if named with no other
            wanted = set().union(*(_nation_words(n) for n in nations))
            fits = [(0, name) for _f, name in holders if not qualified_as.get(name, set()) - wanted]
            if len({name for _f, name in fits}) != 1:
                return None
        if not fits:
            return None if holders or indefinite else self.last_speaker_named_most(pos)
        best_fit = max(f for f, _ in fits)
        surnames = {name for f, name in fits if f == best_fit}

        def weight(name: str) -> tuple[int, int]:
            named = self._by_surname.get(name, [])
            return len(named), max((m.start for m in named if m.start < pos), default=-1)

        surname = max(sorted(surnames), key=weight)
        return self.fullest(surname, pos) or surname

    def last_speaker_named_most(self, pos: int) -> str | None:
        """Whom a definite role description ("the president") means in an article that
        names nobody with the role ("the restless second-term president of the republic",
        then "Trump" throughout): the speaker of the last claim before ``pos`` (within
        1,000 characters), when that is a person the article names more often than any
        other, at least three times before ``pos``. Else None (unresolved)."""
        last = next((r for p, _s, r in reversed(self.history) if p < pos and pos - p <= 1000), None)
        if last is None:
            return None
        counts = {  # people: named with a first name or a title at least once
            name: len(named)
            for name, named in self._by_surname.items()
            if len(name) > 1
            and name not in _NOT_A_NAME
            and any(len(m.tokens) > 1 and not m.text.isupper() for m in named)
        }
        if not counts:
            return None
        ranked = sorted(counts.values(), reverse=True)
        top = [name for name, n in counts.items() if n == ranked[0]]
        if len(top) != 1 or (len(ranked) > 1 and ranked[1] == ranked[0]):
            return None
        surname = top[0]
        toks = words(last)
        if is_org(toks) or not toks or _name_tokens(toks)[-1:] != [surname]:
            return None
        if sum(1 for m in self._by_surname[surname] if m.start < pos) < 3:
            return None
        return last

    def by_body(self, head: str, pos: int) -> str | None:
        """The named body a role-only body stands for ("the company" -> "Acme Corp."):
        among the article's mentions holding one of the words of its role
        (:data:`_BODY_ROLES`), the one named most often, ties to the one named last
        before ``pos``. None when the article names no such body."""
        fits = _BODY_ROLES[head]
        named: dict[str, list[int]] = {}
        for m in self.mentions:
            if len(m.tokens) < 2 and head not in {"company", "firm", "operator"}:
                continue  # "Ministry" alone names no ministry
            if m.tokens[0] == "the" or not set(m.tokens) & fits:
                continue
            if m.text.lower() == head or (m.text.isupper() and len(m.tokens) > 3):
                continue
            named.setdefault(m.text, []).append(m.start)
        if not named:
            return None
        return max(
            sorted(named),
            key=lambda t: (len(named[t]), max((p for p in named[t] if p < pos), default=-1)),
        )

    def for_principal(self, surface: str, pos: int) -> str | None:
        """The person a possessive role names ("Putin's spokesman", "Russian President
        Vladimir Putin's spokesman" -> "Kremlin spokesman Dmitry Peskov"): the one
        person the article names with that role (before or after the description), who
        is not the principal. None when it names none or several (a spokesman of each
        side): the description stays unresolved."""
        m = _PRINCIPAL_RE.match(surface.strip())
        if m is None:
            return None
        principal, role = m.group(1).lower(), m.group(2).lower()
        if is_org([principal]):
            return None  # "the Health Ministry's spokesman": the body's (see by_body)
        holders: set[str] = set()
        for mention in self.mentions:
            names = _name_tokens(mention.tokens)
            if not names or len(mention.tokens) < 2 or names[-1] == principal:
                continue
            if len(names[-1]) < 2 or _bare(names[-1]) in _NOT_A_NAME:
                continue
            before = self.text[max(0, mention.start - 40) : mention.start]
            end = mention.start + len(mention.text)
            after = self.text[end : end + 60]
            if (
                role in mention.tokens
                or re.search(rf"\b{role}\s+$", before, re.IGNORECASE)
                or re.match(rf",\s+(?:[\w.’'-]+\s+){{0,4}}?{role}\b", after, re.IGNORECASE)
            ):
                holders.add(names[-1])
        if len(holders) != 1:
            return None
        surname = holders.pop()
        return self.fullest(surname, pos) or surname

    def issuer(self, pos: int) -> str | None:
        """Who issued the document a claim cites ("the statement said"): the first
        named person or body of the last earlier sentence (within 600 characters) that
        tells of such a document ("The Health Ministry issued a statement"). None when
        none does."""
        before = self.text[max(0, pos - 600) : pos]
        found = list(_ISSUED_RE.finditer(before))
        if not found:
            return None
        at = max(0, pos - 600) + found[-1].start()
        if found[-1].group(1):
            # "a bombshell Justice Department indictment": the document names its issuer
            inside = at + found[-1].start(1) - found[-1].start()
            for m in self.mentions:
                if inside <= m.start < at + found[-1].end(1) - found[-1].start():
                    if is_org(m.tokens):
                        return m.text
                    if _name_tokens(m.tokens):
                        return self.canonical(m.text, m.start)
        start = max(self.text.rfind(". ", 0, at), self.text.rfind("\n", 0, at)) + 1
        for m in self.mentions:
            if start <= m.start < at and (is_org(m.tokens) or _name_tokens(m.tokens)):
                if m.tokens[0] in {"the", "a", "an"}:
                    continue
                return m.text if is_org(m.tokens) else self.canonical(m.text, m.start)
        return None

    def lawsuit_party(self, surface: str, pos: int) -> str | None:
        """:data:`LAWSUIT_PARTY` for a side of a lawsuit the article tells of (see
        :data:`_PARTY_RE`, :data:`_SUIT_PAPER_RE`): all its words lower-case but the
        first, and no words after it that name the other side ("lawyers for the
        administration"). None for anything else."""
        stripped = surface.strip()
        if not (_PARTY_RE.match(stripped) or _SUIT_PAPER_RE.match(stripped)):
            return None
        if any(not w.islower() for w in stripped.split()[1:]):
            return None
        if self._lawsuit is None:
            self._lawsuit = _LAWSUIT_RE.search(self.text) is not None
            self._sued = frozenset(
                w for m in _SUED_RE.finditer(self.text) for w in words(m.group(1))
            ) - {"the", "a", "an"}
        if not self._lawsuit:
            return None
        at = self.text.find(stripped, max(0, pos - 5))
        if at < 0 or at > pos + 5:
            at = pos
        after = _FOR_SIDE_RE.match(self.text, at + len(stripped))
        if after is not None and set(words(after.group(1))) & (_OTHER_SIDE | self._sued):
            return None
        return LAWSUIT_PARTY

    def party_member(self, surface: str, pos: int) -> str | None:
        """The person a state-and-party description stands for ("The Kentucky
        Republican says ..." after "Sen. Rand Paul tells CNN ..."): the speaker of the
        last claim before ``pos`` (within 1,000 characters) when it names a person whom
        the article gives a legislator's or governor's title somewhere ("Sen.",
        "Senator", "Rep.", "Gov."). None otherwise: the description stays unresolved."""
        if _PARTY_MEMBER_RE.match(surface.strip()) is None:
            return None
        last = next((r for p, _s, r in reversed(self.history) if p < pos and pos - p <= 1000), None)
        if last is None:
            return None
        toks = words(last)
        names = _name_tokens(toks)
        if not names or is_org(toks) or not self._person_named(last):
            return None
        titled = any(
            {t.strip(".") for t in m.tokens} & _ELECTED_TITLES
            for m in self._by_surname.get(names[-1], ())
        )
        return last if titled else None

    def the_person(self, surface: str, pos: int) -> str | None:
        """Whom "the person said" stands for: the speaker of the last claim before
        ``pos`` (within 600 characters) when that claim's speaker was introduced by an
        indefinite description ("A Justice Department representative said ... / "...,"
        the person said"). None otherwise."""
        if surface.strip().lower() != "the person":
            return None
        for p, earlier, resolved in reversed(self.history):
            if p >= pos:
                continue
            if pos - p > 600:
                return None
            first = earlier.split()[0].lower() if earlier.split() else ""
            return resolved if first in {"a", "an"} else None
        return None

    def spelled_out(self, letters: str) -> str | None:
        """The name the article gives for an organisation's ``letters`` ("ACLU"): one
        it follows with them in parentheses ("the American Civil Liberties Union
        (ACLU)"), else the first name of capitalized words whose initials they are
        (:func:`initials`; "Department of Justice" for "DOJ"), else
        :data:`COMMON_INITIALS`. None when there is none."""
        if self._spelled is None:
            self._spelled = {}
            found: dict[str, str] = {}
            for m in _BODY_NAME_RE.finditer(self.text):
                name = m.group(0)
                if m.group(1):
                    name = name[: name.rfind("(")].rstrip()
                parts = name.split()
                for i in range(len(parts) - 1):  # "The American Civil Liberties Union"
                    if not parts[i][:1].isupper() or parts[i].lower() in _STOP_CAPS:
                        continue
                    tail = " ".join(parts[i:])
                    if m.group(1) and m.group(1) in initials(tail):
                        self._spelled.setdefault(m.group(1), tail)
                    for letters_of in initials(tail):
                        found.setdefault(letters_of, tail)
            for k, v in found.items():
                self._spelled.setdefault(k, v)
        return self._spelled.get(letters) or COMMON_INITIALS.get(letters)

    def initials_body(self, surface: str) -> str | None:
        """The body an organisation's initials stand for ("a DOJ spokesperson" ->
        "Department of Justice", when the article names it; see :meth:`spelled_out`).
        None for any other speaker, or initials the article does not spell out."""
        m = _INITIALS_SPEAKER_RE.match(surface.strip())
        if m is None or m.group(1) in _NOT_A_NAME_CAPS:
            return None
        return self.spelled_out(m.group(1))

    def addressed(self, surface: str, pos: int) -> str | None:
        """Who wrote a post in which ``surface`` is a form of address set off by commas
        ("The wiser course, Mr. President, would be to announce ..."): the name of the
        post's credit line after it, in its paragraph or the next ("— Ben Vale
        (@benvale)"). None for
        any other speaker, or when no credit follows."""
        if _VOCATIVE_RE.match(surface.strip()) is None:
            return None
        at = self.text.find(surface.strip(), max(0, pos - 5))
        if at < 0 or at > pos + 5 or self.text[max(0, at - 2) : at] != ", ":
            return None
        end = self.text.find("\n\n", at)  # the credit: in the paragraph or the next one
        end = -1 if end < 0 else self.text.find("\n\n", end + 2)
        credit = _POST_CREDIT_RE.search(self.text, at, len(self.text) if end < 0 else end)
        return None if credit is None else self.canonical(credit.group(1), credit.start(1))

    def dateline(self, surface: str, pos: int) -> int | None:
        """Where the dateline ends when ``surface`` at ``pos`` is one: a place in
        capitals at the start of its line, before a colon or a dash ("HELSINKI: ...",
        "GLASGOW, Scotland — ...", "MOSCOW (Reuters) - ..."); None when it is none."""
        place = surface.strip()
        if not place.isupper() or len(place) < 3 or set(words(place)) & (PRONOUNS | TITLE_WORDS):
            return None  # "SENATOR PAUL:" is a transcript's speaker, no place
        at = self.text.find(place, max(0, pos - 5))
        if at < 0 or at > pos + 5:
            return None
        line = self.text.rfind("\n", 0, at) + 1
        if self.text[line:at].strip():
            return None
        m = _DATELINE_AFTER_RE.match(self.text, at + len(place))
        return None if m is None else m.end()

    def after_dateline(self, end_of_dateline: int) -> str | None:
        """Who speaks in a sentence led by a dateline: the first person it names after
        the dateline ("OSLO: Prime Minister Ana Kovac flew into ..., insisting
        that ..."), never a word of the dateline itself (the "Scotland" of "TURNBERRY,
        Scotland (AP) -"). None when it names none before the sentence ends."""
        pos = end_of_dateline
        end = self.text.find(". ", pos)
        end = len(self.text) if end < 0 else end
        for m in self.mentions:
            if m.start < pos or m.text.isupper():
                continue
            if m.start >= end:
                break
            names = _name_tokens(m.tokens)
            if names and not is_org(m.tokens) and self._person_named(m.text):
                return self.canonical(m.text, m.start)
        return None

    def resolve(self, surface: str, pos: int) -> str:
        """The resolved speaker for ``surface`` appearing at ``pos``; records it."""
        low = surface.lower().strip()
        toks = words(surface)
        resolved: str | None = None
        if low in PRONOUNS:
            resolved = self._pronoun(low, pos)
        elif (dated := self.dateline(surface, pos)) is not None and (
            after := self.after_dateline(dated)
        ) is not None:
            resolved = after
        elif (author := self.addressed(surface, pos)) is not None:
            resolved = author
        elif (body := self.initials_body(surface)) is not None:
            resolved = body
        elif (spokesman := self.for_principal(surface, pos)) is not None:
            resolved = spokesman
        elif toks and toks[0] in {"the", "a", "an"} and _role(surface) is not None:
            key = " ".join(toks[1:])
            resolved = self.aliases.get(key) or self.by_role(surface, pos)
        elif (body := _body_role(surface)) is not None:
            resolved = self.aliases.get(" ".join(toks[1:])) or self.by_body(body, pos)
        elif (made_by := self.author(surface, pos)) is not None:
            resolved = made_by
        elif (paper := self.newspaper(surface)) is not None:
            resolved = paper
        elif (department := self.department(surface)) is not None:
            resolved = department
        elif len(toks) == 2 and toks[0] == "the" and toks[1] in DOCUMENTS:
            resolved = self.issuer(pos) or self.lawsuit_party(surface, pos)
        elif (party := self.lawsuit_party(surface, pos)) is not None:
            resolved = party
        elif (member := self.party_member(surface, pos)) is not None:
            resolved = member
        elif (earlier := self.the_person(surface, pos)) is not None:
            resolved = earlier
        elif (staff := _OWN_STAFF_RE.match(surface.strip())) is not None and looks_like_name(
            " ".join(p for p in staff.group(1).split() if p[:1].isupper())
        ):
            resolved = self.canonical(staff.group(1), pos)
        else:
            resolved = self.canonical(surface, pos)
        resolved = resolved or surface
        g = self._gender_of_title(surface)
        if g:
            self.gender.setdefault(resolved, g)
        self.history.append((pos, surface, resolved))
        return resolved
