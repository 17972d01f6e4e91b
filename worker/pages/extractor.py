"""Page HTML to clean text and metadata with trafilatura; settings chosen by measurement.

See ``docs/extraction-eval.md`` and ``bench/extraction_quality.py`` for how the settings in
:data:`DEFAULT_PROFILE` were chosen. The production profile adds a second opinion
(:mod:`worker.pages.arbiter`): when trafilatura's precise pass and its readability port
agree on a much shorter text than the default pass, the precise text is kept. Since
revision 4 lists of other stories inside the article's container (teaser lists:
:mod:`worker.pages.prune_teasers`) are removed before extraction. The profile
``balanced+teasers+media+arbiter`` (the default since revision 5) also removes photo
galleries found by structure (:mod:`worker.pages.prune_media`).

Failure contract: :func:`extract_page` **never raises** on page content. Empty, binary,
script-only or otherwise unparseable input gives an :class:`ExtractedPage`
whose ``text`` is empty (or the feed entry's text, when one was given, with ``text_source``
saying so); metadata fields are then None/empty. An empty ``text`` is the signal a caller maps
to a recorded failure reason (e.g. ``"no text extracted"``). Deeply nested markup is
flattened before parsing (:mod:`worker.pages.nesting`); a page still too deep for the parser
says so in ``failure`` (:data:`NESTING_TOO_DEEP`), which the callers record as a failure
(the extract step's ``failed``, ``claimwire extract``'s error). Deterministic content problems
are therefore never retried; only environment errors (``MemoryError``, ``KeyboardInterrupt``)
propagate.
"""

from __future__ import annotations

import contextlib
import copy
import html as htmllib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import courlan
import lxml.html
import trafilatura
from lxml import etree
from lxml.etree import _Element
from lxml.html import HtmlComment, HtmlElement, HtmlEntity, HtmlProcessingInstruction
from trafilatura.utils import is_dubious_html, repair_faulty_html

from schemas.records import ExtractedPage, TextSource
from worker.pages.arbiter import (
    ArbiterSettings,
    Shape,
    readability_seen,
    readability_text,
    second_opinion,
)
from worker.pages.author import author
from worker.pages.nesting import flatten, too_deep
from worker.pages.prune_media import MediaSettings, without_galleries
from worker.pages.prune_teasers import TeaserSettings, without_teasers
from worker.pages.published import choose, final, from_datetime, page_candidates, settled

__all__ = [
    "DEFAULT_PROFILE",
    "EXTRACTOR_NAME",
    "EXTRACTOR_VERSION",
    "NESTING_TOO_DEEP",
    "PROFILES",
    "SETTINGS_REVISION",
    "ExtractedPage",
    "NestingTooDeep",
    "Profile",
    "extract_page",
    "extract_text",
    "html_fragment_to_text",
]

EXTRACTOR_NAME = "trafilatura"
SETTINGS_REVISION = 7
"""Bump whenever :data:`DEFAULT_PROFILE` or the post-processing here changes output."""
EXTRACTOR_VERSION = f"{trafilatura.__version__}+cw{SETTINGS_REVISION}"

MAX_HTML_CHARS = 8_000_000
"""Longer documents are cut (after the fallback decision is possible) to bound time/memory."""

# trafilatura logs every discarded document at WARNING; that is normal operation here.
logging.getLogger("trafilatura").setLevel(logging.ERROR)
logging.getLogger("htmldate").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Profile:
    """One way of calling trafilatura (the benchmark compares several)."""

    name: str
    favor_precision: bool = False
    favor_recall: bool = False
    fast: bool = False
    include_comments: bool = False
    include_tables: bool = True
    deduplicate: bool = False
    # "recall rescue": when the main pass yields less than this share of what a
    # favor_recall pass yields, take the recall text. None disables the second pass.
    recall_rescue_ratio: float | None = None
    # XPath expressions (keys of PRUNE_XPATHS) removed from the tree before extraction.
    prune: tuple[str, ...] = ()
    # Drop separator-only lines ("| | |", "___") and repeated identical lines.
    postclean: bool = False
    # Second opinion (worker/pages/arbiter.py): when trafilatura's precise pass and
    # readability agree on a much shorter text, keep the precise pass. None disables.
    arbiter: ArbiterSettings | None = None
    # trafilatura's include_images: keeps figures and their captions (without it, blocks
    # whose class or id says "caption" are discarded). The image itself (markdown
    # ``![alt](src)``) is removed from the text; its caption stays.
    include_images: bool = False
    # Lists of other stories (worker/pages/prune_teasers.py): sibling teaser units (a linked
    # headline and its summary) removed before extraction. None disables.
    teasers: TeaserSettings | None = None
    # Figure captions (<figcaption>) kept as paragraphs after their figure: trafilatura
    # drops every <figure> (or keeps it without its caption with include_images).
    captions: bool = False
    # Photo galleries (worker/pages/prune_media.py): blocks of many pictures with short
    # captions next to the article's text, removed before extraction. None disables.
    media: MediaSettings | None = None


