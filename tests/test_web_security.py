"""The web view's security model: read-only without a token, the browser's sign-in and
CSRF checks, the host check against DNS rebinding, security headers on every answer,
escaped hostile values, and `claimwire web` refusing to start where it should."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ROOT, cli_env
from tests.support.webdata import Seeded, seed

TOKEN = "sekrit-token-for-the-tests-0123"
BASE = "http://127.0.0.1:8000"


def make_client(configure: Any, **overrides: Any) -> tuple[TestClient, Seeded]:
    from worker.web.webapp import create_app

    settings = configure(**overrides)
    seeded = seed(settings)
    return TestClient(create_app(settings), base_url=BASE, follow_redirects=False), seeded


@pytest.fixture()
def open_client(configure: Any) -> Iterator[tuple[TestClient, Seeded]]:
    client, seeded = make_client(configure, web_token=TOKEN)
    with client:
        yield client, seeded


def sign_in(client: TestClient) -> str:
    """Sign in through the form; returns the CSRF token of the forms shown after."""
    page = client.get("/signin")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce
    resp = client.post("/signin", data={"token": TOKEN, "nonce": nonce.group(1)})
    assert resp.status_code == 303, resp.text
    feeds = client.get("/feeds")
    csrf = re.search(r'name="csrf" value="([^"]+)"', feeds.text)
    assert csrf and csrf.group(1)
    return csrf.group(1)


def test_every_answer_carries_the_security_headers(open_client: Any) -> None:
    client, seeded = open_client
    for path in (
        "/claims",
        f"/articles/{seeded.hostile_article_id}",
        "/api/v1/claims",
        "/static/style.css",
        "/no-such-page",
        "/api/v1/claims?since=junk",
    ):
        resp = client.get(path)
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "same-origin"
        assert resp.headers["x-frame-options"] == "DENY"


def test_pages_have_no_inline_script_or_style_and_nothing_from_elsewhere(open_client: Any) -> None:
    client, seeded = open_client
    for path in (
        "/claims",
        f"/clusters/{seeded.cluster_id}",
        f"/articles/{seeded.first_article_id}",
        "/feeds",
        "/jobs",
        "/status",
        "/speakers",
        "/api/docs",
    ):
        html = client.get(path).text
        for tag in re.findall(r"<script[^>]*>", html):
            assert 'src="/static/' in tag, (path, tag)
        assert "<style" not in html and " style=" not in html, path
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            external = url.startswith(("http:", "https:", "//"))
            # links out to the articles themselves are fine; nothing is loaded from elsewhere
            assert not external or 'rel="noopener noreferrer nofollow"' in html, (path, url)
        for url in re.findall(r'src="([^"]+)"', html):
            assert url.startswith("/"), (path, url)


def test_hostile_values_are_escaped_everywhere(open_client: Any) -> None:
    client, seeded = open_client
    pages = [
        "/claims",
        f"/articles/{seeded.hostile_article_id}",
        "/feeds",
        "/speakers",
        "/clusters",
        "/status",
        f"/claims?q={'<script>'}",
    ]
    for path in pages:
        html = client.get(path).text
        assert "<script>window.__xss" not in html, path
        assert "onerror=" not in html.replace("onerror=&#34;", "").replace("onerror=&quot;", ""), (
            path
        )
        assert "<svg onload" not in html and "<b>Vos</b>" not in html, path
    article = client.get(f"/articles/{seeded.hostile_article_id}").text
    assert "&lt;script&gt;window.__xss_title = 1&lt;/script&gt;" in article
    assert 'href="javascript:' not in article  # the page's canonical URL is not a link


def test_read_only_without_a_token(configure: Any) -> None:
    client, seeded = make_client(configure)
    with client:
        feeds = client.get("/feeds").text
        assert "Read-only" in feeds and 'action="/feeds/add"' not in feeds
        assert "read-only" in client.get("/signin").text
        api = client.post(
            "/api/v1/feeds",
            json={"urls": ["https://example.com/f"]},
            headers={"Authorization": "Bearer anything"},
        )
        assert api.status_code == 403 and "read-only" in api.json()["error"]
        form = client.post("/feeds/add", data={"url": "https://example.com/f", "csrf": ""})
        assert form.status_code == 403 and "read-only" in form.text
        assert client.post("/signin", data={"token": "", "nonce": ""}).status_code == 403
        assert client.get("/api/v1/feeds").json()["items"][0]["id"] == seeded.feed_ids[0]


def test_forms_need_sign_in_and_the_csrf_token(open_client: Any) -> None:
    client, seeded = open_client
    feed = seeded.feed_ids[0]
    # not signed in: no forms shown, and a forged post is refused
    assert 'action="/feeds/add"' not in client.get("/feeds").text
    resp = client.post(f"/feeds/{feed}/pause", data={"csrf": "x"})
    assert resp.status_code == 401 and "sign in" in resp.text
    # a wrong token at sign-in
    page = client.get("/signin")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    wrong = client.post("/signin", data={"token": "not-the-token", "nonce": nonce})
    assert wrong.status_code == 401 and "wrong token" in wrong.text
    # the sign-in form itself needs its nonce cookie (double submit)
    fresh = TestClient(client.app, base_url=BASE, follow_redirects=False)
    assert fresh.post("/signin", data={"token": TOKEN, "nonce": nonce}).status_code == 403
    csrf = sign_in(client)
    cookie = client.cookies.get("claimwire_session")
    assert cookie
    # signed in, but without or with a wrong CSRF token
    assert client.post(f"/feeds/{feed}/pause", data={}).status_code == 403
    # one hex digit changed (a different digit whatever the token ends with)
    forged = csrf[:-1] + ("1" if csrf.endswith("0") else "0")
    assert client.post(f"/feeds/{feed}/pause", data={"csrf": forged}).status_code == 403
    # from another site (the browser names it in Origin)
    cross = client.post(
        f"/feeds/{feed}/pause", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "another site" in cross.text
    fetched = client.post(
        f"/feeds/{feed}/pause", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert fetched.status_code == 403
    sandboxed = client.post(f"/feeds/{feed}/pause", data={"csrf": csrf}, headers={"Origin": "null"})
    assert sandboxed.status_code == 403
    ok = client.post(f"/feeds/{feed}/pause", data={"csrf": csrf}, headers={"Origin": BASE})
    assert ok.status_code == 303 and ok.headers["location"] == "/feeds"
    flash = client.get("/feeds")  # the outcome is said once, on the next page
    assert f"Feed {feed} paused" in flash.text
    assert f"Feed {feed} paused" not in client.get("/feeds").text
    assert client.get("/api/v1/feeds").json()["items"][0]["state"] == "paused"
    # another session's CSRF token does not work in this one
    other = TestClient(client.app, base_url=BASE, follow_redirects=False)
    sign_in(other)
    assert other.post(f"/feeds/{feed}/resume", data={"csrf": csrf}).status_code == 403
    # the session cookie is HttpOnly and SameSite=Strict; a forged cookie is refused
    page = client.get("/signin")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    login = TestClient(client.app, base_url=BASE, follow_redirects=False)
    login.get("/signin")
    n = re.search(r'name="nonce" value="([^"]+)"', login.get("/signin").text).group(1)  # type: ignore[union-attr]
    set_cookie = login.post("/signin", data={"token": TOKEN, "nonce": n}).headers.get_list(
        "set-cookie"
    )
    session = next(c for c in set_cookie if c.startswith("claimwire_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session.replace("Strict", "strict")
    forged = TestClient(client.app, base_url=BASE, follow_redirects=False)
    forged.cookies.set("claimwire_session", "1999999999.00.deadbeef")
    assert 'action="/feeds/add"' not in forged.get("/feeds").text


def test_form_bad_input_is_a_4xx_page(open_client: Any, configure: Any) -> None:
    client, _ = open_client
    csrf = sign_in(client)
    resp = client.post("/feeds/add", data={"url": "javascript:alert(1)", "csrf": csrf})
    assert resp.status_code == 400 and "Back" in resp.text
    resp = client.post("/feeds/add", data={"url": "http://127.0.0.1:1/feed", "csrf": csrf})
    # the test settings allow private networks; the guard still refuses what it must
    assert resp.status_code in (303, 400)
    resp = client.post("/jobs/start", data={"kind": "backfill_feed", "csrf": csrf})
    assert resp.status_code == 400 and "which feeds" in resp.text
    resp = client.post("/jobs/99999/cancel", data={"csrf": csrf})
    assert resp.status_code == 404


def test_private_feed_refused_with_the_guard_on(configure: Any) -> None:
    client, _ = make_client(configure, web_token=TOKEN, allow_private_networks="false")
    with client:
        csrf = sign_in(client)
        resp = client.post("/feeds/add", data={"url": "http://127.0.0.1:1/feed", "csrf": csrf})
        assert resp.status_code == 400 and "private or reserved address" in resp.text


def test_empty_filter_fields_mean_no_filter(open_client: Any) -> None:
    client, _ = open_client
    resp = client.get("/api/v1/claims?q=steelworks&speaker=&since=&min_outlets=&kind=")
    assert resp.status_code == 200 and len(resp.json()["items"]) == 3
    assert client.get("/claims?q=&speaker=&min_outlets=").status_code == 200


def test_host_names_other_than_loopback_are_refused(open_client: Any) -> None:
    client, _ = open_client
    assert client.get("/claims", headers={"Host": "localhost:8000"}).status_code == 200
    rebound = client.get("/api/v1/claims", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400 and "unknown host name" in rebound.text


def test_allowed_hosts_setting_and_any_host_off_loopback(configure: Any) -> None:
    from worker.web.webapp import allowed_hosts

    settings = configure(web_token=TOKEN, web_allowed_hosts="claims.example.org")
    assert allowed_hosts(settings, "0.0.0.0") == frozenset({"claims.example.org"})
    settings = configure(web_token=TOKEN)
    assert allowed_hosts(settings, "0.0.0.0") == frozenset()
    assert "localhost" in allowed_hosts(settings, "127.0.0.1")


# --------------------------------------------------------------------------- the CLI


def _run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_web_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    r = _run(["web", "--host", "0.0.0.0", "--port", "1"], cli_env(tmp_path))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == [
        "claimwire: error: --host 0.0.0.0 needs CLAIMWIRE_WEB_TOKEN (else loopback only)"
    ]
    assert len(lines[0]) <= 80
    short = _run(["web"], cli_env(tmp_path, WEB_TOKEN="pw-x9q"))
    assert short.returncode == 2 and "CLAIMWIRE_WEB_TOKEN" in short.stderr
    assert "pw-x9q" not in short.stderr  # a secret's value is never printed


def test_web_says_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = _run(["web", "--port", str(port)], cli_env(tmp_path))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and f"127.0.0.1:{port}" in r.stderr


def test_config_masks_the_web_token(tmp_path: Path) -> None:
    r = _run(["config"], cli_env(tmp_path, WEB_TOKEN=TOKEN))
    assert r.returncode == 0 and TOKEN not in r.stdout and "CLAIMWIRE_WEB_TOKEN" in r.stdout
