"""The `claimwire` command line: shared pieces (the app, consoles, errors, setup)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console

from worker.core.shown import human_duration as human_duration  # the commands' one format

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


# Piped or redirected output (`claims search | less`, `feeds list > f.txt`) is this
# wide, or `COLUMNS` wide when set (`--json` / `--jsonl` give every field whole). It was
# 240 columns whatever COLUMNS said: a pager on an 80-column terminal wrapped every line.
PIPED_WIDTH = 80


def _console(name: str) -> Console:
    stream = _MaskedStream(name)
    # rich reads COLUMNS itself (no module of ours reads the environment); without it,
    # on a terminal it asks the terminal, and when piped it would take the width of a
    # terminal that stdin happens to be on: a file's width would depend on where the
    # command ran, so piped output without COLUMNS is PIPED_WIDTH
    piped = not stream.isatty()
    # piped, a line of text stays one line (a log, grep, a URL copied whole); only
    # tables are fitted to the width
    console = Console(file=stream, soft_wrap=piped)  # type: ignore[arg-type]
    if piped and console._width is None:  # no COLUMNS: rich left it open
        console.width = PIPED_WIDTH
    return console


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


def _db(*, reading: bool = False) -> Any:
    """Settings with the schema created or upgraded (every database command does this).
    ``reading``: a command that only reads (over :func:`worker.core.db.reading`), which
    logs no event of its own: structlog is not even imported."""
    from worker.core.db import init_db
    from worker.core.logs import configure_logging

    settings = _settings()
    configure_logging(settings, structured=not reading)
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


# --------------------------------------------------------------------------- output


def shorten_start(text: str, width: int) -> str:
    """``text`` on one line in ``width`` cells, cut at its start when too long: a name
    keeps its end ("…Maria Novak", not "Health Mini…"), cut before a word where one is
    near."""
    from rich.cells import cell_len

    text = " ".join(text.split())
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    kept = ""
    for word in reversed(text.split(" ")):  # whole words from the end, while they fit
        longer = f"{word} {kept}" if kept else word
        if cell_len(longer) > width - 1:
            break
        kept = longer
    if not kept:  # one word longer than the room: its end
        kept = text[::-1][: width - 1][::-1]
        while cell_len(kept) > width - 1:
            kept = kept[1:]
    return "…" + kept.lstrip(" ,;:.-")


def shorten_url(url: str, width: int) -> str:
    """A URL on one line in ``width`` cells: whole, or its start (scheme and host) and
    its end (the last part of its path) with ``…`` between, its scheme left out, so
    that feeds of one site stay apart ("feeds.ex…/world/rss.xml", not "https://feeds.e…"
    for all)."""
    from rich.cells import cell_len, set_cell_size

    url = "".join(url.split())
    if cell_len(url) <= width:
        return url
    if width < 12:
        return shorten(url, width)
    # a shortened URL cannot be copied anyway: its scheme gives way to what tells it apart
    url = url.split("://", 1)[-1]
    if cell_len(url) <= width:
        return url
    # the end gets the larger part: feeds of one site differ there ("…/world/rss.xml",
    # "…/business/rss.xml")
    tail = url[-int((width - 1) * 0.6) :]
    head = set_cell_size(url, width - 1 - cell_len(tail))
    return head + "…" + tail


def shorten(text: str, width: int) -> str:
    """``text`` on one line in ``width`` cells: whole, or cut after a word with ``…`` (in
    the middle of a word only when no word boundary is near)."""
    from rich.cells import cell_len, set_cell_size

    text = " ".join(text.split())
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    cut = set_cell_size(text, width - 1)
    space = cut.rfind(" ")
    if space >= max(width * 0.6, 1):
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


FLEX_MIN_DEFAULT = 12
"""Cells a flexible column keeps at least (its whole content when shorter)."""


@dataclass
class Col:
    """A column of :func:`fit_table`. ``flex`` columns hold long text (URLs, errors,
    claims) and share the width left by the others, cut with ``…`` (or wrapped at words
    with ``wrap``); the others are shown whole. When the console is too narrow for every
    column, the ones with the highest ``drop`` are left out first (0: never)."""

    header: str
    flex: bool = False
    drop: int = 0
    wrap: bool = False
    max_width: int | None = None
    justify: Any = "left"
    # the least a flex column is given (its whole content when shorter) before columns
    # with a ``drop`` are left out: the claim of a search is not squeezed to 16 cells
    # to keep the count of outlets
    min_width: int = FLEX_MIN_DEFAULT
    # how a flex column is shortened: "end" (cut after a word), "start" (a name: its
    # end kept), "url" (start and end kept)
    cut: str = "end"


def fit_table(
    console: Console, cols: list[Col], rows: list[list[str]], **table_options: Any
) -> Any:
    """A rich Table of ``rows`` (plain strings, no markup) fitted to ``console``'s width:
    no column cut in the middle of a value; long text shortened at a word with ``…``."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    def natural(i: int) -> int:
        header = cell_len(cols[i].header)
        widest = max((cell_len(" ".join(r[i].split())) for r in rows), default=0)
        wanted = max(header, widest, 1)
        cap = cols[i].max_width
        return max(min(wanted, cap), header) if cap else wanted

    def least(i: int) -> int:
        if not cols[i].flex:
            return natural(i)
        return min(natural(i), max(cols[i].min_width, cell_len(cols[i].header)))

    # a column of long text that is empty in every row (no feed has a last error) says
    # nothing: its room goes to the others
    keep = [i for i in range(len(cols)) if not (cols[i].flex and all(not r[i] for r in rows))]
    if not keep:
        keep = list(range(len(cols)))
    overhead = 3  # a border and a space either side of each cell

    def needed(idx: list[int]) -> int:
        return sum(least(i) for i in idx) + overhead * len(idx) + 1

    width = console.width
    while needed(keep) > width and any(cols[i].drop for i in keep):
        keep.remove(max(keep, key=lambda i: (cols[i].drop, i)))
    widths = {i: natural(i) for i in keep}
    fixed = sum(widths[i] for i in keep if not cols[i].flex) + overhead * len(keep) + 1
    flex = [i for i in keep if cols[i].flex]
    room = width - fixed
    total_natural = sum(widths[i] for i in flex)
    if flex and total_natural > room:
        # each gets its least; the rest of the room goes to the wrapped text first (the
        # table's main content, shown whole), then to the others in proportion to what
        # each wants more
        spare = max(room - sum(least(i) for i in flex), 0)
        for i in flex:
            widths[i] = least(i)
        for group in ([i for i in flex if cols[i].wrap], [i for i in flex if not cols[i].wrap]):
            wants = {i: natural(i) - widths[i] for i in group}
            total_want = sum(wants.values())
            if not total_want:
                continue
            given = min(spare, total_want)
            for i in group:
                widths[i] += given * wants[i] // total_want
            spare -= given
    table = Table(**table_options)
    for i in keep:
        c = cols[i]
        table.add_column(
            c.header,
            justify=c.justify,
            width=widths[i],
            no_wrap=not c.wrap,
            overflow="fold" if c.wrap else "ellipsis",
        )
    for r in rows:
        cells = []
        for i in keep:
            value = r[i] if cols[i].wrap else _CUTS[cols[i].cut](r[i], widths[i])
            cells.append(Text(value))
        table.add_row(*cells)
    return table


_CUTS = {"end": shorten, "start": shorten_start, "url": shorten_url}
