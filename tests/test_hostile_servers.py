"""Hostile and broken servers, through the real fetch task (and a real Celery worker).

Every case is served by a real local HTTP(S) server and goes through
``tasks.fetching.fetch_article`` exactly as a worker runs it: the robots.txt check, the
host limiter, the guarded HTTP client, the archive, and (for pages that pass) extraction
and dedup after it. Celery runs the tasks eagerly in this process, so retries happen at
once instead of after their backoff; the last test runs a real worker process over Redis
and PostgreSQL with a mixed batch.

Each case ends with the article in a final state and a recorded reason, and the server's
hit counts show what was (not) retried or (not) downloaded.
"""

from __future__ import annotations

import gzip
import shutil
import ssl
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import brotli
import pytest

from tests.conftest import cli_env, need
from worker.testing.server import LocalServer, Reply

LIMIT = 3_000_000
LIMITS = {
    "MAX_RESPONSE_BYTES": str(LIMIT),
    "CONNECT_TIMEOUT": "2",
    "READ_TIMEOUT": "1",
    "TOTAL_TIMEOUT": "2",
    "MAX_REDIRECTS": "5",
    "MAX_ATTEMPTS": "2",
    "EXTRACT_CLAIMS": "false",
}

STORY = (
    "The harbour authority of Porto Velho announced on Tuesday that the old lighthouse will "
    "be restored by local stonemasons before the winter storms arrive. Residents of Zürich "
    "and São Paulo sent letters of support. "
)


def good_page(marker: str = "lighthouse", paragraphs: int = 6) -> bytes:
    body = "".join(f"<p>{STORY} Paragraph {i} about the {marker}.</p>" for i in range(paragraphs))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>The {marker} story</title></head><body><nav><a href='/'>Home</a></nav>"
        f"<article><h1>The {marker} story</h1>{body}</article><footer>Contact us</footer>"
        "</body></html>"
    ).encode()


# ------------------------------------------------------------------ hostile bodies


def endless(chunk: bytes = b"<p>" + b"a" * 65_533 + b"</p>") -> Iterator[bytes]:
    """An endless body (bounded only so that a broken client cannot hang the suite)."""
    for _ in range(100_000):  # 6.5 GB
        yield chunk


def drip(first: bytes, piece: bytes, every: float, for_at_most: float = 60.0) -> Iterator[bytes]:
    yield first
    ends = time.monotonic() + for_at_most
    while time.monotonic() < ends:
        time.sleep(every)
        yield piece


_BOMBS: dict[str, bytes] = {}


def bomb(kind: str) -> bytes:
    """50 MB of zeros compressed (about 50 kB) with ``kind``; made once per run."""
    if kind not in _BOMBS:
        zeros = b"\0" * 50_000_000
        if kind == "gzip":
            _BOMBS[kind] = gzip.compress(zeros, compresslevel=9)
        elif kind == "deflate":
            _BOMBS[kind] = zlib.compress(zeros, 9)
        else:
            _BOMBS[kind] = brotli.compress(zeros, quality=5)
    return _BOMBS[kind]


# ------------------------------------------------------------------------- helpers


@pytest.fixture()
def eager(configure: Any) -> Iterator[Any]:
    """``configure`` plus a migrated SQLite database and eager Celery (follow-ups and
    retries run at once, in this process)."""
    from worker.celery_app import app

    def setup(**overrides: str) -> Any:
        settings = configure(**{**LIMITS, **overrides})
        from worker.core.db import init_db

        init_db()
        app.conf.task_always_eager = True
        return settings

    try:
        yield setup
    finally:
        app.conf.task_always_eager = False


def add_articles(*urls: str, **entry: Any) -> list[int]:
    from schemas.models import Article
    from worker.core.db import unit_of_work
    from worker.network.urls import host_of, url_hash

    ids = []
    with unit_of_work() as s:
        for url in urls:
            a = Article(url=url, url_hash=url_hash(url), host=host_of(url), **entry)
            s.add(a)
            s.flush()
            ids.append(int(a.id or 0))
    return ids


