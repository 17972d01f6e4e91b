"""The embedded default (``claimwire run``): a filesystem broker and an in-process
worker with its scheduler, for a laptop without servers."""
