"""bench.poll_cycle's report of where a host's slip enters (issue 16): the server's log
of every request, each request's increment over the interval charged to what came
late, and how late messages started in their threads."""

from __future__ import annotations

import pytest

from bench.poll_cycle import W_OTHER, _what, host_address, host_slip, send_gaps, starts_late


def test_a_requests_log_entry_names_its_feed_or_page() -> None:
    assert _what(b"/f/12.xml") == 12
    assert _what(b"/a/12/3.html") == -13  # a page of feed 12
    assert _what(b"/robots.txt") == W_OTHER
    assert _what(b"/f/x.xml") == W_OTHER


def test_a_hosts_slip_is_the_sum_of_its_increments_charged_to_what_came_late() -> None:
    """Host 0: feed 1 at 0 s, feed 2 on time, then a page of feed 2 0.3 s late, then
    feed 3 (sent back once) 0.2 s late after it; host 1: two polls on time. The slip
    (last − first − one interval a request) is 0.5 s: 0.3 charged to the page, 0.2 to
    the poll sent back; the end is the page's article processed, after the last request."""
    t = 1000.0
    rows = [
        (t + 1.0, 0, 1),
        (t + 2.0, 0, 2),
        (t + 3.3, 0, -1 - 2),
        (t + 4.5, 0, 3),
        (t + 1.5, 1, 5),
        (t + 2.5, 1, 6),
    ]
    got = host_slip(rows, t, back={3: 1}, held={}, articles={2: [(3.3, 6.0)]})
    kinds = got["increments_by_kind"]
    assert kinds["page"][:2] == [1, pytest.approx(0.3)]
    assert kinds["poll sent back"][:2] == [1, pytest.approx(0.2)]
    assert kinds["poll as dispatched"][:2] == [2, 0.0]
    (first, second) = got["ending_last"][:2]
    assert first["host"] == 0 and first["requests"] == 4 and first["pages"] == 1
    assert first["floor"] == 4.0 and first["last"] == 4.5
    assert first["slip"] == pytest.approx(sum(first["slip_by_kind"].values()))
    assert first["slip_by_kind"] == {"page": 0.3, "poll sent back": 0.2}
    assert first["end"] == 6.0 and first["last_is"] == "poll sent back"
    assert second["host"] == 1 and second["slip"] == 0.0
    assert got["busiest"][0]["host"] == 0
    assert got["fetch_to_processed_p50_p90_max"] == [2.7, 2.7, 2.7]


def test_how_late_messages_started_is_counted_by_kind() -> None:
    rows = [
        {"kind": "poll", "late": 0.02, "running": 3},
        {"kind": "poll", "late": 0.5, "running": 16},
        {"kind": "poll", "late": None, "running": 1},
        {"kind": "fetch", "late": 0.05, "running": 2},
    ]
    got = starts_late(rows, concurrency=16)
    assert got["poll"]["started"] == 3 and got["poll"]["with_a_due_time"] == 2
    assert got["poll"]["later_than_0_1s"] == 1
    assert got["poll"]["started_with_every_thread_busy"] == 1
    assert got["poll"]["late_ms_p50_p90_max"] == [500.0, 500.0, 500.0]
    assert got["fetch"]["later_than_0_1s"] == 0


def test_the_send_log_tells_arrival_jitter_from_a_short_gap_at_the_client(tmp_path) -> None:
    """Host 0: feed 1 sent at 10.0 s, feed 2 at 11.0 s (1 s apart at the client) but read
    by the server 0.9 s apart (the first arrived late): arrival jitter. Host 1: a page of
    feed 3 then robots.txt sent 0.95 s apart: a short gap at the client, 0.95 s at the
    server too. Times: the client's on ``time.monotonic()``, the server's on
    ``time.time()``, 1000 s apart."""
    offset = 1000.0
    h0, h1 = host_address(0), host_address(1)
    log = tmp_path / "send.log"

    def r(host: str, path: str, sent: float) -> str:
        return "\t".join(["R", "1", "2", host, path, "-", "0", str(sent), "0", "1", "-", "0"])

    log.write_text(
        "\n".join(
            [
                r(h0, "/f/1.xml", 10.0),
                r(h0, "/f/2.xml", 11.0),
                r(h1, "/a/3/0.html", 20.0),
                r(h1, "/robots.txt", 20.95),
                "S\t1\t2\t" + h0 + "\tfeed:1\t0\t0\t1",
            ]
        )
        + "\n"
    )
    rows = [
        (offset + 10.1, 0, 1),
        (offset + 11.0, 0, 2),
        (offset + 20.0, 1, -1 - 3),
        (offset + 20.95, 1, W_OTHER),
    ]
    got = send_gaps(log, rows, offset, n_hosts=2)
    assert got["requests_sent"] == 4 and got["joined"] == 4
    assert got["client_gaps_under_1s"] == 1
    assert got["client_gap_min"] == pytest.approx(0.95)
    assert got["server_gaps_under_0_99s"] == 2
    assert got["of_which_client_gap_at_least_1s"] == 1  # host 0's: arrival jitter
    assert got["shortest_server_gaps_with_client_gap"] == [[0.9, 1.0], [0.95, 0.95]]
