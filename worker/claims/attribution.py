"""Rule-based claim extraction over a spaCy dependency parse.

Design after the Gender Gap Tracker's quote extractor (own code): a reporting verb's
clausal complement is the content and its subject the speaker (active, passive with
"by", inverted "..., the minister said"); quoted spans take the nearest reporting verb
outside the quote, or inherit the previous speaker when the sentence has none;
"according to X"; noun cues ("X's statement that ...", "in a statement, X ...").

Speed: a regex splitter finds candidate sentences (a cue word outside quotation marks);
the commonest shapes ('"...," X said.', 'X said (that) ...', '..., X said.',
'according to X, ...') are read by the strict patterns of ``fastpath`` without a
parse; the rest go to spaCy in one ``nlp.pipe`` batch, with the tagger, lemmatizer,
attribute ruler and NER excluded (cue lemmas come from ``cues.VERB_FORMS``, names from
a regex over the article). Offsets index the text exactly as given.

Span conventions (chosen against PolNeAR's Content spans): a direct quote's content
keeps its quotation marks; a quote interrupted by its attribution ('"A," he said. "B."')
is one claim whose text runs from the first mark to the last, attribution included; a
claim nested in another's content ("X said Y believes ...") is not reported separately.
"""

from __future__ import annotations

import bisect
import functools
import re
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import spacy
import structlog
from spacy.attrs import LOWER
from spacy.language import Language
from spacy.strings import get_string_id
from spacy.tokens import Doc, Token
from thinc.api import Model, NumpyOps

from schemas.records import ClaimKind, ExtractedClaim
from worker.claims import fastpath
from worker.claims.cues import CLAUSE_ONLY, NOUN_CUES, VERB_FORMS, has_cue, verb_lemma, wordset
from worker.claims.sentences import QUOTE_CHARS, quote_spans, split_sentences
from worker.claims.speakers import (
    PRONOUNS,
    RELATIVE,
    Resolver,
    harvest_mentions,
    is_description,
    looks_like_name,
    surname_of,
)

EXTRACTOR_VERSION = "rules-12"

# Pipeline components the rules need; everything else is excluded at load time.
_KEEP = ("tok2vec", "transformer", "parser")
_EXCLUDE = ("ner", "tagger", "morphologizer", "lemmatizer", "attribute_ruler", "senter")
_VERB_DEPS = frozenset(
    {"ROOT", "ccomp", "xcomp", "conj", "advcl", "relcl", "parataxis", "acl", "pcomp", "csubj"}
)
_OBJ_DEPS = frozenset({"dobj", "oprd", "attr", "acomp", "dative"})
_CONTENT_PREPS = frozenset({"of", "for", "about", "on", "over", "as", "against", "that"})
_MIN_CONTENT = 3  # characters
_INHERIT_WINDOW = 2  # sentences a speaker carries forward to an unattributed quote
# Words parsed after a sentence's last cue word; the rest of the sentence is not parsed
# and a content that reaches the cut runs to the sentence end (None: parse it all).
PARSE_TAIL_WORDS: int | None = 8
_MIN_TAIL_CUT = 4  # words: a shorter tail is parsed anyway
_CLAUSE_MIN = 5  # words kept after a late "that" or comma
_CUE_WORDS = frozenset({*VERB_FORMS, *NOUN_CUES, "according"})
_CUE_HASHES = frozenset(get_string_id(w) for w in _CUE_WORDS)
_NOUN_CUE_HASHES = frozenset(get_string_id(w) for w in NOUN_CUES)
_TAIL_WORD_RE = re.compile(r"\S+")
_CUE_SCAN_RE = re.compile(r"[A-Za-z]+(?:-[a-z]+)?")
_ASCII_LETTERS = re.compile(r"[A-Za-z]")
_ENGLISH_WORDS = wordset(
    """
    the and of to in is that for it was on with he said as by at be this are have from his
    she they not but has had an will would her their which who
    """
)


def _log() -> Any:
    """The module's logger. Where logging was never configured (``claimwire claims``
    reads files without the service's setup) structlog would print to stdout, into the
    ``--jsonl`` output: then the line goes to stderr."""
    if structlog.is_configured():
        return structlog.get_logger("claimwire.claims")
    return structlog.wrap_logger(structlog.PrintLogger(sys.stderr)).bind(logger="claimwire.claims")


# What a bug in the rules over one sentence raises; anything else (MemoryError,
# RecursionError, KeyboardInterrupt...) is not the sentence's and propagates.
_RULE_ERRORS = (LookupError, ValueError, TypeError, AttributeError, AssertionError)


_LOAD_LOCK = threading.Lock()
# One lock per loaded pipeline: `claimwire run` uses Celery's threads pool, and a spaCy
# Language is not thread-safe (parsing adds lexemes to the shared vocab and string
# store). The parse is CPU-bound and holds the GIL for most of its time, so
# serializing it costs threads little; the rules around it run unlocked.
_PARSE_LOCKS: weakref.WeakKeyDictionary[Language, threading.Lock] = weakref.WeakKeyDictionary()


def load_nlp(model_name: str) -> Language:
    """The pipeline ``model_name``, loaded once per process (also when threads race)."""
    with _LOAD_LOCK:
        return _load_nlp(model_name)


