"""Logging setup (structlog over the standard library)."""

from __future__ import annotations

import logging
import sys

import structlog

from worker.settings import Settings


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # Looked up at call time: sys.stderr may have been replaced since configuration.
    return structlog.PrintLogger(sys.stderr)


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        # plain tracebacks: rich's would print local variables, credentials included
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=max(level, logging.WARNING),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("trafilatura", "htmldate", "courlan", "httpx", "httpcore", "charset_normalizer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
