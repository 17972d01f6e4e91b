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


class Transport(filesystem.Transport):
    Channel = Channel

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # A folder has no host. kombu's virtual transports default to 'localhost', so
        # every connection made from the URL "filesystem://" logged "No hostname was
        # supplied. Reverting to default 'localhost'" (a warning on each embedded run).
        return {"port": self.default_port, "hostname": None}


__all__ = ["Channel", "Transport"]
