"""The `claimwire` command line."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from worker.cli import (  # noqa: F401  (register the commands)
    feed_commands,
    job_commands,
    service_commands,
    tool_commands,
    web_commands,
)
from worker.cli.console import UserError, app, settings_error

__all__ = ["app", "main"]


def _reflowed(doc: str) -> str:
    """A command's docstring with the line breaks of its source joined within each
    paragraph: typer's rich help keeps them, so at 80 columns `run --help` read
    "...With --until-idle the / exit status says..." with a line of one word between
    (rich wraps each paragraph to the terminal itself)."""
    import inspect

    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


def _reflow_help(typer_app: Any) -> None:
    for info in typer_app.registered_commands:
        doc = info.help if isinstance(info.help, str) else getattr(info.callback, "__doc__", None)
        if doc:
            info.help = _reflowed(doc)
    for group in typer_app.registered_groups:
        _reflow_help(group.typer_instance)


_reflow_help(app)


# ------------------------------------------------------------------------- entry point

# scheme://user:password@  ->  scheme://user:***@  (any URL in any message we print)
_CREDENTIALS = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")


def _masked(message: str) -> str:
    return _CREDENTIALS.sub(r"\g<head>***@", message)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _fail(message: str, status: int) -> SystemExit:
    """Print ``claimwire: <message>`` as exactly one line (never wrapped, never with a
    password) and return the exit to raise."""
    sys.stderr.write(f"claimwire: {_masked(_one_line(message))}\n")
    sys.stderr.flush()
    return SystemExit(status)


def _known_errors() -> tuple[type[BaseException], ...]:
    from worker.core.db import DatabaseUnavailable
    from worker.feeds.subscriptions import FeedNotFound
    from worker.network.urls import InvalidURL

    return (UserError, DatabaseUnavailable, FeedNotFound, InvalidURL)


def _database_unavailable(exc: BaseException) -> bool:
    """SQLAlchemy's OperationalError: the database went away, or (SQLite) another process
    held its write lock too long. Not a bug of claimwire: one line and exit 2."""
    sa_exc = sys.modules.get("sqlalchemy.exc")  # not loaded: not one of its errors
    return sa_exc is not None and isinstance(exc, sa_exc.OperationalError)


def _click_modules() -> list[ModuleType]:
    """Typer carries its own copy of click (``typer._click``); older ones use click."""
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def _click_errors(name: str) -> tuple[type[BaseException], ...]:
    return tuple(getattr(m, name) for m in _click_modules() if hasattr(m, name))


def _debug() -> bool:
    try:
        from worker.core.settings import get_settings

        return bool(get_settings().log_level.upper() == "DEBUG")
    except Exception:  # noqa: BLE001 (invalid settings: reported elsewhere)
        return False


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every problem the user can fix prints one line and exits 2
    (usage errors, invalid settings, unreachable or locked database, unknown feed, bad
    URL or date); anything else prints one line and exits 1. No traceback unless
    CLAIMWIRE_LOG_LEVEL=DEBUG."""
    runner: Callable[..., Any] = app
    try:
        rv = runner(args=argv, standalone_mode=False)
    except SystemExit:
        raise
    except _click_errors("NoArgsIsHelpError") as exc:
        exc.show()  # type: ignore[attr-defined]
        raise SystemExit(2) from None
    except _click_errors("UsageError") as exc:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "claimwire"
        message = exc.format_message()  # type: ignore[attr-defined]
        raise _fail(f"error: {message} (see `{where} --help`)", 2) from None
    except _click_errors("Abort"):
        raise _fail("aborted", 130) from None
    except _click_errors("ClickException") as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        raise _fail(f"error: {message}", getattr(exc, "exit_code", 1) or 1) from None
    except ValidationError as exc:
        raise _fail(f"error: {settings_error(exc)}", 2) from None
    except _known_errors() as exc:
        raise _fail(f"error: {exc}", 2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except OSError as exc:
        if _debug():
            raise
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        raise _fail(f"error:{where}: {exc.strerror or exc}", 2) from None
    except Exception as exc:
        if _database_unavailable(exc):
            from worker.core.db import database_error

            raise _fail(f"error: {database_error(exc)}", 2) from None
        if _debug():
            raise
        raise _fail(
            f"internal error: {type(exc).__name__}: {exc} "
            "(CLAIMWIRE_LOG_LEVEL=DEBUG shows the traceback)",
            1,
        ) from None
    if isinstance(rv, int) and not isinstance(rv, bool) and rv:
        raise SystemExit(rv)


if __name__ == "__main__":
    main()