def _parse_lock(nlp: Language) -> threading.Lock:
    with _LOAD_LOCK:
        lock = _PARSE_LOCKS.get(nlp)
        if lock is None:
            lock = _PARSE_LOCKS[nlp] = threading.Lock()
        return lock


@functools.lru_cache(maxsize=4)
def _load_nlp(model_name: str) -> Language:
    """Load ``model_name`` with only the parser and what feeds it.

    NER, the tagger, lemmatizer and attribute ruler are excluded: cue lemmas come from a
    word-form table and names from a regex over the article, and NER alone would roughly
    double the parse time (measured on PolNeAR dev) for no gain in speaker accuracy the
    rules could use. A pipeline without a parser is refused.
    """
    nlp = spacy.load(model_name, exclude=list(_EXCLUDE))
    if _one_blas_thread():
        # thinc's default matrix product is BLIS's; numpy's OpenBLAS, held to one thread,
        # runs the tok2vec and parser products of these small batches about three
        # times faster here (docs/claims-eval.md, "Speed"). Same parses.
        ops = NumpyOps(use_blis=False)
        for _name, pipe in nlp.components:
            model = getattr(pipe, "model", None)
            if isinstance(model, Model):
                for node in model.walk():
                    node.ops = ops
    if "parser" not in nlp.pipe_names:
        raise ValueError(f"spaCy pipeline {model_name!r} has no dependency parser")
    for name in list(nlp.pipe_names):
        if name not in _KEEP:
            nlp.disable_pipe(name)
    return nlp


def _one_blas_thread() -> bool:
    """Hold numpy's BLAS to one thread for the whole process; False when that cannot be
    done (threadpoolctl missing, or no BLAS it knows), and then the parse keeps BLIS.

    Several BLAS threads on small matrices cost more than they save, and their spinning
    steals the cores that other work (Celery's threads, other processes) needs: measured,
    the extraction was 1.3–1.6 times slower with two OpenBLAS threads than with BLIS.
    """
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=1, user_api="blas")
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return bool(blas) and all(i.get("num_threads") == 1 for i in blas)


def is_english(text: str) -> bool:
    """A cheap check on function-word share; callers skip claims for other languages."""
    sample = text[:5000].lower()
    tokens = re.findall(r"[a-z']+", sample)
    if len(tokens) < 3:
        return bool(tokens) and any(t in _ENGLISH_WORDS for t in tokens)
    hits = sum(1 for t in tokens if t in _ENGLISH_WORDS)
    return hits / len(tokens) >= 0.12


@dataclass
class _Raw:
    """A claim before speaker resolution; offsets are absolute."""

    speaker: str
    speaker_pos: int
    verb: str
    kind: ClaimKind
    start: int
    end: int
    sent: int  # index into the sentence list
    cue_pos: int
    appos: str | None = None
    antecedent: tuple[str, int] | None = None  # of a relative-pronoun speaker
    appos_pos: int = -1


_DANGLING_CC = re.compile(r"[\s,;]+(?:and|but|or)$", re.IGNORECASE)


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Strip whitespace, dangling punctuation (commas, colons, dashes) and a dangling
    coordinator ("..., and" when the parse hung the next clause's "and" on this one)."""
    while start < end and (text[start].isspace() or text[start] in ",;:—–-"):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in ",;:—–-"):
        end -= 1
    m = _DANGLING_CC.search(text, start, end)
    if m is not None and m.start() > start:
        return _trim(text, start, m.start())
    return start, end


def _span_of(tokens: Iterable[Token]) -> tuple[int, int] | None:
    toks = list(tokens)
    if not toks:
        return None
    a = min(t.idx for t in toks)
    b = max(t.idx + len(t.text) for t in toks)
    return a, b


# Times a parse may take into a speaker's noun phrase ("Last January bureau staff")
_TIME_LEADS = wordset("last this next earlier")
_TIMES = wordset(
    """january february march april may june july august september october november
    december monday tuesday wednesday thursday friday saturday sunday week month year
    spring summer autumn fall winter"""
)


def _speaker_tokens(head: Token) -> list[Token]:
    """The noun phrase of a speaker, without appositions, relative clauses or commas."""
    out: list[Token] = []
    for t in head.subtree:
        if t.i < head.i or t.i == head.i:
            out.append(t)
        else:
            break
    # keep a right-hand "of ..." prepositional phrase and compounds
    for child in head.rights:
        if (child.dep_ == "prep" and child.lower_ == "of") or child.dep_ in ("compound", "flat"):
            out.extend(child.subtree)
        else:
            break
    # drop a leading determiner-free punctuation or a leading relative/conjunction
    left_cut = [t for t in out if t.i < head.i and t.dep_ in ("punct", "cc", "appos")]
    if left_cut:
        last = max(t.i for t in left_cut)
        out = [t for t in out if t.i > last]
    out = sorted(out, key=lambda t: t.i)
    # a time the parse took into the subject ("Last January bureau staff estimated"):
    # when the speaker is, not who
    lead = 0
    if len(out) > 1 and out[0].lower_ in _TIME_LEADS and out[1].lower_ in _TIMES:
        lead = 2
    elif out and out[0].lower_ in _TIMES and out[0].lower_ not in ("may", "march"):
        lead = 1
    # ... but not a time that owns the speaker ("This year's survey", "Monday's report")
    owned = 0 < lead < len(out) and (
        out[lead].dep_ == "case" or out[lead].lower_ in ("'s", "’s", "'", "’")
    )
    if 0 < lead < len(out) and not owned and all(t.i < head.i for t in out[:lead]):
        out = out[lead:]
    return out


