"""Log every HTTP request claimwire makes, as the client sends it, for the politeness
check of ``bench/frontier_speed.py`` (issue 16: a gap between two requests of one host
shorter than the interval, as the host's server saw them arrive: arrival jitter, or two
starts less than the interval apart?).

With this folder on ``PYTHONPATH`` and ``CW_SEND_LOG`` naming a file, every Python
process that imports claimwire's network code (``claimwire run``, its CPU processes,
the Celery workers of the production topology, ``feeds discover``...) appends to it:

* ``R`` one line per request, at the first write of its request line and headers on
  the socket (``worker.network.netguard.DeadlineStream.write``, where the send gate
  paces it): page fetches, feed polls, robots.txt, each redirect hop; with its slot
  when it was made inside one;
* ``S`` one line per slot the host limiter granted (``LocalHostLimiter.slot``,
  ``RedisHostLimiter.slot``), when it is given back: the concurrency the limiter allowed.

Tab-separated fields (times are ``time.monotonic()``: CLOCK_MONOTONIC, one clock for
every process of the machine, the same as the feed server's ``--request-log``):

    R pid tid host path t_grant t_call t_send t_end gated key planned t_recorded
    S pid tid host key t_grant t_release requests t_asked t_answered t_recorded

``t_grant``: when the limiter's ``slot`` let the request start (``-`` for a request made
outside a slot); ``t_call``: the write called; ``t_send``: the bytes handed to the
socket, after the send gate's wait; ``t_end``: the write returned; ``gated``: 1 when a
send gate paced this write; ``key``: the slot's turn key (``-`` for none); ``planned``:
when the Redis slot's take said the request leaves (0 for none); ``t_asked``,
``t_answered``: the Redis slot's last script call began and returned (0 for the local
limiter); ``t_recorded``: the leave the take recorded in Redis (``cw:host:<h>:sent``, on
Redis's clock, the system clock of this machine, turned into ``time.monotonic()``; 0
for none). No production code
reads this variable: the patches are made here, when the modules are imported.

    .venv/bin/python -m bench.frontier_speed --mode production --hosts 100 --no-bare \\
        --send-log /tmp/send.log --request-log /tmp/requests.log

(``--send-log`` puts this folder on the children's ``PYTHONPATH`` itself, and prints
the report of :func:`bench.frontier_speed.send_report` at the end.)
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")


class SendLog:
    """The process's log file (appended with one ``write`` a line: atomic for lines
    this short with ``O_APPEND``, across processes and threads)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.pid = -1

    def line(self, fields: list[str]) -> None:
        if self.pid != os.getpid():  # a forked child opens its own descriptor
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.pid = os.getpid()
        os.write(self.fd, ("\t".join(fields) + "\n").encode())


_slots = threading.local()  # .stack: the granted slots of this thread, innermost last


def _request_head(buffer: bytes) -> tuple[str, str] | None:
    """(host, path) of a buffer holding a request line and headers, else None."""
    if not buffer.startswith(METHODS):
        return None
    head = bytes(buffer[: buffer.find(b"\r\n\r\n") + 1 or 4096])
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    path = parts[1].decode("latin-1") if len(parts) > 1 else "?"
    host = "?"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            host = value.strip().decode("latin-1")
            break
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host, path


