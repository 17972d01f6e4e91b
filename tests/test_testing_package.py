"""``worker.testing`` ships with the package and serves the tests and the benchmarks:
it imports without pytest (a dev extra) and without anything from ``tests/`` or
``bench/``, from any directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCKED = ("pytest", "_pytest", "tests", "bench")

CODE = f"""
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("blocked: " + name)
        return None

sys.meta_path.insert(0, Blocked())
import worker.testing
assert not [m for m in sys.modules if m.startswith("worker.testing.")], "eager submodules"
import worker.testing.checks, worker.testing.content, worker.testing.procs, worker.testing.server
from worker.testing.content import serve_site
from worker.testing.server import LocalServer
import urllib.request

server = LocalServer().start()
try:
    feed = serve_site(server)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))  # no proxy
    with opener.open(feed) as resp:
        assert b"<rss" in resp.read()
finally:
    server.stop()
assert server.hits["/feed.xml"] == 1
print("ok")
"""


def test_worker_testing_needs_neither_pytest_nor_the_checkout(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", CODE],
        cwd=tmp_path,  # not the checkout: tests/ and bench/ are not importable from here
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
