"""The embedded broker: kombu's filesystem transport, with messages written atomically.

kombu's own ``_put`` creates the message file in the queue folder and then writes it,
and ``_get`` moves away and reads whatever file it lists. Its ``fcntl`` lock does not
keep a consumer from moving a file that a thread of the same process (or another
process) has created but not yet written: the consumer then reads an empty message and
its worker dies on a ``JSONDecodeError``. Here a message is written under a name the
consumer ignores (it only takes ``*.<queue>.msg`` files whose name does not start with
a dot) and renamed into place once complete; ``os.replace`` is atomic within a folder.

A consumer takes the oldest message of its queue by renaming the file away (atomic: of
the `run` process and its CPU processes exactly one gets each message). Which files
exist is read from a listing of the folder that a process keeps, by queue, and shares
between its channels (:class:`_Listing`): listing and sorting the whole folder for
every message taken, as kombu's ``_get`` does, was a fifth of the `run` process's CPU
with the 1,000 fetches of a first poll waiting (issue 16). The folder and its file
names are kombu's, unchanged, so a folder written by an older claimwire is read as is.

An exchange's table of bindings (a file in the control folder) is created by kombu's
``_queue_bind`` with ``open("wb")`` and locked only after: a process binding or reading
the same exchange in between (the CPU processes of a run start together and each
declares its queues) finds the file empty and its worker dies on a ``JSONDecodeError``
(the same race with kombu's filesystem transport: treeverse/dvc-task#73). Here every
process binds under one exclusive lock of a file of the control folder and reads a table
under its shared lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any

from celery.worker import state as worker_state
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport.virtual import Empty
from kombu.utils import json

# Seconds a process's listing of the folder is used before a queue found empty in it is
# listed again: messages that other processes wrote meanwhile are seen at most this
# late (the process's own are added to its listing as it writes them), and a consumer
# polling empty queues lists the folder at most this often.
RELIST_AFTER = 0.05


class _Listing:
    """The message files of one queue folder, oldest first, by queue, as this process
    last listed them: a consumer takes the next name of its queue instead of listing and
    sorting the whole folder for each message. A name may be stale (another consumer
    renamed the file away first: its rename fails and the next name is tried); a file
    written by another process since the last listing is found by the next one, which
    comes when a consumed queue's names run out, at most every :data:`RELIST_AFTER`
    seconds (the queues whose names have not run out are left out of it: listing and
    sorting the 1,000 fetches of the `io` queue each time the `schedule` queue was found
    empty was most of its cost). Names this process writes to a queue it consumes are
    added at once. Thread-safe (the channels of one process share it)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._names: dict[str, deque[str]] = {}
        self._consumed: set[str] = set()
        self._listed_at = float("-inf")

    def _relist(self) -> None:
        """List the folder again for the consumed queues whose names ran out (a queue
        with names left keeps them: its new messages are listed once they run out)."""
        empty = [queue for queue in self._consumed if not self._names.get(queue)]
        names = os.listdir(self.folder)
        for queue in empty:
            # "<ms>_<uuid>.<queue>.msg"; a name starting with a dot is being written
            wanted = f"{queue}.msg"
            suffix = "." + wanted
            self._names[queue] = deque(
                sorted(
                    name
                    for name in names
                    if name.endswith(suffix)
                    and not name.startswith(".")
                    and name.partition(".")[2] == wanted
                )
            )
        self._listed_at = monotonic()

    def take(self, queue: str) -> str | None:
        """The next name of ``queue`` (its file may be gone), or None."""
        with self._lock:
            self._consumed.add(queue)
            names = self._names.get(queue)
            if not names:
                if monotonic() - self._listed_at < RELIST_AFTER:
                    return None
                self._relist()
                names = self._names.get(queue)
                if not names:
                    return None
            return names.popleft()

    def added(self, queue: str, name: str) -> None:
        """This process wrote ``name`` to ``queue``: the newest of its queue."""
        with self._lock:
            if queue in self._consumed:
                self._names.setdefault(queue, deque()).append(name)