def _appos(head: Token) -> Token | None:
    for child in head.rights:
        if child.dep_ == "appos":
            return child
    return None


def _subject(verb: Token) -> tuple[Token | None, bool]:
    """The speaker head of a reporting verb and whether it came through a passive agent."""
    for child in verb.children:
        if child.dep_ == "agent":
            for gc in child.children:
                if gc.dep_ == "pobj":
                    return gc, True
    subjects = [c for c in verb.children if c.dep_ in ("nsubj", "csubj")]
    if subjects:
        # two subjects (a dateline parsed as one: "GLASGOW, Scotland — President Donald
        # Trump says ..."): the one next to the verb
        before = [c for c in subjects if c.i < verb.i]
        return (before[-1] if before else subjects[0]), False
    if verb.dep_ in ("xcomp", "conj", "advcl", "pcomp") and verb.head is not verb:
        head = verb.head
        if head.dep_ == "prep" and head.head is not head:
            head = head.head
        if head.lower_ in {"quoted", "quotes", "quoting"} and verb.lower_ in {"saying", "telling"}:
            # "Interfax quoted Peskov as saying ...": the one quoted spoke, not the
            # agency or outlet that carried it
            quoted = next((c for c in head.children if c.dep_ == "dobj"), None)
            if quoted is not None:
                return quoted, False
        return _subject(head)
    if verb.dep_ == "acl" and verb.text.endswith("ing"):
        return verb.head, False
    return None, False


def _content_tokens(verb: Token, lemma: str) -> list[Token] | None:
    """Tokens of the content attached to ``verb`` (clause, infinitive, or object)."""
    for child in verb.children:
        if child.dep_ == "ccomp" and child.i != verb.i:
            return _without_nested_cues(list(child.subtree), child)
    for child in verb.children:
        if child.dep_ == "xcomp" and child.i > verb.i and lemma not in ("continue",):
            # "urged Congress to act": the object belongs to the content
            objs = [c for c in verb.children if c.dep_ in ("dobj", "dative") and c.i < child.i]
            inf = list(child.subtree)
            for o in objs:
                inf.extend(o.subtree)
            return inf
    if lemma in CLAUSE_ONLY:
        # "said in a statement that ..." sometimes lands under a prep or as a mark.
        return None
    right = [
        c
        for c in verb.rights
        if c.dep_ in _OBJ_DEPS or (c.dep_ == "prep" and c.lower_ in _CONTENT_PREPS)
    ]
    if not right:
        return None
    toks: list[Token] = []
    for c in right:
        toks.extend(c.subtree)
    return toks


def _without_nested_cues(toks: list[Token], top: Token) -> list[Token]:
    """Cut '..., while X insisted that ...' out of a content: it is a claim of its own."""
    drop: set[int] = set()
    for t in toks:
        if t.i == top.i or t.dep_ not in ("advcl", "conj") or verb_lemma(t.text) is None:
            continue
        contrast = any(
            c.lower_ in ("while", "whereas", "but") and c.dep_ in ("mark", "cc") for c in t.children
        ) or (t.i > 0 and t.doc[t.i - 1].lower_ in ("while", "whereas", "but"))
        if contrast and any(c.dep_ == "nsubj" for c in t.children) and t.i > top.i:
            drop.update(x.i for x in t.subtree)
    return [t for t in toks if t.i not in drop] if drop else toks


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


