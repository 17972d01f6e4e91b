"""Near-duplicate quality of worker.dedup against exact all-pairs Jaccard.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.dedup_quality [--configs default,k3,...] [--no-db] [--corpus DIR]

Corpora: ../shared/corpora/near-duplicates/{helsinki,census}_articles.csv (one news
event per file, many outlets, many wire copies; read from there, never copied). A
clone made elsewhere names the directory with --corpus.

For every configuration (shingle size k, num_perm, bands x rows):

* truth: exact Jaccard of the word k-shingle sets (the same shingles dedup hashes) of
  every pair of articles, ``J >= threshold``; for the containment check also
  ``|A∩B| / min(|A|,|B|) >= containment``;
* pair decision (in memory, dedup's own functions): the pair is predicted a duplicate
  when the normalized text hashes are equal, or when both texts are long enough, share
  at least one LSH bucket (``band_hashes``) and ``confirm`` accepts them;
* the database step: every article goes through ``deduplicate_article`` on SQLite in
  scrape order (``published_at`` = scrape time), then for every article
  ``find_near_matches`` against the full index gives the pairs the database path
  decides (exact copies expanded by hash), and the final groups give "same group" pairs.

Precision and recall are over unordered pairs of distinct articles.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import re
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from worker.core.settings import Settings
from worker.dedup import deduplicate, sketch
from worker.dedup import groups as dedup_groups
from worker.dedup import index as dedup_index
from worker.dedup.sketch import DedupParams

ROOT = Path(__file__).resolve().parent.parent

CORPUS = ROOT.parent / "shared" / "corpora" / "near-duplicates"
FILES = ("helsinki_articles.csv", "census_articles.csv")

# A configuration is written
# k<k>p<num_perm>b<bands>r<rows>[m<margin in 1/100>][v<verify window in 1/100>]
# [s<containment index sample rate, 0: no containment index>],
# e.g. k7p256b32r4 or k5p128b32r4s0; "default" is sketch.DEFAULT_PARAMS.
DEFAULT_CONFIGS = (
    "default,k5p128b32r4s0,k5p128b32r4s8,k5p128b32r4s32,k5p128b32r4v0,k5p256b32r4v0,k5p512b32r4v0,k3p128b32r4,k7p128b32r4,"
    "k5p64b16r4,k5p128b16r4,k5p128b32r3"
)


def parse_config(name: str) -> DedupParams:
    if name == "default":
        return sketch.DEFAULT_PARAMS
    m = re.fullmatch(r"k(\d+)p(\d+)b(\d+)r(\d+)(?:m(\d+))?(?:v(\d+))?(?:s(\d+))?", name)
    if m is None:
        raise SystemExit(f"bad config {name!r}: expected like k7p256b32r4 or k5p128b32r4v0")
    k, p, b, r, margin, verify, rate = m.groups()
    return DedupParams(
        shingle_k=int(k),
        num_perm=int(p),
        bands=int(b),
        rows=int(r),
        margin=int(margin or 0) / 100,
        verify_window=int(verify) / 100 if verify is not None else 0.1,
        sample_rate=int(rate) if rate is not None else sketch.DEFAULT_PARAMS.sample_rate,
    )


@dataclass
class Doc:
    key: str
    publisher: str
    scraped: datetime
    text: str


def load() -> list[Doc]:
    csv.field_size_limit(1 << 30)
    docs: list[Doc] = []
    for name in FILES:
        path = CORPUS / name
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                text = row["text"].replace(" ### ", "\n\n")
                try:
                    ts = datetime.fromisoformat(row["scrape_time"]).astimezone(UTC)
                except ValueError:
                    ts = datetime(2018, 1, 1, tzinfo=UTC)
                docs.append(Doc(f"{name.split('_')[0]}:{row['id']}", row["publisher"], ts, text))
    return docs


Pair = tuple[int, int]


def pr(pred: set[Pair], truth: set[Pair]) -> tuple[float, float, int, int, int]:
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(truth) if truth else 1.0
    return p, r, tp, len(pred) - tp, len(truth) - tp


def truth_pairs(
    docs: list[Doc], k: int, threshold: float, containment: float
) -> tuple[set[Pair], set[Pair]]:
    """(J >= threshold pairs, J >= threshold or containment >= containment pairs),
    within each corpus file (articles of different files are different events)."""
    sets = [frozenset(sketch.shingle_hashes(sketch.words(d.text), k).tolist()) for d in docs]
    corpus = [d.key.split(":")[0] for d in docs]
    jac: set[Pair] = set()
    both: set[Pair] = set()
    for i, j in itertools.combinations(range(len(docs)), 2):
        if corpus[i] != corpus[j]:
            continue
        a, b = sets[i], sets[j]
        if not a or not b:
            continue
        inter = len(a & b)
        if inter == 0:
            continue
        jv = inter / (len(a) + len(b) - inter)
        cv = inter / min(len(a), len(b))
        if jv >= threshold:
            jac.add((i, j))
            both.add((i, j))
        elif cv >= containment:
            both.add((i, j))
    return jac, both


# exact checks, LSH candidate pairs, containment-index-only candidate pairs (of the last
# memory_pairs run)
VERIFIED = [0, 0, 0]
_exact = sketch.exact_similarity


def _counting_exact(a: sketch.UInt64Array, b: sketch.UInt64Array) -> tuple[float, float]:
    VERIFIED[0] += 1
    return _exact(a, b)


# count the exact checks, same code: in every module that calls it
sketch.exact_similarity = _counting_exact
dedup_index.exact_similarity = _counting_exact
dedup_groups.exact_similarity = _counting_exact


def _const(
    shingles: sketch.UInt64Array | None,
) -> Callable[[], sketch.UInt64Array | None]:
    return lambda: shingles


def memory_pairs(
    docs: list[Doc], params: DedupParams, threshold: float, containment: float
) -> set[Pair]:
    sks = [sketch.sketch(d.text, params) for d in docs]
    corpus = [d.key.split(":")[0] for d in docs]
    pred: set[Pair] = set()
    by_hash: dict[tuple[str, str], list[int]] = defaultdict(list)
    buckets: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for i, sk in enumerate(sks):
        if sk.n_words:
            by_hash[(corpus[i], sk.text_hash)].append(i)
        if sk.bands is not None:
            for b, h in enumerate(sk.bands.tolist()):
                buckets[(corpus[i], b, h)].append(i)
    for ids in by_hash.values():
        pred.update(itertools.combinations(ids, 2))
    cands: set[Pair] = set()
    for ids in buckets.values():
        cands.update(itertools.combinations(ids, 2))
    # The containment index: samples stored for one article per distinct text (exact
    # copies are not indexed), a sample stored for more than sample_df_max of them
    # ignored (as the database does once it has seen them all).
    postings: dict[tuple[str, int], list[int]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for i, sk in enumerate(sks):
        if sk.samples is None or (corpus[i], sk.text_hash) in seen:
            continue
        seen.add((corpus[i], sk.text_hash))
        for x in sk.samples.tolist():
            postings[(corpus[i], x)].append(i)
    together: Counter[Pair] = Counter()
    for key, ids in postings.items():
        if len(ids) > params.sample_df_max:
            continue
        members = list(ids)
        # the exact copies of each posted article share its samples too
        for h in {sks[i].text_hash for i in ids}:
            members += [m for m in by_hash[(key[0], h)] if m not in ids]
        together.update(itertools.combinations(sorted(members), 2))
    # checked as find_near_matches does: enough shared samples (its limit of
    # max_contained candidates per article is not applied here)
    contained = {
        (a, b)
        for (a, b), n in together.items()
        if n >= sketch.min_shared(sks[a].shingle_count, sks[b].shingle_count, params)
    } - cands
    settings = Settings(dedup_threshold=threshold, dedup_containment=containment)
    VERIFIED[1] = len(cands)
    VERIFIED[2] = len(contained)
    t = threshold + params.margin
    ct = containment + params.margin
    for i, j in cands | contained:
        sa, sb = sks[i], sks[j]
        assert sa.signature is not None and sb.signature is not None
        if (i, j) in contained:  # decided exactly, as find_near_matches does
            assert sa.shingles is not None and sb.shingles is not None
            ej, ec = sketch.exact_similarity(sa.shingles, sb.shingles)
            ok = ej >= t or ec >= ct
        else:
            ok, _, _ = sketch.decide(
                sa, sb.signature, sb.shingle_count, _const(sb.shingles), settings, params
            )
        if ok:
            pred.add((i, j))
    return pred


def db_pairs(
    docs: list[Doc], params: DedupParams, threshold: float, containment: float
) -> tuple[set[Pair], set[Pair], float]:
    """Run every article through deduplicate_article on SQLite (one database per corpus).
    Returns (pairs decided by find_near_matches + hash, same-group pairs, ms/article)."""
    from sqlmodel import Session, select

    from schemas.models import Article, ArticleState
    from worker.core.db import dispose_engines, get_engine, init_db

    decided: set[Pair] = set()
    grouped: set[Pair] = set()
    elapsed = 0.0
    n = 0
    by_corpus: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        by_corpus[d.key.split(":")[0]].append(i)
    for corpus, idxs in by_corpus.items():
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                database_url=f"sqlite:///{tmp}/q.db",
                dedup_threshold=threshold,
                dedup_containment=containment,
            )
            init_db(settings)
            engine = get_engine(settings)
            ids: dict[int, int] = {}
            with Session(engine) as s:
                for i in idxs:
                    d = docs[i]
                    a = Article(
                        url=f"https://{d.publisher}/{d.key}",
                        url_hash=f"{corpus}-{i}",
                        host=d.publisher,
                        state=ArticleState.extracted,
                        text=d.text,
                        published_at=d.scraped,
                        discovered_at=d.scraped,
                    )
                    s.add(a)
                    s.flush()
                    assert a.id is not None
                    ids[i] = a.id
                s.commit()
            order = sorted(idxs, key=lambda i: (docs[i].scraped, i))
            for i in order:
                t0 = time.perf_counter()
                with Session(engine) as s:
                    out = deduplicate.deduplicate_article(s, ids[i], settings, params)
                    s.commit()
                elapsed += time.perf_counter() - t0
                n += 1
                assert out.advanced
            back = {v: k for k, v in ids.items()}
            with Session(engine) as s:
                arts = {a.id: a for a in s.exec(select(Article)).all()}
                by_hash: dict[str, list[int]] = defaultdict(list)
                groups: dict[int, list[int]] = defaultdict(list)
                for aid, a in arts.items():
                    assert aid is not None and a.dup_group_id is not None
                    if a.text_hash and sketch.words(a.text):
                        by_hash[a.text_hash].append(back[aid])
                    groups[a.dup_group_id].append(back[aid])
                for members in groups.values():
                    grouped.update(itertools.combinations(sorted(members), 2))
                for members in by_hash.values():
                    decided.update(itertools.combinations(sorted(members), 2))
                for aid, a in arts.items():
                    assert aid is not None
                    sk = sketch.sketch(a.text, params)
                    for m in dedup_index.find_near_matches(s, sk, settings, params, exclude=aid):
                        other = arts[m.article_id]
                        same = by_hash.get(other.text_hash or "", [back[m.article_id]])
                        for j in same:
                            if j != back[aid]:
                                decided.add((min(back[aid], j), max(back[aid], j)))
            dispose_engines()
    return decided, grouped, 1000 * elapsed / max(n, 1)


def shared_pairs(docs: list[Doc], threshold: float) -> set[Pair]:
    """Pairs with word 5-shingle Jaccard >= threshold in the corpus's own
    ``*.computed_pairs.tsv`` (computed there with another tokenizer)."""
    index = {d.key: i for i, d in enumerate(docs)}
    out: set[Pair] = set()
    for name in FILES:
        path = CORPUS / name.replace(".csv", ".computed_pairs.tsv")
        if not path.exists():
            continue
        corpus = name.split("_")[0]
        with path.open(encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if float(row["jaccard_5shingle"]) < threshold:
                    continue
                a = index.get(f"{corpus}:{row['id_a']}")
                b = index.get(f"{corpus}:{row['id_b']}")
                if a is not None and b is not None and a != b:
                    out.add((min(a, b), max(a, b)))
    return out


def main() -> None:
    global CORPUS
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default=DEFAULT_CONFIGS)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--containment", type=float, default=0.9)
    ap.add_argument("--no-db", action="store_true", help="skip the SQLite run")
    ap.add_argument(
        "--corpus", type=Path, default=CORPUS, help="the near-duplicates corpus directory"
    )
    args = ap.parse_args()
    CORPUS = args.corpus
    docs = load()
    print(f"{len(docs)} articles from {', '.join(FILES)}")
    no_containment = 1.01  # a containment threshold nothing reaches: Jaccard only
    truths: dict[int, tuple[set[Pair], set[Pair]]] = {}
    header = (
        f"{'config':<11} {'k':>2} {'perm':>4} {'b x r':>6} | "
        f"{'Jaccard-only P/R vs J':>22} | {'full P/R vs J':>14} | "
        f"{'full P/R vs J|C':>16} | {'DB pairs P/R vs J|C':>19} | "
        f"{'DB groups P/R vs J|C':>20} | {'ms/art':>6}"
    )
    print(header)
    print("-" * len(header))
    for name in args.configs.split(","):
        params = parse_config(name)
        if params.shingle_k not in truths:
            truths[params.shingle_k] = truth_pairs(
                docs, params.shingle_k, args.threshold, args.containment
            )
        tj, tjc = truths[params.shingle_k]
        if name == "default":
            ext = shared_pairs(docs, args.threshold)
            sp, sr, *_ = pr(memory_pairs(docs, params, args.threshold, no_containment), ext)
            print(
                f"(default vs the corpus's computed_pairs.tsv, J5 >= {args.threshold}: "
                f"{len(ext)} pairs, {len(ext & tj)} also in our truth; "
                f"Jaccard-only decision P/R {sp:.4f}/{sr:.4f})"
            )
        jo = pr(memory_pairs(docs, params, args.threshold, no_containment), tj)
        VERIFIED[:] = [0, 0, 0]
        full = memory_pairs(docs, params, args.threshold, args.containment)
        verified = VERIFIED[:]
        fj = pr(full, tj)
        fjc = pr(full, tjc)
        if args.no_db:
            dbp = dbg = (float("nan"),) * 5
            ms = float("nan")
        else:
            decided, grouped, ms = db_pairs(docs, params, args.threshold, args.containment)
            dbp = pr(decided, tjc)
            dbg = pr(grouped, tjc)
        print(
            f"{name:<11} {params.shingle_k:>2} {params.num_perm:>4} "
            f"{f'{params.bands}x{params.rows}':>6} | "
            f"{jo[0]:>10.4f}/{jo[1]:<11.4f} | {fj[0]:>6.4f}/{fj[1]:<7.4f} | "
            f"{fjc[0]:>7.4f}/{fjc[1]:<8.4f} | {dbp[0]:>8.4f}/{dbp[1]:<10.4f} | "
            f"{dbg[0]:>9.4f}/{dbg[1]:<10.4f} | {ms:>6.1f}"
        )
        print(
            f"{'':<11}    truth: {len(tj)} pairs J>={args.threshold}, {len(tjc)} pairs "
            f"J>={args.threshold} or C>={args.containment}; Jaccard-only FP/FN "
            f"{jo[3]}/{jo[4]}; full vs J|C FP/FN {fjc[3]}/{fjc[4]}; "
            f"LSH candidate pairs {verified[1]}, containment-index-only candidate pairs "
            f"{verified[2]}, checked exactly {verified[0]}"
        )


if __name__ == "__main__":
    main()
