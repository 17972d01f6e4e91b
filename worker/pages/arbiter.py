"""Second opinion on trafilatura's text: detect a page where it kept blocks around the article.

The failure this targets (see ``docs/extraction-eval.md``): on some pages trafilatura's
default pass takes a container that holds the article *and* neighbouring blocks (lists of
other stories, hidden elements), so the text is two to four times the article. The
detector compares three candidate texts of the same page:

* ``main``: trafilatura's default pass (what claimwire would keep otherwise);
* ``precise``: trafilatura with ``favor_precision`` (and ``fast``: no internal fallbacks);
* ``other``: the article found by readability-lxml's algorithm (arc90's content scoring, a
  different method), as ported into trafilatura (``trafilatura.readability_lxml``: no extra
  dependency), run on a copy of the page without its hidden elements.

It fires when both the precise pass and readability return much less text than the
main pass (each at most ``ratio`` of its length) *and* agree with each other (word 4-gram
containment both ways at least ``agreement``). Two independent extractors converging on the
same shorter text is the sign that the extra text is not article. The text then kept is
trafilatura's precise pass (so the output keeps trafilatura's conventions; readability is
only a witness).

Readability alone is not a good replacement: on the trafilatura evaluation pages its
snippet F1 is far below trafilatura's (it often keeps one block of a longer article), and a
rule "readability when it is much shorter" alone loses there too. The agreement of the
precise pass is what separates "trafilatura kept extra blocks" from "readability kept too
little". Thresholds were chosen by 2-fold cross-validation (``bench/extraction_quality.py
--cv``); nothing here raises on content.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import trafilatura.external
from lxml import etree
from lxml.etree import _Element
from trafilatura.readability_lxml import Document as ReadabilityDocument

__all__ = [
    "ArbiterSettings",
    "agreement",
    "containment",
    "readability_seen",
    "readability_text",
    "second_opinion",
    "shingles",
]

_WORD = re.compile(r"\w+")

# Elements a reader never sees; readability-lxml drops them before scoring, trafilatura's
# port does not.
# Found from the attributes, each name looked up once over the document: the same
# elements in the same (document) order as ``//*[@hidden or @aria-hidden='true' or
# @style[...]]``, which tests three attributes on every element, at three times the cost;
# compiled once.
_HIDDEN = etree.XPath(
    "//@hidden/.. | //@aria-hidden[.='true']/.."
    " | //@style[contains(translate(., ' ', ''), 'display:none')"
    " or contains(translate(., ' ', ''), 'visibility:hidden')]/.."
)


# trafilatura's main pass (not ``fast``) runs the same readability port on its own copy of
# the page, less what it prunes first (comment sections, infinite-scroll containers):
# ``compare_extraction`` -> ``try_readability``. On a page where it prunes nothing and that
# has no hidden element, that copy is the witness's tree, so its summary is the witness's
# (a page's summary depends only on its tree). Readability's Document as trafilatura's
# ``external`` module names it is therefore this subclass, which keeps each summary (and the
# shape of the tree it read) while :func:`readability_seen` collects them; otherwise it is
# trafilatura's class unchanged.
_ELEMENTS = etree.XPath("count(descendant::*)")  # 0.04 ms a page; with attributes 0.3

Shape = float
_SEEN: ContextVar[list[tuple[Shape, str]] | None] = ContextVar("readability_seen", default=None)


def _shape(tree: _Element) -> Shape:
    """The elements under ``tree``: what pruning changes. trafilatura's prunes before
    readability only delete elements, so a copy of the page with as many is the page."""
    return float(_ELEMENTS(tree))


class _RecordingDocument(ReadabilityDocument):
    """trafilatura's readability Document; its summaries kept while one is collected."""

    __slots__ = ()

    def summary(self) -> str:
        seen = _SEEN.get()
        if seen is None:
            return super().summary()
        shape = _shape(self.doc)  # before: summary() rewrites the tree
        result = super().summary()
        seen.append((shape, result))
        return result


trafilatura.external.ReadabilityDocument = _RecordingDocument  # type: ignore[attr-defined]


# readability's summary first drops, with their contents, the ``script``, ``style`` and
# ``fencedframe`` elements, then every element (below the root, not ``html`` or ``body``)
# whose class and id name an unlikely candidate, each known from its own attributes; every
# later step reads what is left. Dropping a set of elements (tails kept, in any order) leaves
# the same tree, so a hidden element inside one of those is gone before readability reads
# anything either way: the witness's tree and trafilatura's (the page, nothing pruned) are
# then the same to readability. This holds of trafilatura 2.3.1's port (the SHA-256 of
# these methods' source, first 16 hex digits); another port: only a page with nothing
# hidden takes trafilatura's summary.
_FIRST_DROPS_SOURCES = {
    "summary": "e1907e0fd84da8bb",
    "remove_unlikely_candidates": "6ef38c8475242af9",
}
_FIRST_DROPPED_TAGS = frozenset(("script", "style", "fencedframe"))


def _source_digest(fn: Callable[..., object]) -> str:
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


def _first_drops_known() -> bool:
    try:
        return all(
            _source_digest(getattr(ReadabilityDocument, name)) == digest
            for name, digest in _FIRST_DROPS_SOURCES.items()
        )
    except (OSError, TypeError):  # no source to read
        return False


