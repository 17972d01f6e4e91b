"""Cost of one deduplicate_article call (lookup + insert + commit) as the index grows.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.dedup_scale [--sizes 10000,100000,1000000] [--calls 300]
        [--rounds 10] [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--keep]

One scratch PostgreSQL database per size, ``cw_bench_dedup_<size>`` (dropped first if
it exists, and at the end unless ``--keep``), is filled by bulk load with that many
indexed articles (COPY of articles, groups, signatures and LSH bands of random
signatures, bands computed with dedup's own ``band_hashes``; the band table's indexes
are dropped during the load and rebuilt after it, then VACUUM ANALYZE).

Then the same ``--calls`` synthetic articles (5/12 new texts, a third near-copies, a
sixth exact copies of an earlier text and 1/12 excerpts of 60-150 words of an earlier
text, so the hash, near, containment and new-group paths all run)
are placed in every database by real ``deduplicate_article`` calls, each in its own
transaction and committed. The calls are **interleaved**: ``--rounds`` rounds, each
running the next ``calls/rounds`` articles in every database (the order of the
databases rotating), so that the sizes are measured under the same machine load (the
machine is shared; comparing a quiet minute with a busy one would say nothing). The
first call of each batch (a new connection) is not timed. Blocks read by PostgreSQL
per call (``pg_statio`` of the dedup tables: found in shared buffers or read from the
OS) are reported too: they do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import io
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlmodel import Session

from schemas.models import Article, ArticleState
from worker.core.db import dispose_engines, get_engine, init_db
from worker.core.settings import Settings
from worker.dedup import deduplicate, sketch

DB_PREFIX = "cw_bench_dedup_"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def copy_rows(conn: object, sql: str, lines: list[str]) -> None:
    cur = conn.cursor()  # type: ignore[attr-defined]
    with cur.copy(sql) as cp:
        buf = io.StringIO()
        for line in lines:
            buf.write(line)
            if buf.tell() > 8_000_000:
                cp.write(buf.getvalue())
                buf = io.StringIO()
        cp.write(buf.getvalue())


def bulk_load(url: str, start: int, stop: int, rng: np.random.Generator) -> float:
    """Index articles with ids [start, stop): one group each, random signatures."""
    import psycopg

    p = sketch.DEFAULT_PARAMS
    t = time.perf_counter()
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers in the load
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("ALTER TABLE dedupband DROP CONSTRAINT IF EXISTS dedupband_pkey")
        conn.execute("DROP INDEX IF EXISTS ix_dedupband_article_id")
        conn.execute("ALTER TABLE dedupsample DROP CONSTRAINT IF EXISTS dedupsample_pkey")
        conn.execute("DROP INDEX IF EXISTS ix_dedupsample_article_id")
        chunk = 100_000
        for lo in range(start, stop, chunk):
            hi = min(stop, lo + chunk)
            ids = np.arange(lo, hi)
            ts = T0.isoformat()
            copy_rows(
                conn,
                "COPY dupgroup (id, canonical_article_id, created_at) FROM STDIN",
                [f"{i}\t{i}\t{ts}\n" for i in ids.tolist()],
            )
            copy_rows(
                conn,
                "COPY article (id, url, url_hash, host, state, state_changed_at, attempts, "
                "discovered_at, published_at, categories, tags, text_hash, dup_group_id) "
                "FROM STDIN",
                [
                    f"{i}\thttps://h{i % 977}.example/a/{i}\tbulk{i}\th{i % 977}.example\t"
                    f"processed\t{ts}\t0\t{ts}\t{ts}\t[]\t[]\t{i:064x}\t{i}\n"
                    for i in ids.tolist()
                ],
            )
            sigs = rng.integers(0, 2**32, size=(hi - lo, p.num_perm), dtype=np.uint32)
            counts = rng.integers(200, 1200, size=hi - lo)
            copy_rows(
                conn,
                "COPY articlesignature (article_id, signature, shingle_count) FROM STDIN",
                [
                    f"{i}\t\\\\x{sketch.signature_bytes(s).hex()}\t{c}\n"
                    for i, s, c in zip(ids.tolist(), sigs, counts.tolist(), strict=True)
                ],
            )
            bands = sketch.band_hashes(sigs, p.bands, p.rows)
            band_no = np.tile(np.arange(p.bands), hi - lo)
            art = np.repeat(ids, p.bands)
            copy_rows(
                conn,
                "COPY dedupband (band, hash, article_id) FROM STDIN",
                [
                    f"{b}\t{h}\t{a}\n"
                    for b, h, a in zip(
                        band_no.tolist(), bands.reshape(-1).tolist(), art.tolist(), strict=True
                    )
                ],
            )
            # the containment index: as many random samples as the shingle count gives
            # (count / sample_rate expected, at most sample_cap)
            n_samples = np.minimum(rng.binomial(counts, 1.0 / p.sample_rate), p.sample_cap).astype(
                np.int64
            )
            sample_art = np.repeat(ids, n_samples)
            sample_hash = rng.integers(-(2**63), 2**63 - 1, size=int(n_samples.sum()))
            copy_rows(
                conn,
                "COPY dedupsample (hash, article_id) FROM STDIN",
                [
                    f"{h}\t{a}\n"
                    for h, a in zip(sample_hash.tolist(), sample_art.tolist(), strict=True)
                ],
            )
            conn.commit()
        conn.execute("ALTER TABLE dedupband ADD PRIMARY KEY (band, hash, article_id)")
        conn.execute("CREATE INDEX ix_dedupband_article_id ON dedupband (article_id)")
        conn.execute("ALTER TABLE dedupsample ADD PRIMARY KEY (hash, article_id)")
        conn.execute("CREATE INDEX ix_dedupsample_article_id ON dedupsample (article_id)")
        for seq, table in (("article_id_seq", "article"), ("dupgroup_id_seq", "dupgroup")):
            conn.execute(f"SELECT setval('{seq}', (SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE article")
        conn.execute("VACUUM ANALYZE dupgroup")
        conn.execute("VACUUM ANALYZE articlesignature")
        conn.execute("VACUUM ANALYZE dedupband")
        conn.execute("VACUUM ANALYZE dedupsample")
    return time.perf_counter() - t


def synthetic_texts(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    texts: list[str] = []
    for i in range(n):
        kind = i % 6
        if texts and i % 12 == 11:  # an excerpt (60-150 words) of an earlier text
            words = rnd.choice(texts).split()
            length = rnd.randint(60, 150)
            start = rnd.randrange(max(1, len(words) - length))
            texts.append(" ".join(words[start : start + length]))
        elif texts and kind in (1, 2):  # near-copy of an earlier text: edits + new lines
            words = rnd.choice(texts).split()
            for _ in range(len(words) // 150):
                words[rnd.randrange(len(words))] = rnd.choice(vocab)
            words += ["Read", "more", "at", f"site{i}", "copyright", "all", "rights"]
            texts.append(" ".join(words))
        elif texts and kind == 3:  # exact copy, other case and punctuation
            texts.append(rnd.choice(texts).upper() + " !")
        else:
            length = rnd.randint(300, 900)
            texts.append(" ".join(rnd.choices(vocab, weights=weights, k=length)))
    return texts


def prepare(settings: Settings, texts: list[str]) -> list[int]:
    """Insert the measured articles (state ``extracted``), not yet deduplicated."""
    engine = get_engine(settings)
    ids: list[int] = []
    with Session(engine) as s:
        for i, body in enumerate(texts):
            a = Article(
                url=f"https://m.example/{i}",
                url_hash=f"measured-{i}",
                host=f"m{i % 17}.example",
                state=ArticleState.extracted,
                text=body,
                published_at=T0 + timedelta(minutes=i),
            )
            s.add(a)
            s.flush()
            assert a.id is not None
            ids.append(a.id)
        s.commit()
    return ids


STAT_TABLES = ("dedupband", "dedupsample", "articlesignature", "article", "dupgroup")


def block_counts(url: str) -> tuple[int, int]:
    """(blocks found in shared buffers, blocks read from the OS) of the dedup tables and
    their indexes, as counted so far in this database."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        row = conn.execute(
            "SELECT sum(coalesce(heap_blks_hit, 0) + coalesce(idx_blks_hit, 0)), "
            "sum(coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0)) "
            "FROM pg_statio_user_tables WHERE relname = ANY(%s)",
            (list(STAT_TABLES),),
        ).fetchone()
        assert row is not None
        return int(row[0] or 0), int(row[1] or 0)


