"""The web sites of the benchmarks: many hosts on loopback addresses, one server process.

``bench/frontier_speed.py`` (pages on 127.78.x.y) and ``bench/poll_cycle.py`` (feeds
and pages on 127.77.x.y) both serve their hosts this way: a minimal HTTP/1.1 server
(asyncio, keep-alive, GET only) listening on ``n_hosts`` loopback addresses and one
port, in a process forked from the benchmark. What each path answers is the
benchmark's own ``respond(path, host, headers)``, built in the server process by
``make_respond`` (so its caches live there); counters go through shared memory that
the benchmark created before the fork.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Respond = Callable[[bytes, bytes, dict[bytes, bytes]], bytes]
"""``respond(path, host, headers)`` -> the whole HTTP response; ``headers`` lower-case."""

ROBOTS = b"User-agent: *\nDisallow: /private/\n"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def host_address(prefix: str, k: int) -> str:
    """Host ``k`` of a benchmark: ``<prefix>.x.y`` (250 hosts per third octet)."""
    return f"{prefix}.{k // 250}.{k % 250 + 1}"


def reply(ctype: bytes, body: bytes, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    """An HTTP/1.1 response with a body (``extra``: more header lines, CRLF-ended)."""
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: "
        + ctype
        + b"\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


NOT_FOUND = reply(b"text/plain", b"no", b"404 Not Found")


def _serve(
    prefix: str,
    n_hosts: int,
    port: int,
    make_respond: Callable[[], Respond],
    on_connection: Callable[[], None] | None,
    ready: Any,
    stop: Any,
) -> None:
    respond = make_respond()

    class Site(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = b""
            if on_connection is not None:
                on_connection()

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while b"\r\n\r\n" in self.buf:
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                parts = lines[0].split(b" ")
                if len(parts) != 3:
                    self.transport.close()
                    return
                headers: dict[bytes, bytes] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                self.transport.write(respond(parts[1], headers.get(b"host", b""), headers))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers = [
            await loop.create_server(Site, host_address(prefix, k), port, backlog=512)
            for k in range(n_hosts)
        ]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for s in servers:
            s.close()

    asyncio.run(main())


@dataclass
class Sites:
    """A running server process; :meth:`stop` ends it."""

    prefix: str
    n_hosts: int
    port: int
    process: Any
    _stop: Any

    def address(self, k: int) -> str:
        return host_address(self.prefix, k)

    def url(self, k: int, path: str) -> str:
        return f"http://{self.address(k)}:{self.port}{path}"

    def stop(self) -> None:
        self._stop.set()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


def start_sites(
    prefix: str,
    n_hosts: int,
    make_respond: Callable[[], Respond],
    on_connection: Callable[[], None] | None = None,
    timeout: float = 60,
) -> Sites:
    """Fork the server process for ``n_hosts`` hosts under ``prefix`` (``127.77``) and
    wait until it listens. Shared counters must be created before (fork context)."""
    from worker.testing.procs import free_port

    ctx = mp.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    port = free_port()
    process = ctx.Process(
        target=_serve,
        args=(prefix, n_hosts, port, make_respond, on_connection, ready, stop),
        daemon=True,
    )
    process.start()
    if not ready.wait(timeout):
        process.kill()
        raise RuntimeError("the benchmark's site server did not start")
    return Sites(prefix, n_hosts, port, process, stop)
