"""Logging setup (structlog over the standard library)."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from worker.core.settings import Settings, mask_secrets

if TYPE_CHECKING:
    import structlog


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # Looked up at call time: sys.stderr may have been replaced since configuration.
    import structlog

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


def configure_logging(settings: Settings, *, structured: bool = True) -> None:
    """Log lines to stderr at ``CLAIMWIRE_LOG_LEVEL``, passwords masked: structlog's
    (claimwire's own events) and the standard library's (other libraries').

    ``structured=False``: the standard library's only, without importing structlog (a
    thirtieth of a second): for the commands that only read the database, which log no
    event of their own (``tests/test_cli_startup.py`` checks they never import it)."""
    # a name of LOG_LEVELS: the settings refuse anything else (no silent fallback)
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    if structured:
        _configure_structlog(settings, level)
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


def _configure_structlog(settings: Settings, level: int) -> None:
    import structlog

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