class _Extractor:
    def __init__(self, text: str, nlp: Language) -> None:
        self.text = text
        self.nlp = nlp
        self.sentences = split_sentences(text)
        self.quotes = sorted(quote_spans(text, self.sentences))
        # quotations never overlap, so their starts and their ends are both in order
        self._q_starts = [a for a, _ in self.quotes]
        self._q_ends = [b for _, b in self.quotes]
        self._s_starts = [s.start for s in self.sentences]
        self.raw: list[_Raw] = []
        # sentence index -> where its parsed part ends, for a sentence parsed in part
        self.cut: dict[int, int] = {}

    def quotes_in(self, a: int, b: int) -> list[tuple[int, int]]:
        """The quotations that overlap text[a:b] (two bisections, not a scan)."""
        lo = bisect.bisect_right(self._q_ends, a)
        hi = bisect.bisect_left(self._q_starts, b)
        return self.quotes[lo:hi]

    # -- candidate selection --------------------------------------------------------
    def candidates(self) -> list[int]:
        out = []
        for i, s in enumerate(self.sentences):
            chunk = self.text[s.start : s.end]
            inside = [(max(a, s.start), min(b, s.end)) for a, b in self.quotes_in(s.start, s.end)]
            if inside:
                # a cue inside a quote attributes nothing: test only the text outside quotes
                parts, pos = [], s.start
                for a, b in sorted(inside):
                    parts.append(self.text[pos:a])
                    pos = max(pos, b)
                parts.append(self.text[pos : s.end])
                chunk = " ".join(parts)
            if has_cue(chunk):
                out.append(i)
        return out

    def parse_end(self, si: int) -> int:
        """Where the parsed part of sentence ``si`` ends: ``PARSE_TAIL_WORDS`` words after
        its last cue word outside quotation marks (more when a "that" or a comma in those
        words opens a clause late), or the sentence end.

        The words beyond are the far end of a content clause (or of whatever follows
        it): the rules need the cue, its subject and where the content starts, not the
        parse of the content's last words. A content that reaches the cut runs on to the
        sentence end (``_reach``).
        """
        s = self.sentences[si]
        if PARSE_TAIL_WORDS is None:
            return s.end
        quoted = self.quotes_in(s.start, s.end)
        last = -1
        for m in _CUE_SCAN_RE.finditer(self.text, s.start, s.end):
            if m.group(0).lower() in _CUE_WORDS and not (quoted and _inside(m.start(), quoted)):
                last = m.end()
        if last < 0:
            return s.end
        words = list(_TAIL_WORD_RE.finditer(self.text, last, s.end))
        k = PARSE_TAIL_WORDS
        # "said at a rally in Dayton, Ohio, that it ...": keep a few words of the clause
        opens = [
            j
            for j, w in enumerate(words[:k])
            if w.group(0).lower() == "that" or w.group(0)[-1] in ",:"
        ]
        if opens:
            k = max(k, opens[-1] + 1 + _CLAUSE_MIN)
        if len(words) < k + _MIN_TAIL_CUT:
            return s.end
        return words[k - 1].end()

    def _reach(self, si: int, doc: Doc, a: int, b: int) -> tuple[int, int]:
        """A span (absolute) that reaches the cut of a sentence parsed in part runs on to
        the sentence end (without its final stop)."""
        if si not in self.cut:
            return a, b
        s = self.sentences[si]
        last = next((t for t in reversed(doc) if not t.is_punct), doc[-1])
        if b > s.start + last.idx:
            b = s.end
            while b > a and self.text[b - 1] in ".!?":
                b -= 1
        return a, b

    # -- rules over one parsed sentence ---------------------------------------------
    def sentence_claims(self, si: int, doc: Doc) -> None:
        s = self.sentences[si]
        base = s.start
        quoted = self.quotes_in(s.start, s.end)
        # Only cue words can start a claim ("according", a verb form, a noun cue): found
        # by the hashes of their lower-case forms, without a Python string per token.
        # "In a statement, X rejected ...": any verb may be a cue, so then look at all.
        lower = doc.to_array(LOWER).tolist()
        cues = [i for i, h in enumerate(lower) if h in _CUE_HASHES]
        # the attributions after this sentence's quotations, read only when the parse
        # fails a cue (a subject missing or inside a quotation)
        after_quote: dict[int, tuple[int, int, int, int]] | None = None if quoted else {}
        statement = any(lower[i] in _NOUN_CUE_HASHES for i in cues)
        for i in range(len(doc)) if statement else cues:
            tok = doc[i]
            if lower[i] not in _CUE_HASHES and tok.dep_ not in ("ROOT", "conj", "ccomp"):
                continue  # the rules below would find nothing at this token
            abs_pos = base + tok.idx
            if quoted and _inside(abs_pos, quoted):
                continue
            if tok.lower_ == "according" and tok.i + 1 < len(doc) and doc[tok.i + 1].lower_ == "to":
                self._according(si, doc, tok, base)
                continue
            lemma = verb_lemma(tok.text)
            noun_cue = tok.lower_ in NOUN_CUES and (
                tok.dep_ not in _VERB_DEPS or any(c.dep_ == "poss" for c in tok.children)
            )
            if noun_cue:
                lemma = None
            if lemma is None and not noun_cue:
                if tok.dep_ in ("ROOT", "conj", "ccomp") and self._statement_prep(tok):
                    lemma = tok.lower_
                else:
                    continue
            if noun_cue and lemma is None:
                self._noun_cue(si, doc, tok, base)
                continue
            assert lemma is not None
            subj, _passive = _subject(tok) if tok.dep_ in _VERB_DEPS else (None, False)
            if subj is None:
                if after_quote is None:
                    after_quote = self._after_quote_attributions(si)
                att = after_quote.get(abs_pos)
                if att is not None:
                    # '"...," Trump tweeted Monday morning, blaming ...' parsed as a noun
                    # phrase ("Trump tweeted Monday morning") or a verb without a
                    # subject: the attribution of the quotation before it all the same
                    self._add_after_quote(si, att, lemma, abs_pos)
                continue
            speaker_span: tuple[int, int] | None = None
            subj_end = base + subj.idx + len(subj.text) - 1
            if quoted and _inside(base + subj.idx, quoted) and _inside(subj_end, quoted):
                # the parse took the subject from inside a quotation (a participle after a
                # misparsed attribution: '"Our relationship ... worse," Trump tweeted,
                # blaming ...'): the speaker is that of the attribution before the cue
                if after_quote is None:
                    after_quote = self._after_quote_attributions(si)
                before = [pos for pos in after_quote if pos < abs_pos]
                if not before:
                    continue
                _qa, _qb, sa, sb = after_quote[max(before)]
                speaker_span = (sa, sb)
            # "it shows that" / "there is" are rarely attributed; "it said" (a body) is
            if (
                subj.lower_ in ("it", "there", "this")
                and not _passive
                and lemma not in ("say", "report", "announce", "state")
            ):
                continue
            content = _content_tokens(tok, lemma)
            span: tuple[int, int] | None = None
            if content:
                content = [t for t in content if t.i != tok.i]
                sp = _span_of(content)
                if sp is not None:
                    span = self._reach(si, doc, base + sp[0], base + sp[1])
            if span is None and tok.dep_ == "parataxis" and tok.head.i != tok.i:
                # "In the months since, Ruiz says, far too few homes were built"
                sub = {t.i for t in tok.subtree}
                rest = [t for t in tok.head.subtree if t.i not in sub]
                left = [t for t in rest if t.i < tok.i]
                right = [t for t in rest if t.i > tok.i]
                side = left if len(left) >= len(right) else right
                sp = _span_of(
                    t
                    for t in side
                    if not t.is_punct or t.text in QUOTE_CHARS or t.text in ("''", "'", "‘", "’")
                )
                if sp is not None:
                    span = self._reach(si, doc, base + sp[0], base + sp[1])
            if span is None:
                span = self._colon_or_quote(si, doc, tok, base)
            if span is None:
                continue
            a, b = self._fix_span(span, base, doc, tok, subj)
            if b - a < _MIN_CONTENT:
                continue
            self._add(si, subj, lemma, a, b, base + tok.idx, doc, speaker_span=speaker_span)

    def _after_quote_attributions(self, si: int) -> dict[int, tuple[int, int, int, int]]:
        """The attributions that follow a quotation in sentence ``si``, by where their
        cue starts: (quotation start, end, speaker start, end)."""
        s = self.sentences[si]
        out: dict[int, tuple[int, int, int, int]] = {}
        for qa, qb in self.quotes_in(s.start, s.end):
            if qb < s.end:
                found = fastpath.attribution_after(self.text, qb, s.end)
                if found is not None:
                    sa, sb, cue = found
                    out[cue] = (qa, qb, sa, sb)
        return out

    def _add_after_quote(
        self, si: int, att: tuple[int, int, int, int], lemma: str, cue_pos: int
    ) -> None:
        qa, qb, sa, sb = att
        a, b = _trim(self.text, qa, qb)
        if b - a < _MIN_CONTENT:
            return
        speaker = self.text[sa:sb]
        self.raw.append(_Raw(speaker, sa, lemma, self._kind(a, b), a, b, si, cue_pos))

    def _statement_prep(self, verb: Token) -> bool:
        """'In a statement, the ministry rejected ...': the verb becomes a cue."""
        return any(
            gc.dep_ == "pobj" and gc.lower_ in NOUN_CUES
            for child in verb.children
            if child.dep_ == "prep" and child.lower_ in ("in", "during")
            for gc in child.children
        )

    def _fix_span(
        self, span: tuple[int, int], base: int, doc: Doc, verb: Token, subj: Token
    ) -> tuple[int, int]:
        a, b = span
        cue = base + verb.idx
        # never include the cue or the speaker
        s_toks = _speaker_tokens(subj)
        s_span = _span_of(s_toks)
        for x, y in [(cue, cue + len(verb.text))] + (
            [(base + s_span[0], base + s_span[1])] if s_span else []
        ):
            if a <= x < b:
                left, right = (a, x), (y, b)
                a, b = left if left[1] - left[0] >= right[1] - right[0] else right
        a, b = _trim(self.text, a, b)
        # a quote the content cuts into belongs to the content (cues are never quoted)
        cue_end = cue + len(verb.text)
        for qa, qb in self.quotes_in(a, b + 1):
            if qa < b < qb and not qa < cue < qb and not (a < cue < qb and qa < cue):
                b = qb
            if qa < a < qb and not (qa < cue_end <= a):
                a = qa
        return a, b

    def _colon_or_quote(self, si: int, doc: Doc, verb: Token, base: int) -> tuple[int, int] | None:
        """A cue without a clause: 'X said: ...' or a quote right before/after the cue."""
        s = self.sentences[si]
        after = base + verb.idx + len(verb.text)
        tail = self.text[after : s.end]
        colon = re.match(r"[^:]{0,40}?:\s*", tail)
        in_sentence = self.quotes_in(s.start - 1, s.end)
        for qa, qb in in_sentence:
            # a quotation (double or single marks) that opens within 40 characters
            # ('said on "Meet the Press"' names a show: a quotation after a preposition
            # is no content)
            if (
                after <= qa
                and _BEFORE_QUOTE_RE.fullmatch(self.text, after, qa)
                and not _AFTER_PREP_RE.search(self.text, after, qa)
            ):
                return qa, qb
        if colon and after + colon.end() < s.end:
            return after + colon.end(), s.end
        if colon and si + 1 < len(self.sentences):
            nxt = self.sentences[si + 1]
            return nxt.start, nxt.end
        # quote ending just before the cue: '"...," she said'
        cue = base + verb.idx
        for qa, qb in in_sentence:
            if qb <= cue and cue - qb <= 60 and qb > s.start - 1 and qa < s.end:
                gap = self.text[qb:cue]
                if "." not in gap.strip(" ,") or len(gap) < 25:
                    return qa, qb
        return None

    def _according(self, si: int, doc: Doc, tok: Token, base: int) -> None:
        to = doc[tok.i + 1]
        pobj = next((c for c in to.children if c.dep_ == "pobj"), None)
        if pobj is None:
            return
        phrase = list(tok.subtree) if tok.i != tok.head.i else [tok, *to.subtree]
        ps = _span_of(phrase)
        if ps is None:
            return
        s = self.sentences[si]
        pa, pb = base + ps[0], base + ps[1]
        left = _trim(self.text, s.start, pa)
        right = _trim(self.text, pb, s.end)
        a, b = left if left[1] - left[0] >= right[1] - right[0] else right
        if b - a < _MIN_CONTENT:
            return
        self._add(si, pobj, "according to", a, b, pa, doc, kind="according_to")

    def _noun_cue(self, si: int, doc: Doc, tok: Token, base: int) -> None:
        poss = next((c for c in tok.children if c.dep_ == "poss"), None)
        if poss is None:
            prep = next((c for c in tok.children if c.dep_ == "prep" and c.lower_ == "by"), None)
            poss = next((c for c in prep.children if c.dep_ == "pobj"), None) if prep else None
        if poss is None:
            return
        content = next((c for c in tok.children if c.dep_ in ("acl", "ccomp", "relcl")), None)
        if content is None or content.dep_ == "relcl":
            return
        sp = _span_of(content.subtree)
        if sp is None:
            return
        a, b = _trim(self.text, *self._reach(si, doc, base + sp[0], base + sp[1]))
        if b - a < _MIN_CONTENT:
            return
        self._add(si, poss, tok.lower_.rstrip("s"), a, b, base + tok.idx, doc)

    def _add(
        self,
        si: int,
        subj: Token,
        lemma: str,
        a: int,
        b: int,
        cue_pos: int,
        doc: Doc,
        kind: ClaimKind | None = None,
        speaker_span: tuple[int, int] | None = None,
    ) -> None:
        base = self.sentences[si].start
        if speaker_span is not None:
            # a speaker read off the text, not the parse (absolute offsets)
            sa, sb = speaker_span
            self.raw.append(
                _Raw(self.text[sa:sb], sa, lemma, kind or self._kind(a, b), a, b, si, cue_pos)
            )
            return
        # the "." that ends a cut sentence's parsed part is no text of the article
        limit = self.cut.get(si, self.sentences[si].end) - base
        s_span = _span_of(_speaker_tokens(subj))
        if s_span is None:
            return
        s_span = (s_span[0], min(s_span[1], limit))
        speaker = self.text[base + s_span[0] : base + s_span[1]]
        antecedent: tuple[str, int] | None = None
        if speaker.lower() in RELATIVE:
            # "Sanders, who said ...": the surface speaker is the relative pronoun
            rel = subj.head
            while rel.dep_ != "relcl" and rel.head.i != rel.i:
                rel = rel.head
            if rel.dep_ != "relcl":
                return
            ant = _span_of(_speaker_tokens(rel.head))
            if ant is None:
                return
            antecedent = (self.text[base + ant[0] : base + min(ant[1], limit)], base + ant[0])
        ap = _appos(subj)
        appos = None
        appos_pos = -1
        if ap is not None:
            aps = _span_of(ap.subtree)
            if aps is not None:
                raw_appos = self.text[base + aps[0] : base + min(aps[1], limit)]
                appos = raw_appos.strip(" ,")
                appos_pos = base + aps[0] + len(raw_appos) - len(raw_appos.lstrip(" ,"))
        if kind is None:
            kind = self._kind(a, b)
        self.raw.append(
            _Raw(
                speaker,
                base + s_span[0],
                lemma,
                kind,
                a,
                b,
                si,
                cue_pos,
                appos,
                antecedent,
                appos_pos,
            )
        )

    def _kind(self, a: int, b: int) -> ClaimKind:
        quotes = self.quotes_in(a, b)
        quoted = 0
        for qa, qb in quotes:
            quoted += min(b, qb) - max(a, qa)
        if quoted == 0:
            return "indirect"
        starts = any(qa == a for qa, _ in quotes)
        ends = any(qb == b for _, qb in quotes)
        if quoted >= (b - a) - 2 or (starts and ends):
            return "direct"  # a quote, possibly interrupted by its attribution
        return "mixed"

    # -- quotes without a cue in their sentence ------------------------------------
    def orphan_quotes(self) -> None:
        covered = [(r.start, r.end) for r in self.raw]
        sent_of = {}
        for i, s in enumerate(self.sentences):
            sent_of[s.start] = i
        for qa, qb in self.quotes:
            if any(min(qb, b) - max(qa, a) > 0 for a, b in covered):
                continue
            inner = self.text[qa:qb]
            if len(inner.split()) < 4:
                continue  # scare quotes and titles
            si = bisect.bisect_right(self._s_starts, qa) - 1
            if si > 0 and qa < self.sentences[si - 1].end + 1:
                si -= 1  # the first sentence that holds it, as with abutting pieces
            if si < 0 or qa >= self.sentences[si].end + 1:
                continue
            prev = [r for r in self.raw if 0 <= si - r.sent <= _INHERIT_WINDOW and r.end <= qa]
            if not prev:
                continue
            p = max(prev, key=lambda r: r.end)
            para_gap = self.sentences[si].paragraph - self.sentences[p.sent].paragraph
            if para_gap > 1:
                continue
            a, b = _trim(self.text, qa, qb)
            gap = self.text[p.end : a]
            if para_gap == 0 and len(gap) <= 40 and p.kind == "direct":
                # '"A," he said. "B."': one statement interrupted by its attribution
                p.end = b
                continue
            self.raw.append(
                _Raw(
                    p.speaker,
                    p.speaker_pos,
                    p.verb,
                    "direct",
                    a,
                    b,
                    si,
                    p.cue_pos,
                    None,
                    p.antecedent,
                )
            )

    def headline_colons(self) -> set[int]:
        """'Issa: Clinton's honesty is in question' and transcript lines 'WALLACE: ...'."""
        done: set[int] = set()
        for i, s in enumerate(self.sentences):
            if i and self.sentences[i - 1].paragraph == s.paragraph:
                continue
            m = _COLON_LINE_RE.match(self.text, s.start, s.end)
            if m is None:
                continue
            who = m.group(1)
            if words_lower(who) & _NOT_SPEAKERS:
                continue
            end = s.end
            j = i + 1
            while j < len(self.sentences) and self.sentences[j].paragraph == s.paragraph:
                end = self.sentences[j].end
                j += 1
            a, b = _trim(self.text, m.end(), end)
            if b - a < 8:
                continue
            self.raw.append(_Raw(who, m.start(1), "say", self._kind(a, b), a, b, i, m.end(1), None))
            done.update(range(i, j))
        return done

    def fast(self, si: int) -> bool:
        """Claims of a sentence matched by a regex fast path (no parse needed)."""
        s = self.sentences[si]
        quotes = self.quotes_in(s.start, s.end)
        acc = fastpath.according(self.text, s.start, s.end, quotes)
        if acc is not None:
            a, b = _trim(self.text, acc.start, acc.end)
            speaker = self.text[acc.speaker_start : acc.speaker_end]
            self.raw.append(
                _Raw(
                    speaker, acc.speaker_start, acc.cue, "according_to", a, b, si, acc.speaker_start
                )
            )
            return True
        found = fastpath.after_quote(self.text, s.start, s.end, quotes)
        if found is None:
            found = fastpath.indirect(self.text, s.start, s.end, quotes)
        if found is None:
            found = fastpath.inverted(self.text, s.start, s.end, quotes)
        if found is None:
            return False
        fc, lemma = found
        a, b = _trim(self.text, fc.start, fc.end)
        speaker = self.text[fc.speaker_start : fc.speaker_end]
        kind = self._kind(a, b)
        raw = _Raw(speaker, fc.speaker_start, lemma, kind, a, b, si, fc.speaker_end)
        # "said the interior minister, Tomas Beran, in ...": the apposition, as the parse
        # would give it, for the speaker's resolution
        m = _FAST_APPOS_RE.match(self.text, fc.speaker_end, s.end)
        if m is not None and not _inside(m.start(1), quotes):
            raw.appos, raw.appos_pos = m.group(1), m.start(1)
        self.raw.append(raw)
        return True

    def _guarded(self, rule: Callable[..., object], si: int, *args: object) -> bool:
        """``rule(si, *args)``; an exception in it costs this sentence, not the article.

        No exception is expected from the rules: one is a bug of the kind that rules
        over a parse tree have (``_RULE_ERRORS``: an index or key that is not there, a
        token or span that is None, an empty sequence, a failed assertion). It is logged
        at error level (its type, where it was raised, the article's and the sentence's length;
        never the text), the sentence's claims found so far are dropped, and the other
        sentences are still read. Returns what the rule returned, False after a failure
        (a fast path that failed leaves its sentence to the parser).
        """
        n_raw = len(self.raw)
        try:
            return bool(rule(si, *args))
        except _RULE_ERRORS as exc:
            del self.raw[n_raw:]
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            _log().error(
                "claims_sentence_failed",
                error_type=type(exc).__name__,
                where=f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}",
                rule=getattr(rule, "__name__", "?"),
                article_chars=len(self.text),
                sentence=si,
                sentence_chars=self.sentences[si].end - self.sentences[si].start,
            )
            return False

    def run(self) -> list[ExtractedClaim]:
        skip = self.headline_colons()
        cand = [i for i in self.candidates() if i not in skip]
        if not cand and not self.raw:
            return []
        cand = [i for i in cand if not self._guarded(self.fast, i)]
        texts = []
        for i in cand:
            s = self.sentences[i]
            end = self.parse_end(i)
            if end < s.end:
                # the parser reads the cut part as a sentence of its own
                self.cut[i] = end
                texts.append(self.text[s.start : end] + ".")
            else:
                texts.append(self.text[s.start : s.end])
        if texts:
            with _parse_lock(self.nlp):
                docs = list(self.nlp.pipe(texts, batch_size=256))
            for si, doc in zip(cand, docs, strict=True):
                self._guarded(self.sentence_claims, si, doc)
        self.raw = _dedupe(self.raw)
        self.orphan_quotes()
        self.raw.sort(key=lambda r: (r.start, r.end))
        named = {surname_of(n) for r in self.raw for n in (r.speaker, r.appos or "")}
        named.discard(None)
        resolver = Resolver(
            harvest_mentions(self.text), self.text, speaker_names=frozenset(n for n in named if n)
        )
        out: list[ExtractedClaim] = []
        for r in sorted(self.raw, key=lambda r: r.cue_pos):
            if r.antecedent is not None:
                resolved = resolver.resolve(*r.antecedent)
            elif r.appos and is_description(r.speaker) and looks_like_name(r.appos):
                # "the interior minister, Tomas Beran, said": the name in apposition is
                # who spoke; the description becomes an alias of it (the surface
                # speaker stays the description, as parsed)
                resolved = resolver.resolve(r.appos, r.appos_pos)
                resolver.add_alias(r.speaker, resolved)
            else:
                resolved = resolver.resolve(r.speaker, r.speaker_pos)
            if r.appos and r.speaker.lower() not in PRONOUNS and not looks_like_name(r.appos):
                resolver.add_alias(r.appos, resolved)
            s = self.sentences[r.sent]
            sent_start, sent_end = min(s.start, r.start), max(s.end, r.end)
            out.append(
                ExtractedClaim(
                    speaker=r.speaker,
                    speaker_resolved=resolved,
                    verb=r.verb,
                    kind=r.kind,
                    text=self.text[r.start : r.end],
                    start=r.start,
                    end=r.end,
                    sentence=self.text[sent_start:sent_end],
                )
            )
        out.sort(key=lambda c: (c.start, c.end))
        return out


