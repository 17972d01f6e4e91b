"""The embedded run's quieter log at INFO: the per-poll and per-step lines left out (the
run prints a progress line instead). Shared by the run and its CPU worker processes."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import structlog

from worker.core.settings import Settings

PER_ITEM_EVENTS = frozenset({"feed_polled", "article_step_done"})


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
    """In the embedded run at INFO, leave out the per-poll and per-step lines."""
    if settings.log_level.upper() == "DEBUG":
        return
    processors = list(structlog.get_config()["processors"])
    if _drop_per_item_events not in processors:
        structlog.configure(processors=[_drop_per_item_events, *processors])
