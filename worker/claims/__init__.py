"""Claims: rule-based extraction of attributed statements (spaCy), storage and clustering."""

from worker.claims.attribution import EXTRACTOR_VERSION, extract_claims, is_english, load_nlp

__all__ = ["EXTRACTOR_VERSION", "extract_claims", "is_english", "load_nlp"]