def row(article_id: int) -> dict[str, Any]:
    from schemas.models import Article
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        a = s.get(Article, article_id)
        assert a is not None
        return a.model_dump()


def fetch(url: str, **entry: Any) -> dict[str, Any]:
    """Run the fetch task for a new article at ``url`` (and, eagerly, what follows)."""
    from tasks.articles import fetch_article

    (aid,) = add_articles(url, **entry)
    result = fetch_article.apply(args=[aid])
    assert result.state == "SUCCESS", result.traceback
    return row(aid)


def assert_final(a: dict[str, Any], state: str, reason: str) -> None:
    assert a["state"] == state, (a["state"], a["failure_reason"])
    assert a["failure_reason"] and reason in a["failure_reason"], a["failure_reason"]


# ------------------------------------------------------------ permanent: never retried


def test_endless_body_is_cut_at_the_size_limit(eager: Any, server: LocalServer) -> None:
    eager()
    server.routes["/endless"] = Reply(body=endless())
    a = fetch(server.url("/endless"))
    assert_final(a, "failed", f"too large: over {LIMIT} bytes")
    assert a["attempts"] == 0 and a["raw_sha256"] is None
    assert server.hits["/endless"] == 1, "a permanent error is not retried"


def test_declared_content_length_over_the_limit_is_refused_before_reading(
    eager: Any, server: LocalServer
) -> None:
    eager()
    server.routes["/huge"] = Reply(
        raw=[
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 999999999\r\n\r\n",
            b"<p>" * 10_000,
        ]
    )
    a = fetch(server.url("/huge"))
    assert_final(a, "failed", "too large: 999999999 bytes declared")
    assert server.hits["/huge"] == 1


@pytest.mark.parametrize("kind,header", [("gzip", "gzip"), ("deflate", "deflate"), ("br", "br")])
def test_compression_bomb_is_cut_while_decompressing(
    eager: Any, server: LocalServer, kind: str, header: str
) -> None:
    eager()
    body = bomb(kind)
    assert len(body) < LIMIT // 10  # small on the wire, 50 MB once decoded
    server.routes["/bomb"] = Reply(body=body, headers={"Content-Encoding": header})
    a = fetch(server.url("/bomb"))
    assert_final(a, "failed", f"too large: over {LIMIT} bytes")
    assert server.hits["/bomb"] == 1


def test_unknown_content_encoding_is_a_recorded_failure(eager: Any, server: LocalServer) -> None:
    eager()
    server.routes["/zstd"] = Reply(
        body=b"\x28\xb5\x2f\xfd garbage", headers={"Content-Encoding": "zstd"}
    )
    a = fetch(server.url("/zstd"))
    assert_final(a, "failed", "unsupported content-encoding 'zstd'")


def test_redirect_loop(eager: Any, server: LocalServer) -> None:
    eager()
    server.routes["/a"] = Reply(302, headers={"Location": "/b"})
    server.routes["/b"] = Reply(301, headers={"Location": server.url("/a")})
    a = fetch(server.url("/a"))
    assert_final(a, "failed", "redirect loop")
    assert server.hits["/a"] == 1 and server.hits["/b"] == 1


def test_endless_redirect_chain_stops_at_the_cap(eager: Any, server: LocalServer) -> None:
    eager()
    for i in range(20):
        server.routes[f"/r{i}"] = Reply(307, headers={"Location": f"/r{i + 1}"})
    a = fetch(server.url("/r0"))
    assert_final(a, "failed", "more than 5 redirects")
    assert sum(server.hits[f"/r{i}"] for i in range(20)) == 6  # the first request + 5 hops
    assert server.hits["/r6"] == 0