def run_batch(settings: Settings, ids: list[int], paths: dict[str | None, int]) -> list[float]:
    """Deduplicate ``ids`` one transaction each; the times (ms) of all but the first
    call (which opens the connection). The engine is disposed at the end, so the
    server's statistics of these calls are flushed when its backend exits."""
    engine = get_engine(settings)
    times: list[float] = []
    for aid in ids:
        t = time.perf_counter()
        with Session(engine) as s:
            out = deduplicate.deduplicate_article(s, aid, settings)
            s.commit()
        times.append(1000 * (time.perf_counter() - t))
        assert out.advanced
        paths[out.matched_by] += 1
    dispose_engines()
    return times[1:]


def summary(times: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(times),
        "mean": statistics.fmean(times),
        "p95": pct(times, 0.95),
    }


def sizes(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        out = {}
        for table in ("dedupband", "dedupsample", "articlesignature", "article"):
            row = conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()
            assert row is not None
            out[table] = int(row[0])
        row = conn.execute("SELECT count(*) FROM article").fetchone()
        assert row is not None
        out["articles"] = int(row[0])
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--keep", action="store_true", help="keep the scratch databases")
    args = ap.parse_args()
    import psycopg

    admin = args.pg
    ns = [int(x) for x in args.sizes.split(",")]
    urls = {n: admin.rsplit("/", 1)[0] + f"/{DB_PREFIX}{n}" for n in ns}
    settings = {n: Settings(database_url=urls[n]) for n in ns}
    texts = synthetic_texts(args.calls, seed=1)
    loads: dict[int, float] = {}
    times: dict[int, list[float]] = {n: [] for n in ns}
    paths: dict[int, dict[str | None, int]] = {
        n: {"hash": 0, "near": 0, "contained": 0, None: 0} for n in ns
    }
    blocks: dict[int, tuple[int, int]] = {}
    try:
        for n in ns:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DB_PREFIX}{n}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{DB_PREFIX}{n}"')
            init_db(settings[n])
            dispose_engines()
            rng = np.random.default_rng(7)
            # the measured articles get the ids after the bulk-loaded ones
            loads[n] = bulk_load(settings[n].effective_database_url, 1_000_000, 1_000_000 + n, rng)
            print(f"loaded {n:>9,} articles in {loads[n]:7.1f}s", flush=True)
        ids = {n: prepare(settings[n], texts) for n in ns}
        dispose_engines()
        before = {n: block_counts(settings[n].effective_database_url) for n in ns}
        per_round = -(-args.calls // args.rounds)
        for r in range(args.rounds):
            order = ns[r % len(ns) :] + ns[: r % len(ns)]
            for n in order:
                batch = ids[n][r * per_round : (r + 1) * per_round]
                if batch:
                    times[n] += run_batch(settings[n], batch, paths[n])
            print(
                f"round {r + 1}/{args.rounds}: "
                + "  ".join(f"{n:,}: {statistics.median(times[n]):.1f} ms" for n in ns),
                flush=True,
            )
        time.sleep(1.5)  # the exited backends' statistics reach the shared counters
        for n in ns:
            hit, read = block_counts(settings[n].effective_database_url)
            blocks[n] = (hit - before[n][0], read - before[n][1])
        rows = []
        for n in ns:
            sz = sizes(settings[n].effective_database_url)
            per = (sz["dedupband"] + sz["dedupsample"] + sz["articlesignature"]) / sz["articles"]
            rows.append((n, loads[n], summary(times[n]), sz, per))
    finally:
        dispose_engines()
        if not args.keep:
            for n in ns:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{DB_PREFIX}{n}" WITH (FORCE)')
    pg_version = subprocess.run(
        ["psql", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print()
    print(f"machine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores,")
    print(f"Python {platform.python_version()}, {pg_version}, {datetime.now(UTC):%Y-%m-%d}")
    print("command: .venv/bin/python -m bench.dedup_scale " + " ".join(sys.argv[1:]))
    print()
    print(
        "| indexed articles | load (s) | median ms | mean ms | p95 ms "
        "| paths hash/near/contained/new "
        "| blocks/call (buffer hits + reads) | index bytes/article (band+sample+signature) "
        "| band table MB | sample table MB | signature table MB |"
    )
    print("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for n, secs, m, sz, per in rows:
        hit, read = blocks[n]
        calls = sum(paths[n].values())
        p = paths[n]
        print(
            f"| {n:,} | {secs:.0f} | {m['median']:.2f} | {m['mean']:.2f} | {m['p95']:.2f} "
            f"| {p['hash']}/{p['near']}/{p['contained']}/{p[None]} "
            f"| {hit / calls:.0f} + {read / calls:.1f} | {per:,.0f} "
            f"| {sz['dedupband'] / 2**20:,.0f} | {sz['dedupsample'] / 2**20:,.0f} "
            f"| {sz['articlesignature'] / 2**20:,.0f} |"
        )
    if len(rows) >= 2:
        ratio = rows[-1][2]["median"] / rows[0][2]["median"]
        mean_ratio = rows[-1][2]["mean"] / rows[0][2]["mean"]
        print(
            f"\ncost ratio largest/smallest: median {ratio:.2f}, mean {mean_ratio:.2f} "
            "(target: at most 2)"
        )


if __name__ == "__main__":
    main()
