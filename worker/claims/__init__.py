"""Claims: rule-based extraction of attributed statements (spaCy), storage and clustering.

The extractor's names are loaded on first use (PEP 562): a command that only reads
stored claims (``claimwire claims search``, :mod:`worker.claims.search`) does not import
spaCy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.claims.attribution import EXTRACTOR_VERSION, extract_claims, is_english, load_nlp

__all__ = ["EXTRACTOR_VERSION", "extract_claims", "is_english", "load_nlp"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from worker.claims import attribution

        return getattr(attribution, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
