"""A local HTTP server for tests: routes map paths to handlers, so a test can serve
feeds, pages, robots.txt and hostile behaviour (slow drip, endless body, bombs...)."""

from __future__ import annotations

import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _QuietServer(ThreadingHTTPServer):
    """A client that drops its connection before sending a request line (a test's
    client giving up, a reset) is no error of the server's: not printed as a
    traceback in the test run's output."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


@dataclass
class Reply:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"
    delay: float = 0.0  # before the response starts
    # Bytes written as they are, status line and headers included (a server that drips
    # its headers, or breaks HTTP); when set, the fields above are ignored.
    raw: Iterable[bytes] | None = None


Handler = Callable[[BaseHTTPRequestHandler], Reply]


class LocalServer:
    def __init__(self, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Reply | Handler] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), path) of each GET
        self._lock = threading.Lock()
        server = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.arrivals.append((time.monotonic(), self.path))
                    server.hits[self.path] += 1
                    server.requests.append((self.path, dict(self.headers.items())))
                route = server.routes.get(self.path)
                if route is None:
                    route = server.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    reply = Reply(404, b"not found", content_type="text/plain")
                else:
                    reply = route(self) if callable(route) else route
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.raw is not None:
                    try:
                        for chunk in reply.raw:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                        pass
                    self.close_connection = True
                    return
                etag = reply.headers.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    with server._lock:
                        server.hits["304:" + self.path] += 1
                    reply = Reply(304, b"", headers={"ETag": etag})
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    if isinstance(reply.body, bytes):
                        self.send_header("Content-Length", str(len(reply.body)))
                        self.end_headers()
                        self.wfile.write(reply.body)
                    else:
                        self.send_header("Connection", "close")
                        self.end_headers()
                        for chunk in reply.body:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self.httpd = _QuietServer((host, 0), _H)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if ssl_context is not None:  # HTTPS (e.g. with a self-signed certificate)
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
