"""Deduplication: exact copies by text hash, near-copies by MinHash and LSH, duplicate groups."""