def test_redirects_within_the_cap_are_followed(eager: Any, server: LocalServer) -> None:
    eager()
    for i in range(5):
        server.routes[f"/r{i}"] = Reply(302, headers={"Location": f"/r{i + 1}"})
    server.routes["/r5"] = Reply(body=good_page("redirected"))
    a = fetch(server.url("/r0"))
    assert a["state"] == "processed" and a["final_url"] == server.url("/r5")
    assert "Paragraph 3 about the redirected" in a["text"]


@pytest.mark.parametrize("status", [301, 302, 307])
def test_redirect_without_location_is_a_recorded_failure(
    eager: Any, server: LocalServer, status: int
) -> None:
    """Nothing to follow: the empty body of the redirect must not go on as the page (it
    ended "processed" with "no text extracted")."""
    eager()
    server.routes["/moved"] = Reply(status, b"")
    a = fetch(server.url("/moved"))
    assert_final(a, "failed", f"HTTP {status} redirect without a Location header")
    assert a["raw_sha256"] is None and a["attempts"] == 0
    assert server.hits["/moved"] == 1


@pytest.mark.parametrize("status", [404, 410, 451])
def test_permanent_statuses_are_recorded_not_retried(
    eager: Any, server: LocalServer, status: int
) -> None:
    eager()
    server.routes["/gone"] = Reply(status, b"gone")
    a = fetch(server.url("/gone"))
    assert_final(a, "failed", f"HTTP {status}")
    assert a["http_status"] == status and a["attempts"] == 0
    assert server.hits["/gone"] == 1


@pytest.mark.parametrize(
    "content_type", ["application/pdf", "image/png", "video/mp4", "application/json"]
)
def test_wrong_content_type_is_skipped_with_its_type_and_not_downloaded(
    eager: Any, server: LocalServer, content_type: str
) -> None:
    eager()
    # An endless body: were it downloaded, the article would fail as "too large".
    server.routes["/file"] = Reply(body=endless(), content_type=content_type)
    a = fetch(server.url("/file"))
    assert_final(a, "skipped", f"not HTML: content type {content_type}")
    assert a["content_type"] == content_type and a["raw_sha256"] is None
    assert server.hits["/file"] == 1


def test_plain_text_is_sniffed(eager: Any, server: LocalServer) -> None:
    eager()
    server.routes["/notes.txt"] = Reply(body=b"just some notes\n" * 50, content_type="text/plain")
    server.routes["/page"] = Reply(
        body=good_page("sniffed"), content_type="application/octet-stream"
    )
    notes = fetch(server.url("/notes.txt"))
    assert_final(notes, "skipped", "not HTML: content type text/plain")
    page = fetch(server.url("/page"))
    assert page["state"] == "processed" and "about the sniffed" in page["text"]


# ------------------------------------------------------------- transient: retried


def test_5xx_is_retried_then_quarantined_with_its_reason(eager: Any, server: LocalServer) -> None:
    eager()
    server.routes["/busy"] = Reply(503, b"try later")
    a = fetch(server.url("/busy"))
    assert_final(a, "quarantined", "HTTP 503")
    assert a["attempts"] == 2 and a["failed_state"] == "discovered"
    assert server.hits["/busy"] == 2, "retried up to CLAIMWIRE_MAX_ATTEMPTS"


def test_transient_error_then_success(eager: Any, server: LocalServer) -> None:
    eager()
    calls = iter([Reply(502, b"bad gateway"), Reply(body=good_page("second try"))])
    server.routes["/flaky"] = lambda _h: next(calls)
    a = fetch(server.url("/flaky"))
    assert a["state"] == "processed" and a["attempts"] == 1
    assert a["failure_reason"] is None and "about the second try" in a["text"]


def test_slow_drip_body_hits_the_total_deadline(eager: Any, server: LocalServer) -> None:
    eager()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n<html>"
    # Each byte arrives well within the 1 s read timeout; only a total deadline stops it.
    server.routes["/drip"] = lambda _h: Reply(raw=drip(head, b"<p>x</p>", every=0.2))
    a = fetch(server.url("/drip"))
    assert_final(a, "quarantined", "too slow: over 2s in total")
    assert server.hits["/drip"] == 2