PRUNE_XPATHS: dict[str, str] = {
    "noscript": "//noscript",
    "dialog": "//*[@role='dialog' or @role='alertdialog' or @aria-modal='true']",
    "player": "//*[contains(@class, 'vjs-') or contains(@class, 'jw-') or @data-vjs-player]",
    "hidden": "//*[@hidden or contains(translate(@style, ' ', ''), 'display:none')"
    " or contains(translate(@style, ' ', ''), 'visibility:hidden')]",
    "aria-hidden": "//*[@aria-hidden='true']",
    # Photo galleries and slideshows: a container named so, never one holding the headline.
    "gallery": "//*[self::div or self::section or self::ul or self::ol or self::aside"
    " or self::figure][not(.//h1)][contains(@class, 'gallery') or contains(@id, 'gallery')"
    " or contains(@class, 'slideshow') or contains(@class, 'carousel')]",
}


_PRUNE_REV2 = ("noscript", "dialog", "player", "hidden", "aria-hidden")
"""The prune set measured in settings revision 2 (``+prune`` profiles)."""

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("balanced"),
        Profile("precision", favor_precision=True),
        Profile("recall", favor_recall=True),
        Profile("fast", fast=True),
        Profile("balanced+tables-off", include_tables=False),
        Profile("precision+recall-rescue", favor_precision=True, recall_rescue_ratio=0.5),
        Profile("balanced+prune+postclean", prune=_PRUNE_REV2, postclean=True),
        Profile("recall+prune+postclean", favor_recall=True, prune=_PRUNE_REV2, postclean=True),
        Profile("balanced+arbiter", arbiter=ArbiterSettings()),
        Profile("balanced+images", include_images=True),
        Profile("balanced+images+arbiter", include_images=True, arbiter=ArbiterSettings()),
        Profile("balanced+gallery+arbiter", prune=("gallery",), arbiter=ArbiterSettings()),
        Profile("balanced+captions+arbiter", captions=True, arbiter=ArbiterSettings()),
        Profile("balanced+teasers+arbiter", teasers=TeaserSettings(), arbiter=ArbiterSettings()),
        Profile(
            "balanced+teasers+media+arbiter",
            teasers=TeaserSettings(),
            media=MediaSettings(),
            arbiter=ArbiterSettings(),
        ),
    )
}

DEFAULT_PROFILE = PROFILES["balanced+teasers+media+arbiter"]
"""The settings used in production (see docs/extraction-eval.md for the measurements)."""


TEASER_MIN_TEXT = 200
"""Characters the text must keep once teaser lists are removed; else they are kept."""

MEDIA_MIN_TEXT = 200
"""Characters the text must keep once photo galleries are removed; else they are kept."""

# ------------------------------------------------------------------------- helpers

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLOCK_TAGS = {
    "p",
    "div",
    "br",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "tr",
    "pre",
    "section",
    "article",
    "figure",
    "figcaption",
    "dd",
    "dt",
    "hr",
    "table",
    "ul",
    "ol",
}
_DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "object", "embed", "svg")


# A start tag longer than this is cut down to its name before parsing: libxml2 checks
# every attribute against the ones before it, so one tag with 100,000 attributes (a 1 MB
# page) keeps a worker busy for minutes. No text lives in attributes.
_HUGE_TAG = re.compile(r"<([A-Za-z][A-Za-z0-9:-]{0,40}+)[^<>]{8192,}+>")


def _sanitize(html: str) -> str:
    """Remove characters libxml2 rejects or truncates on (NUL, C0 controls, lone surrogates)
    and cut absurdly long start tags (see ``_HUGE_TAG``)."""
    return _HUGE_TAG.sub(r"<\1>", _CONTROL_CHARS.sub("", html))


