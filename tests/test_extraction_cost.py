"""bench.extraction_cost's A/B: another checkout's ``extract_page`` beside this one's.

The page is invented in the test.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trafilatura.external

from bench.extraction_cost import _baseline_extract_page
from worker.pages import arbiter
from worker.pages.extractor import DEFAULT_PROFILE, _bare, _parse

PAGE = (
    "<html><head><title>Ferry</title></head><body><article>"
    + "".join(
        f"<p>Paragraph {i} of a story about the river ferry, its new timetable and the "
        "repairs to the landing that kept it out of service for a year.</p>"
        for i in range(25)
    )
    + "</article></body></html>"
)


def test_ab_keeps_both_checkouts_readability_recorders(tmp_path: Path, monkeypatch: Any) -> None:
    """Each checkout's arbiter puts its recorder in trafilatura's place for readability (the
    witness reuses the summary of trafilatura's pass): once the baseline is loaded beside
    this checkout, both sides still see the summaries of their own passes."""
    monkeypatch.setattr(
        trafilatura.external, "ReadabilityDocument", trafilatura.external.ReadabilityDocument
    )
    pages = Path(arbiter.__file__).parent
    shutil.copytree(pages, tmp_path / "worker" / "pages")
    old = _baseline_extract_page(tmp_path)
    baseline_seen = old.__globals__["readability_seen"]
    assert baseline_seen is not arbiter.readability_seen

    tree = _parse(PAGE)
    assert tree is not None
    now = datetime(2025, 6, 1, tzinfo=UTC)
    for collect in (arbiter.readability_seen, baseline_seen):
        with collect() as seen:
            _bare(tree, None, DEFAULT_PROFILE, with_metadata=False, now=now)
        assert len(seen) == 1, collect