_listings: dict[str, _Listing] = {}
_listings_lock = threading.Lock()


def _listing(folder: str) -> _Listing:
    """This process's listing of ``folder`` (as the transport options name it)."""
    with _listings_lock:
        found = _listings.get(folder)
        if found is None:
            found = _listings[folder] = _Listing(folder)
        return found


# The file whose lock the bindings of every process of one broker folder take.
BIND_LOCK = ".bindings.lock"


class Channel(filesystem.Channel):
    @contextmanager
    def _bindings_locked(self, how: int) -> Iterator[None]:
        self.control_folder.mkdir(exist_ok=True)
        with open(self.control_folder / BIND_LOCK, "a") as f:
            fcntl.flock(f, how)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _queue_bind(self, exchange: Any, routing_key: Any, pattern: Any, queue: Any) -> None:
        with self._bindings_locked(fcntl.LOCK_EX):
            super()._queue_bind(exchange, routing_key, pattern, queue)  # type: ignore[no-untyped-call]

    def get_table(self, exchange: Any) -> Any:
        with self._bindings_locked(fcntl.LOCK_SH):
            return super().get_table(exchange)  # type: ignore[no-untyped-call]

    # (kombu names the argument `message` in AbstractChannel, `payload` here)
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        folder = str(self.data_folder_out)
        partial = os.path.join(folder, "." + name)  # ".<ms>_..." never matches a queue
        try:
            with open(partial, "wb") as f:
                f.write(json.dumps(payload).encode("utf-8"))  # type: ignore[no-untyped-call]
            os.replace(partial, os.path.join(folder, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc
        if folder == str(self.data_folder_in):
            _listing(folder).added(str(queue), name)

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        """Take the oldest message of ``queue`` by renaming its file into the processed
        folder (same file system: ``os.rename`` is atomic, so of two consumers, the
        `run` process and its CPU worker process, exactly one gets each message; kombu's
        own ``_get`` moves it to the system's temporary folder, a copy when that is
        another file system)."""
        folder_in = str(self.data_folder_in)
        processed = str(self.processed_folder)
        listing = _listing(folder_in)
        while (filename := listing.take(str(queue))) is not None:
            claimed = os.path.join(processed, f"{os.getpid()}-{filename}")
            try:
                os.rename(os.path.join(folder_in, filename), claimed)
            except OSError:
                continue  # another consumer took it
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
                os.remove(claimed)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {claimed!r} from queue.") from exc
            return json.loads(payload.decode("utf-8"))  # type: ignore[no-untyped-call]
        raise Empty()


# Seconds one wait for a message may last. Celery's blocking consumer loop (a
# transport without an event loop, as this one) checks whether the worker should stop
# between two waits of 2 s each: the run's worker, and each CPU process after its
# SIGTERM, took up to that long (2.5-4 s at load 8) to notice that the run was over.
DRAIN_TIMEOUT = 0.25


class Transport(filesystem.Transport):
    Channel = Channel

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # A folder has no host. kombu's virtual transports default to 'localhost', so
        # every connection made from the URL "filesystem://" logged "No hostname was
        # supplied. Reverting to default 'localhost'" (a warning on each embedded run).
        return {"port": self.default_port, "hostname": None}

    def drain_events(self, connection: Any, timeout: Any = None) -> Any:  # type: ignore[override]
        """Wait for a message at most :data:`DRAIN_TIMEOUT` (the messages are looked
        for every ``polling_interval`` all the same)."""
        if timeout is not None:
            timeout = min(timeout, DRAIN_TIMEOUT)
            if worker_state.should_stop is not None:
                # the worker was told to stop: no wait, its loop stops now
                raise TimeoutError()  # socket.timeout, which the loop expects
        return super().drain_events(connection, timeout=timeout)  # type: ignore[no-untyped-call]


__all__ = ["Channel", "Transport"]