def _clean_lines(text: str) -> str:
    """One paragraph per line (as trafilatura's text output), spaces collapsed, no blanks."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def html_fragment_to_text(fragment: str | None) -> str:
    """Feed-entry HTML (or plain text) to text, one line per block element. Never raises."""
    if not fragment or not fragment.strip():
        return ""
    fragment = _sanitize(fragment)
    if "<" not in fragment:
        return _clean_lines(htmllib.unescape(fragment))
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div", parser=_FRAGMENT_PARSER)
        # in document order, as ``.//script|.//style|...`` (the root is the div made here)
        for bad in list(root.iter(*_DROP_TAGS)):
            bad.drop_tree()
        for el in root.iter():
            if isinstance(el.tag, str) and el.tag.lower() in _BLOCK_TAGS:
                el.tail = "\n" + (el.tail or "")
                if el.tag.lower() != "br":
                    el.text = "\n" + (el.text or "")
        text = str(root.text_content())
    except Exception:  # noqa: BLE001 - any parser failure: fall back to tag stripping
        text = htmllib.unescape(re.sub(r"<[^>]*>", " ", fragment))
    return _clean_lines(text)


def _registered_domain(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    domain = courlan.extract_domain(url)
    return (domain or parts.hostname).lower()


def _canonical_url(tree: _Element, url: str | None) -> str | None:
    """What the page declares as its canonical URL: ``<link rel=canonical>``, else
    ``og:url``, made absolute against ``url``, on any site (a syndicated copy naming
    its original outlet is what researchers of syndication look for), http(s) only.
    It is stored and exported, never fetched and never used for the article's identity
    (that is the canonicalized URL of the feed entry, ``worker/network/urls.py``)."""
    candidates: list[str] = []
    for link in tree.iterfind(".//link"):
        rel = (link.get("rel") or "").lower().split()
        if "canonical" in rel and link.get("href"):
            candidates.append(str(link.get("href")))
    for meta in tree.iterfind(".//meta"):
        if (meta.get("property") or meta.get("name") or "").lower() == "og:url":
            content = meta.get("content")
            if content:
                candidates.append(str(content))
    for cand in candidates:
        try:
            absolute = urljoin(url or "", cand.strip())
            parts = urlsplit(absolute)
        except ValueError:
            continue
        if parts.scheme in ("http", "https") and parts.hostname:
            return absolute
    return None


_LANG = re.compile(r"^([a-zA-Z]{2,3})(?:[-_][a-zA-Z0-9]{1,8})*$")


def _language(tree: _Element) -> str | None:
    """Primary language subtag from ``<html lang>``, content-language or og:locale."""
    values: list[str] = []
    root = tree.getroottree().getroot()
    for attr in ("lang", "{http://www.w3.org/XML/1998/namespace}lang", "xml:lang"):
        if root.get(attr):
            values.append(str(root.get(attr)))
    for meta in tree.iterfind(".//meta"):
        key = (meta.get("http-equiv") or meta.get("property") or meta.get("name") or "").lower()
        if key in ("content-language", "og:locale", "language", "dc.language") and meta.get(
            "content"
        ):
            values.append(str(meta.get("content")))
    for value in values:
        m = _LANG.match(value.strip().split(",")[0].strip())
        if m:
            return m.group(1).lower()
    return None


def _parse_date(value: str | None, now: datetime) -> datetime | None:
    """htmldate output to an aware UTC datetime; None if unparseable or after ``now``."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if when > now:
        return None
    return when


