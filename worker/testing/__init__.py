"""Support code for claimwire's tests and benchmarks, shipped with the package (in the
spirit of ``celery.contrib.testing``): what both ``tests/`` and ``bench/`` use lives
here, so that neither edits ``sys.path`` nor imports the other.

* :mod:`worker.testing.server`: a local HTTP server whose routes a test or benchmark
  fills with feeds, pages and hostile behaviour, and which counts what it served;
* :mod:`worker.testing.content`: invented news (feeds, article pages, stories with
  attributed statements) written for claimwire; no real outlet's text;
* :mod:`worker.testing.procs`: real processes: a private Redis, a private PostgreSQL
  cluster, Celery workers and beat as subprocesses, free ports, polling waits;
* :mod:`worker.testing.checks`: what exactly-once processing must leave in the database
  (nothing lost, duplicated or stuck; claims equal to a clean re-extraction).

Nothing here imports pytest (a dev extra): pytest fixtures stay in ``tests/conftest.py``
and what only the tests need in ``tests/support``. Importing ``worker.testing`` itself
imports none of the submodules; PostgreSQL, Redis and Celery are only touched when a
helper that needs them is called.
"""

HEAVY_LIBRARIES = (
    "spacy",
    "thinc",
    "numpy",
    "trafilatura",
    "lxml",
    "celery",
    "kombu",
    "fastapi",
    "starlette",
    "alembic",
    "redis",
    "httpx",
    "feedparser",
    "courlan",
    "datasketch",
)
"""Libraries no command that only reads the database needs (embedded broker): what
``tests/test_cli_startup.py`` asserts such a command never imports and
``bench/cli_startup.py`` reports."""
