"""The benchmarks' client-side send log (``bench/send_log``) and its report joined with
the feed server's arrivals (``bench.frontier_speed.send_report``): every request the
client makes is logged with its host's slot, and a short gap at the server is told
apart from two starts of one host less than the interval apart."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.frontier_speed import read_send_log, send_report
from worker.network.http import HttpClient
from worker.network.politeness import LocalHostLimiter
from worker.testing.server import Reply


@pytest.fixture()
def send_log(tmp_path: Path) -> Iterator[Path]:
    module = importlib.import_module("bench.send_log.sitecustomize")
    path = tmp_path / "send.log"
    undo = module.install(str(path))
    try:
        yield path
    finally:
        undo()


def _server_log(server: Any, path: Path) -> None:
    path.write_text(
        "".join(f"127.0.0.1 {p} {at:.6f}\n" for at, p in sorted(server.arrivals)),
    )


def test_every_request_is_logged_with_its_slot_and_joined_with_its_arrival(
    configure: Any, server: Any, send_log: Path, tmp_path: Path
) -> None:
    """A robots.txt request outside any slot and two page requests in the host's slots
    (interval 0.3 s): three ``R`` lines (the slot's grant only on the pages, the send
    gate on the pages), two ``S`` lines of one request each, every request joined with
    its arrival, which comes after its send. The report counts the robots.txt request
    and the first page, sent at once, as two starts less than the interval apart, and
    the two pages as the interval apart."""
    settings = configure(HOST_MIN_INTERVAL=0.3, HOST_MAX_CONCURRENCY=2)
    server.routes["/robots.txt"] = Reply(200, b"User-agent: *\n", content_type="text/plain")
    server.routes["/p/1.html"] = Reply(200, b"<html><body>a</body></html>")
    server.routes["/p/2.html"] = Reply(200, b"<html><body>b</body></html>")
    limiter = LocalHostLimiter(settings, max_wait=5)
    http = HttpClient(settings)
    try:
        http.get(server.url("/robots.txt"))
        for path in ("/p/1.html", "/p/2.html"):
            with limiter.slot("127.0.0.1", f"article:{path}"):
                http.get(server.url(path))
    finally:
        http.close()
    requests_log = tmp_path / "requests.log"
    _server_log(server, requests_log)
    sends, slots, counts = read_send_log(send_log, requests_log)
    assert counts == {"sent": 3, "arrivals": 3, "joined": 3}
    assert [r["path"] for r in sends] == ["/robots.txt", "/p/1.html", "/p/2.html"]
    assert [r["host"] for r in sends] == ["127.0.0.1"] * 3
    assert [r["grant"] is None for r in sends] == [True, False, False]
    assert [r["gated"] for r in sends] == [False, True, True]
    assert [r["key"] for r in sends] == ["-", "article:/p/1.html", "article:/p/2.html"]
    for r in sends:
        assert r["call"] <= r["send"] <= r["end"]
        assert r["arrival"] >= r["send"]
        if r["grant"] is not None:
            assert r["grant"] <= r["send"]
    assert sends[2]["send"] - sends[1]["send"] >= 0.3
    assert [(s["key"], s["requests"]) for s in slots] == [
        ("article:/p/1.html", 1),
        ("article:/p/2.html", 1),
    ]
    report = "\n".join(send_report(send_log, requests_log, interval=0.3, short=0.29))
    assert "3 requests sent by the client (1 outside a slot: robots 1," in report
    assert (
        "two starts of one host less than 0.3 s apart at the client: 1; of which after a "
        "robots.txt request made outside any slot 1" in report
    )
    assert report.endswith("the others (0):")
    assert "slots of one host at once (limiter grants): most 1 (over 2: 0 hosts)" in report


def _line(*fields: object) -> str:
    return "\t".join(str(f) for f in fields) + "\n"


def test_the_report_tells_arrival_jitter_from_a_short_start(tmp_path: Path) -> None:
    """Invented logs of one host: pages 1 and 2 sent 1.0 s apart but the first parsed
    120 ms late (the server saw 0.88 s: jitter); pages 2 and 3 sent 0.5 s apart (a short
    start, the server saw 0.5 s); three slots held at once."""
    send = tmp_path / "send.log"
    req = tmp_path / "requests.log"
    h = "127.78.0.1"
    send.write_text(
        _line("R", 10, 1, h, "/p/1.html", "99.900000", "100.0", "100.0", "100.001", 1, "a:1", 0)
        + _line("R", 11, 2, h, "/p/2.html", "100.900000", "101.0", "101.0", "101.001", 1, "a:2", 0)
        + _line("R", 10, 3, h, "/p/3.html", "101.400000", "101.5", "101.5", "101.501", 1, "a:3", 0)
        + _line("S", 10, 1, h, "a:1", "99.9", "101.6", 1)
        + _line("S", 11, 2, h, "a:2", "100.9", "101.6", 1)
        + _line("S", 10, 3, h, "a:3", "101.4", "101.6", 1)
    )
    req.write_text(f"{h} /p/1.html 100.120\n{h} /p/2.html 101.002\n{h} /p/3.html 101.502\n")
    report = send_report(send, req, interval=1.0, concurrency=2)
    text = "\n".join(report)
    assert "server page gaps under 0.99 s, with what the client did (2):" in text
    jitter = next(line for line in report if "/p/1.html -> /p/2.html" in line)
    assert "server 0.882 s, client starts 1.000 s" in jitter
    assert "the first late by 118.0 ms" in jitter and "arrival jitter" in jitter
    short = next(line for line in report if "/p/2.html -> /p/3.html" in line)
    assert "client starts 0.500 s" in short and "SHORT START at the client" in short
    assert (
        "two starts of one host less than 1 s apart at the client: 1; of which after a "
        "robots.txt request made outside any slot 0 (gap min / p50 / max - s); the others (1):"
        in text
    )
    assert (
        "/p/2.html (page, pid 11, slot) then /p/3.html (page, pid 10, slot) started 0.500 s" in text
    )
    assert "most 3 (over 2: 1 hosts)" in text
