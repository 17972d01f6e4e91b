"""Logging setup (structlog over the standard library)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from worker.core.settings import Settings, mask_secrets


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # Looked up at call time: sys.stderr may have been replaced since configuration.
    return structlog.PrintLogger(sys.stderr)


def _mask_line(_logger: Any, _name: str, line: Any) -> Any:
    """The last processor: the rendered line without URL passwords (a feed or article
    URL with ``user:password@``, in an event field, an error or a traceback)."""
    return mask_secrets(line) if isinstance(line, str) else line


class _MaskingFormatter(logging.Formatter):
    """Any handler's formatter (ours, Celery's), its output without URL passwords."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(self.inner.format(record))


def configure_logging(settings: Settings) -> None:
    # a name of LOG_LEVELS: the settings refuse anything else (no silent fallback)
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
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
            _mask_line,
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
    for handler in logging.getLogger().handlers:  # ours, and Celery's in a worker
        if not isinstance(handler.formatter, _MaskingFormatter):
            handler.setFormatter(_MaskingFormatter(handler.formatter))
    for noisy in ("trafilatura", "htmldate", "courlan", "httpx", "httpcore", "charset_normalizer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
