"""Cost of one ``assign_clusters`` call as one speaker's clusters grow.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.claims_clustering_scale [--sizes 1000,10000,50000]
        [--calls 200] [--rounds 5] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
        [--no-sqlite] [--no-pg] [--seed 1] [--head 100] [--variants index,scan]

For every size N, one SQLite file (in a temporary directory, deleted at the end) and
one scratch PostgreSQL database ``cw_bench_clusters_<N>`` (dropped first if it exists,
and at the end) get claimwire's schema through its migrations (``init_db``), then N
clusters of one speaker key (``novak``) and N/10 of three other keys, with their word
index rows (``cluster_word_rows``), by bulk insert. Their texts
are synthetic: 8-25 words drawn from a Zipf distribution (exponent 1) over 20,000
invented words, ranks offset by ``--head`` (100: the top content word after English's
stop words, about 0.2% of the words; 0: a stress case where the top word is in most
texts), so that some words are shared by many clusters, as a frequent speaker's usual
words are. No corpus text is used.

Then ``--calls`` synthetic claims by ``Maria Novak`` are clustered by real
``assign_clusters`` calls (lock, lookup, new cluster or match, refresh), half of them
near-copies of an existing cluster (one or two words swapped: they join it) and half
new texts (they create a cluster). Each call runs in its own transaction on a claim of
a committed article and is **rolled back**, so every call sees exactly N clusters. Calls
are interleaved: ``--rounds`` rounds, each running the next ``calls/rounds`` claims in
every database, so that all sizes and both databases see the same machine load (the
machine is shared). Reported: median, p95 and mean milliseconds per call.

Variants: ``index`` is today's ``assign_clusters`` (candidates from the
``claimclusterword`` index); ``scan`` is the code before it, kept here, which scores
every cluster of the key in Python. Both run on every claim, one after the other (which
goes first alternates), and must choose the same existing cluster or both a new one.
The candidate query's plan (PostgreSQL: ``EXPLAIN (ANALYZE, BUFFERS)``, SQLite: ``EXPLAIN
QUERY PLAN``) is printed once per database.
"""

from __future__ import annotations

import argparse
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlmodel import Session

from bench.timing import pct
from schemas.models import (
    Article,
    ArticleState,
    Claim,
    ClaimCluster,
    ClaimClusterWord,
)
from worker.claims import clustering
from worker.core.db import dispose_engines, get_engine, init_db
from worker.core.settings import Settings

DB_PREFIX = "cw_bench_clusters_"
KEY = "novak"
OTHER_KEYS = ["brandt", "health ministry", "police"]
THRESHOLD = 0.5


class Vocabulary:
    """Invented lower-case words (no stop words, no digits) with Zipf-like weights."""

    def __init__(self, rng: random.Random, size: int = 20_000, head: int = 100) -> None:
        letters = "bcdfghjklmnprtvz"
        vowels = "aeiou"
        words: set[str] = set()
        while len(words) < size:
            n = rng.randint(2, 4)
            w = "".join(rng.choice(letters) + rng.choice(vowels) for _ in range(n))
            words.add(w + rng.choice(letters))
        self.words = sorted(words)
        rng.shuffle(self.words)
        # rank r weighs 1 / (r + head): the words of rank < head are the stop words
        # content_words drops; head 0 is a stress case (the top word in most texts)
        weights = [1.0 / (r + 1 + head) for r in range(size)]
        self.cum: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            self.cum.append(total)

    def text(self, rng: random.Random) -> str:
        n = rng.randint(8, 25)
        return " ".join(rng.choices(self.words, cum_weights=self.cum, k=n))

    def near_copy(self, rng: random.Random, text: str) -> str:
        words = text.split()
        for _ in range(rng.randint(1, 2)):
            words[rng.randrange(len(words))] = rng.choices(self.words, cum_weights=self.cum)[0]
        return " ".join(words)


@dataclass
class Database:
    label: str  # "sqlite" or "postgresql"
    size: int
    settings: Settings
    article_id: int
    texts: list[str]  # the speaker's cluster texts, for near-copies
    max_id: int  # the last loaded cluster: a higher id is a new cluster
    times: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    joined: dict[str, int] = field(default_factory=dict)


