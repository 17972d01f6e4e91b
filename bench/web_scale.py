"""Claims search and cluster pages of `claimwire web` at scale.

    .venv/bin/python -m bench.web_scale [--claims 1000000] [--db sqlite,postgresql]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--rounds 3] [--seed 7]
        [--keep DIR [--reuse]]

Fills a scratch SQLite file (in a temporary directory) and a scratch PostgreSQL database
(``cw_bench_web``, or ``--pg-name``; dropped first and at the end) through claimwire's
own migrations with ``--claims`` synthetic claims: invented words (syllables,
Zipf-distributed over 20,000 words, so that a few words are in a large share of the
claims and most are rare), 5,000 speakers (Zipf), 400 outlets (Zipf), one article per
five claims over two years, and clusters as news makes them: most claims alone, some
repeated by a few outlets, a few by a hundred or more, each repeat verbatim or reworded
(a word dropped or swapped). No corpus text is used. On SQLite the claims go in with the
search triggers live; on PostgreSQL by COPY (the stored ``search_vector`` column
computed row by row), with the GIN index of migration 0008 dropped during the load and
created again, then VACUUM ANALYZE.

Then, through the real application (``create_app``, over httpx's ASGI transport: every
request goes through routing, validation, the query, JSON or the rendered page), times:

* **search**: ``GET /api/v1/claims`` with a query mix (a very common word, a common one,
  a rare one, two words, a phrase, a prefix, a speaker, a word with an outlet, a word
  with ``min_outlets``, a date range, and the unfiltered first page), each query run
  ``--rounds`` times;
* **cluster page**: ``GET /clusters/{id}`` (the HTML page with its chart) for 60
  clusters: a third among the largest, the rest at random.

Reported: p50 and p95 milliseconds for each, per database, and the 1-minute load
average before and after. Rounds alternate between the databases, so both see the same
machine load (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.timing import pct

N_WORDS = 20_000
N_SPEAKERS = 5_000
N_OUTLETS = 400
CLAIMS_PER_ARTICLE = 5
T0 = datetime(2024, 11, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
VERBS = ["said", "told", "announced", "warned", "claimed", "added", "insisted", "argued"]
KINDS = ["indirect", "direct", "mixed", "according_to"]

SYLLABLES = [
    c + v
    for c in ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st"]
    for v in ["a", "e", "i", "o", "u", "ai", "ou"]
]


def invented_words(rng: random.Random, n: int) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


class Zipf:
    """Draws ranks 0..n-1 with probability ~ 1/(rank+1)."""

    def __init__(self, rng: random.Random, n: int, exponent: float = 1.0) -> None:
        self.rng = rng
        weights = [1 / (i + 1) ** exponent for i in range(n)]
        total = sum(weights)
        acc = 0.0
        self.cum: list[float] = []
        for w in weights:
            acc += w / total
            self.cum.append(acc)

    def draw(self) -> int:
        import bisect

        return min(bisect.bisect_left(self.cum, self.rng.random()), len(self.cum) - 1)


@dataclass
class Corpus:
    words: list[str]
    speakers: list[str]
    outlets: list[str]
    articles: list[tuple[int, str, str, datetime]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    claims: list[tuple[Any, ...]] = field(default_factory=list)


def cluster_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.70:
        return 1
    if r < 0.85:
        return rng.randint(2, 3)
    if r < 0.95:
        return rng.randint(4, 10)
    if r < 0.99:
        return rng.randint(11, 50)
    return rng.randint(51, 300)


def make_corpus(n_claims: int, seed: int) -> Corpus:
    rng = random.Random(seed)
    words = invented_words(rng, N_WORDS)
    first = invented_words(random.Random(seed + 1), 800)
    last = invented_words(random.Random(seed + 2), 4000)
    speakers = [
        f"{rng.choice(first).title()} {last[i % len(last)].title()}" for i in range(N_SPEAKERS)
    ]
    outlets = [
        f"{w}-{rng.choice(['news', 'post', 'times', 'daily'])}.example" for w in words[:N_OUTLETS]
    ]
    c = Corpus(words, speakers, outlets)
    n_articles = max(1, n_claims // CLAIMS_PER_ARTICLE)
    outlet_z = Zipf(rng, N_OUTLETS, 0.8)
    for i in range(n_articles):
        host = outlets[outlet_z.draw()]
        at = T0 + timedelta(seconds=rng.random() * SPAN.total_seconds())
        c.articles.append((i + 1, f"https://{host}/story/{i + 1}", host, at))
    word_z = Zipf(rng, N_WORDS, 1.0)
    speaker_z = Zipf(rng, N_SPEAKERS, 1.0)
    # articles of each outlet, for repeats in other outlets
    total = 0
    cluster_id = 0
    while total < n_claims:
        cluster_id += 1
        size = min(cluster_size(rng), n_claims - total)
        speaker = speakers[speaker_z.draw()]
        base = [words[word_z.draw()] for _ in range(rng.randint(7, 16))]
        members = []
        for _m in range(size):
            art = c.articles[rng.randrange(n_articles)]
            text_words = list(base)
            reworded = bool(members) and rng.random() < 0.25
            if reworded:
                text_words[rng.randrange(len(text_words))] = words[word_z.draw()]
                if len(text_words) > 6:
                    del text_words[rng.randrange(len(text_words))]
            text = " ".join(text_words)
            verb = rng.choice(VERBS)
            before = " ".join(words[word_z.draw()] for _ in range(rng.randint(0, 6)))
            sentence = f"{before} {speaker} {verb} {text}.".strip()
            members.append((art, text, verb, sentence))
        hosts = {m[0][2] for m in members}
        firsts = min(members, key=lambda m: m[0][3])
        c.clusters.append(
            dict(
                id=cluster_id,
                speaker_key=speaker.split()[-1].lower(),
                speaker=speaker,
                text=" ".join(base),
                first_seen_at=firsts[0][3],
                first_article_id=firsts[0][0],
                n_articles=len({m[0][0] for m in members}),
                n_outlets=len(hosts),
            )
        )
        for art, text, verb, sentence in members:
            start = sentence.find(text)
            c.claims.append(
                (
                    art[0],
                    speaker,
                    speaker,
                    verb,
                    rng.choice(KINDS),
                    text,
                    start,
                    start + len(text),
                    sentence,
                    "bench-1",
                    cluster_id,
                    art[3],  # claim.article_at: the article's time, as the claims step writes it
                )
            )
        total += size
    rng.shuffle(c.claims)  # claims of one cluster are found at different times
    # spans unique per article (the articles have no text here): the claim's rank
    c.claims = [(*row[:6], i, i + len(row[5]), *row[8:]) for i, row in enumerate(c.claims)]
    return c


CLAIM_COLUMNS = (
    'article_id, speaker, speaker_resolved, verb, kind, text, start, "end", sentence, '
    "extractor_version, cluster_id, article_at, created_at"
)


def _article_rows(c: Corpus) -> Iterator[tuple[Any, ...]]:
    from worker.network.urls import url_hash

    for aid, url, host, at in c.articles:
        yield (
            aid,
            url,
            url_hash(url),
            host,
            "processed",
            at,
            0,
            0,
            at,
            f"Story {aid}",
            at,
            "en",
            "[]",
            "[]",
        )


ARTICLE_COLUMNS = (
    "id, url, url_hash, host, state, state_changed_at, attempts, step_starts, discovered_at, "
    "title, published_at, language, categories, tags"
)


def fill_sqlite(path: Path, c: Corpus) -> Any:
    from worker.core.db import dispose_engines, init_db
    from worker.core.settings import Settings

    settings = Settings(data_dir=path, _env_file=None)  # type: ignore[call-arg]
    init_db(settings)
    dispose_engines()
    db = sqlite3.connect(path / "claimwire.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    now = datetime.now(UTC)
    with db:
        db.executemany(
            f"INSERT INTO article ({ARTICLE_COLUMNS}) VALUES ({','.join('?' * 14)})",
            (
                (
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5].isoformat(),
                    r[6],
                    r[7],
                    r[8].isoformat(),
                    r[9],
                    r[10].isoformat(),
                    r[11],
                    r[12],
                    r[13],
                )
                for r in _article_rows(c)
            ),
        )
        db.executemany(
            "INSERT INTO claimcluster (id, speaker_key, speaker, text, first_seen_at, "
            "first_article_id, n_articles, n_outlets, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                (
                    k["id"],
                    k["speaker_key"],
                    k["speaker"],
                    k["text"],
                    k["first_seen_at"].isoformat(),
                    k["first_article_id"],
                    k["n_articles"],
                    k["n_outlets"],
                    now.isoformat(),
                )
                for k in c.clusters
            ),
        )
    t = time.perf_counter()
    batch = 50_000
    for i in range(0, len(c.claims), batch):
        with db:
            db.executemany(
                f"INSERT INTO claim ({CLAIM_COLUMNS}) VALUES ({','.join('?' * 13)})",
                (
                    (*row[:-1], row[-1].isoformat(), now.isoformat())
                    for row in c.claims[i : i + batch]
                ),
            )
    print(f"  sqlite: claims inserted with the search triggers in {time.perf_counter() - t:.0f} s")
    with db:
        # no ANALYZE: claimwire never runs it, so the planner works without statistics
        # as it does in a real store
        db.execute("INSERT INTO claim_fts(claim_fts) VALUES ('optimize')")
    db.close()
    return settings


def _copy(cur: Any, table: str, columns: str, rows: Iterator[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def fill_postgres(admin_url: str, c: Corpus, name: str = "cw_bench_web") -> tuple[Any, str]:
    import psycopg

    from worker.claims.fulltext import PG_COLUMN
    from worker.core.db import dispose_engines, init_db
    from worker.core.settings import Settings

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    settings = Settings(database_url=url, data_dir=Path(tempfile.gettempdir()), _env_file=None)  # type: ignore[call-arg]
    init_db(settings)
    dispose_engines()
    now = datetime.now(UTC)
    t = time.perf_counter()
    with psycopg.connect(url) as conn:
        cur = conn.cursor()
        cur.execute("DROP INDEX ix_claim_search")  # built again after the load
        _copy(cur, "article", ARTICLE_COLUMNS, _article_rows(c))
        _copy(
            cur,
            "claimcluster",
            "id, speaker_key, speaker, text, first_seen_at, first_article_id, n_articles, "
            "n_outlets, created_at",
            (
                (
                    k["id"],
                    k["speaker_key"],
                    k["speaker"],
                    k["text"],
                    k["first_seen_at"],
                    k["first_article_id"],
                    k["n_articles"],
                    k["n_outlets"],
                    now,
                )
                for k in c.clusters
            ),
        )
        _copy(cur, "claim", CLAIM_COLUMNS, ((*row, now) for row in c.claims))
        cur.execute("SELECT setval('article_id_seq', (SELECT max(id) FROM article))")
        cur.execute("SELECT setval('claimcluster_id_seq', (SELECT max(id) FROM claimcluster))")
        conn.commit()
        print(f"  postgresql: rows copied in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute(f"CREATE INDEX ix_claim_search ON claim USING gin ({PG_COLUMN})")
        conn.commit()
        print(f"  postgresql: search index built in {time.perf_counter() - t:.0f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return settings, name


HUGE_KEY = "bench-huge-cluster"


def add_huge_cluster(db: str, settings: Any, n: int) -> int:
    """One more cluster, repeated ``n`` times (one article each, over 60 outlets and
    a year, a fifth reworded), unless a ``--keep`` store has it already; its id."""
    from sqlalchemy import text as sql

    from worker.core.db import get_engine
    from worker.network.urls import url_hash

    engine = get_engine(settings)
    with engine.begin() as conn:
        found = conn.execute(
            sql("SELECT id FROM claimcluster WHERE speaker_key = :k"), {"k": HUGE_KEY}
        ).scalar()
        if found:
            return int(found)
        t = time.perf_counter()
        top_article = int(conn.execute(sql("SELECT max(id) FROM article")).scalar() or 0)
        top_cluster = int(conn.execute(sql("SELECT max(id) FROM claimcluster")).scalar() or 0)
        cid = top_cluster + 1
        now = datetime.now(UTC)
        arts = []
        claims = []
        for i in range(n):
            host = f"huge{i % 60}.example"
            url = f"https://{host}/huge/{i}"
            at = T0 + timedelta(seconds=365 * 86400 * i / n)
            aid = top_article + 1 + i
            arts.append(
                {
                    "id": aid,
                    "url": url,
                    "h": url_hash(url),
                    "host": host,
                    "at": at,
                    "title": f"Huge {i}",
                }
            )
            content = "the huge claim repeated everywhere" if i % 5 else "a huge claim, repeated"
            claims.append(
                {
                    "a": aid,
                    "text": content,
                    "s": f"Huge Cluster said {content}.",
                    "c": cid,
                    "at": at if db != "sqlite" else at.replace(tzinfo=None),
                    "now": now,
                    "start": 0,
                    "end": len(content),
                }
            )
        for row in arts:
            if db == "sqlite":
                row["at"] = row["at"].replace(tzinfo=None)
        conn.execute(
            sql(
                "INSERT INTO article (id, url, url_hash, host, state, state_changed_at, "
                "attempts, step_starts, discovered_at, title, published_at, language, "
                "categories, tags) VALUES (:id, :url, :h, :host, 'processed', :at, 0, 0, "
                ":at, :title, :at, 'en', '[]', '[]')"
            ),
            arts,
        )
        conn.execute(
            sql(
                "INSERT INTO claimcluster (id, speaker_key, speaker, text, first_seen_at, "
                "first_article_id, n_articles, n_outlets, created_at) VALUES "
                "(:id, :k, 'Huge Cluster', 'the huge claim repeated everywhere', :t0, :a0, "
                ":n, 60, :now)"
            ),
            {
                "id": cid,
                "k": HUGE_KEY,
                "t0": T0 if db != "sqlite" else T0.replace(tzinfo=None),
                "a0": top_article + 1,
                "n": n,
                "now": now if db != "sqlite" else now.replace(tzinfo=None),
            },
        )
        if db == "sqlite":
            for row in claims:
                row["now"] = row["now"].replace(tzinfo=None)
        conn.execute(
            sql(
                "INSERT INTO claim (article_id, speaker, speaker_resolved, verb, kind, text, "
                'start, "end", sentence, extractor_version, cluster_id, article_at, '
                "created_at) VALUES (:a, 'Huge Cluster', 'Huge Cluster', 'said', 'indirect', "
                ":text, :start, :end, :s, 'bench-1', :c, :at, :now)"
            ),
            claims,
        )
        if db == "postgresql":
            conn.execute(sql("SELECT setval('article_id_seq', (SELECT max(id) FROM article))"))
            conn.execute(
                sql("SELECT setval('claimcluster_id_seq', (SELECT max(id) FROM claimcluster))")
            )
    print(f"  {db}: a cluster of {n:,} repeats added in {time.perf_counter() - t:.0f} s")
    return cid


def time_huge_cluster(client: Any, cid: int, rounds: int) -> dict[str, list[float]]:
    """The huge cluster's page: the first page, the sixth (by cursor), one that starts
    in the middle of its year (``start=``), and the API's first page. Also the first
    view of all (timed once: it counts the repeats, which later views reuse until the
    cluster changes)."""
    t = time.perf_counter()
    resp = client.get(f"/api/v1/clusters/{cid}")
    print(f"    first view (the counts computed): {(time.perf_counter() - t) * 1000:.1f} ms")
    first = resp.json()
    cursor = first["next_cursor"]
    for _ in range(4):
        cursor = client.get(f"/api/v1/clusters/{cid}", params={"cursor": cursor}).json()[
            "next_cursor"
        ]
    middle = (T0 + timedelta(days=182)).isoformat()
    asks = {
        "page 1": (f"/clusters/{cid}", {}),
        "page 6": (f"/clusters/{cid}", {"cursor": cursor}),
        "start=mid-year": (f"/clusters/{cid}", {"start": middle}),
        "API page 1": (f"/api/v1/clusters/{cid}", {}),
    }
    times: dict[str, list[float]] = {k: [] for k in asks}
    for _ in range(rounds):
        for name, (url, params) in asks.items():
            times[name].append(timed(client, url, params))
    size = len(client.get(f"/clusters/{cid}").content)
    print(f"    huge cluster page: {size / 1024:.0f} KiB of HTML")
    return times


def ab_windows(client: Any, queries: list[dict[str, Any]], rounds: int) -> None:
    """Each search with PostgreSQL's id windows off, then on, ``rounds`` times in turn
    (:func:`worker.claims.fulltext._pg_windows`); medians, and the p95 of each way."""
    from worker.claims import fulltext

    windows = fulltext._pg_windows
    times: dict[bool, dict[int, list[float]]] = {False: {}, True: {}}
    try:
        for _ in range(rounds):
            for i, q in enumerate(queries):
                for on in (False, True):
                    fulltext._pg_windows = windows if on else (lambda _e, _n: [])  # type: ignore[assignment]
                    times[on].setdefault(i, []).append(timed(client, "/api/v1/claims", q))
    finally:
        fulltext._pg_windows = windows  # type: ignore[assignment]
    print("postgresql search, id windows off / on, median ms:")
    for i, q in enumerate(queries):
        shown = " ".join(f"{k}={v}" for k, v in q.items()) or "(first page)"
        off, on = (statistics.median(times[w][i]) for w in (False, True))
        print(f"  {shown[:60]:<60} {off:8.1f} {on:8.1f}")
    every = {w: [ms for v in times[w].values() for ms in v] for w in (False, True)}
    print(
        f"  p95 off {pct(every[False], 0.95):.1f} ms, on {pct(every[True], 0.95):.1f} ms "
        f"({len(every[True])} searches each)"
    )


def kept_store(db: str, workdir: Path, admin_url: str, name: str = "cw_bench_web") -> Any:
    from worker.core.settings import Settings

    if db == "sqlite":
        return Settings(data_dir=workdir, _env_file=None)  # type: ignore[call-arg]
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    return Settings(database_url=url, data_dir=workdir, _env_file=None)  # type: ignore[call-arg]


def search_queries(c: Corpus, rng: random.Random) -> list[dict[str, Any]]:
    w = c.words
    busy = c.outlets[3]
    rare_outlet = c.outlets[250]
    speaker = c.speakers[20]
    big = max(c.clusters, key=lambda k: k["n_outlets"])
    phrase = " ".join(big["text"].split()[:3])
    return [
        {},  # the first page, no filter
        {"q": w[0]},  # in about one claim in ten
        {"q": w[20]},
        {"q": w[400]},
        {"q": w[9000]},  # rare
        {"q": f"{w[5]} {w[60]}"},
        {"q": f'"{phrase}"'},
        {"q": w[30][:4] + "*"},
        {"speaker": speaker.split()[-1]},
        {"q": w[10], "speaker": speaker.split()[-1]},
        {"q": w[2], "outlet": busy},
        {"q": w[2], "outlet": rare_outlet},
        {"q": w[1], "min_outlets": 5},
        {"q": w[3], "since": "2025-06-01", "until": "2025-06-30"},
        {"q": w[15], "kind": "direct"},
        {"min_outlets": 20},
    ]


def cluster_sample(c: Corpus, rng: random.Random, n: int = 60) -> list[int]:
    largest = sorted(c.clusters, key=lambda k: -k["n_articles"])[: n // 3]
    others = rng.sample(c.clusters, n - len(largest))
    ids = [k["id"] for k in largest + others]
    rng.shuffle(ids)
    return ids


def timed(client: Any, url: str, params: dict[str, Any]) -> float:
    t = time.perf_counter()
    resp = client.get(url, params=params)
    ms = (time.perf_counter() - t) * 1000
    if resp.status_code != 200:
        raise SystemExit(f"{url} {params}: HTTP {resp.status_code}: {resp.text[:300]}")
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--claims", type=int, default=1_000_000)
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument(
        "--pg",
        default=os.environ.get(
            "CLAIMWIRE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    ap.add_argument(
        "--pg-name", default="cw_bench_web", help="the scratch PostgreSQL database's name"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--huge-cluster",
        type=int,
        default=0,
        metavar="N",
        help="also add one cluster of N repeats and time its page",
    )
    ap.add_argument(
        "--keep", type=Path, default=None, help="keep the SQLite file here, and the PG database"
    )
    ap.add_argument(
        "--reuse", action="store_true", help="time the stores a --keep run left (no filling)"
    )
    ap.add_argument(
        "--ab-windows",
        action="store_true",
        help="also time each search on PostgreSQL with its id windows off and on, "
        "alternately (the same process, the same minute)",
    )
    ap.add_argument(
        "--upgrade",
        action="store_true",
        help="with --reuse: first upgrade the kept stores to this code's migrations",
    )
    args = ap.parse_args()
    from starlette.testclient import TestClient

    from worker.web.webapp import create_app

    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )
    t = time.perf_counter()
    corpus = make_corpus(args.claims, args.seed)
    sizes = [k["n_articles"] for k in corpus.clusters]
    print(
        f"corpus: {len(corpus.claims):,} claims, {len(corpus.articles):,} articles, "
        f"{len(corpus.clusters):,} clusters (largest {max(sizes)} articles, "
        f"{sum(1 for s in sizes if s > 1):,} repeated) in {time.perf_counter() - t:.0f} s"
    )
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="cw-bench-web-"))
    workdir.mkdir(parents=True, exist_ok=True)
    clients: dict[str, Any] = {}
    huge: dict[str, int] = {}
    pg_name = None
    try:
        for db in dbs:
            t = time.perf_counter()
            if args.reuse and args.keep:
                settings = kept_store(db, workdir, args.pg, args.pg_name)
                if args.upgrade:
                    from worker.core.db import init_db

                    up = time.perf_counter()
                    init_db(settings)  # the running code's migrations
                    print(f"  {db}: upgraded in {time.perf_counter() - up:.0f} s")
            elif db == "sqlite":
                settings = fill_sqlite(workdir, corpus)
            else:
                settings, pg_name = fill_postgres(args.pg, corpus, args.pg_name)
            print(f"  {db}: filled in {time.perf_counter() - t:.0f} s")
            clients[db] = TestClient(create_app(settings), base_url="http://127.0.0.1:8000")
            if args.huge_cluster:
                huge[db] = add_huge_cluster(db, settings, args.huge_cluster)
        rng = random.Random(args.seed)
        queries = search_queries(corpus, rng)
        clusters = cluster_sample(corpus, rng)
        search: dict[str, list[float]] = {db: [] for db in dbs}
        pages: dict[str, list[float]] = {db: [] for db in dbs}
        per_query: dict[str, dict[int, list[float]]] = {db: {} for db in dbs}
        for db in dbs:  # warm up: first connections, template compilation, page cache
            for q in queries:
                timed(clients[db], "/api/v1/claims", q)
            for cid in clusters[:5]:
                timed(clients[db], f"/clusters/{cid}", {})
        load_before = os.getloadavg()[0]
        for r in range(args.rounds):
            order = dbs if r % 2 == 0 else list(reversed(dbs))
            for db in order:
                for i, q in enumerate(queries):
                    ms = timed(clients[db], "/api/v1/claims", q)
                    search[db].append(ms)
                    per_query[db].setdefault(i, []).append(ms)
                for cid in clusters:
                    pages[db].append(timed(clients[db], f"/clusters/{cid}", {}))
        load_after = os.getloadavg()[0]
        print(f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after timing")
        print(f"{'database':<11} {'what':<14} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for db in dbs:
            for what, values in (("search", search[db]), ("cluster page", pages[db])):
                print(
                    f"{db:<11} {what:<14} {len(values):>4} {pct(values, 0.5):>8.1f} "
                    f"{pct(values, 0.95):>8.1f} {max(values):>8.1f}"
                )
        for db, cid in huge.items():
            print(f"{db}: cluster {cid} of {args.huge_cluster:,} repeats, ms median / max")
            for name, values in time_huge_cluster(clients[db], cid, args.rounds).items():
                print(f"    {name:<16} {statistics.median(values):8.1f} {max(values):8.1f}")
        if args.ab_windows and "postgresql" in clients:
            ab_windows(clients["postgresql"], queries, args.rounds)
        print("search, median ms per query:")
        for i, q in enumerate(queries):
            shown = " ".join(f"{k}={v}" for k, v in q.items()) or "(first page)"
            cells = "  ".join(f"{db} {statistics.median(per_query[db][i]):7.1f}" for db in dbs)
            print(f"  {shown[:60]:<60} {cells}")
    finally:
        for client in clients.values():
            client.close()
        from worker.core.db import dispose_engines

        dispose_engines()
        if pg_name and args.keep is None:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
