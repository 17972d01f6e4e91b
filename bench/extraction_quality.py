"""Extraction quality and speed of several trafilatura configurations, on two public corpora.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package)::

    .venv/bin/python -m bench.extraction_quality [--limit N] [--jobs 2] [--corpora PATH]
        [--configs NAME,NAME...] [--cv] [--cv-options "BASE;NAME;NAME..."]

Corpora (read in place, never copied: they are copyrighted):

* ``trafilatura-eval/``: ``evaldata.json`` annotates each page with ``with`` snippets that must
  be in the text and ``without`` snippets that must not. Scored exactly as trafilatura's own
  ``eval_common.count_item`` does (whitespace-normalized substring test, micro-averaged
  tp/fp/fn/tn over all snippets).
* ``readability-test-pages/pages/*``: the text of ``expected.html`` (Mozilla Readability's
  output) is the gold text. **Shingle F1**: both texts are NFKC-normalized, stripped of
  invisible format characters (Unicode category Cf: soft hyphen, zero-width joiners, BOM,
  direction marks; measure v2, settings revision 4 — v1 split words at them and is still
  shown beside it), lower-cased and split into words (``\\w+``); the sets of word 4-grams
  are compared, P = |ours & gold| / |ours|,
  R = |ours & gold| / |gold|, F1 per page, then averaged over pages (macro). **News pages** =
  pages whose ``expected-metadata.json`` has a non-null ``byline`` or ``publishedTime``
  (an article with an author or a date: 79 of 130 pages).

Metadata accuracy, where gold exists (trafilatura-eval ``title/author/date``;
readability ``title/byline/publishedTime``), after normalization:

* title: NFKC, casefold, quotes/dashes unified, whitespace collapsed; *exact* = equal,
  *lenient* = one contains the other (site-name suffixes like ``| Site`` are common).
* author: same normalization, ``;``/``,``/``and`` separated names; a match when every gold
  name is found in ours (order-insensitive) or ours is found in gold.
* date: the calendar day (``YYYY-MM-DD``) of the published date; gold is day-only in
  trafilatura-eval, and ``publishedTime`` in readability. claimwire stores the instant in
  UTC, so a day matches when it equals the gold's local day (first 10 chars) or, when the
  gold has a time and offset, the gold's day in UTC (``2017-02-23T17:18-08:00`` is
  2017-02-24 in UTC). The same rule applies to every configuration.
* A missing prediction counts as wrong.

Speed: wall-clock ms of the extraction call alone (text + metadata, input already decoded),
measured inside each worker process; median and p95 over pages of both corpora.
Derived configurations (``+strip-title``, ``max(...)``) are computed from the base outputs
and their time is the sum of their parts.

Second-opinion candidates (text only, no metadata; their metadata columns are not scored):
``cand: precision-fast`` (trafilatura ``favor_precision`` + ``fast``, the arbiter's precise
pass) and ``cand: readability-port`` (trafilatura's port of readability-lxml on the page
without hidden elements, the arbiter's witness). ``--cv`` chooses the arbiter's thresholds
(ratio, agreement, minimum length, which text to keep) from these cached candidates by
2-fold cross-validation: pages are split into two halves by site (readability pages by
name without the trailing number, trafilatura-eval pages by host), the thresholds are chosen
on one half (objective: mean shingle F1 of all readability pages of the half + snippet F1
of the trafilatura-eval pages of the half; ties go to the rule that fires least) and scored
on the other half, both ways; the rule chosen on all pages is reported next to them.
``--cv`` also prints paired differences on the news pages (mean, 95 % bootstrap interval,
pages won/lost by more than 0.001).

``--cv-options "BASE;A;B..."`` does the same for a choice among computed configurations
(e.g. the teaser-list grid ``TEASER_GRID``, configs ``teasers K/C/S/G+arbiter``, or the
photo-gallery grid ``MEDIA_GRID``, configs ``teasers+media N/C/X+arbiter``): one is
chosen on each half with the same objective (ties: the baseline, then the option that
changes fewest pages) and scored on the other half. ``cand: recall-fast`` and
``cand: justext`` (jusText as trafilatura ships it) are further text-only witnesses.

Results: a markdown table on stdout, and JSON in ``bench/results/`` (gitignored).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import statistics
import sys
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trafilatura

from worker.pages.arbiter import (
    ArbiterSettings,
    agreement,
    readability_text,
)
from worker.pages.charset import decode_html
from worker.pages.extractor import (
    DEFAULT_PROFILE,
    EXTRACTOR_VERSION,
    PROFILES,
    Profile,
    _bare,
    _doc_text,
    _parse,
    extract_page,
    html_fragment_to_text,
)
from worker.pages.prune_media import MediaSettings, gallery_blocks
from worker.pages.prune_teasers import TeaserSettings, teaser_units, without_teasers

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = Path("/work/shared/corpora/extraction")
RESULTS = ROOT / "bench" / "results"
CACHE = Path("/tmp/claimwire-bench-cache")

NOW = datetime(2100, 1, 1, tzinfo=UTC)  # gold dates are historical; do not clip them

# ---------------------------------------------------------------- configurations


@dataclass
class Output:
    text: str
    title: str | None
    author: str | None
    date: str | None  # YYYY-MM-DD
    ms: float


def _run_defaults(html: str, url: str | None) -> Output:
    t0 = time.perf_counter()
    raw = trafilatura.extract(html, url=url, with_metadata=True, output_format="json")
    ms = (time.perf_counter() - t0) * 1000
    data = json.loads(raw) if raw else {}
    return Output(
        text=data.get("text") or "",
        title=data.get("title"),
        author=data.get("author"),
        date=(data.get("date") or "")[:10] or None,
        ms=ms,
    )


def _profile_runner(
    name: str, profile: Profile | None = None
) -> Callable[[str, str | None], Output]:
    profile = profile or PROFILES[name]

    def run(html: str, url: str | None) -> Output:
        t0 = time.perf_counter()
        page = extract_page(html, url, min_text_chars=0, now=NOW, profile=profile)
        ms = (time.perf_counter() - t0) * 1000
        return Output(
            text=page.text,
            title=page.title,
            author=page.author,
            date=page.published_at.date().isoformat() if page.published_at else None,
            ms=ms,
        )

    return run


def _text_only_runner(profile: Profile) -> Callable[[str, str | None], Output]:
    """A trafilatura pass with ``profile``, text only (a candidate, no metadata)."""

    def run(html: str, url: str | None) -> Output:
        t0 = time.perf_counter()
        tree = _parse(html)
        text = (
            _doc_text(_bare(tree, url, profile, with_metadata=False, now=NOW))
            if tree is not None
            else ""
        )
        return Output(text, None, None, None, (time.perf_counter() - t0) * 1000)

    return run


_run_precision_fast = _text_only_runner(Profile("precision-fast", favor_precision=True, fast=True))
_run_recall_fast = _text_only_runner(Profile("recall-fast", favor_recall=True, fast=True))


def _run_readability_port(html: str, url: str | None) -> Output:
    t0 = time.perf_counter()
    tree = _parse(html)
    text = readability_text(tree, html_fragment_to_text) if tree is not None else ""
    return Output(text, None, None, None, (time.perf_counter() - t0) * 1000)


TEASER_GRID: list[tuple[int, int, float, float]] = [
    (min_units, max_chars, share, group)
    for min_units in (3, 4)
    for max_chars in (400, 1500)
    for share in (0.5, 0.8)
    for group in (0.3, 0.5, 0.8)
]
"""Teaser-list rules tried: (min sibling units, max unit chars, link share of a heading,
share of the parent's text held by the units)."""


def teaser_config(rule: tuple[int, int, float, float]) -> str:
    return "teasers " + "/".join(str(x) for x in rule) + "+arbiter"


_PAGE_MEMO: dict[str, Output] = {}
"""Per page (cleared by ``_work``): balanced+arbiter's output, reused by the teaser grid on
pages where a rule finds no teaser list (its output is then the same by construction)."""


def _teaser_runner(rule: tuple[int, int, float, float]) -> Callable[[str, str | None], Output]:
    k, c, share, group = rule
    settings = TeaserSettings(min_units=k, max_chars=c, link_share=share, group_share=group)
    profile = Profile(teaser_config(rule), arbiter=ArbiterSettings(), teasers=settings)
    full = _profile_runner(profile.name, profile)
    base = _profile_runner("balanced+arbiter")

    def run(html: str, url: str | None) -> Output:
        t0 = time.perf_counter()
        tree = _parse(html)
        found = tree is not None and bool(teaser_units(tree, settings))
        if found:
            return full(html, url)
        if "balanced+arbiter" not in _PAGE_MEMO:
            _PAGE_MEMO["balanced+arbiter"] = base(html, url)
        o = _PAGE_MEMO["balanced+arbiter"]
        return Output(o.text, o.title, o.author, o.date, o.ms + (time.perf_counter() - t0) * 1000)

    return run


MEDIA_GRID: list[tuple[int, int, int]] = [
    (min_images, per_image, context)
    for min_images in (4, 6, 10)
    for per_image in (300, 400, 600)
    for context in (300, 1000)
]
"""Photo-gallery rules tried (on top of production, ``balanced+teasers+arbiter``): (min
image units, max characters of text per image unit, min text next to the gallery)."""


def media_config(rule: tuple[int, int, int]) -> str:
    return "teasers+media " + "/".join(str(x) for x in rule) + "+arbiter"


def _media_runner(rule: tuple[int, int, int]) -> Callable[[str, str | None], Output]:
    k, per_image, context = rule
    settings = MediaSettings(min_images=k, max_chars_per_image=per_image, min_context_chars=context)
    profile = Profile(
        media_config(rule),
        teasers=TeaserSettings(),
        media=settings,
        arbiter=ArbiterSettings(),
    )
    full = _profile_runner(profile.name, profile)
    base = _profile_runner("balanced+teasers+arbiter")

    def run(html: str, url: str | None) -> Output:
        t0 = time.perf_counter()
        tree = _parse(html)
        # the rule runs on the page without its teaser lists, or on the page as it is
        # when too little is left without them: no gallery in either = production's output
        found = tree is not None and bool(
            gallery_blocks(tree, settings) or gallery_blocks(without_teasers(tree), settings)
        )
        if found:
            return full(html, url)
        if "balanced+teasers+arbiter" not in _PAGE_MEMO:
            _PAGE_MEMO["balanced+teasers+arbiter"] = base(html, url)
        o = _PAGE_MEMO["balanced+teasers+arbiter"]
        return Output(o.text, o.title, o.author, o.date, o.ms + (time.perf_counter() - t0) * 1000)

    return run


def _run_justext(html: str, url: str | None) -> Output:
    """jusText as trafilatura ships it (its second fallback), paragraphs one per line."""
    from trafilatura.external import justext_rescue
    from trafilatura.settings import Extractor

    t0 = time.perf_counter()
    tree = _parse(html)
    text = ""
    if tree is not None:
        try:
            body, _ = justext_rescue(tree, Extractor(url=url))
            text = "\n".join(" ".join("".join(p.itertext()).split()) for p in body)
        except Exception:  # a crash is a full miss
            text = ""
    return Output(text, None, None, None, (time.perf_counter() - t0) * 1000)


CANDIDATES = (
    "cand: precision-fast",
    "cand: readability-port",
    "cand: recall-fast",
    "cand: justext",
)
"""Text-only configurations (the arbiter's candidates): metadata is not scored."""

BASE_CONFIGS: dict[str, Callable[[str, str | None], Output]] = {
    "trafilatura.extract defaults": _run_defaults,
    **{
        name: _profile_runner(name)
        for name in (
            "balanced+teasers+arbiter",
            "balanced+teasers+media+arbiter",
            "balanced+arbiter",
            "balanced",
            "balanced+images",
            "balanced+images+arbiter",
            "balanced+gallery+arbiter",
            "balanced+captions+arbiter",
            "precision",
            "recall",
            "fast",
            "balanced+prune+postclean",
            "recall+prune+postclean",
        )
    },
    "cand: precision-fast": _run_precision_fast,
    "cand: readability-port": _run_readability_port,
    "cand: recall-fast": _run_recall_fast,
    "cand: justext": _run_justext,
    **{teaser_config(rule): _teaser_runner(rule) for rule in TEASER_GRID},
    **{media_config(rule): _media_runner(rule) for rule in MEDIA_GRID},
}

# ---------------------------------------------------------------- derived variants


def strip_title(text: str, title: str | None) -> str:
    """Drop a leading line equal to the title (trafilatura keeps the <h1> in the text)."""
    if not title or not text:
        return text
    first, _, rest = text.partition("\n")
    if _norm_meta(first) == _norm_meta(title):
        return rest.lstrip("\n")
    return text


def _longer_if_much_longer(a: Output, b: Output, ratio: float) -> Output:
    """a unless b is more than ``1/ratio`` times longer."""
    pick = b if len(a.text) < ratio * len(b.text) else a
    return Output(pick.text, a.title, a.author, a.date, a.ms + b.ms)


DERIVED: dict[tuple[str, ...], Callable[[dict[str, Output]], Output]] = {
    ("precision", "recall"): lambda o: _longer_if_much_longer(o["precision"], o["recall"], 0.5),
    ("balanced", "recall"): lambda o: _longer_if_much_longer(o["balanced"], o["recall"], 0.5),
}
DERIVED_NAMES: dict[tuple[str, ...], str] = {
    ("precision", "recall"): "precision, recall if <50%",
    ("balanced", "recall"): "balanced, recall if <50%",
}


def _with_strip_title(o: Output) -> Output:
    return Output(strip_title(o.text, o.title), o.title, o.author, o.date, o.ms)


# ----------------------------------------------------------------------- scoring


def norm_ws(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"})


def _norm_meta(value: str | list[str] | None) -> str:
    if isinstance(value, list):  # some gold records list several authors
        value = "; ".join(str(v) for v in value)
    if not value:
        return ""
    value = unicodedata.normalize("NFKC", value).translate(_QUOTES).casefold()
    return norm_ws(value)


def title_match(pred: str | None, gold: str | list[str]) -> tuple[bool, bool]:
    p, g = _norm_meta(pred), _norm_meta(gold)
    if not p:
        return False, False
    return p == g, p == g or (bool(g) and (g in p or p in g))


def author_match(pred: str | None, gold: str | list[str]) -> bool:
    p, g = _norm_meta(pred), _norm_meta(gold)
    if not p or not g:
        return False
    names = [n.strip() for n in re.split(r";|,| and | & ", g) if n.strip()]
    return all(n in p for n in names) or p in g


def gold_days(gold: str) -> set[str]:
    """The gold's local day, and its UTC day when it carries a time and an offset."""
    days = {gold[:10]}
    try:
        when = datetime.fromisoformat(gold.strip().replace("Z", "+00:00"))
    except ValueError:
        return days
    if when.tzinfo is not None:
        days.add(when.astimezone(UTC).date().isoformat())
    return days


_INVISIBLE = {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf"}
"""Format characters (soft hyphen, zero-width space/joiner/non-joiner, BOM, direction
marks): invisible on a page, yet ``\\w+`` splits a word at them ("netan\u00adyahu")."""


def words(text: str, *, v1: bool = False) -> list[str]:
    """Lower-cased ``\\w+`` words. Measure v2 (default): NFKC first and format characters
    (Unicode category Cf) removed, the same for gold and every configuration; ``v1=True``
    is the measure of settings revisions 1-3 (for side-by-side tables)."""
    if not v1:
        text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    return re.findall(r"\w+", text.lower())


def shingles(text: str, n: int = 4, *, v1: bool = False) -> set[tuple[str, ...]]:
    ws = words(text, v1=v1)
    if len(ws) < n:
        return {tuple(ws)} if ws else set()
    return {tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)}


def shingle_prf(pred: str, gold: str, *, v1: bool = False) -> tuple[float, float, float]:
    a, b = shingles(pred, v1=v1), shingles(gold, v1=v1)
    if not a and not b:
        return 1.0, 1.0, 1.0
    if not a or not b:
        return 0.0, 0.0, 0.0
    inter = len(a & b)
    p, r = inter / len(a), inter / len(b)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def count_item(item: dict[str, Any], text: str) -> tuple[int, int, int, int]:
    """tp, fp, fn, tn exactly as trafilatura-eval's eval_common.count_item."""
    resn = norm_ws(text)
    tp = sum(1 for w in item["with"] if norm_ws(w) in resn)
    fp = sum(1 for w in item["without"] if norm_ws(w) in resn)
    return tp, fp, len(item["with"]) - tp, len(item["without"]) - fp


# ---------------------------------------------------------------------- corpora


@dataclass
class Page:
    corpus: str  # "teval" | "readability"
    key: str
    path: str
    url: str | None
    gold: dict[str, Any] = field(default_factory=dict)
    news: bool = False


def load_pages(corpora: Path, limit: int | None) -> list[Page]:
    pages: list[Page] = []
    teval = corpora / "trafilatura-eval"
    evaldata = json.loads((teval / "evaldata.json").read_text(encoding="utf-8"))
    tev: list[Page] = []
    for url in sorted(evaldata):
        item = evaldata[url]
        path = teval / "html" / (item["file"] + ".gz")
        if not path.is_file():
            continue
        tev.append(Page("teval", url, str(path), url, item))
    rdb: list[Page] = []
    for d in sorted((corpora / "readability-test-pages" / "pages").iterdir()):
        meta = json.loads((d / "expected-metadata.json").read_text(encoding="utf-8"))
        expected = (d / "expected.html").read_text(encoding="utf-8")
        gold = {"meta": meta, "text": html_fragment_to_text(expected)}
        news = bool(meta.get("byline") or meta.get("publishedTime"))
        rdb.append(Page("readability", d.name, str(d / "source.html.gz"), None, gold, news))
    if limit:
        tev, rdb = tev[:limit], rdb[:limit]
    pages.extend(tev)
    pages.extend(rdb)
    return pages


def _work(job: tuple[Page, list[str]]) -> tuple[str, str, dict[str, dict[str, Any]]]:
    page, names = job
    body = gzip.decompress(Path(page.path).read_bytes())
    html, _ = decode_html(body, None)
    outs: dict[str, dict[str, Any]] = {}
    _PAGE_MEMO.clear()
    for name in names:
        fn = BASE_CONFIGS[name]
        try:
            o = fn(html, page.url)
        except Exception as exc:  # a crash is a full miss, as in trafilatura's eval
            o = Output("", None, None, None, 0.0)
            print(f"{name} crashed on {page.key}: {exc!r}", file=sys.stderr)
        outs[name] = o.__dict__
    return page.corpus, page.key, outs


# --------------------------------------------------------------------- reporting


@dataclass
class Acc:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    sh_all: list[float] = field(default_factory=list)
    sh_news: list[float] = field(default_factory=list)
    sh_news_p: list[float] = field(default_factory=list)
    sh_news_r: list[float] = field(default_factory=list)
    sh_all_v1: list[float] = field(default_factory=list)
    sh_news_v1: list[float] = field(default_factory=list)
    meta: dict[str, list[bool]] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)

    def hit(self, key: str, ok: bool) -> None:
        self.meta.setdefault(key, []).append(ok)

    def summary(self) -> dict[str, Any]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f = 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0
        ms = sorted(self.ms)

        def mean(xs: list[float]) -> float | None:
            return statistics.fmean(xs) if xs else None

        return {
            "snippet_precision": p,
            "snippet_recall": r,
            "snippet_f1": f,
            "shingle_f1_all": mean(self.sh_all),
            "shingle_f1_news": mean(self.sh_news),
            "shingle_p_news": mean(self.sh_news_p),
            "shingle_r_news": mean(self.sh_news_r),
            "shingle_f1_all_v1": mean(self.sh_all_v1),
            "shingle_f1_news_v1": mean(self.sh_news_v1),
            "meta": {k: (sum(v) / len(v), len(v)) for k, v in sorted(self.meta.items())},
            "ms_median": statistics.median(ms) if ms else None,
            "ms_p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else None,
            "pages": len(ms),
        }


def score(pages: list[Page], results: dict[tuple[str, str], dict[str, Output]]) -> dict[str, Acc]:
    accs: dict[str, Acc] = {}
    for page in pages:
        base = results[(page.corpus, page.key)]
        variants: dict[str, Output] = dict(base)
        for needs, fn in DERIVED.items():
            if all(n in base for n in needs):
                variants[DERIVED_NAMES[needs]] = fn(base)
        for name in list(variants):
            if name != "trafilatura.extract defaults" and name not in CANDIDATES:
                variants[name + " +strip-title"] = _with_strip_title(variants[name])
        for name, o in variants.items():
            acc = accs.setdefault(name, Acc())
            acc.ms.append(o.ms)
            if page.corpus == "teval":
                tp, fp, fn_, tn = count_item(page.gold, o.text)
                acc.tp, acc.fp, acc.fn, acc.tn = acc.tp + tp, acc.fp + fp, acc.fn + fn_, acc.tn + tn
                gold_title, gold_author, gold_date = (
                    page.gold.get("title"),
                    page.gold.get("author"),
                    page.gold.get("date"),
                )
            else:
                pr, rc, f1 = shingle_prf(o.text, page.gold["text"])
                f1_v1 = shingle_prf(o.text, page.gold["text"], v1=True)[2]
                acc.sh_all.append(f1)
                acc.sh_all_v1.append(f1_v1)
                if page.news:
                    acc.sh_news.append(f1)
                    acc.sh_news_v1.append(f1_v1)
                    acc.sh_news_p.append(pr)
                    acc.sh_news_r.append(rc)
                m = page.gold["meta"]
                gold_title, gold_author = m.get("title"), m.get("byline")
                gold_date = m.get("publishedTime") or None
            tag = "teval" if page.corpus == "teval" else "rdb"
            if name in CANDIDATES:
                continue
            if gold_title:
                exact, lenient = title_match(o.title, gold_title)
                acc.hit(f"{tag}_title_exact", exact)
                acc.hit(f"{tag}_title_lenient", lenient)
            if gold_author:
                acc.hit(f"{tag}_author", author_match(o.author, gold_author))
            if gold_date:
                acc.hit(f"{tag}_date", o.date in gold_days(gold_date))
    return accs


# ------------------------------------------------------- arbiter cross-validation

ARBITER_GRID: list[tuple[float, float, int, str]] = [
    (ratio, agree, min_chars, keep)
    for ratio in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    for agree in (0.5, 0.6, 0.7, 0.8, 0.9)
    for min_chars in (200, 500)
    for keep in ("precise", "readability")
]
"""Rules tried: (length ratio, agreement, minimum precise length, which text to keep)."""


@dataclass
class Cand:
    """One page's three candidate texts and the detector's features."""

    main: Output
    precise: Output
    other: Output
    ratio_p: float = 0.0
    ratio_o: float = 0.0
    agree: float = 0.0

    def __post_init__(self) -> None:
        n = max(1, len(self.main.text))
        self.ratio_p, self.ratio_o = len(self.precise.text) / n, len(self.other.text) / n
        self.agree = agreement(self.precise.text, self.other.text)

    def pick(self, rule: tuple[float, float, int, str]) -> Output:
        """Same decision as worker.pages.arbiter.second_opinion, from cached texts."""
        ratio, min_agree, min_chars, keep = rule
        if (
            self.main.text
            and len(self.precise.text) >= min_chars
            and self.ratio_p <= ratio
            and self.other.text
            and self.ratio_o <= ratio
            and self.agree >= min_agree
        ):
            return self.precise if keep == "precise" else self.other
        return self.main


def _site(page: Page) -> str:
    if page.corpus == "teval":
        from urllib.parse import urlsplit

        return "teval:" + (urlsplit(page.key).hostname or "")
    return "rdb:" + re.sub(r"-\d+$", "", page.key)


def _half(page: Page) -> int:
    import zlib

    return zlib.crc32(_site(page).encode()) % 2


def _rule_scores(
    pages: list[Page], cands: dict[str, Cand], rule: tuple[float, float, int, str] | None
) -> dict[str, float]:
    """Mean shingle F1 (all readability pages, news pages) and snippet F1 under ``rule``."""
    sh_all: list[float] = []
    sh_news: list[float] = []
    tp = fp = fn = 0
    fired = 0
    for page in pages:
        c = cands[f"{page.corpus}:{page.key}"]
        o = c.main if rule is None else c.pick(rule)
        fired += o is not c.main
        if page.corpus == "teval":
            a, b, d, _ = count_item(page.gold, o.text)
            tp, fp, fn = tp + a, fp + b, fn + d
        else:
            f1 = shingle_prf(o.text, page.gold["text"])[2]
            sh_all.append(f1)
            if page.news:
                sh_news.append(f1)
    return {
        "rdb_all": statistics.fmean(sh_all) if sh_all else 0.0,
        "news": statistics.fmean(sh_news) if sh_news else 0.0,
        "snippet_f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        "fired": fired,
    }


def _choose(pages: list[Page], cands: dict[str, Cand]) -> tuple[float, float, int, str]:
    def key(rule: tuple[float, float, int, str]) -> tuple[float, int]:
        r = _rule_scores(pages, cands, rule)
        return round(r["rdb_all"] + r["snippet_f1"], 6), -int(r["fired"])

    return max(ARBITER_GRID, key=key)


def _bootstrap(diffs: list[float], n: int = 2000) -> tuple[float, float]:
    import random

    rng = random.Random(4)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


def cross_validate(pages: list[Page], outputs: dict[tuple[str, str], dict[str, Output]]) -> str:
    """Markdown: the arbiter's thresholds chosen on one half, scored on the other."""
    need = ("balanced", *CANDIDATES[:2])
    cands = {
        f"{c}:{k}": Cand(o["balanced"], o[CANDIDATES[0]], o[CANDIDATES[1]])
        for (c, k), o in outputs.items()
        if all(n in o for n in need)
    }
    pages = [p for p in pages if f"{p.corpus}:{p.key}" in cands]
    lines = [
        "| trained on | rule (ratio, agreement, min chars, keep) | held-out half | "
        "news shingle F1 (balanced → rule) | all readability | snippet F1 | fired |",
        "|---|---|---|---|---|---|---|",
    ]
    held_out: dict[str, float] = {}
    for h in (0, 1):
        train = [p for p in pages if _half(p) == h]
        test = [p for p in pages if _half(p) != h]
        rule = _choose(train, cands)
        base, got = _rule_scores(test, cands, None), _rule_scores(test, cands, rule)
        n_news = sum(p.news for p in test)
        lines.append(
            f"| half {h} ({len(train)} pages) | {rule} | half {1 - h} ({len(test)} pages, "
            f"{n_news} news) | {base['news']:.4f} → {got['news']:.4f} | "
            f"{base['rdb_all']:.4f} → {got['rdb_all']:.4f} | "
            f"{base['snippet_f1']:.4f} → {got['snippet_f1']:.4f} | {int(got['fired'])} |"
        )
        for p in test:
            if p.news:
                o = cands[f"{p.corpus}:{p.key}"].pick(rule)
                held_out[p.key] = shingle_prf(o.text, p.gold["text"])[2]
    rule = _choose(pages, cands)
    base, got = _rule_scores(pages, cands, None), _rule_scores(pages, cands, rule)
    prod = ArbiterSettings()
    lines.append(
        f"| all ({len(pages)} pages) | {rule} | (in-sample) | {base['news']:.4f} → "
        f"{got['news']:.4f} | {base['rdb_all']:.4f} → {got['rdb_all']:.4f} | "
        f"{base['snippet_f1']:.4f} → {got['snippet_f1']:.4f} | {int(got['fired'])} |"
    )
    out = "\n".join(lines)
    out += (
        f"\n\n2-fold held-out shingle F1 on the {len(held_out)} news pages (each page scored "
        f"by the rule chosen on the other half): **{statistics.fmean(held_out.values()):.4f}**"
        if held_out
        else ""
    )
    out += (
        f"\n\nProduction settings: ratio {prod.ratio}, agreement {prod.agreement}, "
        f"min chars {prod.min_chars}, keep precise."
    )
    # Paired differences on the news pages, from the configurations' own outputs.
    pairs = [
        ("balanced+teasers+media+arbiter", "balanced+teasers+arbiter"),
        ("balanced+teasers+arbiter", "balanced+arbiter"),
        ("balanced+teasers+arbiter", "trafilatura.extract defaults"),
        ("balanced+arbiter", "balanced"),
        ("balanced+arbiter", "trafilatura.extract defaults"),
        ("balanced", "trafilatura.extract defaults"),
        ("cand: readability-port", "balanced"),
    ]
    rows = ["| comparison | mean difference | 95 % interval | won / lost |", "|---|---|---|---|"]
    news = [p for p in pages if p.news]
    for a, b in pairs:
        keys = [(p.corpus, p.key) for p in news if a in outputs[(p.corpus, p.key)]]
        keys = [k for k in keys if b in outputs[k]]
        if not keys:
            continue
        gold = {(p.corpus, p.key): p.gold["text"] for p in news}
        diffs = [
            shingle_prf(outputs[k][a].text, gold[k])[2]
            - shingle_prf(outputs[k][b].text, gold[k])[2]
            for k in keys
        ]
        lo, hi = _bootstrap(diffs)
        won = sum(d > 0.001 for d in diffs)
        lost = sum(d < -0.001 for d in diffs)
        rows.append(
            f"| {a} − {b} | {statistics.fmean(diffs):+.4f} | [{lo:+.4f}, {hi:+.4f}] | "
            f"{won} / {lost} |"
        )
    return out + "\n\n" + "\n".join(rows)


def _option_scores(
    pages: list[Page], outputs: dict[tuple[str, str], dict[str, Output]], name: str
) -> dict[str, float]:
    """Mean shingle F1 (all readability pages, news pages) and snippet F1 of one config."""
    sh_all: list[float] = []
    sh_news: list[float] = []
    tp = fp = fn = 0
    for page in pages:
        o = outputs[(page.corpus, page.key)][name]
        if page.corpus == "teval":
            a, b, d, _ = count_item(page.gold, o.text)
            tp, fp, fn = tp + a, fp + b, fn + d
        else:
            f1 = shingle_prf(o.text, page.gold["text"])[2]
            sh_all.append(f1)
            if page.news:
                sh_news.append(f1)
    return {
        "rdb_all": statistics.fmean(sh_all) if sh_all else 0.0,
        "news": statistics.fmean(sh_news) if sh_news else 0.0,
        "snippet_f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
    }


def cross_validate_options(
    pages: list[Page], outputs: dict[tuple[str, str], dict[str, Output]], options: list[str]
) -> str:
    """Markdown: one configuration chosen among ``options`` on one half (by site), scored on
    the other half, both ways. The objective is the arbiter's: mean shingle F1 of the half's
    readability pages + snippet F1 of its trafilatura-eval pages; ties go to the baseline
    ``options[0]``, then to the option that changes the baseline's text on fewest pages."""
    pages = [p for p in pages if all(n in outputs[(p.corpus, p.key)] for n in options)]
    base = options[0]

    def changed(ps: list[Page], n: str) -> int:
        return sum(
            outputs[(p.corpus, p.key)][n].text != outputs[(p.corpus, p.key)][base].text for p in ps
        )

    def key(ps: list[Page], scores: dict[str, dict[str, float]], n: str) -> tuple[Any, ...]:
        sc = scores[n]
        return round(sc["rdb_all"] + sc["snippet_f1"], 6), n == base, -changed(ps, n)

    lines = [
        f"| trained on | chosen | held-out half | news shingle F1 ({base} → chosen) | "
        "all readability | snippet F1 |",
        "|---|---|---|---|---|---|",
    ]
    held_out: dict[str, float] = {}
    for h in (0, 1):
        train = [p for p in pages if _half(p) == h]
        test = [p for p in pages if _half(p) != h]
        scores = {n: _option_scores(train, outputs, n) for n in options}
        best = max(options, key=lambda n: key(train, scores, n))
        b, g = _option_scores(test, outputs, base), _option_scores(test, outputs, best)
        lines.append(
            f"| half {h} ({len(train)} pages) | {best} | half {1 - h} ({len(test)} pages, "
            f"{sum(p.news for p in test)} news) | {b['news']:.4f} → {g['news']:.4f} | "
            f"{b['rdb_all']:.4f} → {g['rdb_all']:.4f} | "
            f"{b['snippet_f1']:.4f} → {g['snippet_f1']:.4f} |"
        )
        for p in test:
            if p.news:
                held_out[p.key] = shingle_prf(
                    outputs[(p.corpus, p.key)][best].text, p.gold["text"]
                )[2]
    scores = {n: _option_scores(pages, outputs, n) for n in options}
    best = max(options, key=lambda n: key(pages, scores, n))
    b, g = scores[base], scores[best]
    lines.append(
        f"| all ({len(pages)} pages) | {best} | (in-sample) | {b['news']:.4f} → {g['news']:.4f} | "
        f"{b['rdb_all']:.4f} → {g['rdb_all']:.4f} | {b['snippet_f1']:.4f} → {g['snippet_f1']:.4f} |"
    )
    out = "\n".join(lines)
    if held_out:
        out += (
            f"\n\n2-fold held-out shingle F1 on the {len(held_out)} news pages (each page scored "
            "by the configuration chosen on the other half): "
            f"**{statistics.fmean(held_out.values()):.4f}**"
        )
    rows = [
        "| option | news shingle F1 | all readability | snippet F1 | half 0 news · half 1 news |",
        "|---|---|---|---|---|",
    ]
    for n in options:
        sc = scores[n]
        halves = [
            _option_scores([p for p in pages if _half(p) == h], outputs, n)["news"] for h in (0, 1)
        ]
        rows.append(
            f"| {n} | {sc['news']:.4f} | {sc['rdb_all']:.4f} | {sc['snippet_f1']:.4f} | "
            f"{halves[0]:.4f} · {halves[1]:.4f} |"
        )
    return out + "\n\n" + "\n".join(rows)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def table(summaries: dict[str, dict[str, Any]]) -> str:
    cols = [
        "config",
        "snip P",
        "snip R",
        "snip F1",
        "shingle F1 all",
        "shingle F1 news",
        "news P/R",
        "all · news (v1)",
        "title (ex/len)",
        "author",
        "date",
        "ms med",
        "ms p95",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, s in summaries.items():
        meta = s["meta"]

        def both(key: str, meta: dict[str, Any] = meta) -> str:
            a, b = meta.get(f"teval_{key}"), meta.get(f"rdb_{key}")
            return f"{_fmt(a[0] if a else None, 2)}/{_fmt(b[0] if b else None, 2)}"

        title = f"{both('title_exact')} · {both('title_lenient')}" if meta else "–"
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    _fmt(s["snippet_precision"]),
                    _fmt(s["snippet_recall"]),
                    _fmt(s["snippet_f1"]),
                    _fmt(s["shingle_f1_all"]),
                    _fmt(s["shingle_f1_news"]),
                    f"{_fmt(s['shingle_p_news'])}/{_fmt(s['shingle_r_news'])}",
                    f"{_fmt(s['shingle_f1_all_v1'])} · {_fmt(s['shingle_f1_news_v1'])}",
                    title,
                    both("author"),
                    both("date"),
                    _fmt(s["ms_median"], 1),
                    _fmt(s["ms_p95"], 1),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="pages per corpus (quick run)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    ap.add_argument(
        "--cache",
        default=str(CACHE),
        help="outputs of earlier runs, reused per page and configuration (outside the repo: "
        "they hold text of the copyrighted pages); --cache '' disables it",
    )
    ap.add_argument(
        "--configs",
        default="",
        help="comma-separated configurations to compute (default: all); see BASE_CONFIGS",
    )
    ap.add_argument(
        "--cv",
        action="store_true",
        help="cross-validate the arbiter's thresholds (needs balanced and the cand: configs)",
    )
    ap.add_argument(
        "--cv-options",
        default="",
        help="';'-separated configurations (all computed, the first is the baseline): choose "
        "one on each half by site, score it on the other half",
    )
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()] or list(BASE_CONFIGS)
    unknown = [n for n in names if n not in BASE_CONFIGS]
    if unknown:
        print(f"unknown configurations: {unknown}; known: {list(BASE_CONFIGS)}", file=sys.stderr)
        return 2
    if not args.corpora.is_dir():
        print(f"corpora not found: {args.corpora}", file=sys.stderr)
        return 2
    pages = load_pages(args.corpora, args.limit)
    started = time.time()
    cache_file = (
        Path(args.cache) / f"outputs-{EXTRACTOR_VERSION}-{trafilatura.__version__}.json"
        if args.cache
        else None
    )
    cached: dict[str, dict[str, dict[str, Any]]] = {}
    if cache_file is not None and cache_file.is_file():
        cached = json.loads(cache_file.read_text(encoding="utf-8"))
    jobs = []
    for page in pages:
        done = cached.get(f"{page.corpus}:{page.key}", {})
        missing = [n for n in names if n not in done]
        if missing:
            jobs.append((page, missing))
    print(f"computing {sum(len(m) for _, m in jobs)} page x configuration outputs", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for corpus, key, outs in pool.map(_work, jobs, chunksize=4):
            cached.setdefault(f"{corpus}:{key}", {}).update(outs)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cached), encoding="utf-8")
    results: dict[tuple[str, str], dict[str, Output]] = {
        (p.corpus, p.key): {
            k: Output(**v) for k, v in cached[f"{p.corpus}:{p.key}"].items() if k in names
        }
        for p in pages
    }
    accs = score(pages, results)
    summaries = {name: acc.summary() for name, acc in accs.items()}
    n_teval = sum(p.corpus == "teval" for p in pages)
    n_rdb = len(pages) - n_teval
    n_news = sum(p.news for p in pages)
    header = (
        f"pages: trafilatura-eval {n_teval}, readability {n_rdb} (news {n_news}); "
        f"production profile: {DEFAULT_PROFILE.name} ({EXTRACTOR_VERSION}); "
        f"wall {time.time() - started:.0f}s with {args.jobs} processes; "
        f"python {platform.python_version()}, {os.cpu_count()} cores"
    )
    print(header)
    print()
    print("metadata columns: trafilatura-eval / readability accuracy")
    print()
    print(table(summaries))
    cv_text = cross_validate(pages, results) if args.cv else ""
    options = [n.strip() for n in args.cv_options.split(";") if n.strip()]
    if options:
        opt_text = cross_validate_options(pages, results, options)
        print("\nconfiguration chosen by 2-fold cross-validation by site:\n")
        print(opt_text)
    if cv_text:
        print("\narbiter thresholds, 2-fold cross-validation by site:\n")
        print(cv_text)
    if options:
        cv_text += "\n\n" + opt_text
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"extraction_quality-{stamp}.json"
    per_page = {
        f"{c}:{k}": {
            name: shingle_prf(o.text, next(p for p in pages if p.key == k).gold["text"])[2]
            for name, o in outs.items()
        }
        for (c, k), outs in results.items()
        if c == "readability"
    }
    out.write_text(
        json.dumps(
            {
                "header": header,
                "argv": sys.argv,
                "limit": args.limit,
                "summaries": summaries,
                "readability_shingle_f1_per_page": per_page,
                "cv": cv_text,
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    print(f"\nJSON: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
