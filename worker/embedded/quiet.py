"""The embedded run's quieter log at INFO: the per-poll and per-step lines left out (the
run prints a progress line instead), and Celery's warning about running as root left
out. Shared by the run, its CPU worker processes and `claimwire reprocess --wait`."""

from __future__ import annotations

import warnings
from collections.abc import MutableMapping
from typing import Any

import structlog

from worker.core.settings import Settings

PER_ITEM_EVENTS = frozenset(
    {"feed_polled", "article_step_done", "poll_held_for_turn", "poll_sent_back_for_turn"}
)


def _drop_per_item_events(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if event.get("event") in PER_ITEM_EVENTS:
        raise structlog.DropEvent
    return event


def quiet_after_setup(**_kwargs: Any) -> None:
    from worker.core.settings import get_settings

    quiet_per_item_events(get_settings())


def quiet_per_item_events(settings: Settings) -> None:
    """In the embedded run at INFO, leave out the per-poll and per-step lines; at any
    level, Celery's warning about root (:func:`hide_root_warning`)."""
    hide_root_warning()
    if settings.log_level.upper() == "DEBUG":
        return
    processors = list(structlog.get_config()["processors"])
    if _drop_per_item_events not in processors:
        structlog.configure(processors=[_drop_per_item_events, *processors])


def hide_root_warning() -> None:
    """Leave out Celery's ``SecurityWarning`` about a worker running as root: nine lines,
    once per process (four times in a `claimwire run` with its CPU processes), telling
    to start the worker with ``--uid``, an option no `claimwire` command has. The
    workers `claimwire` starts in its own processes take JSON only (never pickle, the
    case Celery refuses to run as root), from the broker of the user's own settings.
    The `celery worker` commands of a deployment are not affected."""
    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", category=SecurityWarning)
