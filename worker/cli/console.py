"""The `claimwire` command line: shared pieces (the app, consoles, errors, setup)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console

app = typer.Typer(
    help="claimwire: news feeds to clean text, duplicates and attributed claims.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"claimwire {version('claimwire')}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_show_version,
        help="Show the version and exit.",
    ),
) -> None:
    """claimwire: news feeds to clean text, duplicates and attributed claims."""


class _MaskedStream:
    """sys.stdout or sys.stderr (looked up at each write, as rich does), with every
    ``scheme://user:password@`` masked: a feed or article URL carrying credentials is
    never printed with its password, whatever command prints it."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def stream(self) -> Any:
        """The stream itself. While a progress bar is live on a terminal, rich puts a proxy
        in sys.stdout/sys.stderr that prints through the bar's console, which writes here:
        writing to the proxy would go round that loop for ever (``--wait`` hung at full
        CPU). The proxy names the file it stands for, as rich's own consoles read it."""
        stream = getattr(sys, self.name)
        return getattr(stream, "rich_proxied_file", stream)

    def write(self, text: str) -> int:
        from worker.core.settings import mask_secrets

        return int(self.stream.write(mask_secrets(text)))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(self.stream.isatty())

    def fileno(self) -> int:
        return int(self.stream.fileno())

    @property
    def encoding(self) -> str:
        return str(getattr(self.stream, "encoding", None) or "utf-8")


# Piped or redirected output is not squeezed to rich's default 80 columns (a table of
# feeds would be all "…"): tables get the width their content needs, up to this.
PIPED_WIDTH = 240


def _console(name: str) -> Console:
    stream = _MaskedStream(name)
    width = None if stream.isatty() else PIPED_WIDTH
    return Console(file=stream, width=width)  # type: ignore[arg-type]


out = _console("stdout")
err = _console("stderr")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def settings_error(exc: ValidationError) -> str:
    """One line naming the environment variable, the value given and what is wrong
    (the value is left out when the variable's name says it may hold a secret)."""
    if exc.title != "Settings":
        return f"invalid {exc.title}: {exc.errors()[0]['msg']}"
    parts = []
    for e in exc.errors()[:3]:
        name = "CLAIMWIRE_" + str(e["loc"][0]).upper() if e["loc"] else "settings"
        msg = str(e["msg"]).removeprefix("Value error, ")
        value = e.get("input")
        secret = any(w in name for w in ("URL", "PASSWORD", "SECRET", "TOKEN", "KEY"))
        shown = "" if secret or isinstance(value, dict) else f"={str(value)[:60]!r}"
        parts.append(f"{name}{shown}: {msg}")
    return "invalid setting " + "; ".join(parts)


def _settings() -> Any:
    from worker.core.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        raise UserError(settings_error(exc)) from exc


def _db() -> Any:
    """Settings with the schema created or upgraded (every database command does this)."""
    from worker.core.db import init_db
    from worker.core.logs import configure_logging

    settings = _settings()
    configure_logging(settings)
    init_db(settings)
    return settings


def _parse_date(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UserError(f"{name}: not a date: {value!r} (use YYYY-MM-DD or ISO 8601)") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
