"""The embedded broker's folder (worker/embedded/broker.py): a consumer takes its queue's
messages oldest first from a listing its process keeps, instead of listing the whole
folder for each message; what another process writes meanwhile is found by the next
listing, what its own process writes at once, and a folder written by kombu's own
transport (an older claimwire) is read as is."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from kombu import Connection

from worker.embedded import broker


def _options(root: Path) -> dict[str, Any]:
    folders = {k: root / k for k in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    return {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }


def _ours(options: dict[str, Any]) -> Connection:
    """A connection over claimwire's embedded broker (not kombu's own transport)."""
    return Connection(
        "filesystem://", transport="worker.embedded.broker:Transport", transport_options=options
    )


def _channel(conn: Connection) -> broker.Channel:
    channel = conn.default_channel
    assert isinstance(channel, broker.Channel)
    return channel


def test_a_folder_written_by_kombus_own_transport_is_read_in_order(tmp_path: Path) -> None:
    """Messages left in the folder by an older claimwire (kombu's filesystem transport
    wrote them, names and bodies alike) are all taken, oldest first, none twice."""
    options = _options(tmp_path)
    # A queue name of this test only: kombu keeps the exchanges a process declared in
    # memory (shared by every filesystem transport), and an "io" exchange declared by
    # an earlier test's Celery app, with another control folder, would route nothing.
    name = f"io-{tmp_path.name}"
    with Connection("filesystem://", transport_options=options) as old:
        queue = old.SimpleQueue(name)
        for n in range(30):
            queue.put({"n": n})
            time.sleep(0.002)  # the names carry the time in milliseconds
        queue.close()
    with _ours(options) as conn:
        queue = conn.SimpleQueue(name)
        taken = []
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                break
            taken.append(message.payload["n"])
            message.ack()
        queue.close()
    assert taken == list(range(30))
    assert not [name for name in os.listdir(options["data_folder_in"]) if name.endswith(".msg")]


def test_messages_of_other_processes_are_found_by_the_next_listing(tmp_path: Path) -> None:
    """A message written after the process listed the folder (by another process: here
    a file put in place behind the listing's back) is taken once the listing is
    older than RELIST_AFTER; one written by this process is taken at once."""
    options = _options(tmp_path)
    folder = Path(options["data_folder_in"])
    with _ours(options) as conn:
        channel = _channel(conn)
        try:
            channel._get("cpu")
            raise AssertionError("the queue is empty")
        except broker.Empty:
            pass
        other = Connection("filesystem://", transport_options=options)  # kombu's own _put
        other.default_channel._put("cpu", {"from": "another process"})
        other.release()
        assert [n for n in os.listdir(folder) if n.endswith(".cpu.msg")]
        time.sleep(broker.RELIST_AFTER + 0.01)
        assert channel._get("cpu") == {"from": "another process"}
        channel._put("cpu", {"from": "this process"})
        assert channel._get("cpu") == {"from": "this process"}  # no relisting needed


def test_a_stale_name_in_the_listing_is_skipped(tmp_path: Path) -> None:
    """Another consumer took a listed message first: the next one is taken."""
    options = _options(tmp_path)
    folder = Path(options["data_folder_in"])
    with _ours(options) as conn:
        channel = _channel(conn)
        channel._put("io", {"n": 1})
        time.sleep(0.002)
        channel._put("io", {"n": 2})
        listing = broker._listing(options["data_folder_in"])
        first = listing.take("io")  # listed, then taken by "another consumer"
        assert first is not None
        (folder / first).unlink()
        listing._names["io"].appendleft(first)  # still named first in this listing
        assert channel._get("io") == {"n": 2}
        try:
            channel._get("io")
            raise AssertionError("the queue is empty")
        except broker.Empty:
            pass


def test_a_worker_told_to_stop_takes_no_more_messages(tmp_path: Path) -> None:
    """Once the worker is told to stop (`run --until-idle` found nothing pending), a wait
    for messages ends without taking one: the worker's loop sees the stop at once
    instead of after its wait. The message stays in the folder, taken by the next run."""
    from celery.worker import state as worker_state

    options = _options(tmp_path)
    name = f"io-{tmp_path.name}"
    with _ours(options) as conn:
        queue = conn.SimpleQueue(name)
        queue.put({"n": 1})
        worker_state.should_stop = 0
        try:
            try:
                queue.get(block=True, timeout=1.0)
                raise AssertionError("a worker told to stop takes no message")
            except queue.Empty:
                pass
        finally:
            worker_state.should_stop = None
        assert [n for n in os.listdir(options["data_folder_in"]) if n.endswith(".msg")]
        message = queue.get(block=True, timeout=5.0)
        assert message.payload == {"n": 1}
        message.ack()
        queue.close()


def _bind_at_once(options: dict[str, Any], exchange: str, queue: str, start: Any) -> None:
    from kombu import Exchange, Queue

    with _ours(options) as conn:
        channel = conn.default_channel
        start.wait(10)
        Queue(queue, Exchange(exchange, type="direct"), routing_key=queue)(channel).declare()


def test_processes_binding_one_exchange_at_once_lose_no_binding(tmp_path: Path) -> None:
    """The CPU processes of a run start together and each binds its queues: processes
    binding one exchange at the same moment, in a new control folder, all succeed (none
    reads the table file another has created but not yet written) and the table holds
    every binding."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    processes, rounds = 6, 15
    for r in range(rounds):
        root = tmp_path / f"round-{r}"
        root.mkdir()
        options = _options(root)
        exchange = f"bind-{tmp_path.name}-{r}"
        queues = [f"q{i}-{tmp_path.name}-{r}" for i in range(processes)]
        start = ctx.Barrier(processes)
        procs = [
            ctx.Process(target=_bind_at_once, args=(options, exchange, q, start)) for q in queues
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * processes, f"round {r}: a binding failed"
        with _ours(options) as conn:
            table = _channel(conn).get_table(exchange)
        assert sorted(q.queue for q in table) == sorted(queues)
