"""Teaser lists: blocks of links to other stories inside the article's container.

The failure this targets (class A in ``docs/extraction-eval.md``): a news page lists other
stories ("More from this section", "Other columns") inside the same container as the
article, each story as a *teaser*: a headline that is a link to another page, often with a
one-line summary and a picture. trafilatura keeps the summaries as paragraphs.

A teaser is recognised by structure, not by class names: a heading (``h2``-``h6``) whose
text is almost all the text of a link (``<h3><a href>…</a></h3>`` or
``<a href><h3>…</h3></a>``). Its *unit* is the largest ancestor that holds no other such
heading, no ``h1`` and at most ``max_chars`` characters of text (headline + summary). Units
are removed only where at least ``min_units`` of them are siblings (children of one
element) and hold most of that element's text: a list of other stories, never one linked
heading alone, nor the linked item titles of a listicle between its paragraphs. Links to a
place in the same page (``#section``) are not stories. An article's own paragraphs are in
no unit, so they stay even when the list shares their container.

Thresholds were chosen by 2-fold cross-validation by site (``bench/extraction_quality.py
--cv``); nothing here raises on content (a failure leaves the tree as it was).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass

from lxml.etree import _Element

__all__ = ["TeaserSettings", "linked_headings", "teaser_units", "without_teasers"]

_HEADINGS = ("h2", "h3", "h4", "h5", "h6")


@dataclass(frozen=True)
class TeaserSettings:
    """When a group of linked headings is a teaser list."""

    min_units: int = 3
    """At least this many teaser units must be siblings."""
    max_chars: int = 1500
    """A unit (headline, summary, credits) holds at most this many characters of text."""
    link_share: float = 0.5
    """A heading is a link when its links hold at least this share of its text."""
    group_share: float = 0.5
    """Sibling units must hold at least this share of their parent's text."""


def _text_len(el: _Element) -> int:
    return len("".join(el.itertext()).strip())


def _is_story_link(a: _Element) -> bool:
    """A link to another page (not to a place in this one: a table of contents, a
    section's permalink)."""
    href = (a.get("href") or "").strip()
    return bool(href) and not href.startswith(("#", "javascript:"))


def _is_linked(h: _Element, share: float) -> bool:
    total = _text_len(h)
    if total < 10:
        return False
    linked = sum(_text_len(a) for a in h.iter("a") if _is_story_link(a))
    if linked >= share * total:
        return True
    # <a href><h3>headline</h3></a>: the heading inside the link
    for anc in h.iterancestors():
        if anc.tag == "a" and _is_story_link(anc):
            return True
        if anc.tag in ("div", "section", "article", "li", "body"):
            return False
    return False


def linked_headings(tree: _Element, share: float = 0.8) -> list[_Element]:
    """Headings ``h2``-``h6`` whose text is (almost) all link text."""
    return [h for h in tree.iter(*_HEADINGS) if _is_linked(h, share)]


def teaser_units(tree: _Element, settings: TeaserSettings = TeaserSettings()) -> list[_Element]:
    """The teaser units to remove (see the module doc); [] when there is no teaser list."""
    heads = linked_headings(tree, settings.link_share)
    if len(heads) < settings.min_units:
        return []
    # how many linked headings each ancestor holds
    count: dict[_Element, int] = defaultdict(int)
    for h in heads:
        for anc in h.iterancestors():
            count[anc] += 1
    units: list[_Element] = []
    for h in heads:
        unit = h
        # a link wrapping the heading belongs to the unit
        for anc in h.iterancestors():
            if anc.tag == "a":
                unit = anc
                break
            if anc.tag in ("div", "section", "article", "li", "body"):
                break
        if _text_len(unit) > settings.max_chars:
            continue
        while True:
            parent = unit.getparent()
            if parent is None or parent.tag in ("body", "html") or count[parent] > 1:
                break
            if parent.tag == "h1" or next(parent.iter("h1"), None) is not None:
                break
            if _text_len(parent) > settings.max_chars:
                break
            unit = parent
        units.append(unit)
    siblings: dict[_Element | None, list[_Element]] = defaultdict(list)
    for unit in units:
        siblings[unit.getparent()].append(unit)
    out: list[_Element] = []
    for parent, group in siblings.items():
        if len(group) < settings.min_units or parent is None:
            continue
        # the stories must be most of their container: linked headings between the
        # paragraphs of an article (a listicle's items, linked section titles) are not a list
        if sum(_text_len(u) for u in group) < settings.group_share * _text_len(parent):
            continue
        out.extend(group)
    return out


def without_teasers(tree: _Element, settings: TeaserSettings = TeaserSettings()) -> _Element:
    """A copy of ``tree`` without its teaser units, or ``tree`` itself when it has none (or
    on any failure)."""
    try:
        units = teaser_units(tree, settings)
        if not units:
            return tree
        # the units found on the page are the same elements of the copy, by their place in
        # document order (a deep copy keeps every node, comments included, in order): the
        # page is searched once, not once more on the copy
        wanted = set(units)
        places = {i for i, el in enumerate(tree.iter()) if el in wanted}
        doc = copy.deepcopy(tree)
        for unit in [el for i, el in enumerate(doc.iter()) if i in places]:
            if unit.getparent() is not None:
                # keep the tail text (it belongs to the parent)
                unit.drop_tree()
        return doc
    except Exception:  # noqa: BLE001 - lxml errors, RecursionError...: leave the page as it is
        return tree
