"""The HTTP client keeps one small connection pool per origin (issue 16): a host's
connection is reused by its next request, also after a 304, when many other hosts were
asked in between, and pools of origins no longer asked are let go."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpcore
import pytest

from worker.network.http import HttpClient, PoolPerOrigin
from worker.testing.server import LocalServer, Reply

_CONNECTIONS = itertools.count()


def _peer_port_server() -> LocalServer:
    """A server whose ``/who`` answers with the number of the connection it came on
    (one handler serves every request of one connection)."""
    srv = LocalServer()

    def who(handler: BaseHTTPRequestHandler) -> Reply:
        number = handler.__dict__.setdefault("connection_number", next(_CONNECTIONS))
        return Reply(200, str(number).encode(), content_type="text/plain")

    srv.routes["/who"] = who
    srv.routes["/feed.xml"] = Reply(200, b"<rss/>", headers={"ETag": '"v1"'})
    return srv.start()


@pytest.fixture()
def servers() -> Iterator[list[LocalServer]]:
    started = [_peer_port_server() for _ in range(24)]
    yield started
    stopping = [threading.Thread(target=srv.stop) for srv in started]  # 0.5 s each
    for t in stopping:
        t.start()
    for t in stopping:
        t.join()


def test_each_origin_keeps_its_connection_across_requests_to_other_origins(
    configure: Any, servers: list[LocalServer]
) -> None:
    http = HttpClient(configure())
    try:
        first = [http.get(srv.url("/who")).body for srv in servers]
        again = [http.get(srv.url("/who")).body for srv in servers]
        # the same TCP connection, for every origin
        assert again == first
        assert len(set(first)) == len(servers)
        assert len(http._pools) == len(servers)
        # a 304 (a feed that did not change) leaves its connection to the next request
        for srv in servers[:3]:
            assert http.get(srv.url("/feed.xml"), {"If-None-Match": '"v1"'}).status == 304
        assert [http.get(srv.url("/who")).body for srv in servers[:3]] == first[:3]
    finally:
        http.close()
    assert len(http._pools) == 0


def get(pools: PoolPerOrigin, srv: LocalServer) -> bytes:
    url = httpcore.URL(srv.url("/who"))
    response = pools.handle_request(httpcore.Request(b"GET", url, headers=[(b"Host", url.host)]))
    try:
        return b"".join(response.iter_stream())
    finally:
        response.close()


def test_pools_beyond_the_bound_or_idle_too_long_are_let_go(servers: list[LocalServer]) -> None:
    made: list[httpcore.ConnectionPool] = []

    def make() -> httpcore.ConnectionPool:
        made.append(httpcore.ConnectionPool(max_keepalive_connections=1))
        return made[-1]

    pools = PoolPerOrigin(make, keepalive_expiry=60.0, max_origins=3)

    ports = [get(pools, srv) for srv in servers[:5]]
    assert len(pools) == 3  # the least recently used two were dropped (and closed)
    assert all(not p.connections for p in made[:2])
    assert get(pools, servers[4]) == ports[4]  # the most recent origin kept its connection
    assert get(pools, servers[0]) != ports[0]  # a dropped one connects anew

    idle = PoolPerOrigin(make, keepalive_expiry=0.0, max_origins=100)
    for srv in servers[:4]:
        get(idle, srv)
    assert len(idle) == 1  # every pool but the one just used had expired
    pools.close()
    idle.close()
