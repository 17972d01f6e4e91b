"""The tests' local HTTP server (worker.testing.server) itself."""

from __future__ import annotations

import socket
import struct
import time
import urllib.request

import pytest

from worker.testing.server import LocalServer, Reply


def test_a_client_reset_prints_no_traceback_and_the_server_goes_on(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A client that connects and resets the connection before its request line (as a
    test's client that gives up does) is not reported as an error of the server; the
    next request is answered."""
    server = LocalServer()
    server.routes["/page"] = Reply(200, b"<html><body>ok</body></html>")
    server.start()
    try:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(b"GET /pa")  # no end of line: the server is reading it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # SO_LINGER 0: a reset, not a clean close
        time.sleep(0.3)
        with urllib.request.urlopen(server.url("/page"), timeout=10) as resp:
            assert resp.status == 200
    finally:
        server.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert "ConnectionResetError" not in err