def patch_netguard(module: ModuleType, log: SendLog) -> None:
    cls = module.DeadlineStream
    original = cls.write
    gate_var = module._send_gate

    class _Spy:
        """The inner stream, its write timed (the moment the bytes go to the socket)."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.sent = self.ended = 0.0

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self.sent = time.monotonic()
            try:
                self.inner.write(buffer, timeout)
            finally:
                self.ended = time.monotonic()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    def write(self: Any, buffer: bytes, timeout: float | None = None) -> None:
        head = _request_head(buffer) if buffer else None
        if head is None:
            original(self, buffer, timeout)
            return
        called = time.monotonic()
        gates = gate_var.get()
        gated = bool(gates)
        spy = _Spy(self._inner)
        self._inner = spy
        try:
            original(self, buffer, timeout)
        finally:
            self._inner = spy.inner
            stack = getattr(_slots, "stack", None)
            slot = stack[-1] if stack else None
            if slot is not None:
                slot[4] += 1
            log.line(
                [
                    "R",
                    str(os.getpid()),
                    str(threading.get_native_id()),
                    head[0],
                    head[1],
                    f"{slot[2]:.6f}" if slot else "-",
                    f"{called:.6f}",
                    f"{spy.sent:.6f}",
                    f"{spy.ended:.6f}",
                    "1" if gated else "0",
                    (slot[1] or "-") if slot else "-",
                    f"{slot[3]:.6f}" if slot else "0",
                    f"{slot[7]:.6f}" if slot else "0",
                ]
            )

    cls.write = write


def patch_politeness(module: ModuleType, log: SendLog) -> None:
    from worker.network import netguard

    gate_var = netguard._send_gate
    redis_limiter = module.RedisHostLimiter
    init = redis_limiter.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        script = self._acquire

        def acquire(*a: Any, **k: Any) -> Any:  # when the slot's last script was asked
            asked = time.monotonic()
            try:
                return script(*a, **k)
            finally:
                _slots.asked = (asked, time.monotonic())

        self._acquire = acquire

    redis_limiter.__init__ = __init__

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        @contextmanager
        def slot(self: Any, host: str, key: str | None = None) -> Iterator[None]:
            _slots.asked = None
            with original(self, host, key):
                granted = time.monotonic()
                clock = time.time() - granted  # the system clock (Redis's) on this one
                gates = gate_var.get()
                planned = float(getattr(gates[0], "planned", 0.0)) if gates else 0.0
                own = str(getattr(gates[0], "own", "")) if gates else ""
                asked = getattr(_slots, "asked", None) or (0.0, 0.0)
                # the take's record of the leave (Redis's clock), on time.monotonic()
                recorded = float(own) - clock if own else 0.0
                entry = [host, key, granted, planned, 0, asked[0], asked[1], recorded]
                stack = getattr(_slots, "stack", None)
                if stack is None:
                    stack = _slots.stack = []
                stack.append(entry)
                try:
                    yield
                finally:
                    stack.pop()
                    log.line(
                        [
                            "S",
                            str(os.getpid()),
                            str(threading.get_native_id()),
                            host,
                            key or "-",
                            f"{granted:.6f}",
                            f"{time.monotonic():.6f}",
                            str(entry[4]),
                            f"{asked[0]:.6f}",
                            f"{asked[1]:.6f}",
                            f"{recorded:.6f}",
                        ]
                    )

        return slot

    for name in ("LocalHostLimiter", "RedisHostLimiter"):
        cls = getattr(module, name)
        cls.slot = wrap(cls.slot)


class _Finder(importlib.abc.MetaPathFinder):
    """Patches a module right after it is executed, before anyone uses it."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self.patches = patches

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        patch = self.patches.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install(path: str) -> Callable[[], None]:
    """Log to ``path`` from now on; returns what undoes it (for a test, which patches
    modules imported already)."""
    log = SendLog(path)
    patches: dict[str, Callable[[ModuleType], None]] = {
        "worker.network.netguard": lambda m: patch_netguard(m, log),
        "worker.network.politeness": lambda m: patch_politeness(m, log),
    }
    saved: list[tuple[Any, str, Any]] = []
    for name, patch in list(patches.items()):
        if name in sys.modules:  # imported already (not at startup: in a test)
            module = sys.modules[name]
            for cls in ("DeadlineStream", "LocalHostLimiter", "RedisHostLimiter"):
                if hasattr(module, cls):
                    owner = getattr(module, cls)
                    attr = "write" if cls == "DeadlineStream" else "slot"
                    saved.append((owner, attr, owner.__dict__[attr]))
            patch(module)
            del patches[name]
    finder = _Finder(patches)
    sys.meta_path.insert(0, finder)

    def undo() -> None:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        for owner, attr, original in saved:
            setattr(owner, attr, original)
        if log.pid == os.getpid():
            os.close(log.fd)
            log.pid = -1

    return undo


if os.environ.get("CW_SEND_LOG"):
    install(os.environ["CW_SEND_LOG"])
