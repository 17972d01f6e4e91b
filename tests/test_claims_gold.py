"""The claim-cluster gold (bench/data/claims_gold.json) is well formed: every split's
clusters have mentions in two or more outlets, no mention belongs to two clusters or
overlaps another cluster's mention (within a split or across splits), and every pair
is of one speaker and two different clusters. The check against the extractor's claims
(``python -m bench.claims_gold --check``) needs spaCy and is run by hand."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bench.claims_gold import GOLD, LATER_PARTS, SPLITS, load_corpus, validate
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def corpus() -> tuple[dict[str, str], dict[str, int]]:
    docs = load_corpus(shared_path("corpora", "near-duplicates"))
    return {d.key: d.publisher for d in docs}, {d.key: len(d.text) for d in docs}


@pytest.fixture()
def gold() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLD.read_text())
    return data


def test_the_gold_validates(
    gold: dict[str, Any], corpus: tuple[dict[str, str], dict[str, int]]
) -> None:
    publishers, lengths = corpus
    assert validate(gold, publishers, lengths) == []
    assert {c["split"] for c in gold["clusters"]} == set(SPLITS)
    fresh = [c for c in gold["clusters"] if c["split"] == "fresh"]
    fresh_pairs = [p for p in gold["pairs"] if p["split"] == "fresh"]
    assert len(fresh) >= 20
    assert len(fresh_pairs) >= 20
    assert {m["article"].split(":")[0] for c in fresh for m in c["mentions"]} == {
        "helsinki",
        "census",
    }


def test_validate_finds_what_is_wrong(
    gold: dict[str, Any], corpus: tuple[dict[str, str], dict[str, int]]
) -> None:
    publishers, lengths = corpus
    fresh = [c for c in gold["clusters"] if c["split"] == "fresh"]
    other = next(c for c in gold["clusters"] if c["split"] != "fresh")

    one_outlet = copy.deepcopy(gold)
    c = next(x for x in one_outlet["clusters"] if x["id"] == fresh[0]["id"])
    first = c["mentions"][0]
    c["mentions"] = [
        m for m in c["mentions"] if publishers[m["article"]] == publishers[first["article"]]
    ]
    assert any("outlet" in e for e in validate(one_outlet, publishers, lengths))

    twice = copy.deepcopy(gold)
    fresh_c = next(x for x in twice["clusters"] if x["id"] == fresh[1]["id"])
    fresh_c["mentions"].append(dict(other["mentions"][0]))
    assert any("also a mention" in e for e in validate(twice, publishers, lengths))

    overlap = copy.deepcopy(gold)
    fresh_c = next(x for x in overlap["clusters"] if x["id"] == fresh[2]["id"])
    m = dict(other["mentions"][0])
    m["start"] += 1
    fresh_c["mentions"].append(m)
    assert any("overlap" in e for e in validate(overlap, publishers, lengths))

    outside = copy.deepcopy(gold)
    fresh_c = next(x for x in outside["clusters"] if x["id"] == fresh[3]["id"])
    fresh_c["mentions"][0]["end"] = lengths[fresh_c["mentions"][0]["article"]] + 1
    assert any("outside" in e for e in validate(outside, publishers, lengths))

    same = copy.deepcopy(gold)
    pair = next(p for p in same["pairs"] if p["split"] == "fresh")
    cid = pair["a"]["cluster"]
    cl = next(x for x in same["clusters"] if x["id"] == cid)
    pair["b"] = dict(cl["mentions"][-1], cluster=cid)
    if pair["b"] == pair["a"]:
        pair["b"] = dict(cl["mentions"][0], cluster=cid)
    assert any("one cluster" in e for e in validate(same, publishers, lengths))

    claims: dict[str, set[tuple[int, int]]] = {
        m["article"]: set() for c in fresh for m in c["mentions"]
    }
    errors = validate(gold, publishers, lengths, claims, "fresh")
    assert any("overlaps no extracted claim" in e for e in errors)

    # the extractor's claims exactly at the fresh part's spans, but for one mention
    # whose claim moved by a character: that one is listed as moved, no error
    for c in fresh:
        for m in c["mentions"]:
            claims[m["article"]].add((m["start"], m["end"]))
    shifted = fresh[0]["mentions"][0]
    claims[shifted["article"]].discard((shifted["start"], shifted["end"]))
    claims[shifted["article"]].add((shifted["start"] + 1, shifted["end"]))
    for p in gold["pairs"]:
        for side in ("a", "b"):
            if p["split"] == "fresh" and p[side].get("cluster") is None:
                claims.setdefault(p[side]["article"], set()).add((p[side]["start"], p[side]["end"]))
    moved: list[str] = []
    assert validate(gold, publishers, lengths, claims, "fresh", moved) == []
    span = f"{shifted['article']} {shifted['start']}-{shifted['end']}"
    assert f"{fresh[0]['id']}: {span}" in moved  # (a pair naming it is listed too)
    assert all(x.endswith(span) for x in moved)


def test_the_fresh2_part(
    gold: dict[str, Any], corpus: tuple[dict[str, str], dict[str, int]]
) -> None:
    """The fourth part (``"split": "fresh2"``): 40 or more clusters, 25 or more pairs of
    its own clusters, both events, and no statement shared with another part (no
    mention of it is a mention of, or overlaps, another part's)."""
    publishers, lengths = corpus
    part = [c for c in gold["clusters"] if c["split"] == "fresh2"]
    pairs = [p for p in gold["pairs"] if p["split"] == "fresh2"]
    assert len(part) >= 40
    assert len(pairs) >= 25
    assert {m["article"].split(":")[0] for c in part for m in c["mentions"]} == {
        "helsinki",
        "census",
    }
    ids = {c["id"] for c in part}
    assert all(p[s]["cluster"] in ids for p in pairs for s in ("a", "b"))
    only = {**gold, "clusters": part, "pairs": pairs}
    assert validate(only, publishers, lengths) == []
    others = [c for c in gold["clusters"] if c["split"] != "fresh2"]
    spans: dict[str, list[tuple[int, int]]] = {}
    for c in others:
        for m in c["mentions"]:
            spans.setdefault(m["article"], []).append((m["start"], m["end"]))
    for c in part:
        for m in c["mentions"]:
            for s, e in spans.get(m["article"], []):
                assert e <= m["start"] or s >= m["end"], (c["id"], m)


def test_validate_finds_a_fresh2_pair_naming_another_part(
    gold: dict[str, Any], corpus: tuple[dict[str, str], dict[str, int]]
) -> None:
    publishers, lengths = corpus
    assert validate(gold, publishers, lengths) == []
    mixed = copy.deepcopy(gold)
    pair = next(p for p in mixed["pairs"] if p["split"] == "fresh2")
    speaker_clusters = [
        c for c in mixed["clusters"] if c["split"] == "fresh" and c["speaker"] == "trump"
    ]
    other = speaker_clusters[0]
    pair["speaker"] = "trump"
    pair["b"] = dict(other["mentions"][0], cluster=other["id"])
    pair["a"] = dict(
        next(c for c in mixed["clusters"] if c["id"] == "trump-good-start")["mentions"][0],
        cluster="trump-good-start",
    )
    assert any(
        "fresh2 pair names a cluster of another split" in e
        for e in validate(mixed, publishers, lengths)
    )


def test_the_fresh3_part(
    gold: dict[str, Any], corpus: tuple[dict[str, str], dict[str, int]]
) -> None:
    """The fifth part (``"split": "fresh3"``): 40 or more clusters, 28 or more pairs of
    its own clusters (at most eight a speaker), both events, and no statement shared
    with another part (no mention of it is a mention of, or overlaps, another part's
    mention or pair side)."""
    publishers, lengths = corpus
    part = [c for c in gold["clusters"] if c["split"] == "fresh3"]
    pairs = [p for p in gold["pairs"] if p["split"] == "fresh3"]
    assert len(part) >= 40
    assert len(pairs) >= 28
    assert {m["article"].split(":")[0] for c in part for m in c["mentions"]} == {
        "helsinki",
        "census",
    }
    ids = {c["id"] for c in part}
    assert all(p[s]["cluster"] in ids for p in pairs for s in ("a", "b"))
    per_speaker: dict[str, int] = {}
    for p in pairs:
        per_speaker[p["speaker"]] = per_speaker.get(p["speaker"], 0) + 1
    assert max(per_speaker.values()) <= 8
    only = {**gold, "clusters": part, "pairs": pairs}
    assert validate(only, publishers, lengths) == []
    spans: dict[str, list[tuple[int, int]]] = {}
    for c in gold["clusters"]:
        if c["split"] != "fresh3":
            for m in c["mentions"]:
                spans.setdefault(m["article"], []).append((m["start"], m["end"]))
    for p in gold["pairs"]:
        if p["split"] != "fresh3":
            for s in ("a", "b"):
                spans.setdefault(p[s]["article"], []).append((p[s]["start"], p[s]["end"]))
    for c in part:
        for m in c["mentions"]:
            for s, e in spans.get(m["article"], []):
                assert e <= m["start"] or s >= m["end"], (c["id"], m)


@pytest.mark.parametrize("part", LATER_PARTS)
def test_validate_finds_a_later_part_pair_naming_another_part(
    part: str, gold: dict[str, Any], corpus: tuple[dict[str, str], dict[str, int]]
) -> None:
    """A pair of a part annotated later (fresh, fresh2, fresh3) names clusters of that
    part only: pointing one side at a cluster of another part is reported."""
    publishers, lengths = corpus
    mixed = copy.deepcopy(gold)
    pair = next(p for p in mixed["pairs"] if p["split"] == part)
    elsewhere = [c for c in mixed["clusters"] if c["split"] != part]
    same_speaker = [c for c in elsewhere if c["speaker"] == pair["speaker"]]
    other = (same_speaker or elsewhere)[0]
    pair["speaker"] = other["speaker"]
    pair["b"] = dict(other["mentions"][0], cluster=other["id"])
    assert any(
        f"{part} pair names a cluster of another split" in e
        for e in validate(mixed, publishers, lengths)
    )