_FIRST_DROPS_KNOWN = _first_drops_known()


def _dropped_first(elements: list[_Element], root: _Element) -> bool:
    """Whether readability's first two steps on ``root`` drop each of ``elements``: each is,
    or lies inside, a ``script``, ``style`` or ``fencedframe``, or an unlikely candidate
    below ``root`` (see above); False when the port is not the known one."""
    if not _FIRST_DROPS_KNOWN:
        return False
    from trafilatura.readability_lxml import FRAME_TAGS, REGEXES

    unlikely, maybe = REGEXES["unlikelyCandidatesRe"], REGEXES["okMaybeItsACandidateRe"]
    verdicts: dict[_Element, bool] = {}  # an ancestor shared by several is looked at once
    for el in elements:
        walked: list[_Element] = []
        node: _Element | None = el
        dropped = False
        while node is not None and node is not root:
            known = verdicts.get(node)
            if known is not None:
                dropped = known
                break
            walked.append(node)
            if node.tag in _FIRST_DROPPED_TAGS:
                dropped = True
                break
            if node.tag not in FRAME_TAGS:
                attrs = " ".join(filter(None, (node.get("class"), node.get("id"))))
                if len(attrs) >= 2:
                    low = attrs.lower()
                    if unlikely.search(low) and not maybe.search(low):
                        dropped = True
                        break
            node = node.getparent()
        for w in walked:
            verdicts[w] = dropped
        if not dropped:
            return False
    return True


@contextlib.contextmanager
def readability_seen() -> Iterator[list[tuple[Shape, str]]]:
    """Collect the readability summaries trafilatura computes inside the block (each with
    its tree's :func:`_shape`), for :func:`readability_text`'s ``seen``."""
    seen: list[tuple[Shape, str]] = []
    token = _SEEN.set(seen)
    try:
        yield seen
    finally:
        _SEEN.reset(token)


@dataclass(frozen=True)
class ArbiterSettings:
    """When the second opinion is asked for and when it wins."""

    ratio: float = 0.7
    """Both other candidates must be at most this share of the main text's length."""
    agreement: float = 0.6
    """Minimum word 4-gram containment, both ways, between the precise and readability texts."""
    min_chars: int = 200
    """The precise text must have at least this many characters (else keep the main text)."""


def shingles(text: str, n: int = 4) -> set[tuple[str, ...]]:
    """Set of lower-cased word ``n``-grams (a text shorter than ``n`` words is one shingle)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def containment(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    """Share of ``a``'s shingles that are also in ``b`` (0.0 for an empty ``a``)."""
    return len(a & b) / len(a) if a else 0.0


def agreement(a: str, b: str) -> float:
    """The smaller of the two containments: 1.0 only when each text holds the other."""
    sa, sb = shingles(a), shingles(b)
    return min(containment(sa, sb), containment(sb, sa))


def readability_text(
    tree: _Element,
    html_to_text: Callable[[str], str],
    seen: list[tuple[Shape, str]] | None = None,
) -> str:
    """Article text by trafilatura's readability port from a copy of ``tree`` without its
    hidden elements; "" on any failure.

    ``html_to_text`` turns the article HTML into lines (claimwire's
    :func:`worker.pages.extractor.html_fragment_to_text`). ``seen``: the summaries
    trafilatura's pass over ``tree`` computed (:func:`readability_seen`); when one of them
    read a tree of ``tree``'s shape (trafilatura pruned nothing) and ``tree`` has no hidden
    element, or only hidden elements that readability drops first anyway (inside a script,
    a style or an unlikely candidate: :func:`_dropped_first`), that summary is the one
    readability would give here, and is taken.
    """
    try:
        if seen:
            shape = _shape(tree)
            summary = next((s for sh, s in seen if sh == shape), None)
            if summary is not None:
                hidden = _HIDDEN(tree)
                if not hidden or _dropped_first(hidden, tree):
                    return html_to_text(summary)
        doc = copy.deepcopy(tree)  # the port rewrites the tree it is given
        for el in _HIDDEN(doc):
            el.drop_tree()
        summary = ReadabilityDocument(doc).summary()
    except Exception:  # noqa: BLE001 - lxml errors, RecursionError...: no opinion
        return ""
    return html_to_text(summary) if isinstance(summary, str) else ""


def second_opinion(
    main: str,
    precise: Callable[[], str],
    other: Callable[[], str],
    settings: ArbiterSettings = ArbiterSettings(),
) -> str | None:
    """The precise text when the detector fires, else None (keep ``main``).

    ``other`` (readability, the cheaper pass) is called first; ``precise`` only when
    readability's text is already much shorter than ``main`` (about one page in five);
    neither when ``main`` is too short for any text to be both ``min_chars`` long and at
    most ``ratio`` of it. The decision does not depend on the order.
    """
    if not main:
        return None
    limit = settings.ratio * len(main)
    if limit < settings.min_chars:
        return None  # no precise text can be both long enough and much shorter: no pass run
    o_text = other()
    if not o_text or len(o_text) > limit:
        return None
    p_text = precise()
    if len(p_text) < settings.min_chars or len(p_text) > limit:
        return None
    if agreement(p_text, o_text) < settings.agreement:
        return None
    return p_text