# What may stand between a cue and the quotation it introduces ("said on Monday, ").
_BEFORE_QUOTE_RE = re.compile(r"[^\"“:]{0,40}?[:,]?\s*")
_AFTER_PREP_RE = re.compile(r"\b(?:on|in|at|to|of|for|from|with|by|about)\s*$", re.IGNORECASE)
# An apposition right after a fast path's speaker: ", Tomas Beran," or ", an economist."
_FAST_APPOS_RE = re.compile(r",\s([^,;:()“”\"]{2,100}?)(?:,|[.!?]?$)")
_COLON_LINE_RE = re.compile(
    r"(?:[A-Z]+\s[–—-]\s)?((?:[A-Z][\w.’'-]*)(?:\s(?:[A-Z][\w.’'-]*|of|at|the|and)){0,5}):\s+"
)
_NOT_SPEAKERS = wordset(
    """
    update updated note editor photo photos watch related read source sources video
    correction clarification credit image listen see also more breaking live exclusive
    transcript question q a answer email contact follow subscribe tags share topics
    advertisement caption getty ap reuters by analysis opinion review timeline fact check
    factcheck scorecard sign posted published filed tip
    """
)


def words_lower(s: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]+", s)}


# A news agency or outlet named as the source of an "according to" ("the Interfax news
# agency", "Tass", "The Washington Post", "state broadcaster RT")
_OUTLET_RE = re.compile(
    r"\b(?:news|agency|newspaper|broadcaster|wire|television|radio|tv|channel|times|post|"
    r"journal|gazette|herald|tribune|daily|reuters|interfax|tass|ria|sputnik|xinhua|"
    r"bloomberg|associated\s+press|ap|afp|dpa|ansa|efe|bbc|cnn|msnbc|nbc|cbs|abc|npr|rt|"
    r"pravda|izvestia|kommersant|vedomosti)\b",
    re.IGNORECASE,
)


