"""No news text of the corpora in the repository.

The corpora in ``../shared/corpora`` are other people's copyrighted work: the repository
may name a passage by article id and offsets, or describe it, but never hold its words.
This guard reads every tracked text file (``git ls-files``) as one run of lower-cased
words (letters and digits, an apostrophe only inside a word), so that a quotation
wrapped over two lines is still one run, and fails on any run of
:data:`RUN_WORDS` words that also occurs in the corpora: the near-duplicates CSVs'
texts, the PolNeAR files, the extraction pages (source pages and expected texts, tags
stripped) and the feeds. Only the repository's runs are kept in memory (as hashes);
the corpora are streamed past them.
"""

from __future__ import annotations

import csv
import gzip
import html
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.conftest import ROOT, shared_path

RUN_WORDS = 8
# Letters and digits, an apostrophe only inside a word ("don't"; not the one opening a
# single-quoted quotation, which would hide its first word).
WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
TAG = re.compile(r"<[^>]+>")
SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)

# Runs found in both that are not corpus expression (lower-cased words, one space).
ALLOWED: frozenset[str] = frozenset(
    {
        # PolNeAR file ids (outlet_date_slug, as the corpus names its files), which the
        # PolNeAR bench and its docs use to name an article: an id, not its text.
        "wash post 2016 06 27 byline amber phillips",
        "nyt 2016 04 18 for news outlets feeling",
        "2016 04 18 for news outlets feeling the",
        "04 18 for news outlets feeling the squ",
        "usa today 2016 08 09 khans trump stirs",
        "today 2016 08 09 khans trump stirs ugliness",
        "2016 08 09 khans trump stirs ugliness musli",
        # A wire service's rights notice (tests/test_dedup.py's boilerplate fixture):
        # a legal formula printed under thousands of stories, not any article's words.
        "all rights reserved this material may not be",
        "rights reserved this material may not be published",
        "reserved this material may not be published broadcast",
        "this material may not be published broadcast rewritten",
        "material may not be published broadcast rewritten or",
        "may not be published broadcast rewritten or redistributed",
    }
)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def runs(ws: list[str]) -> Iterator[tuple[str, ...]]:
    """Every run of :data:`RUN_WORDS` words, in order (built in C by ``zip``)."""
    return zip(*(ws[i:] for i in range(RUN_WORDS)), strict=False)  # the shorter ends it


def tracked_texts() -> Iterator[tuple[str, str]]:
    """Every tracked file of the repository that is text (UTF-8, no NUL)."""
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode("utf-8")
    for name in filter(None, names.split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree, not yet committed
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            yield name, data.decode("utf-8")
        except UnicodeDecodeError:
            continue


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="ignore")


def _strip(text: str) -> str:
    return html.unescape(TAG.sub(" ", SCRIPT.sub(" ", text)))


def corpus_texts(corpora: Path) -> Iterator[str]:
    """The texts of the corpora, as the repository might quote them."""
    csv.field_size_limit(1 << 30)
    for path in sorted((corpora / "near-duplicates").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                yield row["text"]
    for path in sorted((corpora / "attribution" / "polnear").rglob("*")):
        if path.is_file() and path.suffix != ".md":
            yield _read(path)
    for path in sorted((corpora / "extraction").rglob("*")):
        if path.is_file() and path.name.endswith((".html", ".htm", ".html.gz", ".txt", ".json")):
            yield _strip(_read(path))
    for path in sorted((corpora / "feeds").rglob("*")):
        if path.is_file() and path.name != "MANIFEST.tsv":
            yield html.unescape(_strip(html.unescape(_read(path))))


def corpus_hits(
    files: Iterable[tuple[str, str]], texts: Iterable[str]
) -> list[tuple[str, int, str]]:
    """(file, line, run) for each run of a file that is in ``texts`` (the first of
    overlapping runs on a line is enough)."""
    mine: set[int] = set()
    kept: list[tuple[str, str, list[str]]] = []
    for name, text in files:
        ws = words(text)
        kept.append((name, text, ws))
        mine.update(map(hash, runs(ws)))
    found: set[int] = set()
    for text in texts:
        found.update(mine.intersection(map(hash, runs(words(text)))))
    hits: list[tuple[str, int, str]] = []
    for name, text, ws in kept:
        low = text.lower()
        starts = [m.start() for m in WORD.finditer(low)]
        seen_lines: set[int] = set()
        for i, run in enumerate(runs(ws)):
            if hash(run) not in found:
                continue
            joined = " ".join(run)
            if joined in ALLOWED:
                continue
            line = low.count("\n", 0, starts[i]) + 1
            if line not in seen_lines:
                seen_lines.add(line)
                hits.append((name, line, joined))
    return hits


def test_no_run_of_corpus_words_in_the_repository() -> None:
    corpora = shared_path("corpora")
    hits = corpus_hits(tracked_texts(), corpus_texts(corpora))
    assert not hits, (
        f"{len(hits)} runs of {RUN_WORDS} words of ../shared/corpora in tracked files "
        "(copyrighted news text: name it by id and offsets or describe it instead):\n"
        + "\n".join(f"{name}:{line}: {run}" for name, line, run in hits[:200])
    )


def test_the_guard_finds_a_quotation_wrapped_over_two_lines() -> None:
    # invented text standing in for a corpus
    corpus = ["The harbour master said the new pier would open to all boats next spring."]
    files = [
        ("docs/a.md", "Holm's words:\n'the new pier would open to all\nboats next spring'\n"),
        ("docs/b.md", "A pier that opens next spring, in other words.\n"),
    ]
    assert corpus_hits(files, corpus) == [("docs/a.md", 2, "the new pier would open to all boats")]
