"""CPU cost of claimwire's extraction against bare trafilatura, and a byte-identity check.

Usage, from the repository root::

    # every corpus page through extract_page, one JSON record a line (text, title,
    # author, date and its precision, everything ExtractedPage holds)
    .venv/bin/python -m bench.extraction_cost records OUT.jsonl [--jobs 2]
    # the same records from another checkout (e.g. main), to compare with
    PYTHONPATH=/work/main python bench/extraction_cost.py records MAIN.jsonl
    .venv/bin/python -m bench.extraction_cost compare MAIN.jsonl OUT.jsonl
    # CPU per page, interleaved page by page: extract_page and trafilatura.extract
    .venv/bin/python -m bench.extraction_cost cpu [--limit 200] [--profile OUT.txt]
    # CPU of each part of extract_page, every 11th page
    .venv/bin/python -m bench.extraction_cost parts [--every 11]
    # A/B in one process: another checkout's extract_page (e.g. main's, unpacked with
    # ``git archive main | tar -x -C /tmp/main-src``) against this one's, page by page
    .venv/bin/python -m bench.extraction_cost ab /tmp/main-src [--limit 280] [--rounds 2]
    # instructions (load-independent) of extract_page on 20 pages in steady state: the
    # pages run twice, then once more with callgrind's instrumentation switched on
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \
        .venv/bin/python -m bench.extraction_cost instructions [--pages 20] [--bare]

``cpu`` measures process CPU time (``time.process_time``) of each call of three callers,
``trafilatura.extract(html, url=url)`` (the issue's yardstick), the same
``with_metadata=True`` (title, author, date: what claimwire needs too) and
``extract_page``, in a different order on each page (the same page, the same moment of
load), after a warm-up (dateparser's one-time compilation of its locales, 2-3 s of CPU
once per process, is measured and printed apart), and prints the totals and ratios.
``--profile`` also writes a pyinstrument profile of the ``extract_page`` calls (the
sampling adds to their CPU: take the ratios from a run without it). Pages are read in
place from the shared corpora (copyrighted: nothing of them is written to the
repository; the records files go where you say).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_CORPORA = Path("/work/shared/corpora/extraction")
_ORDERS = ((0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0), (0, 2, 1), (1, 0, 2))
WARMUP = 10
"""Pages run through both callers before measuring (one-time loading is not per page)."""
NOW = datetime(2026, 12, 1, tzinfo=UTC)
"""A fixed "now" (htmldate's latest date, the clip of future dates): records are stable."""


def corpus_pages(corpora: Path) -> Iterator[tuple[str, Path, str | None]]:
    """(key, gzipped page, url) of every page of both corpora, in a fixed order."""
    teval = corpora / "trafilatura-eval"
    evaldata = json.loads((teval / "evaldata.json").read_text(encoding="utf-8"))
    urls = {item["file"]: url for url, item in evaldata.items()}
    for path in sorted((teval / "html").glob("*.gz")):
        name = path.name.removesuffix(".gz")
        yield f"teval/{name}", path, urls.get(name)
    for d in sorted((corpora / "readability-test-pages" / "pages").iterdir()):
        if (d / "source.html.gz").is_file():
            yield f"readability/{d.name}", d / "source.html.gz", None


def _html(path: Path) -> str:
    from worker.pages.charset import decode_html

    html, _ = decode_html(gzip.decompress(path.read_bytes()), None)
    return html


def _record(job: tuple[str, str, str | None]) -> str:
    from worker.pages.extractor import extract_page

    key, path, url = job
    page = extract_page(_html(Path(path)), url, now=NOW)
    out = page.model_dump(mode="json", exclude={"extractor_version"})
    return json.dumps({"key": key, **out}, ensure_ascii=False, sort_keys=True)


def records(out: Path, corpora: Path, jobs: int) -> None:
    pages = [(k, str(p), u) for k, p, u in corpus_pages(corpora)]
    with ProcessPoolExecutor(jobs) as pool, out.open("w", encoding="utf-8") as fh:
        for line in pool.map(_record, pages, chunksize=4):
            fh.write(line + "\n")
    print(f"{len(pages)} pages -> {out}")


def compare(a: Path, b: Path) -> int:
    ra = [json.loads(line) for line in a.read_text(encoding="utf-8").splitlines()]
    rb = [json.loads(line) for line in b.read_text(encoding="utf-8").splitlines()]
    if [r["key"] for r in ra] != [r["key"] for r in rb]:
        print("the two files hold different pages")
        return 1
    differ = 0
    for x, y in zip(ra, rb, strict=True):
        fields = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
        if fields:
            differ += 1
            print(f"{x['key']}: {', '.join(fields)}")
    print(f"{len(ra)} pages compared, {differ} differ")
    return 1 if differ else 0


def cpu(corpora: Path, limit: int | None, profile_out: Path | None) -> None:
    import trafilatura

    from worker.pages.extractor import extract_page

    pages = list(corpus_pages(corpora))
    if limit:
        step = max(1, len(pages) // limit)
        pages = pages[::step][:limit]
    profiler = None
    if profile_out is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
    from htmldate.extractors import get_external_parser

    t0 = time.process_time()
    # once per process, whoever meets it first: dateparser compiles every locale's patterns
    get_external_parser().get_date_data("0 x 2000")
    print(f"one-time dateparser warm-up: {time.process_time() - t0:.2f} s CPU")
    for _key, path, url in pages[:WARMUP]:  # imports, langid's model
        html = _html(path)
        trafilatura.extract(html, url=url, with_metadata=True)
        extract_page(html, url, now=NOW)
    cpu_s = [0.0, 0.0, 0.0]  # extract(html, url), the same with metadata, extract_page
    for i, (_key, path, url) in enumerate(pages):
        html = _html(path)
        for which in _ORDERS[i % len(_ORDERS)]:  # who goes first changes from page to page
            t0 = time.process_time()
            if which == 0:
                trafilatura.extract(html, url=url)
            elif which == 1:
                trafilatura.extract(html, url=url, with_metadata=True)
            else:
                if profiler is not None:
                    profiler.start()
                extract_page(html, url, now=NOW)
                if profiler is not None:
                    profiler.stop()
            cpu_s[which] += time.process_time() - t0
    bare, bare_meta, ours = cpu_s
    n = len(pages)
    load = os.getloadavg()
    print(f"{platform.node()} {os.cpu_count()} cpus, load {load[0]:.1f} {load[1]:.1f}")
    print(f"{n} pages, CPU seconds (ms per page), interleaved page by page:")
    print(f"  trafilatura.extract               {bare:7.2f} ({1000 * bare / n:.1f})")
    print(f"  trafilatura.extract with_metadata {bare_meta:7.2f} ({1000 * bare_meta / n:.1f})")
    print(f"  extract_page                      {ours:7.2f} ({1000 * ours / n:.1f})")
    print(f"  extract_page / extract: {ours / bare:.2f}")
    print(f"  extract_page / extract with_metadata: {ours / bare_meta:.2f}")
    if profiler is not None and profile_out is not None:
        profile_out.write_text(profiler.output_text(unicode=True, show_all=False))
        print(f"profile -> {profile_out}")


def _baseline_extract_page(src: Path) -> Callable[..., Any]:
    """``extract_page`` of the checkout at ``src``, loaded beside this one's in the same
    process: the modules of ``worker/pages`` that differ are loaded from ``src`` under other
    names, and its extractor is executed with them in place of this checkout's (its
    ``from worker.pages.x import ...`` bind at import time; the rest is shared)."""
    import importlib.util

    import trafilatura.external

    import worker.pages.arbiter  # noqa: F401 (this checkout's readability recorder first)

    names = ("nesting", "published", "prune_teasers", "prune_media", "arbiter", "extractor")
    if (src / "worker" / "pages" / "author.py").is_file():
        names = ("author", *names)
    saved = {n: sys.modules.get(f"worker.pages.{n}") for n in names}
    loaded: dict[str, Any] = {}
    # each checkout's arbiter replaces trafilatura's readability class by its recorder
    # (the witness's reuse of trafilatura's summary); the baseline's, loaded last, would
    # leave this checkout's recorder out: both are kept, each recording for its own side
    ours = trafilatura.external.ReadabilityDocument  # type: ignore[attr-defined]
    try:
        for n in names:
            spec = importlib.util.spec_from_file_location(
                f"worker.pages.{n}", src / "worker" / "pages" / f"{n}.py"
            )
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[f"worker.pages.{n}"] = mod  # seen by the modules loaded after it
            spec.loader.exec_module(mod)
            loaded[n] = mod
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(f"worker.pages.{n}", None)
            else:
                sys.modules[f"worker.pages.{n}"] = mod
    theirs = trafilatura.external.ReadabilityDocument  # type: ignore[attr-defined]
    if theirs is not ours:
        # cooperative: each class records only while its own side collects, then super()
        both = type("BothRecorders", (theirs, ours), {"__slots__": ()})
        trafilatura.external.ReadabilityDocument = both  # type: ignore[attr-defined]
    fn: Callable[..., Any] = loaded["extractor"].extract_page
    return fn


def ab(corpora: Path, baseline: Path, limit: int | None, rounds: int) -> None:
    """CPU per page of bare ``trafilatura.extract``, ``baseline``'s ``extract_page`` and
    this checkout's, interleaved page by page (the order changes from page to page), each
    page ``rounds`` times after one untimed pass over all of them; and whether the two
    ``extract_page`` give the same record."""
    import trafilatura
    from htmldate.extractors import get_external_parser

    from worker.pages.extractor import extract_page

    old = _baseline_extract_page(baseline)
    get_external_parser().get_date_data("0 x 2000")
    pages = list(corpus_pages(corpora))
    if limit:
        step = max(1, len(pages) // limit)
        pages = pages[::step][:limit]
    callers: tuple[Callable[[str, str | None], Any], ...] = (
        lambda html, url: trafilatura.extract(html, url=url),
        lambda html, url: old(html, url, now=NOW),
        lambda html, url: extract_page(html, url, now=NOW),
    )
    # every page once, untimed: libraries load data lazily the first time a page needs
    # it (dateparser a language's patterns, ...), a one-time cost of hundreds of ms that
    # would fall on whichever caller meets it first
    first = [0.0, 0.0, 0.0]
    for i, (_key, path, url) in enumerate(pages):
        html = _html(path)
        for which in _ORDERS[i % len(_ORDERS)]:
            t0 = time.process_time()
            callers[which](html, url)
            first[which] += time.process_time() - t0
    cpu_s = [0.0, 0.0, 0.0]
    differ = 0
    load0 = os.getloadavg()[0]
    for i, (_key, path, url) in enumerate(pages):
        html = _html(path)
        out: dict[int, Any] = {}
        for r in range(rounds):
            for which in _ORDERS[(i + r) % len(_ORDERS)]:
                t0 = time.process_time()
                out[which] = callers[which](html, url)
                cpu_s[which] += time.process_time() - t0
        if out[1].model_dump(mode="json") != out[2].model_dump(mode="json"):
            differ += 1
    n = len(pages) * rounds
    bare, before, after = cpu_s
    print(f"{platform.node()} {os.cpu_count()} cpus, load {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{len(pages)} pages x {rounds}, CPU ms per page, interleaved page by page:")
    print(f"  trafilatura.extract        {1000 * bare / n:6.1f}")
    print(f"  extract_page ({baseline}) {1000 * before / n:6.1f}  ({before / bare:.2f}x bare)")
    print(f"  extract_page (this)        {1000 * after / n:6.1f}  ({after / bare:.2f}x bare)")
    print(f"  this / baseline: {after / before:.3f}; records that differ: {differ}")
    f_bare, f_before, f_after = (1000 * x / len(pages) for x in first)
    print(
        f"  untimed first pass (one-time loads included): bare {f_bare:.1f},"
        f" baseline {f_before:.1f}, this {f_after:.1f} ms per page"
    )


def instructions(corpora: Path, n_pages: int, bare: bool) -> None:
    """Run ``extract_page`` on ``n_pages`` pages spread over both corpora twice, then once
    more between ``callgrind_control -i on`` and ``-i off`` for this process: under
    ``valgrind --tool=callgrind --instr-atstart=no`` the instruction count (valgrind's
    ``I refs``) is that of the last pass alone, without imports and one-time loads.
    Another checkout's code: ``PYTHONPATH=<other checkout> valgrind ... python
    bench/extraction_cost.py instructions`` (the script's path, not ``-m``: with ``-m`` the
    current directory's ``worker`` comes first). ``bare``: ``trafilatura.extract(html,
    url=url)`` instead, the yardstick."""
    import subprocess

    import trafilatura

    from worker.pages import extractor

    def run(html: str, url: str | None) -> None:
        if bare:
            trafilatura.extract(html, url=url)
        else:
            extractor.extract_page(html, url, now=NOW)

    pages = list(corpus_pages(corpora))
    step = max(1, len(pages) // n_pages)
    chosen = [(_html(p), u) for _k, p, u in pages[7::step][:n_pages]]
    for _ in range(2):
        for html, url in chosen:
            run(html, url)
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", "on", pid], check=False, capture_output=True)
    for html, url in chosen:
        run(html, url)
    subprocess.run(["callgrind_control", "-i", "off", pid], check=False, capture_output=True)
    print(f"{len(chosen)} pages, {'bare' if bare else extractor.__file__}")


_PARTS = (
    "_bare",
    "_arbitrate",
    "readability_text",
    "_metadata_doc",
    "_page_metadata",
    "without_galleries",
    "without_teasers",
    "_parse",
    "_load",
    "_sanitize",
    "page_candidates",
    "_metadata",
    "detect_language",
)


def parts(corpora: Path, every: int) -> None:
    """CPU of each part of ``extract_page`` (functions of ``worker.pages.extractor``,
    wrapped with a CPU clock; nested parts are inside their callers' time), every
    ``every``-th page, after the same warm-up as ``cpu``."""
    from collections import Counter

    import trafilatura
    from htmldate.extractors import get_external_parser

    from worker.pages import extractor

    get_external_parser().get_date_data("0 x 2000")
    pages = list(corpus_pages(corpora))
    for _key, path, url in pages[:WARMUP]:
        extractor.extract_page(_html(path), url, now=NOW)
    spent: dict[str, float] = {}
    calls: Counter[str] = Counter()

    def clocked(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - t0
                calls[name] += 1

        return run

    for name in _PARTS:
        setattr(extractor, name, clocked(name, getattr(extractor, name)))
    total = bare = 0.0
    chosen = pages[::every]
    for _key, path, url in chosen:
        html = _html(path)
        t0 = time.process_time()
        extractor.extract_page(html, url, now=NOW)
        t1 = time.process_time()
        trafilatura.extract(html, url=url)
        total, bare = total + t1 - t0, bare + time.process_time() - t1
    print(f"{len(chosen)} pages, load {os.getloadavg()[0]:.1f}; CPU seconds:")
    print(f"  extract_page {total:.2f}; trafilatura.extract {bare:.2f}")
    for name, secs in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:20s} {secs:6.2f} in {calls[name]} calls")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("records")
    r.add_argument("out", type=Path)
    r.add_argument("--jobs", type=int, default=2)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    p = sub.add_parser("cpu")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--profile", type=Path, default=None)
    b = sub.add_parser("ab")
    b.add_argument("baseline", type=Path)
    b.add_argument("--limit", type=int, default=None)
    b.add_argument("--rounds", type=int, default=1)
    ins = sub.add_parser("instructions")
    ins.add_argument("--pages", type=int, default=20)
    ins.add_argument("--bare", action="store_true")
    q = sub.add_parser("parts")
    q.add_argument("--every", type=int, default=11)
    args = ap.parse_args(argv)
    if args.cmd == "records":
        records(args.out, args.corpora, args.jobs)
    elif args.cmd == "compare":
        return compare(args.a, args.b)
    elif args.cmd == "ab":
        ab(args.corpora, args.baseline, args.limit, args.rounds)
    elif args.cmd == "instructions":
        instructions(args.corpora, args.pages, args.bare)
    elif args.cmd == "parts":
        parts(args.corpora, args.every)
    else:
        cpu(args.corpora, args.limit, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