def _str_or_none(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = _SPACES.sub(" ", value).strip()
    return value or None


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    out: list[str] = []
    for item in value:
        s = _str_or_none(item)
        if s and s not in out:
            out.append(s)
    return out


def _split_tags(values: list[str]) -> list[str]:
    """``<meta name=keywords content="a, b">`` arrives as one string: one tag per item."""
    out: list[str] = []
    for value in values:
        for part in re.split(r"[,;]", value):
            tag = part.strip()
            if tag and tag not in out:
                out.append(tag)
    return out


def _bare(
    tree: _Element,
    url: str | None,
    profile: Profile,
    *,
    with_metadata: bool,
    now: datetime,
    dates: bool | None = True,
) -> Any:
    """trafilatura's Document of the page (None when it finds no text), as
    ``bare_extraction`` with ``with_metadata`` gives it: the text from ``bare_extraction``,
    the metadata from :func:`_page_metadata` (``dates``: see there), taken only when there is
    a text, and failing as ``bare_extraction`` would fail with its metadata."""
    doc = trafilatura.bare_extraction(
        tree,
        url=url,
        fast=profile.fast,
        favor_precision=profile.favor_precision,
        favor_recall=profile.favor_recall,
        include_comments=profile.include_comments,
        include_tables=profile.include_tables,
        include_formatting=False,
        include_links=False,
        include_images=profile.include_images,
        # True would share trafilatura's process-wide LRU cache across pages: a later page
        # of the same site would lose paragraphs already seen on an earlier one.
        deduplicate=profile.deduplicate,
        with_metadata=False,
        prune_xpath=[PRUNE_XPATHS[k] for k in profile.prune] or None,
    )
    if doc is None or not with_metadata:
        return doc
    meta = _page_metadata(tree, url, profile, now, dates)
    # what bare_extraction adds to its metadata Document once the text is found
    for field in _TEXT_FIELDS:
        setattr(meta, field, getattr(doc, field))
    return meta


_TEXT_FIELDS = ("body", "comments", "commentsbody", "raw_text", "text")
"""The fields of trafilatura's Document that its extraction fills (the others: metadata)."""


def _date_params(profile: Profile, now: datetime, dates: bool = True) -> dict[str, Any]:
    """htmldate's parameters; ``dates`` False when the page's markup gives the publication
    time to the minute or the second (:func:`worker.pages.published.settled`): no
    extensive search then (its slowest part, dateparser, asks every locale about strings
    none of them knows)."""
    return {
        "original_date": True,
        "extensive_search": dates and not profile.fast,
        "max_date": now.astimezone(UTC).strftime("%Y-%m-%d"),
        "outputformat": "%Y-%m-%dT%H:%M:%S%z",
    }


def _page_metadata(
    tree: _Element, url: str | None, profile: Profile, now: datetime, dates: bool | None = True
) -> Any:
    """trafilatura's metadata of the page as ``extract_metadata`` finds it in the call
    ``bare_extraction`` makes (``fast`` as not ``extensive``, no author blacklist), made of
    the same trafilatura and htmldate functions in the same order, less what claimwire
    never reads: the licence (a search of the page's links and footers) and the host name.

    ``dates`` is htmldate's extensive search (:func:`_date_params`); None: no htmldate
    at all (``date`` None), for a page whose markup (or feed entry) already gives the time
    to the second, where no date htmldate finds can change the time kept
    (:func:`worker.pages.published.final`).
    Reads the tree and changes nothing in it (the author search and htmldate prune copies
    of their own: htmldate of the page, the author search of its candidates alone, see
    :mod:`worker.pages.author`). Raises what those functions raise."""
    from htmldate import find_date
    from trafilatura.metadata import (
        META_URL,
        Document,
        examine_meta,
        extract_meta_json,
        extract_sitename,
        extract_title,
        extract_url,
    )
    from trafilatura.utils import load_html

    # trafilatura.metadata.extract_metadata (2.3.1), step by step
    tree = load_html(tree)
    if tree is None:
        return Document()
    metadata = examine_meta(tree)
    if metadata.author and " " not in metadata.author:
        metadata.author = None
    # as extract_metadata: an error of its JSON-LD reading keeps what was read before
    with contextlib.suppress(Exception):
        metadata = extract_meta_json(tree, metadata)
    if not metadata.title:
        metadata.title = extract_title(tree)
    if not metadata.author:
        # extract_author's value, without its copy of the whole page (worker/pages/author.py)
        metadata.author = author(tree)
    if not metadata.url:
        metadata.url = extract_url(tree, url)
    if dates is not None:
        params = {**_date_params(profile, now, dates), "url": metadata.url}
        metadata.date = find_date(tree, **params)
        metadata.filedate = params["max_date"]
    else:
        metadata.date = None
    if not metadata.sitename:
        metadata.sitename = extract_sitename(tree)
    if metadata.sitename:
        metadata.sitename = metadata.sitename.lstrip("@")
        if (
            metadata.sitename
            and "." not in metadata.sitename
            and not metadata.sitename[0].isupper()
        ):
            metadata.sitename = metadata.sitename.title()
    elif metadata.url:
        mymatch = META_URL.match(metadata.url)
        if mymatch:
            metadata.sitename = mymatch[1]
    links: list[str] | None = None
    for field, metatype in (("categories", "category"), ("tags", "tag")):
        if getattr(metadata, field):
            continue
        if links is None:
            links = [str(href) for href in _CATSTAG_LINKS(tree)]
        setattr(metadata, field, _catstags(metatype, tree, links))
    metadata.clean_and_trim()
    return metadata


_CATSTAG_LINKS = etree.XPath("//a/@href[contains(., '/categor') or contains(., '/tag')]")
"""The page's links that may name a category or a tag (:func:`_catstags`), found from the
attribute, each ``a`` tested once."""

_CATEGORY_META = etree.XPath(
    './/head//meta[@property="article:section" or contains(@name, "subject")][@content]'
)


def _catstags(metatype: str, tree: _Element, links: list[str]) -> list[str]:
    """``trafilatura.metadata.extract_catstags(metatype, tree)`` (2.3.1), ``links`` the
    page's :data:`_CATSTAG_LINKS`. trafilatura's own queries (about ten, each a walk of
    the page: 1-2 ms a page for each type) only keep ``a`` elements whose ``href`` matches
    ``/category/`` (``/tag/``, ``/categories/``...): on a page without such a link they
    find nothing, and what it returns is its fallback, the section named in ``<meta>``
    (categories), or nothing (tags)."""
    from trafilatura.metadata import extract_catstags
    from trafilatura.utils import line_processing

    pattern = re.compile("/" + metatype.rstrip("y") + "(?:y|ies|s)?/")  # extract_catstags'
    if any(pattern.search(href) for href in links):
        return extract_catstags(metatype, tree)
    if metatype != "category":
        return []
    results = [str(el.attrib["content"]) for el in _CATEGORY_META(tree)]
    return [r for r in dict.fromkeys(line_processing(x) for x in results if x) if r]


def _metadata_doc(
    tree: _Element, url: str | None, profile: Profile, now: datetime, dates: bool | None = True
) -> Any:
    """trafilatura's metadata of the page as it is (what :func:`_bare` with metadata finds),
    for a text taken from a rewritten copy of the page; None on failure."""
    try:
        # on the page itself, not a copy: nothing here changes the tree
        return _page_metadata(tree, url, profile, now, dates)
    except Exception:  # noqa: BLE001 - metadata is best effort
        return None


_SEPARATOR_LINE = re.compile(r"^[\W_]*$")


def _postclean(text: str) -> str:
    """Drop lines without any letter/digit and exact repeats of an earlier line."""
    seen: set[str] = set()
    out: list[str] = []
    for line in text.split("\n"):
        if _SEPARATOR_LINE.match(line):
            continue
        if len(line) >= 20:
            if line in seen:
                continue
            seen.add(line)
        out.append(line)
    return "\n".join(out)


# trafilatura's text form of an image (include_images): ``![title alt](src)``.
_MD_IMAGE = re.compile(r"!\[(?:[^\]\\]|\\.)*\]\((?:[^()\s]|\([^()\s]*\))*\)")


def _doc_text(doc: Any, postclean: bool = False, images: bool = False) -> str:
    if doc is None:
        return ""
    text = getattr(doc, "text", None)
    if not isinstance(text, str):
        return ""
    if images:
        text = _MD_IMAGE.sub(" ", text)
    text = _clean_lines(text)
    return _postclean(text) if postclean else text


class NestingTooDeep(Exception):
    """The page's elements nest deeper than the parser goes, even once flattened."""


NESTING_TOO_DEEP = "nesting too deep"
"""The failure of a page whose markup nests too deep to be parsed (:func:`extract_page`)."""


def _html_parser(**options: Any) -> lxml.html.HTMLParser:
    """``lxml.html``'s parser whose elements get their class in C: every element is an
    ``HtmlElement`` (lxml.html's own lookup asks a Python method for every element object
    lxml creates, about 9,000 calls a page and one sixth of ``extract_page``'s CPU; the
    classes it adds for ``form``, ``input``, ``select``, ``textarea`` and ``label`` only
    add form fields, which nothing here reads)."""
    parser = lxml.html.HTMLParser(**options)
    parser.set_element_class_lookup(
        etree.ElementDefaultClassLookup(
            element=HtmlElement,
            comment=HtmlComment,
            pi=HtmlProcessingInstruction,
            entity=HtmlEntity,
        )
    )
    return parser


_PAGE_PARSER = _html_parser(
    collect_ids=False,
    default_doctype=False,
    encoding="utf-8",
    remove_comments=True,
    remove_pis=True,
)
"""The options of trafilatura's parser (``trafilatura.utils.HTML_PARSER``), elements in C."""

_FRAGMENT_PARSER = _html_parser()
"""lxml.html's default parser's options, elements in C (:func:`html_fragment_to_text`)."""


def _from_bytes(html: str) -> _Element | None:
    try:
        return lxml.html.fromstring(html.encode("utf8", "surrogatepass"), parser=_PAGE_PARSER)
    except Exception:  # noqa: BLE001 - as trafilatura's fromstring_bytes
        return None


def _load(html: str) -> _Element | None:
    """The page's tree as ``trafilatura.utils.load_html`` makes it from a string (the same
    repair, parse, fallback to bytes and rejection of what is not HTML), parsed with
    :data:`_PAGE_PARSER`. trafilatura takes the tree as it is."""
    try:
        beginning = html[:50].lower()
        dubious = is_dubious_html(beginning)
        html = repair_faulty_html(html, beginning)
        fallback = False
        tree: _Element | None = None
        try:
            tree = lxml.html.fromstring(html, parser=_PAGE_PARSER)
        except ValueError:  # "Unicode strings with encoding declaration are not supported."
            tree, fallback = _from_bytes(html), True
        except Exception:  # noqa: BLE001 - as load_html: try the bytes
            tree = None
        if (tree is None or len(tree) < 1) and not fallback:
            tree = _from_bytes(html)
        if tree is not None and dubious and len(tree) < 2:
            return None
        return tree
    except Exception:  # noqa: BLE001 - unparseable markup is "no text", not an error
        return None


def _parse(html: str) -> _Element | None:
    """The page's tree; deeply nested markup is flattened first (:mod:`worker.pages.nesting`:
    libxml2 stops at 256 open elements and drops the rest of the page). Raises
    :class:`NestingTooDeep` when even the flattened markup reaches the parser's limit."""
    html = _sanitize(html[:MAX_HTML_CHARS])
    if not html.strip():
        return None
    tree = _load(html)
    if tree is not None and too_deep(tree):
        tree = _load(flatten(html))
        if tree is not None and too_deep(tree):
            raise NestingTooDeep(NESTING_TOO_DEEP)
    if tree is None:
        return None
    # <noscript> holds "please enable JavaScript" notices, never the article itself.
    for el in tree.xpath("//noscript"):
        el.drop_tree()
    return tree


def extract_text(
    html: str,
    url: str | None = None,
    profile: Profile = DEFAULT_PROFILE,
    *,
    now: datetime | None = None,
) -> tuple[str, Any]:
    """Main text (and trafilatura's Document, or None) of a page under ``profile``.

    Never raises on content: failures give ``("", None)``.
    """
    now = now or datetime.now(UTC)
    try:
        tree = _parse(html) if isinstance(html, str) else None
    except NestingTooDeep:
        tree = None
    if tree is None:
        return "", None
    return _extract_tree(tree, url, profile, now)


def _with_captions(tree: _Element, profile: Profile) -> _Element:
    return _captions_as_paragraphs(tree)


def _without_teasers(tree: _Element, profile: Profile) -> _Element:
    assert profile.teasers is not None
    return without_teasers(tree, profile.teasers)


def _without_galleries(tree: _Element, profile: Profile) -> _Element:
    assert profile.media is not None
    return without_galleries(tree, profile.media)


_REWRITES: tuple[tuple[str, Any, Callable[[_Element, Profile], _Element], int], ...] = (
    # figure captions as paragraphs: the rewritten page is always taken
    ("captions", False, _with_captions, 0),
    # a page that is only a list of stories (a section front): nothing is left of it once
    # the teasers are gone, so it is extracted as it is
    ("teasers", None, _without_teasers, TEASER_MIN_TEXT),
    # a page that is only a gallery keeps its captions
    ("media", None, _without_galleries, MEDIA_MIN_TEXT),
)
"""The rewrites of the page tried before extraction, in this order: the :class:`Profile`
field that turns one on and its value when off, the rewrite (a copy of the tree, or the
tree itself when there is nothing to rewrite), and the characters of text the rewritten
page must give for its text to be taken instead of the page's."""


def _extract_tree(
    tree: _Element,
    url: str | None,
    profile: Profile,
    now: datetime,
    with_metadata: bool = True,
    dates: bool | None = True,
) -> tuple[str, Any]:
    """Text and trafilatura's Document (its metadata, when ``with_metadata``; without
    htmldate's extensive search unless ``dates``, without htmldate when ``dates`` is None).
    When the text comes from a rewritten copy of the page (captions, teaser lists,
    galleries), the metadata still comes from the page as it is."""
    for field, off, rewrite, min_text in _REWRITES:
        if not getattr(profile, field):
            continue
        rewritten = rewrite(tree, profile)
        if rewritten is not tree:
            text, _ = _extract_tree(rewritten, url, replace(profile, **{field: off}), now, False)
            if len(text) >= min_text:
                return text, (
                    _metadata_doc(tree, url, profile, now, dates) if with_metadata else None
                )
        profile = replace(profile, **{field: off})
    # the readability summaries of trafilatura's pass, which the arbiter's witness may reuse
    with readability_seen() as seen:
        try:
            doc = _bare(tree, url, profile, with_metadata=with_metadata, now=now, dates=dates)
        except Exception:  # noqa: BLE001 - trafilatura/lxml failure (incl. RecursionError)
            doc = None
    text = _doc_text(doc, profile.postclean, profile.include_images)
    if profile.recall_rescue_ratio is not None:
        recall = Profile(
            f"{profile.name}/recall",
            favor_recall=True,
            include_comments=profile.include_comments,
            include_tables=profile.include_tables,
            prune=profile.prune,
        )
        try:
            rdoc = _bare(tree, url, recall, with_metadata=False, now=now)
        except Exception:  # noqa: BLE001 - same as above
            rdoc = None
        rtext = _doc_text(rdoc, profile.postclean)
        if len(text) < profile.recall_rescue_ratio * len(rtext):
            text = rtext
    if profile.arbiter is not None and text:
        text = _arbitrate(tree, url, profile, now, text, seen)
    return text, doc


def _captions_as_paragraphs(tree: _Element) -> _Element:
    """A copy of ``tree`` where each ``<figcaption>``'s text follows its figure as a ``<p>``
    (``tree`` itself when it has none, or on any failure)."""
    if next(tree.iter("figcaption"), None) is None:
        return tree
    try:
        doc = copy.deepcopy(tree)
        for cap in list(doc.iter("figcaption")):
            text = " ".join(" ".join(cap.itertext()).split())
            figure = next((a for a in cap.iterancestors() if a.tag == "figure"), None)
            anchor = figure if figure is not None else cap
            if text and anchor.getparent() is not None:
                para = lxml.html.Element("p")
                para.text = text
                para.tail = anchor.tail
                anchor.tail = None
                anchor.addnext(para)
            if figure is not None:
                cap.getparent().remove(cap)
            else:
                cap.drop_tree()
        return doc
    except Exception:  # noqa: BLE001 - leave the page as it is
        return tree


def _arbitrate(
    tree: _Element,
    url: str | None,
    profile: Profile,
    now: datetime,
    text: str,
    seen: list[tuple[Shape, str]] | None = None,
) -> str:
    """``text``, or trafilatura's precise pass when the second opinion says ``text`` holds
    blocks around the article (see :mod:`worker.pages.arbiter`). ``seen``: the readability
    summaries of the main pass over ``tree`` (:func:`worker.pages.arbiter.readability_seen`),
    which the witness takes when it would compute the same."""
    assert profile.arbiter is not None
    # fast: without trafilatura's own fallback comparison (its readability port and jusText);
    # chosen by measurement (cheaper and at least as good as a second full pass).
    precise_profile = Profile(
        f"{profile.name}/precision",
        favor_precision=True,
        fast=True,
        include_comments=profile.include_comments,
        include_tables=profile.include_tables,
        prune=profile.prune,
        include_images=profile.include_images,
    )

    def precise() -> str:
        try:
            pdoc = _bare(tree, url, precise_profile, with_metadata=False, now=now)
        except Exception:  # noqa: BLE001 - same as the main pass
            return ""
        return _doc_text(pdoc, profile.postclean, profile.include_images)

    def other() -> str:
        return readability_text(tree, html_fragment_to_text, seen)

    chosen = second_opinion(text, precise, other, profile.arbiter)
    return text if chosen is None else chosen


# --------------------------------------------------------------------------- API


LANGUAGE_SAMPLE = 3000
"""Characters of text given to the language identifier when the page does not say."""


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text`` by py3langid, for pages whose markup names no
    language; None for text too short to tell (under 100 characters)."""
    if len(text) < 100:
        return None
    import py3langid

    lang, _score = py3langid.classify(text[:LANGUAGE_SAMPLE])
    return str(lang) if lang else None


def extract_page(
    html: str,
    url: str | None = None,
    *,
    fallback_content: str | None = None,
    fallback_summary: str | None = None,
    min_text_chars: int = 200,
    now: datetime | None = None,
    profile: Profile = DEFAULT_PROFILE,
    feed_published_at: datetime | None = None,
) -> ExtractedPage:
    """Clean text and metadata of one decoded page. Never raises on content (module doc).

    When the page's text is shorter than ``min_text_chars`` (paywall, script-rendered page),
    the longest of page text, the feed entry's content (HTML is converted to text) and the
    feed entry's summary is kept, and ``text_source`` says which one it is. Metadata always
    comes from the page; ``language`` from its markup, else detected from the text.
    ``published_at`` is aware UTC and never later than ``now``, with its precision, UTC
    offset and source (:mod:`worker.pages.published`: the page's markup, then the feed
    entry's time ``feed_published_at``, then a visible or URL date).
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    text = ""
    meta: dict[str, Any] = {}
    failure: str | None = None
    try:
        tree = _parse(html) if isinstance(html, str) else None
    except NestingTooDeep as exc:
        tree, failure = None, str(exc)
    try:
        # read before extraction, which may prune the tree in place
        stamps = page_candidates(tree, url, None)
    except Exception:  # noqa: BLE001 - metadata is best effort
        stamps = []
    feed = from_datetime(feed_published_at, "feed")
    if tree is not None:
        # htmldate's date is one reading of the publication time: not searched far when the
        # page's markup gives the time to the minute, not read at all when the markup or the
        # feed already fix the time to the second (no later reading can change it then)
        fixed = final([*stamps, *([feed] if feed else [])], now)
        dates = None if fixed else not settled(stamps, now)
        text, doc = _extract_tree(tree, url, profile, now, dates=dates)
        try:
            meta = _metadata(doc, tree, url, now)
        except Exception:  # noqa: BLE001 - metadata is best effort
            meta = {}

    source: TextSource = "page"
    if len(text) < min_text_chars:
        best_len = len(text)
        for candidate, kind in (
            (fallback_content, "feed_content"),
            (fallback_summary, "feed_summary"),
        ):
            alt = html_fragment_to_text(candidate)
            if len(alt) > best_len:
                text, source, best_len = alt, kind, len(alt)  # type: ignore[assignment]
    if not meta.get("language"):
        meta["language"] = detect_language(text)
    extra = [feed, from_datetime(meta.get("published_at"), "visible")]
    chosen = choose([*stamps, *(s for s in extra if s is not None)], now)
    meta.update(
        published_at=chosen.at if chosen else None,
        published_precision=chosen.precision if chosen else None,
        published_offset=chosen.offset if chosen else None,
        published_source=chosen.source if chosen else None,
    )
    return ExtractedPage(
        text=text,
        text_source=source,
        extractor=EXTRACTOR_NAME,
        extractor_version=EXTRACTOR_VERSION,
        failure=failure,
        **meta,
    )


_HOST_LIKE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$", re.IGNORECASE)


def _site_name(name: str | None, url: str | None) -> str | None:
    """The page's site name. Without ``og:site_name`` trafilatura names the site after
    the host of the page's canonical URL, which may be another site's (a syndicated copy
    pointing at the original, or a hostile page): a host name on another registered
    domain than the page's own is replaced by the page's own host."""
    if not name or not url or not _HOST_LIKE.match(name):
        return name
    own = _registered_domain(url)
    if own is None or _registered_domain(f"https://{name}/") == own:
        return name
    return urlsplit(url).hostname


def _metadata(doc: Any, tree: _Element, url: str | None, now: datetime) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "language": _language(tree),
        "page_canonical_url": _canonical_url(tree, url),
    }
    if doc is None:
        return meta
    image = _str_or_none(getattr(doc, "image", None))
    if image and url:
        image = urljoin(url, image)
    meta.update(
        title=_str_or_none(getattr(doc, "title", None)),
        author=_str_or_none(getattr(doc, "author", None)),
        published_at=_parse_date(getattr(doc, "date", None), now),
        sitename=_site_name(_str_or_none(getattr(doc, "sitename", None)), url),
        description=_str_or_none(getattr(doc, "description", None)),
        categories=_str_list(getattr(doc, "categories", None)),
        tags=_split_tags(_str_list(getattr(doc, "tags", None))),
        image=image if image and image.startswith(("http://", "https://")) else None,
    )
    return meta
