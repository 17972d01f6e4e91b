"""The CPU of a poll's host slot and its request: this checkout's Redis limiter against
another checkout's (``--other SRC``, e.g. a ``git archive main`` folder), interleaved
in one process.

Usage, from the repository root::

    .venv/bin/python -m bench.poll_slot --other /tmp/main-src [--requests 2000 --rounds 6]

Each round makes ``--requests`` conditional GETs (304, keep-alive) to a local server in
a process of its own, each inside ``RedisHostLimiter.slot`` of a host of its own (no
request waits for another), once with each limiter, the order alternating from round to
round. Reported per request: this process's CPU (the client: limiter, send gate, httpx)
and the CPU of a private ``redis-server`` (``INFO cpu``), with the Redis scripts it ran
(``INFO commandstats``). The load average is printed with each round.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

from worker.core.settings import get_settings, reset_settings
from worker.network import politeness
from worker.network.http import HttpClient
from worker.testing.procs import RedisServer


def _serve(port_out: Any) -> None:
    from worker.testing.server import LocalServer, Reply

    server = LocalServer()
    server.routes["/feed.xml"] = Reply(304, b"")
    server.start()
    port_out.put(server.port)
    while True:
        time.sleep(3600)


def _load(src: Path) -> ModuleType:
    """The other checkout's ``worker/network/politeness.py`` as a module of its own
    (its imports are this checkout's: settings and the send gate)."""
    spec = importlib.util.spec_from_file_location(
        "other_politeness", src / "worker" / "network" / "politeness.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_politeness"] = module
    spec.loader.exec_module(module)
    return module


def _redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--other", type=Path, required=True, help="another checkout's folder")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="claimwire-pollslot-"))
    srv = RedisServer(work / "redis").start()
    ctx = mp.get_context("fork")
    port_out: Any = ctx.Queue()
    web = ctx.Process(target=_serve, args=(port_out,), daemon=True)
    web.start()
    port = port_out.get(timeout=30)
    try:
        os.environ["CLAIMWIRE_BROKER_URL"] = srv.url()
        os.environ["CLAIMWIRE_ALLOW_PRIVATE_NETWORKS"] = "true"
        reset_settings()
        settings = get_settings()
        other = _load(args.other)
        client = redis.Redis.from_url(srv.url())
        limiters = {
            "this": politeness.RedisHostLimiter(redis.Redis.from_url(srv.url()), settings),
            "other": other.RedisHostLimiter(redis.Redis.from_url(srv.url()), settings),
        }
        http = HttpClient(settings)
        url = f"http://127.0.0.1:{port}/feed.xml"
        headers = {"If-None-Match": '"v1"'}
        http.get(url, headers)  # a connection ready
        cpu: dict[str, list[float]] = {k: [] for k in limiters}
        rcpu: dict[str, list[float]] = {k: [] for k in limiters}
        scripts: dict[str, list[float]] = {k: [] for k in limiters}
        serial = 0
        for rnd in range(args.rounds):
            order = list(limiters) if rnd % 2 == 0 else list(reversed(limiters))
            for name in order:
                limiter = limiters[name]
                client.config_resetstat()
                r0, c0 = _redis_cpu(client), time.process_time()
                for _ in range(args.requests):
                    serial += 1
                    with limiter.slot(f"h{serial}.example", f"feed:{serial}"):
                        resp = http.get(url, headers)
                    assert resp.status == 304
                c1, r1 = time.process_time(), _redis_cpu(client)
                stats = client.info("commandstats")
                ran = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
                cpu[name].append((c1 - c0) / args.requests * 1000)
                rcpu[name].append((r1 - r0) / args.requests * 1000)
                scripts[name].append(ran / args.requests)
                print(
                    f"round {rnd} {name:5s}: client {cpu[name][-1]:.3f} ms, redis "
                    f"{rcpu[name][-1]:.3f} ms, scripts {scripts[name][-1]:.2f} a request; "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        http.close()
        for name in limiters:
            print(
                f"{name:5s}: client median {statistics.median(cpu[name]):.3f} ms "
                f"(min {min(cpu[name]):.3f}), redis median {statistics.median(rcpu[name]):.3f} ms, "
                f"scripts {statistics.median(scripts[name]):.2f} a request"
            )
    finally:
        web.kill()
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
