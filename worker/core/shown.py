"""How times are shown. The precision of an article's shown time
(``published_precision`` of exports and pages), read from a stored article: an ORM
object or a Core row alike, so that the commands that only read (``claimwire export``)
need neither the ORM nor :mod:`worker.claims.firstseen` (which re-exports it); and the
one format of a duration, for the commands and the web view alike."""

from __future__ import annotations

from typing import Any


def precision_of(article: Any) -> str | None:
    """The precision of :func:`worker.claims.firstseen.shown_at`: the article's,
    ``minute`` for a feed entry's time (an article not extracted yet), None for a
    discovery time. ``article``: anything with ``published_at``,
    ``published_precision`` and ``entry_published_at``."""
    if article.published_at is not None:
        precision: str | None = article.published_precision
        return precision
    if article.entry_published_at is not None:
        return "minute"
    return None


def human_duration(seconds: float | int | None) -> str:
    """One format for every duration shown: the two largest units, ``"45s"``, ``"37m 30s"``,
    ``"1h 15m"``, ``"2d 3h"`` (a zero second unit left out: ``"1h"``)."""
    if seconds is None:
        return "-"
    total = max(round(float(seconds)), 0)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        value, total = divmod(total, size)
        if value or (parts and len(parts) < 2):
            parts.append(f"{value}{unit}")
        if len(parts) == 2:
            break
    parts = [p for p in parts if not p.startswith("0")] or ["0s"]
    return " ".join(parts)
