"""What a new process loads once for extraction, loaded ahead of its first page."""

from __future__ import annotations

import time


def extraction_loads() -> list[tuple[str, float]]:
    """Load the extraction step's one-time costs (the imports, dateparser's locales that
    htmldate asks for, py3langid's model) and return the CPU seconds of each: for a
    process that forks the workers (:func:`worker.celery_app.warm_cpu_steps`) and for
    ``bench.extract_step --loads``. Touches no database and no file of the data
    directory."""
    spent: list[tuple[str, float]] = []
    t0 = time.process_time()
    import worker.pages.extract  # noqa: F401 (trafilatura, htmldate, lxml.html, courlan)

    spent.append(("imports", time.process_time() - t0))
    t0 = time.process_time()
    from htmldate.extractors import get_external_parser

    # a string no locale knows: dateparser compiles every locale's patterns once
    get_external_parser().get_date_data("0 x 2000")
    spent.append(("dateparser's locales", time.process_time() - t0))
    t0 = time.process_time()
    from worker.pages.extractor import detect_language

    detect_language("the language of this sentence is found by its model " * 3)
    spent.append(("py3langid's model", time.process_time() - t0))
    return spent
