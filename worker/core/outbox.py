"""Messages sent once their transaction has committed (enqueue-after-commit).

Whoever decides, inside a unit of work, that a task must run next (a step's follow-up,
the fetch of a new article, a sweep's re-send) records it on the session with
:func:`send_after_commit`; :func:`worker.core.db.unit_of_work` delivers what was
recorded once the commit succeeded. A transaction that rolls back sends nothing, and no
message names a row that the worker taking it cannot see yet.

Delivery that fails (the broker is down) is logged and nothing more: the rows say what
is pending, and the recovery sweep (or a feed's lease running out) sends it again.
Messages name their task as it is known on the wire; :mod:`worker.celery_app` sends
them (:func:`set_sender`), its routes deciding their queue. A unit of work's messages
share one producer and, on Redis, one round trip per 500 of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # the commands that only read import neither (worker.core.db.reading)
    from sqlmodel import Session

_KEY = "claimwire.outbox"


class Message(NamedTuple):
    task: str  # a Celery task name, as on the wire
    args: tuple[Any, ...]
    countdown: float | None = None  # seconds the broker holds it back (a host's turn)


def send_after_commit(
    session: Session, task: str, *args: Any, countdown: float | None = None
) -> None:
    """Send ``task(*args)`` once ``session``'s transaction has committed (held back by
    the broker ``countdown`` seconds, when given)."""
    session.info.setdefault(_KEY, []).append(Message(task, args, countdown))


def take(session: Session) -> list[Message]:
    """The messages recorded on ``session``, removed from it."""
    messages: list[Message] = session.info.pop(_KEY, [])
    return messages


def discard(session: Session) -> None:
    """Forget what was recorded (the transaction rolled back)."""
    session.info.pop(_KEY, None)


Sender = Callable[[Sequence[Message]], None]
_sender: Sender | None = None


def set_sender(sender: Sender) -> None:
    """Send messages with ``sender`` (``worker.celery_app`` sets its app's, when it is
    imported: every process that sends messages imports it)."""
    global _sender
    _sender = sender


def deliver(messages: Sequence[Message]) -> bool:
    """Send ``messages``; False (and a warning) if the broker refused any of them."""
    if not messages:
        return True
    if _sender is None:
        raise RuntimeError("no message sender: worker.celery_app was not imported")
    try:
        _sender(messages)
    except Exception as exc:  # noqa: BLE001 (any broker failure: the sweep recovers it)
        import structlog

        structlog.get_logger("claimwire.outbox").warning(
            "enqueue_failed",
            tasks=sorted({m.task for m in messages}),
            count=len(messages),
            error=str(exc),
        )
        return False
    return True


def send_now(task: str, *args: Any) -> bool:
    """Send one message outside any transaction (nothing to wait for)."""
    return deliver([Message(task, args)])
