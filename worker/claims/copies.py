"""What a copy adds to its canonical: the lines of a duplicate's text that the group's
canonical article does not hold.

Dedup groups a text with another that contains it (containment, see
``worker.dedup.deduplicate``), so a later, longer version of a story (a live blog with
new entries, an article with paragraphs added) can be a copy of its earlier version.
The canonical carries the group's claims, and the copy counts as one more outlet
repeating them; but a statement only the copy's added text holds would be found
nowhere, and its first appearance would be whoever quoted it next. The claims step
therefore extracts a copy's claims too when it adds text, and keeps those that lie
wholly in the added lines (:func:`added_spans`).
"""

from __future__ import annotations

import re

from worker.claims.cues import has_cue
from worker.claims.sentences import QUOTE_CHARS, quote_spans, split_sentences
from worker.dedup.sketch import words

# The fewest words of an added line that count: a dateline, a byline, a time stamp
# ("2:15 p.m.") or a "Media: Associated Press" credit is not a statement's text.
MIN_ADDED_WORDS = 8

_LINE = re.compile(r"[^\n]+")


def added_spans(copy_text: str, canonical_text: str) -> list[tuple[int, int]]:
    """The character spans of what ``copy_text`` adds to ``canonical_text``: runs of
    consecutive lines whose words, in order, are nowhere in the canonical (case,
    punctuation and spacing folded as dedup folds them; a line without words neither
    starts nor breaks a run), each of at least :data:`MIN_ADDED_WORDS` words and holding
    what may make a claim: a reporting cue word or a quotation (:func:`quotes`; the
    extractor's own cheap test of a candidate sentence; a copy adding only other lines,
    such as a publisher's notice, is not parsed at all)."""
    held = " " + " ".join(words(canonical_text)) + " "
    runs: list[list[int]] = []  # [start, end, words]
    extends = False
    for line in _LINE.finditer(copy_text):
        found = words(line.group())
        if not found:
            continue
        if " " + " ".join(found) + " " in held:
            extends = False
            continue
        if extends:
            runs[-1][1:] = [line.end(), runs[-1][2] + len(found)]
        else:
            runs.append([line.start(), line.end(), len(found)])
        extends = True
    return [
        (a, b)
        for a, b, n in runs
        if n >= MIN_ADDED_WORDS and (has_cue(copy_text[a:b]) or quotes(copy_text[a:b]))
    ]


def quotes(text: str) -> bool:
    """Whether ``text`` holds a quotation: a double quotation mark, or a quotation in
    single marks as the extractor reads them (a headline's "Mayor: budget 'a fair
    deal'" quotes; the apostrophes of "don't" and "the workers' union" do not)."""
    if any(q in text for q in QUOTE_CHARS):
        return True
    if "'" not in text and "‘" not in text and "’" not in text:
        return False
    return bool(quote_spans(text, split_sentences(text)))


def within(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether ``[start, end)`` lies wholly in one of ``spans``."""
    return any(a <= start and end <= b for a, b in spans)
