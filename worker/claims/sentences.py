"""Cheap regex segmentation with exact character offsets, and quotation spans.

Only candidate sentences (a cue word or a quotation mark) go to spaCy, so the split
happens before any parse. Offsets always index the text as given.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass

from worker.claims.cues import wordset
from worker.claims.fastpath import ATTRIBUTION_START_RE

# Abbreviations that end with a period without ending the sentence.
_ABBREV = wordset(
    """
    mr mrs ms dr st sen rep gov gen lt col sgt capt prof rev jr sr inc corp co ltd vs v jan
    feb mar apr aug sept sep oct nov dec u.s u.k u.n e.g i.e etc ft mt pres supt adm cmdr
    maj messrs pp al d.c a.m p.m u.s.a calif fla mass penn ariz wash va
    """
)
_BOUNDARY_RE = re.compile(r"[.!?]+[\"”’')\]]*\s+(?=(?:''|[\"“‘'(\[])?[A-Z0-9])|\n\s*")
_WORD_BEFORE_RE = re.compile(r"([A-Za-z.]+)\.$")
MAX_UNIT = 1200
# A quotation that ends with "?" or "!" on one line ('"...?" Holub asked'): when an
# attribution follows, the sentence goes on.
_ATTRIBUTED_QUESTION_RE = re.compile(r"[!?]+[\"”’']+[ \t]+$")

QUOTE_CHARS = '"“”„«»'
# Two apostrophes ('') stand for a straight double quote in some newswire text.
_QUOTE_RE = re.compile(r"''|[\"“”„«»]")
# Single quotation marks (British usage: 'We will win,' she said.), told apart from
# apostrophes (don't, the '90s, Jones' car, rock 'n' roll, O'Neill) by where they stand:
# the opening mark starts a word (after a line start, a space or an opening bracket or
# dash) and is followed by a letter; the closing mark ends a word or follows the
# punctuation that ends a quotation, and is followed by a space, punctuation or the
# paragraph end. A word-final "s'" followed by a space and a lower-case word is a plural
# possessive ("the workers' union"), never a closing mark; the quoted text must hold a
# word of two letters or more ('n' is no quotation) and stays within one paragraph.
_SINGLE_MARK_RE = re.compile(r"['‘’]")
_OPEN_AFTER = "([—–"  # besides whitespace and the paragraph start
_CLOSE_BEFORE = ".,!?…"  # besides letters and digits
_CLOSE_AFTER = ".,;:!?)]—–"  # besides whitespace and the paragraph end
_SINGLE_WORD_RE = re.compile(r"[A-Za-z]{2}")


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    paragraph: int


def _is_abbrev(text: str, dot_end: int) -> bool:
    m = _WORD_BEFORE_RE.search(text, max(0, dot_end - 12), dot_end)
    if m is None:
        return False
    if m.start(1) > 0 and text[m.start(1) - 1] in "'’":
        return False  # "don't." ends a sentence; it is no abbreviation "t."
    word = m.group(1).lower()
    return word in _ABBREV or (len(word) == 1 and word.isalpha())


def _hard_split(start: int, end: int, text: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while end - start > MAX_UNIT:
        cut = text.rfind(" ", start + MAX_UNIT // 2, start + MAX_UNIT)
        if cut <= start:
            cut = start + MAX_UNIT
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


def split_sentences(text: str) -> list[Sentence]:
    """Sentences (stripped of surrounding whitespace) with their paragraph number."""
    out: list[Sentence] = []
    para = 0
    pos = 0
    pieces: list[tuple[int, int, bool]] = []
    for m in _BOUNDARY_RE.finditer(text):
        sep = m.group(0)
        if sep[0] in ".!?":
            if sep[0] == "." and "\n" not in sep and _is_abbrev(text, m.start() + 1):
                continue  # a line break ends a sentence even after "a.m."
            if _ATTRIBUTED_QUESTION_RE.match(sep) and ATTRIBUTION_START_RE.match(text, m.end()):
                continue  # '"Why sell?" Holub asked.': the quotation and its attribution
            pieces.append((pos, m.start() + len(sep.rstrip()), "\n" in sep))
        else:
            pieces.append((pos, m.start(), True))
        pos = m.end()
    pieces.append((pos, len(text), False))
    for a, b, newline_after in pieces:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            for x, y in _hard_split(a, b, text):
                out.append(Sentence(x, y, para))
        if newline_after:
            para += 1
    return out


def quote_spans(text: str, sentences: list[Sentence]) -> list[tuple[int, int]]:
    """Quoted spans (including the marks), paired within a paragraph.

    Curly quotes pair by direction; straight quotes alternate. An opening mark left
    unclosed runs to the end of its paragraph (the newswire convention for a quote that
    continues in the next paragraph).
    """
    spans: list[tuple[int, int]] = []
    paras: dict[int, tuple[int, int]] = {}
    for s in sentences:
        a, b = paras.get(s.paragraph, (s.start, s.end))
        paras[s.paragraph] = (min(a, s.start), max(b, s.end))
    for p_start, p_end in paras.values():
        open_at: int | None = None
        for m in _QUOTE_RE.finditer(text, p_start, p_end):
            ch = m.group(0)
            i = m.start()
            if ch in "“„«":
                if open_at is not None and i - open_at > 1:
                    spans.append((open_at, i))
                open_at = i
            elif ch in "”»":
                if open_at is not None:
                    spans.append((open_at, i + 1))
                    open_at = None
            elif open_at is None:
                # A straight quote opens unless it directly follows a word (a closer).
                prev = text[i - 1] if i > p_start else " "
                if prev.isalnum() and m.end() < p_end and not text[m.end()].isalnum():
                    continue
                open_at = i
            else:
                spans.append((open_at, m.end()))
                open_at = None
        if open_at is not None and p_end - open_at > 1:
            spans.append((open_at, p_end))
    if "'" in text or "‘" in text:
        spans.extend(_single_spans(text, paras.values(), sorted(spans)))
    return spans


def _single_spans(
    text: str, paras: Iterable[tuple[int, int]], double: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Quotations in single marks that overlap no quotation in double marks (a single
    pair inside a double one is a quotation within the quotation, part of it)."""
    out: list[tuple[int, int]] = []
    for p_start, p_end in paras:
        open_at: int | None = None
        for m in _SINGLE_MARK_RE.finditer(text, p_start, p_end):
            i = m.start()
            prev = text[i - 1] if i > p_start else " "
            nxt = text[i + 1] if i + 1 < p_end else " "
            if open_at is None:
                if m.group(0) != "’" and (prev.isspace() or prev in _OPEN_AFTER) and nxt.isalpha():
                    open_at = i
                continue
            if m.group(0) == "‘" or not (prev.isalnum() or prev in _CLOSE_BEFORE):
                continue
            if not (nxt.isspace() or nxt in _CLOSE_AFTER):
                continue
            if prev == "s" and nxt.isspace() and text[i + 2 : i + 3].islower():
                continue  # "the workers' union": a plural possessive
            if _SINGLE_WORD_RE.search(text, open_at + 1, i):
                out.append((open_at, i + 1))
            open_at = None  # 'n' in "rock 'n' roll" holds no word: no quotation
    starts = [c for c, _ in double]
    ends = [d for _, d in double]
    return [(a, b) for a, b in out if bisect.bisect_right(ends, a) >= bisect.bisect_left(starts, b)]
