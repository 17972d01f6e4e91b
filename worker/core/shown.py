"""The precision of an article's shown time (``published_precision`` of exports and
pages), read from a stored article: an ORM object or a Core row alike, so that the
commands that only read (``claimwire export``) need neither the ORM nor
:mod:`worker.claims.firstseen` (which re-exports it)."""

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
