"""Jobs: backfills and reprocessing, as rows the database drives."""