def load(settings: Settings, size: int, vocab: Vocabulary, rng: random.Random) -> Database:
    init_db(settings)
    engine = get_engine(settings)
    texts = [vocab.text(rng) for _ in range(size)]
    rows = [{"speaker_key": KEY, "speaker": "Maria Novak", "text": t} for t in texts]
    for k in OTHER_KEYS:
        rows += [
            {"speaker_key": k, "speaker": k, "text": vocab.text(rng)} for _ in range(size // 10)
        ]
    rng.shuffle(rows)  # the speaker's clusters interleaved with others' in id order
    now = datetime.now(UTC)
    with Session(engine) as s:
        for i in range(0, len(rows), 5000):
            chunk = [
                {**r, "created_at": now, "n_articles": 1, "n_outlets": 1}
                for r in rows[i : i + 5000]
            ]
            s.execute(insert(ClaimCluster), chunk)
        words: list[dict[str, object]] = []
        for cid, k, t in s.execute(
            select(ClaimCluster.id, ClaimCluster.speaker_key, ClaimCluster.text)
        ):
            words += clustering.cluster_word_rows(cid, k, t)
        for i in range(0, len(words), 20_000):
            s.execute(insert(ClaimClusterWord), words[i : i + 20_000])
        max_id = int(s.execute(select(func.max(ClaimCluster.id))).scalar_one())
        key = uuid.uuid4().hex
        article = Article(
            url=f"https://bench.example/{key}",
            url_hash=key,
            host="bench.example",
            state=ArticleState.deduplicated,
            text="(synthetic)",
            published_at=now,
        )
        s.add(article)
        s.commit()
        assert article.id is not None
        article_id = article.id
    if settings.effective_database_url.startswith("postgresql"):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    label = "postgresql" if settings.effective_database_url.startswith("postgresql") else "sqlite"
    return Database(label, size, settings, article_id, texts, max_id)


def scan_assign_clusters(
    session: Session, article: Article, claims: list[Claim], threshold: float
) -> set[int]:
    """``assign_clusters`` as it was before the word index (commit e9174a8): every
    cluster of the speaker key scored in Python."""
    from sqlmodel import select as sm_select

    touched: set[int] = set()
    for claim in claims:
        key = clustering.speaker_key(claim.speaker_resolved or claim.speaker)
        if not key:
            continue
        clustering.lock_speakers(session, {key})
        words = clustering.content_words(claim.text)
        best: tuple[float, ClaimCluster | None] = (0.0, None)
        for cluster in session.exec(sm_select(ClaimCluster).where(ClaimCluster.speaker_key == key)):
            score = clustering.similarity(words, clustering.content_words(cluster.text))
            if score > best[0]:
                best = (score, cluster)
        found = best[1] if best[0] >= threshold else None
        if found is None:
            cluster = ClaimCluster(
                speaker_key=key, speaker=claim.speaker_resolved or claim.speaker, text=claim.text
            )
            session.add(cluster)
            session.flush()
        else:
            cluster = found
        claim.cluster_id = cluster.id
        assert cluster.id is not None
        touched.add(cluster.id)
    session.flush()
    for cluster_id in touched:
        clustering.refresh_cluster(session, cluster_id)
    return touched


VARIANTS: dict[str, Callable[[Session, Article, list[Claim], float], set[int]]] = {
    "index": clustering.assign_clusters,
    "scan": scan_assign_clusters,
}


def one_call(db: Database, text: str, start: int, variant: str) -> tuple[float, float, int | None]:
    """Cluster one claim in its own transaction, rolled back: the call's milliseconds,
    wall and CPU of this process (SQLite's work included, PostgreSQL's server not), and
    the existing cluster it joined (None: a new one)."""
    with Session(get_engine(db.settings)) as s:
        article = s.get(Article, db.article_id)
        assert article is not None
        claim = Claim(
            article_id=db.article_id,
            speaker="Maria Novak",
            speaker_resolved="Maria Novak",
            verb="said",
            kind="indirect",
            text=text,
            start=start,
            end=start + len(text),
            sentence=text,
            extractor_version="bench",
        )
        s.add(claim)
        s.flush()
        t0, c0 = time.perf_counter(), time.process_time()
        VARIANTS[variant](s, article, [claim], THRESHOLD)
        cpu = (time.process_time() - c0) * 1000
        elapsed = (time.perf_counter() - t0) * 1000
        joined = claim.cluster_id if (claim.cluster_id or 0) <= db.max_id else None
        s.rollback()
    return elapsed, cpu, joined


def explain(db: Database, text: str) -> str:
    """The database's plan of the candidate lookup for one claim."""
    q = clustering.candidate_query(KEY, clustering.content_words(text), THRESHOLD)
    engine = get_engine(db.settings)
    sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if db.label == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + sql).all()
    return "\n".join("#   " + " ".join(str(c) for c in r) for r in rows)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def pg_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--variants", default="index,scan", help="index (today's), scan (before)")
    ap.add_argument(
        "--head", type=int, default=100, help="Zipf rank offset (0: a heavy head, stress case)"
    )
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rng = random.Random(args.seed)
    vocab = Vocabulary(rng, head=args.head)
    variants = args.variants.split(",")

    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()}")
    print(f"# uptime at start: {uptime()}")
    tmp = Path(tempfile.mkdtemp(prefix="cw-bench-clusters-"))
    base = args.pg.rsplit("/", 1)[0]
    dbs: list[Database] = []
    made_pg: list[str] = []
    try:
        for size in sizes:
            if not args.no_sqlite:
                t = time.perf_counter()
                s = Settings(
                    data_dir=tmp / f"data-{size}", database_url=f"sqlite:///{tmp}/c{size}.db"
                )
                dbs.append(load(s, size, vocab, random.Random(args.seed + size)))
                print(f"# loaded sqlite {size}: {time.perf_counter() - t:.1f} s", flush=True)
            if not args.no_pg:
                name = f"{DB_PREFIX}{size}"
                pg_admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                pg_admin(args.pg, f'CREATE DATABASE "{name}"')
                made_pg.append(name)
                t = time.perf_counter()
                s = Settings(data_dir=tmp / f"data-pg-{size}", database_url=f"{base}/{name}")
                dbs.append(load(s, size, vocab, random.Random(args.seed + size)))
                print(f"# loaded postgresql {size}: {time.perf_counter() - t:.1f} s", flush=True)

        crng = random.Random(args.seed * 7919)
        per_round = max(1, args.calls // args.rounds)
        for r in range(args.rounds):
            # the same claims (by index) in every database; near-copies of that database's
            # own clusters, chosen by the same index
            plan = [
                (crng.random() < 0.5, crng.random(), vocab.text(crng)) for _ in range(per_round)
            ]
            order = dbs[r % len(dbs) :] + dbs[: r % len(dbs)]
            for db in order:
                for i, (near, pick, fresh) in enumerate(plan):
                    if near:
                        src = db.texts[int(pick * len(db.texts))]
                        text = vocab.near_copy(random.Random(i + r * 100_000), src)
                    else:
                        text = fresh
                    chosen = set()
                    # alternate which variant goes first
                    for v in variants[i % 2 :] + variants[: i % 2]:
                        ms, cpu, joined = one_call(db, text, r * 100_000 + i, v)
                        chosen.add(joined)
                        if i:  # the first call of a batch opens a connection: not timed
                            db.times.setdefault(v, []).append(ms)
                            db.cpu.setdefault(v, []).append(cpu)
                            db.joined[v] = db.joined.get(v, 0) + (joined is not None)
                    # every variant chose the same existing cluster, or a new one
                    assert len(chosen) == 1, (db.label, db.size, text, chosen)
                    if r == 0 and i == 1 and "index" in variants:
                        print(f"# plan, {db.label} {db.size}:\n{explain(db, text)}", flush=True)
            print(f"# round {r + 1}/{args.rounds} done; {uptime()}", flush=True)

        print()
        print(
            "| database | clusters of the key | variant | calls (joined) "
            "| median ms | p95 ms | mean ms | CPU median ms | CPU mean ms |"
        )
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        for db in sorted(dbs, key=lambda d: (d.label, d.size)):
            for v in variants:
                t = db.times[v]
                print(
                    f"| {db.label} | {db.size:,} | {v} | {len(t)} ({db.joined[v]}) "
                    f"| {statistics.median(t):.2f} | {pct(t, 0.95):.2f} "
                    f"| {statistics.fmean(t):.2f} | {statistics.median(db.cpu[v]):.2f} "
                    f"| {statistics.fmean(db.cpu[v]):.2f} |"
                )
        print(f"# uptime at end: {uptime()}")
    finally:
        dispose_engines()
        shutil.rmtree(tmp, ignore_errors=True)
        for name in made_pg:
            pg_admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
