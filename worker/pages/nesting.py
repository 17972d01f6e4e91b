"""Deeply nested markup, flattened before parsing.

libxml2's HTML parser stops at 256 open elements (2,048 with ``huge_tree``): the rest of
the document, including an article below the limit and everything after it, is dropped
without an error the caller sees. A page whose article sits under 50,000 nested ``div``
elements therefore gave no text at all.

:func:`too_deep` tells whether a parsed tree reached the parser's limit (one XPath
evaluated in C, linear in the size of the tree). :func:`flatten` rewrites the markup so
that no element opens deeper than a bound: one linear pass over the tags, with a stack
that follows HTML's implied end tags closely enough (``li``, ``p``, table cells...),
which removes the start and end tags of elements opened too deep and keeps their text.
Wrapper elements (``div``, ``span``, ``section``, inline formatting) are removed first,
from :data:`SOFT_DEPTH` on; any element from :data:`HARD_DEPTH` on. Time and memory are
linear in the length of the markup (which the extractor bounds).
"""

from __future__ import annotations

import re

from lxml.etree import _Element

__all__ = ["HARD_DEPTH", "PARSER_DEPTH", "SOFT_DEPTH", "flatten", "too_deep"]

PARSER_DEPTH = 250
"""A tree with an element this deep (below the root) reached libxml2's limit of 256
open elements, or came close enough to it that the rest may have been cut."""

SOFT_DEPTH = 120
"""From this depth on, wrapper elements (:data:`WRAPPERS`) lose their tags."""

HARD_DEPTH = 200
"""From this depth on, every element loses its tags."""

WRAPPERS = frozenset(
    [
        "div",
        "span",
        "section",
        "font",
        "center",
        "b",
        "i",
        "u",
        "s",
        "em",
        "strong",
        "small",
        "big",
        "tt",
        "abbr",
        "cite",
        "label",
        "ins",
        "del",
        "mark",
        "sub",
        "sup",
        "nobr",
    ]
)
"""Elements whose tags carry no structure trafilatura needs: removed first."""

_BLOCK_WRAPPERS = frozenset({"div", "section", "center"})
"""Wrappers whose removed tags become a space (their text was a block of its own)."""

VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "basefont",
        "bgsound",
        "frame",
        "isindex",
    ]
)
_RAW_TEXT = frozenset(
    ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"]
)

# A start tag of any of these closes an open <p> (HTML's "close a p element").
_CLOSES_P = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "details",
        "dialog",
        "div",
        "dl",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hgroup",
        "hr",
        "main",
        "menu",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "ul",
        "li",
        "dd",
        "dt",
    ]
)
# Start tag -> (open elements it closes, elements that stop the search).
_IMPLIED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "li": (frozenset({"li"}), frozenset({"ul", "ol", "menu"})),
    "dt": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "dd": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "tr": (frozenset({"tr", "td", "th"}), frozenset({"table", "thead", "tbody", "tfoot"})),
    "td": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "th": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "thead": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "tbody": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "tfoot": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "option": (frozenset({"option"}), frozenset({"select", "optgroup", "datalist"})),
    "optgroup": (frozenset({"optgroup", "option"}), frozenset({"select"})),
}
_LOOK = 16
"""Open elements looked at for an implied end tag."""

_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)|<([!?][^>]*)>|<(/?)([A-Za-z][^\s/>]*)([^>]*)>",
    re.DOTALL,
)


def too_deep(tree: _Element) -> bool:
    """Whether ``tree`` (a parsed page's root) has an element :data:`PARSER_DEPTH` levels
    below it: the parser may have stopped there."""
    return bool(tree.xpath("boolean(" + "*/" * (PARSER_DEPTH - 1) + "*)"))


def _implied_close(stack: list[str], name: str) -> None:
    rule = _IMPLIED.get(name)
    if rule is None and name in _CLOSES_P:
        rule = (frozenset({"p"}), _CLOSES_P - {"p", "li", "dd", "dt"})
    if rule is None:
        return
    closes, stops = rule
    for i in range(len(stack) - 1, max(len(stack) - 1 - _LOOK, -1), -1):
        if stack[i] in closes:
            del stack[i:]
            return
        if stack[i] in stops:
            return


def flatten(html: str, soft: int = SOFT_DEPTH, hard: int = HARD_DEPTH) -> str:
    """``html`` with the tags of elements opened deeper than ``soft`` (wrappers) or
    ``hard`` (any element) removed, their text kept. Markup no deeper than ``soft`` comes
    back unchanged."""
    stack: list[str] = []  # open elements whose tags are kept
    dropped: list[str] = []  # open elements whose tags were removed
    counts: dict[str, int] = {}  # how many of each name are in ``dropped``
    parts: list[str] = []
    kept = 0  # html[:kept] is in parts
    pos = 0
    n = len(html)
    while pos < n:
        m = _TOKEN.search(html, pos)
        if m is None:
            break
        pos = m.end()
        name = m.group(3)
        if name is None:  # comment, doctype, processing instruction
            continue
        name = name.lower()
        if m.group(2):  # end tag
            if counts.get(name):
                while (top := dropped.pop()) != name:
                    counts[top] -= 1
                counts[name] -= 1
                parts.append(html[kept : m.start()])
                kept = m.end()
            elif name in stack:
                dropped.clear()  # closing an outer element closes what it holds
                counts.clear()
                while stack.pop() != name:
                    pass
            continue
        if name in _RAW_TEXT:
            close = re.compile(rf"</{re.escape(name)}\s*>", re.IGNORECASE).search(html, pos)
            pos = close.end() if close else n
            continue
        if name in VOID or m.group(4).rstrip().endswith("/"):
            continue
        _implied_close(stack, name)
        depth = len(stack)  # the depth in the markup given back
        if depth >= hard or (depth >= soft and name in WRAPPERS):
            dropped.append(name)
            counts[name] = counts.get(name, 0) + 1
            parts.append(html[kept : m.start()])
            parts.append(" " if name in _BLOCK_WRAPPERS else "")
            kept = m.end()
        else:
            stack.append(name)
    if not parts:
        return html
    parts.append(html[kept:])
    return "".join(parts)