def test_slow_drip_headers_hit_the_total_deadline(eager: Any, server: LocalServer) -> None:
    eager()
    server.routes["/drip-headers"] = lambda _h: Reply(
        raw=drip(b"HTTP/1.1 200 OK\r\n", b"X-Filler: a\r\n", every=0.2)
    )
    a = fetch(server.url("/drip-headers"))
    assert_final(a, "quarantined", "too slow: over 2s in total")


def test_silent_server_hits_the_read_timeout(eager: Any, server: LocalServer) -> None:
    eager(TOTAL_TIMEOUT="10")
    server.routes["/silent"] = Reply(body=good_page(), delay=2.5)
    a = fetch(server.url("/silent"))
    assert_final(a, "quarantined", "timeout: ReadTimeout")


def test_broken_http_is_a_bounded_network_error(eager: Any, server: LocalServer) -> None:
    eager()
    server.routes["/garbage"] = Reply(raw=[b"\x00\x01 this is not HTTP at all\r\n\r\n"])
    a = fetch(server.url("/garbage"))
    assert_final(a, "quarantined", "network error")


# ------------------------------------------------------------ odd but usable pages


def test_invalid_utf8_is_decoded_with_replacements(eager: Any, server: LocalServer) -> None:
    eager()
    body = good_page("mangled").replace(b"Paragraph 2", b"Paragraph \xff\xfe\xc3\x28 2")
    server.routes["/bad-utf8"] = Reply(body=body, content_type="text/html; charset=utf-8")
    a = fetch(server.url("/bad-utf8"))
    assert a["state"] == "processed" and a["failure_reason"] is None
    assert a["encoding"] == "utf-8"
    assert "Zürich" in a["text"] and "São Paulo" in a["text"]  # valid UTF-8 stays right
    assert "\ufffd" in a["text"] and "Ã" not in a["text"]  # bad bytes replaced, no mojibake


def test_one_megabyte_single_line_page(eager: Any, server: LocalServer) -> None:
    eager()
    sentence = "The council met again and discussed the harbour budget at length. "
    body = (
        "<html><head><title>One line</title></head><body><article><p>"
        + sentence * (1_000_000 // len(sentence))
        + "</p><p>The end of the very long line.</p></article></body></html>"
    ).encode()
    assert len(body) > 1_000_000 and b"\n" not in body
    server.routes["/one-line"] = Reply(body=body)
    a = fetch(server.url("/one-line"))
    assert a["state"] == "processed", a["failure_reason"]
    assert a["text"].count("discussed the harbour budget") > 10_000
    assert a["raw_sha256"] is not None


def test_page_without_text_records_a_reason(eager: Any, server: LocalServer) -> None:
    eager()
    server.routes["/app"] = Reply(
        body=b"<html><body><div id=root></div><script>render()</script></body></html>"
    )
    a = fetch(server.url("/app"))
    assert a["state"] == "processed" and a["text"] == ""
    assert a["failure_reason"] and "no text extracted" in a["failure_reason"]


def test_page_without_text_falls_back_to_the_feed_entry(eager: Any, server: LocalServer) -> None:
    eager()
    server.routes["/paywall"] = Reply(body=b"<html><body><p>Subscribe to read.</p></body></html>")
    summary = "<p>" + STORY * 2 + "</p>"
    a = fetch(server.url("/paywall"), entry_summary=summary)
    assert a["state"] == "processed" and a["text_source"] == "feed_summary"
    assert "old lighthouse" in a["text"] and a["failure_reason"] is None


# ----------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    need(shutil.which("openssl") is not None, "the openssl command")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
            "-subj", "/CN=127.0.0.2",
            "-addext", "subjectAltName=IP:127.0.0.1,IP:127.0.0.2",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return ctx


def test_self_signed_certificate_is_a_clear_permanent_failure(
    eager: Any, self_signed: ssl.SSLContext
) -> None:
    eager()
    tls = LocalServer(ssl_context=self_signed).start()
    try:
        tls.routes["/secure"] = Reply(body=good_page())
        a = fetch(tls.url("/secure"))
    finally:
        tls.stop()
    assert tls.url("/secure").startswith("https://")
    assert_final(a, "failed", "TLS error: certificate verify failed")
    assert "self-signed" in a["failure_reason"] or "self signed" in a["failure_reason"]
    assert a["attempts"] == 0


# ------------------------------------------------------------------- SSRF guard


@pytest.fixture()
def guarded(eager: Any) -> Iterator[tuple[LocalServer, LocalServer]]:
    """The guard on, with one exception: 127.0.0.2 (the "public" site). 127.0.0.1 stands
    for the private network behind it, with a server that must never be reached."""
    eager(ALLOW_PRIVATE_NETWORKS="false", ALLOWED_PRIVATE_ADDRESSES="127.0.0.2")
    public = LocalServer("127.0.0.2").start()
    private = LocalServer("127.0.0.1").start()
    private.routes["/secret"] = Reply(body=good_page("internal secret"))
    try:
        yield public, private
    finally:
        public.stop()
        private.stop()


def test_guard_allows_the_listed_address(guarded: tuple[LocalServer, LocalServer]) -> None:
    public, _ = guarded
    public.routes["/story"] = Reply(body=good_page("public"))
    a = fetch(public.url("/story"))
    assert a["state"] == "processed" and "about the public" in a["text"]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",
        "http://[::1]:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://2130706433:{port}/secret",
        "http://0.0.0.0:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/admin",
        "http://192.168.1.1/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ],
)
def test_redirect_to_a_private_address_is_refused(
    guarded: tuple[LocalServer, LocalServer], target: str
) -> None:
    public, private = guarded
    public.routes["/go"] = Reply(302, headers={"Location": target.format(port=private.port)})
    a = fetch(public.url("/go"))
    assert_final(a, "failed", "blocked address")
    assert a["attempts"] == 0 and public.hits["/go"] == 1
    assert private.hits["/secret"] == 0, "the private server was reached"


