"""The embedded broker: kombu's filesystem transport, with messages written atomically.

kombu's own ``_put`` creates the message file in the queue folder and then writes it,
and ``_get`` moves away and reads whatever file it lists. Its ``fcntl`` lock does not
keep a consumer from moving a file that a thread of the same process (or another
process) has created but not yet written: the consumer then reads an empty message and
its worker dies on a ``JSONDecodeError``. Here a message is written under a name the
consumer ignores (it only takes ``*.<queue>.msg`` files whose name does not start with
a dot) and renamed into place once complete; ``os.replace`` is atomic within a folder.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport.virtual import Empty
from kombu.utils import json


class Channel(filesystem.Channel):
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

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        """Take the oldest message of ``queue`` by renaming its file into the processed
        folder (same file system: ``os.rename`` is atomic, so of two consumers, the
        `run` process and its CPU worker process, exactly one gets each message; kombu's
        own ``_get`` moves it to the system's temporary folder, a copy when that is
        another file system)."""
        wanted = f"{queue}.msg"
        folder_in = str(self.data_folder_in)
        processed = str(self.processed_folder)
        for filename in sorted(os.listdir(folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
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
        return super().drain_events(connection, timeout=timeout)  # type: ignore[no-untyped-call]


__all__ = ["Channel", "Transport"]
