"""CPU of the extraction step in one process, split into ``extract_page`` and the rest.

Usage, from the repository root:

    .venv/bin/python -m bench.extract_step [--pages 1124] [--every 2] [--loads]
        [--profile OUT.txt] [--bare]

Pages: those of ``bench.frontier_speed`` (the extraction corpora's pages, read in place
from ``../shared/corpora/extraction``, in the same order), stored as ``fetched``
articles as the fetch step leaves them (the page in a fresh raw archive under ``/tmp``,
its ``rawpage`` row, ``content_type`` ``text/html; charset=utf-8`` as the bench's server
sends it, a feed entry's title and time) in a fresh SQLite database. Every article's
extraction step runs through ``worker.pipeline.attempts.run_step`` as a worker runs it
(the start, the step, its end; the follow-up message too with ``CW_FOLLOW_UP=1``), in
two passes over different pages (every ``--every``-th page is measured, the pages after
them are the first pass): the **first pass** in this new process pays what a new worker
process pays once (imports, dateparser's locales, py3langid's model, data the libraries
load lazily), the **second** is the steady state on pages not seen before (a page seen
twice is cheaper: the libraries' caches). Each step is timed in ``time.process_time``,
and inside it ``extract_page``; the rest is reading the page from the archive, decoding
it, the article's load and writes, the start and end of the step and the commits.
``--loads`` measures the known one-time loads apart first; ``--profile`` writes a
pyinstrument profile of the second pass; ``--bare`` times bare ``trafilatura.extract`` (as
``bench.frontier_speed``'s baseline calls it) on the second pass's pages after it, in the
same process, and prints ``extract_page``'s ratio to it.

For an A/B against older code, run it with that code first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.frontier_speed import load_pages

FOLLOW_UP = bool(os.environ.get("CW_FOLLOW_UP"))
if FOLLOW_UP:
    import worker.celery_app  # noqa: F401


def build(root: Path, pages: list[bytes]) -> list[int]:
    """A fresh database and archive under ``root``, one ``fetched`` article a page."""
    from sqlmodel import Session

    from schemas.models import Article, ArticleState, RawPage
    from worker.core.db import dispose_engines, get_engine, init_db
    from worker.core.settings import get_settings, reset_settings
    from worker.pages.archive import DirectoryArchive
    from worker.pipeline import resources

    dispose_engines()
    resources.reset()
    os.environ["CLAIMWIRE_DATA_DIR"] = str(root)
    os.environ["CLAIMWIRE_DATABASE_URL"] = f"sqlite:///{root}/claimwire.db"
    reset_settings()
    settings = get_settings()
    init_db(settings)
    archive = DirectoryArchive(settings.effective_archive_dir)
    base = datetime(2026, 6, 1, tzinfo=UTC)
    ids: list[int] = []
    with Session(get_engine(settings)) as s:
        for j, body in enumerate(pages):
            sha, key, size = archive.put(body)
            if s.get(RawPage, sha) is None:
                s.add(
                    RawPage(
                        sha256=sha,
                        storage_key=key,
                        size=len(body),
                        stored_size=size,
                        content_type="text/html; charset=utf-8",
                    )
                )
                s.flush()
            url = f"http://127.78.0.{j % 100}:8000/p/{j}.html"
            a = Article(
                url=url,
                url_hash=f"h{j}",
                host=f"127.78.0.{j % 100}",
                state=ArticleState.fetched,
                entry_title=f"Page {j}",
                entry_published_at=base + timedelta(days=j % 28, hours=j % 24),
                fetched_at=base + timedelta(days=30),
                http_status=200,
                content_type="text/html; charset=utf-8",
                final_url=url,
                raw_sha256=sha,
            )
            s.add(a)
            s.flush()
            assert a.id is not None
            ids.append(a.id)
        s.commit()
    return ids


def run_pass(root: Path, pages: list[bytes], profiler: Any = None) -> tuple[float, float]:
    """CPU seconds of every step, and of ``extract_page`` within them."""
    import worker.pages.extract as extract_module
    from worker.core.db import dispose_engines
    from worker.core.settings import get_settings
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import step_named

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    ids = build(root, pages)
    settings = get_settings()
    step = step_named("extract")
    inner = [0.0]
    original = extract_module.extract_page

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            inner[0] += time.process_time() - t0

    extract_module.extract_page = timed  # type: ignore[assignment]
    try:
        if profiler is not None:
            profiler.start()
        t0 = time.process_time()
        for article_id in ids:
            outcome = run_step(step, article_id, follow_up=FOLLOW_UP, settings=settings)
            assert outcome.retry_in is None, outcome
        spent = time.process_time() - t0
        if profiler is not None:
            profiler.stop()
    finally:
        extract_module.extract_page = original
    dispose_engines()
    return spent, inner[0]


def bare(pages: list[bytes]) -> float:
    """CPU seconds of bare ``trafilatura.extract`` over ``pages`` (each decoded as the
    pipeline decodes it, as ``bench.frontier_speed.bare``). The step saw these pages just
    before: the libraries' caches favour the bare call a little, so the ratio is a little
    high."""
    import trafilatura

    from worker.pages.charset import decode_html

    spent = 0.0
    for body in pages:
        html, _ = decode_html(body, "text/html; charset=utf-8")
        t0 = time.process_time()
        trafilatura.extract(html)
        spent += time.process_time() - t0
    return spent


def loads() -> list[tuple[str, float]]:
    """CPU seconds of what a new process loads once for extraction, measured apart."""
    from worker.pages.warm import extraction_loads

    return extraction_loads()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=None, help="the first N pages (default all)")
    ap.add_argument("--every", type=int, default=2, help="every Nth of them is measured")
    ap.add_argument("--loads", action="store_true", help="measure the one-time loads apart")
    ap.add_argument("--profile", type=Path, help="pyinstrument text profile of the 2nd pass")
    ap.add_argument("--bare", action="store_true", help="bare trafilatura.extract after it")
    args = ap.parse_args(argv)
    import structlog

    # the steps' INFO lines (one per article) left out
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    every = max(2, args.every)
    pages = load_pages(args.pages)
    measured, first_pages = pages[::every], pages[1::every]
    once = loads() if args.loads else []
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
    with tempfile.TemporaryDirectory(prefix="cw-extractstep-") as tmp:
        first = run_pass(Path(tmp) / "1", first_pages)
        second = run_pass(Path(tmp) / "2", measured, profiler)
    print(f"load {os.getloadavg()[0]:.1f}; CPU ms a page (step, extract_page, the rest):")
    for name, n, (step, inner) in (
        (f"first pass, a new process ({len(first_pages)} pages)", len(first_pages), first),
        (f"second pass, other pages ({len(measured)} pages)", len(measured), second),
    ):
        print(
            f"  {name}: {1000 * step / n:.2f}, {1000 * inner / n:.2f}, "
            f"{1000 * (step - inner) / n:.2f}"
        )
    if args.bare:
        spent = bare(measured)
        print(
            f"  bare trafilatura.extract, the same pages: {1000 * spent / len(measured):.2f}"
            f" (extract_page {second[1] / spent:.2f}x, the step {second[0] / spent:.2f}x;"
            f" load {os.getloadavg()[0]:.1f})"
        )
    for name, secs in once:
        print(f"  once per process, before the passes: {name} {secs:.2f} s")
    if profiler is not None:
        args.profile.write_text(profiler.output_text(unicode=True, show_all=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
