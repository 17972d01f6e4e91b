"""Pages: fetching, the raw archive, decoding and extraction of text and metadata."""
