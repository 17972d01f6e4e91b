"""CPU and SQL statements of the dedup and claims steps, in one process (issue 16).

Usage, from the repository root:

    .venv/bin/python -m bench.step_cpu --pages 150 --rounds 2

Pages: the extraction corpora's pages (``../shared/corpora/extraction``, read in place),
their text taken by ``trafilatura.extract`` (not claimwire's extraction: this measures
the steps after it), stored as ``extracted`` articles on ``--hosts`` hosts in a fresh
SQLite database under ``/tmp`` (or ``--database-url``, a fresh PostgreSQL database).
Then every article's dedup step and then every claims step runs through
``worker.pipeline.attempts.run_step`` as a worker runs it (the start, the step, its
end, without the follow-up messages), each timed in ``time.process_time`` and its SQL
statements counted (an engine event). The claims model is loaded before the timing.
Every round starts from a fresh database; the lowest CPU of the rounds is printed.

For an A/B against older code, run it with that code first on ``PYTHONPATH`` (its
checkout's ``worker``), one after the other in turn: the same pages, the same steps.
``--dump FILE`` writes the stored claims, clusters and groups, to compare two runs.
``--parts`` also prints where each step's CPU goes: the CPU (``time.thread_time``) of the
functions it calls (:data:`PARTS`), per article, the rest of the step (its start, end,
commits and the statements between) being the difference.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.frontier_speed import CORPORA


def texts(limit: int) -> list[str]:
    import trafilatura

    found: list[str] = []
    paths = sorted((CORPORA / "readability-test-pages" / "pages").glob("*/source.html.gz"))
    paths += sorted((CORPORA / "trafilatura-eval" / "html").glob("*.html.gz"))
    for path in paths:
        html = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        text = trafilatura.extract(html)
        if text:
            found.append(text)
        if len(found) >= limit:
            break
    return found


# (module, function, label): the parts of the steps timed by ``--parts``, each where
# the step looks it up
PARTS = [
    ("worker.claims", "extract_claims", "claims: extract_claims (spaCy, rules, speakers)"),
    ("worker.claims.store", "assign_clusters", "claims: assign_clusters"),
    ("worker.claims.store", "refresh_clusters", "claims: refresh_clusters"),
    ("worker.claims.store", "replace_claims", "claims: replace_claims (all of the above)"),
    ("worker.dedup.deduplicate", "sketch", "dedup: sketch (MinHash)"),
    ("worker.dedup.deduplicate", "stopped_samples", "dedup: stopped_samples"),
    ("worker.dedup.deduplicate", "find_near_matches", "dedup: find_near_matches"),
    ("worker.dedup.deduplicate", "index_article", "dedup: index_article"),
    ("worker.dedup.deduplicate", "deduplicate_article", "dedup: deduplicate_article (all)"),
    ("worker.pipeline.attempts", "begin_step", "both steps: begin_step"),
    ("worker.pipeline.attempts", "end_step", "both steps: end_step"),
]


def time_parts() -> dict[str, float]:
    """Wrap each function of :data:`PARTS` to add its CPU seconds to the returned dict."""
    import importlib

    spent: dict[str, float] = {}
    for module_name, name, label in PARTS:
        module = importlib.import_module(module_name)
        inner = getattr(module, name)

        def timed(*args: Any, _inner: Any = inner, _label: str = label, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return _inner(*args, **kwargs)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.thread_time() - t0

        setattr(module, name, timed)
    return spent


def run_round(url: str, pages: list[str], hosts: int) -> dict[str, Any]:
    from sqlalchemy import event
    from sqlmodel import Session, select

    from schemas.models import Article, ArticleState, Claim, ClaimCluster
    from worker.claims import load_nlp
    from worker.core.db import dispose_engines, get_engine, init_db
    from worker.core.settings import get_settings, reset_settings
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import step_named

    dispose_engines()
    # the steps' units of work read the settings of the environment, as a worker's do
    os.environ["CLAIMWIRE_DATABASE_URL"] = url
    os.environ["CLAIMWIRE_EXTRACT_CLAIMS"] = "true"
    reset_settings()
    settings = get_settings()
    init_db(settings)
    load_nlp(settings.spacy_model)
    engine = get_engine(settings)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    ids: list[int] = []
    with Session(engine) as s:
        for j, text in enumerate(pages):
            a = Article(
                url=f"https://host{j % hosts}.example/news/{j}",
                url_hash=f"h{j}",
                host=f"host{j % hosts}.example",
                state=ArticleState.extracted,
                text=text,
                language="en",
                published_at=base + timedelta(hours=j % 17),
                discovered_at=base + timedelta(minutes=j),
            )
            s.add(a)
            s.flush()
            assert a.id is not None
            ids.append(a.id)
        s.commit()
    counted = [0]

    def count(*_: Any) -> None:
        counted[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    result: dict[str, Any] = {}
    for name in ("dedup", "claims"):
        step = step_named(name)
        counted[0] = 0
        t0 = time.process_time()
        for article_id in ids:
            outcome = run_step(step, article_id, follow_up=False, settings=settings)
            assert outcome.retry_in is None, outcome
        result[name] = (time.process_time() - t0, counted[0])
    event.remove(engine, "before_cursor_execute", count)
    with Session(engine) as s:
        arts = s.exec(select(Article).order_by(Article.id)).all()
        claims = s.exec(select(Claim).order_by(Claim.article_id, Claim.start)).all()
        clusters = s.exec(select(ClaimCluster).order_by(ClaimCluster.id)).all()
        result["dump"] = {
            "articles": [[a.url, a.state, a.duplicate_of_id, a.claims_status] for a in arts],
            "claims": [[c.article_id, c.start, c.end, c.speaker, c.cluster_id] for c in claims],
            "clusters": [
                [
                    c.id,
                    c.speaker_key,
                    c.n_articles,
                    c.n_outlets,
                    c.first_article_id,
                    str(c.first_seen_at),
                    c.first_seen_precision,
                ]
                for c in clusters
            ],
        }
    dispose_engines()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=150)
    ap.add_argument("--hosts", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--database-url", help="a fresh database (default: SQLite under /tmp)")
    ap.add_argument("--dump", type=Path)
    ap.add_argument("--parts", action="store_true", help="where each step's CPU goes")
    args = ap.parse_args(argv)
    import structlog

    # the steps' INFO lines (one per article) left out
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    pages = texts(args.pages)
    parts = time_parts() if args.parts else None
    best: dict[str, tuple[float, int]] = {}
    dump: Any = None
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="cw-stepcpu-") as tmp:
            url = args.database_url or f"sqlite:///{tmp}/steps.db"
            result = run_round(url, pages, args.hosts)
        dump = result.pop("dump")
        for name, (cpu, statements) in result.items():
            if name not in best or cpu < best[name][0]:
                best[name] = (cpu, statements)
    n = len(pages)
    print(f"{n} articles, load {os.getloadavg()[0]:.1f}, lowest of {args.rounds} rounds:")
    for name, (cpu, statements) in best.items():
        print(f"  {name}: {1000 * cpu / n:.2f} ms CPU, {statements / n:.1f} statements an article")
    if parts is not None:
        print(f"  where it goes, mean of the {args.rounds} rounds, ms CPU an article:")
        for label, seconds in parts.items():
            print(f"    {label}: {1000 * seconds / n / args.rounds:.2f}")
    if args.dump:
        args.dump.write_text(json.dumps(dump))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
