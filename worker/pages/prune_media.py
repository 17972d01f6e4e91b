"""Photo galleries: blocks of many pictures with short captions inside the article's body.

The failure this targets (class A in ``docs/extraction-eval.md``): a news article embeds a
gallery of dozens of pictures, each with a caption and a credit. trafilatura keeps the
captions as paragraphs, so the text becomes mostly captions of other pictures.

A gallery is recognised by structure, not by class names (a container *named* "gallery"
often holds the whole article):

1. a *seed*: an element (not a paragraph, a link or other inline element) with at least
   ``min_images`` children that are image blocks (below). An image unit is an
   ``img``/``amp-img`` that is not an icon, a ``picture`` (once, whatever its sources), or
   an element that carries a lazy-load attribute such as ``data-src`` or
   ``data-original`` and holds no ``img``;
2. the seed grows to its parent as long as the parent adds little else: its own text and
   its other children hold at most ``max_other_chars`` characters, not counting children
   that are image blocks themselves (text per image at most ``max_chars_per_image``) or
   caption lists (at least ``min_images`` items, no more items than the gallery has
   images, each item at most ``max_item_chars`` characters). It never grows into an
   element holding an ``h1``, nor into ``body``, ``main`` or ``article``;
3. the grown block is a gallery when it holds at least ``min_images`` image units and at
   most ``max_chars_per_image`` characters of text per image unit, and the element where
   it stopped growing holds at least ``min_context_chars`` of other text (the article
   next to it).

An article's paragraphs are long and hold no image, so the block stops growing where they
start, and a text-heavy container (an article with a few pictures) has too much text per
image to be a gallery. A photo story has no article next to its pictures, and the caller
keeps the page as it is when too little text is left once the galleries are gone.
Thresholds were chosen by 2-fold cross-validation by site (``bench/extraction_quality.py
--cv-options``, ``MEDIA_GRID``). Nothing here raises on content (a failure leaves the tree
as it was).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

from lxml.etree import XPath, _Element

__all__ = ["MediaSettings", "gallery_blocks", "without_galleries"]


@dataclass(frozen=True)
class MediaSettings:
    """When a block of pictures is a gallery."""

    min_images: int = 10
    """Image units a gallery holds at least (and sibling image holders in its seed)."""
    max_chars_per_image: int = 300
    """A gallery holds at most this many characters of text per image unit."""
    max_other_chars: int = 80
    """Text a parent may add (titles, counters, buttons) for the gallery to grow into it."""
    max_item_chars: int = 600
    """An item of a caption list (captions kept apart from their pictures) holds at most
    this many characters."""
    min_context_chars: int = 1000
    """The gallery sits next to at least this much other text (in the element where it
    stops growing): a block that *is* the page's content (a photo story, a how-to whose
    steps are pictures) is not removed."""


_LAZY_ATTRS = (
    "data-src",
    "data-original",
    "data-lazy-src",
    "data-lazy",
    "data-srcset",
    "data-bg",
    "data-background",
    "data-background-image",
)
_NO_TEXT = frozenset(("script", "style", "template", "noscript", "textarea"))
_IMG_TAGS = frozenset(("img", "amp-img"))
_SOURCES = frozenset(("source", "track"))
"""Alternatives of one picture (``<picture><source data-srcset>``), never a picture."""
_BARRIERS = frozenset(("body", "html", "article", "main"))
"""A gallery never grows into these: the page, or the element that says it is the article."""
_INLINE = frozenset(
    [
        "p",
        "span",
        "a",
        "b",
        "i",
        "em",
        "strong",
        "small",
        "label",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "sup",
        "sub",
        "math",
    ]
)
"""Never a gallery's seed: pictures inside a paragraph or a link are inline (formulas,
emoji, icons), not a list of pictures."""
_ICON_PX = 32


def _tiny(img: _Element) -> bool:
    """An icon, a tracking pixel or a spacer (declared width or height of 32 px at most)."""
    for attr in ("width", "height"):
        value = (img.get(attr) or "").strip().removesuffix("px")
        if value.isdigit() and int(value) <= _ICON_PX:
            return True
    return False


def _nonspace(text: str | None) -> int:
    # most texts and tails between elements are indentation: tested at C level first
    if not text or text.isspace():
        return 0
    return len("".join(text.split()))


class _Counts:
    """Image units and text characters (without whitespace) of every element, in one
    bottom-up pass."""

    def __init__(self, tree: _Element, lazy: set[_Element]) -> None:
        self.images: dict[_Element, int] = {}
        self.chars: dict[_Element, int] = {}
        self.h1: set[_Element] = set()
        self.extra: dict[_Element, int] = {}
        """:func:`_extra` of an element with no block left out (filled on demand)."""
        images, chars_of, h1 = self.images, self.chars, self.h1
        elements = [e for e in tree.iter() if isinstance(e.tag, str)]
        for el in reversed(elements):  # children before their parents
            tag = el.tag.lower()
            n_img = 0
            chars = 0 if tag in _NO_TEXT else _nonspace(el.text)
            has_h1 = tag == "h1"
            for c in el:  # one loop over the children (counted before their parent)
                tail = c.tail
                if tail:
                    chars += _nonspace(tail)  # a child's tail is this one's text
                if isinstance(c.tag, str):
                    n_img += images[c]
                    chars += chars_of[c]
                    has_h1 = has_h1 or c in h1
            if tag in _IMG_TAGS:
                n_img += 0 if _tiny(el) else 1
            elif tag == "picture":
                n_img = 1  # one picture, whatever its sources and fallback
            elif (
                n_img == 0
                and el in lazy  # found by one query (each element tested here cost more)
                and tag not in _SOURCES
                and any(el.get(a) for a in _LAZY_ATTRS)
            ):
                n_img = 1
            images[el] = n_img
            chars_of[el] = chars
            if has_h1:
                h1.add(el)

    def own_chars(self, el: _Element) -> int:
        """Text of ``el`` outside its element children (its text and their tails)."""
        if not isinstance(el.tag, str) or el.tag.lower() in _NO_TEXT:
            return sum(_nonspace(c.tail) for c in el)
        return _nonspace(el.text) + sum(_nonspace(c.tail) for c in el)


def _is_image_block(counts: _Counts, el: _Element, settings: MediaSettings) -> bool:
    n = counts.images.get(el, 0)
    return n > 0 and counts.chars.get(el, 0) <= settings.max_chars_per_image * n


def _is_caption_list(counts: _Counts, el: _Element, n_images: int, settings: MediaSettings) -> bool:
    items = [c for c in el if isinstance(c.tag, str)]
    return (
        settings.min_images <= len(items) <= n_images
        and el not in counts.h1
        and all(counts.chars.get(c, 0) <= settings.max_item_chars for c in items)
    )


def _counted(counts: _Counts, el: _Element, child: _Element, settings: MediaSettings) -> int:
    """Text ``child`` adds to ``el`` that is neither pictures nor captions."""
    if not isinstance(child.tag, str) or _is_image_block(counts, child, settings):
        return 0
    if _is_caption_list(counts, child, counts.images.get(el, 0), settings):
        return 0
    return counts.chars.get(child, 0)


def _extra(counts: _Counts, el: _Element, block: _Element | None, settings: MediaSettings) -> int:
    """Text of ``el`` outside ``block``, its image blocks and its caption lists (the sum over
    all of ``el``'s children is kept: many seeds under one parent stay linear)."""
    total = counts.extra.get(el)
    if total is None:
        total = counts.own_chars(el) + sum(_counted(counts, el, c, settings) for c in el)
        counts.extra[el] = total
    return total - (_counted(counts, el, block, settings) if block is not None else 0)


def _grow(counts: _Counts, seed: _Element, settings: MediaSettings) -> tuple[_Element, int]:
    """The largest ancestor of ``seed`` that adds little else, and the text next to it
    (its parent's text outside it and outside other image blocks)."""
    block = seed
    while True:
        parent = block.getparent()
        if parent is None or not isinstance(parent.tag, str):
            return block, 0
        extra = _extra(counts, parent, block, settings)
        if (
            parent.tag.lower() in _BARRIERS
            or parent in counts.h1
            or extra > settings.max_other_chars
        ):
            return block, extra
        block = parent


_DATA_ATTRS = XPath("//@*[starts-with(name(), 'data-')]")
_LAZY_SET = frozenset(_LAZY_ATTRS)
_UNIT_TAGS = ("img", "amp-img", "picture")


def _lazy_elements(tree: _Element) -> set[_Element]:
    """The elements that carry a lazy-load attribute (empty or not). One query for the
    ``data-`` attributes: a query testing each lazy-load attribute on every element cost
    three times as much, and was most of the pre-check's time."""
    return {a.getparent() for a in _DATA_ATTRS(tree) if getattr(a, "attrname", None) in _LAZY_SET}


def _may_have_seed(tree: _Element, lazy: set[_Element], min_images: int) -> bool:
    """Cheap pre-check (no text counted): some element has at least ``min_images`` children
    that hold anything that may be a picture (an ``img``, ``amp-img`` or ``picture``, or an
    element of ``lazy``). False means no gallery on the page. The result does not depend
    on the order the units are taken in."""
    children: dict[_Element, set[_Element]] = {}
    for unit in itertools.chain(tree.iter(*_UNIT_TAGS), lazy):
        child = unit
        for anc in unit.iterancestors():
            kids = children.setdefault(anc, set())
            if child in kids:
                break  # this branch of the ancestors was counted by an earlier unit
            kids.add(child)
            if len(kids) >= min_images:
                return True
            child = anc
    return False


def gallery_blocks(tree: _Element, settings: MediaSettings = MediaSettings()) -> list[_Element]:
    """The galleries to remove (see the module doc), outermost only; [] when there is none."""
    lazy = _lazy_elements(tree)
    if not _may_have_seed(tree, lazy, settings.min_images):
        return []
    counts = _Counts(tree, lazy)
    found: list[_Element] = []
    for el, n in counts.images.items():
        tag = str(el.tag).lower()
        if n < settings.min_images or el in counts.h1 or tag in _INLINE or tag in _BARRIERS:
            continue
        items = sum(
            1 for c in el if isinstance(c.tag, str) and _is_image_block(counts, c, settings)
        )
        if (
            items < settings.min_images
            or _extra(counts, el, None, settings) > settings.max_other_chars
        ):
            continue
        block, context = _grow(counts, el, settings)
        if context < settings.min_context_chars:
            continue
        if counts.images.get(block, 0) >= settings.min_images and _is_image_block(
            counts, block, settings
        ):
            found.append(block)
    chosen = set(found)
    out: list[_Element] = []
    for block in found:
        if block in out or any(a in chosen for a in block.iterancestors()):
            continue
        out.append(block)
    return out


def without_galleries(tree: _Element, settings: MediaSettings = MediaSettings()) -> _Element:
    """A copy of ``tree`` without its galleries, or ``tree`` itself when it has none (or on
    any failure)."""
    try:
        blocks = gallery_blocks(tree, settings)
        if not blocks:
            return tree
        # the blocks found on the page are the same elements of the copy, by their place
        # in document order (a deep copy keeps every node, comments included, in order):
        # the page is measured once, not once more on the copy
        wanted = set(blocks)
        places = [i for i, el in enumerate(tree.iter()) if el in wanted]
        doc = copy.deepcopy(tree)
        wanted_places = set(places)
        for block in [el for i, el in enumerate(doc.iter()) if i in wanted_places]:
            if block.getparent() is not None:
                block.drop_tree()  # keeps the tail text (it belongs to the parent)
        return doc
    except Exception:  # noqa: BLE001 - lxml errors, RecursionError...: leave the page as it is
        return tree