def test_direct_private_url_is_refused(guarded: tuple[LocalServer, LocalServer]) -> None:
    _, private = guarded
    a = fetch(private.url("/secret"))
    assert_final(a, "failed", "blocked address")
    assert private.hits["/secret"] == 0 and private.hits["/robots.txt"] == 0


def test_guard_setting_rejects_malformed_entries() -> None:
    from worker.core.settings import Settings

    with pytest.raises(ValueError, match="not-an-ip"):
        Settings(allowed_private_addresses="127.0.0.2, not-an-ip")
    s = Settings(allowed_private_addresses=" 127.0.0.2 , 10.9.0.0/16")
    assert s.allowed_private_addresses == "127.0.0.2 , 10.9.0.0/16"


# ------------------------------------------- a real worker over a mixed batch


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(900)
def test_real_worker_survives_a_mixed_batch(
    configure: Any,
    pg_url: str,
    redis_url: str,
    tmp_path: Path,
    self_signed: ssl.SSLContext,
) -> None:
    """One Celery worker process (threads, -Q io,cpu) over Redis and PostgreSQL, the
    guard on except for 127.0.0.2: every hostile page ends failed, skipped or
    quarantined with a reason, every good page is processed, and the same worker then
    processes a page sent after the batch."""
    from tasks.articles import fetch_article
    from tests.support.procs import processes
    from worker.core.db import init_db
    from worker.testing.procs import celery_worker, wait_until, worker_env

    overrides = {
        **LIMITS,
        "ALLOW_PRIVATE_NETWORKS": "false",
        "ALLOWED_PRIVATE_ADDRESSES": "127.0.0.2",
        "DATABASE_URL": pg_url,
        "BROKER_URL": redis_url,
        "HOST_MIN_INTERVAL": "0",
        "HOST_MAX_CONCURRENCY": "16",
    }
    configure(**overrides)
    init_db()
    from worker.celery_app import app

    assert not app.conf.task_always_eager

    def send(aid: int) -> None:
        # An explicit connection: the app's cached producer pool may still point at the
        # broker of an earlier test in this process.
        with app.connection_for_write(redis_url) as conn:
            fetch_article.apply_async(args=[aid], connection=conn)

    site = LocalServer("127.0.0.2").start()
    tls = LocalServer("127.0.0.2", ssl_context=self_signed).start()
    private = LocalServer("127.0.0.1").start()
    private.routes["/secret"] = Reply(body=good_page("internal secret"))
    hostile: dict[str, tuple[str, str]] = {  # path: (final state, reason)
        "/endless": ("failed", "too large"),
        "/gzip-bomb": ("failed", "too large"),
        "/br-bomb": ("failed", "too large"),
        "/loop": ("failed", "redirect loop"),
        "/to-private": ("failed", "blocked address"),
        "/to-metadata": ("failed", "blocked address"),
        "/pdf": ("skipped", "not HTML: content type application/pdf"),
        "/gone": ("failed", "HTTP 410"),
        "/drip": ("quarantined", "too slow"),
        "/busy": ("quarantined", "HTTP 503"),
    }
    site.routes.update(
        {
            "/endless": Reply(body=endless()),
            "/gzip-bomb": Reply(body=bomb("gzip"), headers={"Content-Encoding": "gzip"}),
            "/br-bomb": Reply(body=bomb("br"), headers={"Content-Encoding": "br"}),
            "/loop": Reply(302, headers={"Location": "/loop"}),
            "/to-private": Reply(302, headers={"Location": private.url("/secret")}),
            "/to-metadata": Reply(302, headers={"Location": "http://169.254.169.254/"}),
            "/pdf": Reply(body=endless(), content_type="application/pdf"),
            "/gone": Reply(410),
            "/drip": lambda _h: Reply(
                raw=drip(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", b"<p>x", 0.2)
            ),
            "/busy": Reply(503),
        }
    )
    good = {f"/good-{i}": f"good story {i}" for i in range(6)}
    good["/bad-utf8"] = "mangled"
    good["/big-line"] = "single line"
    for path, marker in good.items():
        site.routes[path] = Reply(body=good_page(marker))
    site.routes["/bad-utf8"] = Reply(
        body=good_page("mangled").replace(b"Paragraph 2", b"Paragraph \xff\xc3\x28 2")
    )
    site.routes["/big-line"] = Reply(body=good_page("single line", paragraphs=2000))
    urls = {site.url(p): p for p in [*hostile, *good]}
    urls[tls.url("/secure")] = "/secure"
    hostile["/secure"] = ("failed", "TLS error")

    env = worker_env(cli_env(tmp_path), pg_url, redis_url, **overrides)
    worker = celery_worker("hostile", env, tmp_path, concurrency=4)
    try:
        with processes(worker):
            ids = dict(zip(add_articles(*urls), urls.values(), strict=True))
            for aid in ids:
                send(aid)

            def settled() -> bool:
                return all(
                    row(aid)["state"] in ("processed", "failed", "skipped", "quarantined")
                    for aid in ids
                )

            wait_until(settled, 600, 1, "every article of the batch in a final state")
            rows = {path: row(aid) for aid, path in ids.items()}
            for path, (state, reason) in hostile.items():
                assert_final(rows[path], state, reason)
            for path, marker in good.items():
                assert rows[path]["state"] == "processed", (path, rows[path]["failure_reason"])
                assert f"about the {marker}" in rows[path]["text"]
            assert private.hits["/secret"] == 0

            # The same worker process is still alive and keeps working.
            pid = worker.pid
            site.routes["/after"] = Reply(body=good_page("after the storm"))
            (late,) = add_articles(site.url("/after"))
            send(late)
            wait_until(lambda: row(late)["state"] == "processed", 60, 0.5, "the late page")
            assert worker.alive() and worker.pid == pid
    finally:
        site.stop()
        tls.stop()
        private.stop()