def _carriers(raw: list[_Raw]) -> set[int]:
    """The "according to" claims of a news agency or outlet whose content holds another
    claim's speaker and cue (`"...," Peskov said, according to Interfax`; "According to
    Reuters, the minister said ..."): the outlet only carried the statement of the
    person the attribution names, and is no speaker of it (ids of the raws). Any other
    "according to" ("according to her lawyers, the police said ...") is a reporting
    chain: it stays, as :func:`_dedupe` keeps it."""
    inner = [r for r in raw if r.verb != "according to"]
    return {
        id(k)
        for k in raw
        if k.verb == "according to"
        and _OUTLET_RE.search(k.speaker)
        and any(k.start <= r.speaker_pos < k.end and k.start <= r.cue_pos < k.end for r in inner)
    }


def _dedupe(raw: list[_Raw]) -> list[_Raw]:
    """Drop a claim whose content lies inside another's with the same speaker position,
    nested claims of a reporting chain ('X said Y told Z that ...' keeps both), and an
    "according to" claim carrying another's (:func:`_carriers`)."""
    carriers = _carriers(raw)
    raw = [r for r in raw if id(r) not in carriers]
    keep: list[_Raw] = []
    for r in sorted(raw, key=lambda r: (-(r.end - r.start), r.start)):
        dup = False
        for k in keep:
            same = k.start == r.start and k.end == r.end
            nested = k.start <= r.start and r.end <= k.end and k.start <= r.cue_pos < k.end
            if (
                same
                or nested
                or (k.start <= r.start and r.end <= k.end and k.speaker_pos == r.speaker_pos)
            ):
                dup = True
                break
        if not dup:
            keep.append(r)
    return keep


MAX_CLAIM_TEXT = 100_000
"""Characters of an article read for claims. News articles are far shorter; a page that
is megabytes of quotations would otherwise hold a worker for minutes. The cut falls at
a line break, so every offset stays an offset into the article's text."""


def extract_claims(text: str, nlp: Language) -> list[ExtractedClaim]:
    """Claims (attributed statements) in English ``text``; [] for anything else. Only
    the first ``MAX_CLAIM_TEXT`` characters are read (cut at a line break)."""
    if len(text) > MAX_CLAIM_TEXT:
        cut = text.rfind("\n", 0, MAX_CLAIM_TEXT)
        text = text[: cut if cut > 0 else MAX_CLAIM_TEXT]
    if not text or not text.strip() or not _ASCII_LETTERS.search(text):
        return []
    if not is_english(text):
        return []
    # No blanket catch: a failure in one sentence's rules is logged and costs only that
    # sentence (``_Extractor._guarded``); a failure anywhere else is a bug that must not
    # look like an article without claims, so it reaches the caller.
    return _Extractor(text, nlp).run()
