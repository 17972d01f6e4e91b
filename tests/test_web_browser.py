"""The web view in a real Chromium (Debian's /usr/bin/chromium, driven by Playwright),
against a real `claimwire web` (uvicorn, in a subprocess) over a real SQLite store:
search, a cluster's chart, the article with its highlighted claim, feeds with and
without the token, the live status page, and hostile page content that must run no
script. Every request the browser makes goes to claimwire itself (nothing from a CDN).

Outside CI a missing chromium or Playwright skips these tests; under CI=true they fail
(`.ci/run` installs chromium)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, cli_env, need
from tests.support.webdata import CLAIM, Seeded, seed
from worker.testing.procs import free_port, port_open, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token-0123456789"

pytestmark = pytest.mark.slow


class WebServer:
    """`claimwire web` in a subprocess on a free port."""

    def __init__(self, workdir: Path, token: str | None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        extra = {"WEB_TOKEN": token} if token else {}
        self.env = cli_env(workdir, **extra)
        self.log = workdir / f"web-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WebServer:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "web", "--port", str(self.port)],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: port_open(self.port), 30, 0.2, f"claimwire web on {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _seeded(workdir: Path) -> Seeded:
    from worker.core.db import dispose_engines
    from worker.core.settings import Settings

    settings = Settings(data_dir=workdir / "data", _env_file=None)  # type: ignore[call-arg]
    seeded = seed(settings)
    dispose_engines()
    return seeded


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(os.path.exists(CHROMIUM), f"Debian's chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "the playwright package")
        raise
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, Seeded]]:
    workdir = tmp_path_factory.mktemp("web-token")
    seeded = _seeded(workdir)
    server = WebServer(workdir, TOKEN).start()
    yield server, seeded
    server.stop()


@pytest.fixture(scope="module")
def readonly_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, Seeded]]:
    workdir = tmp_path_factory.mktemp("web-readonly")
    seeded = _seeded(workdir)
    server = WebServer(workdir, None).start()
    yield server, seeded
    server.stop()


class Tab:
    """A page of a fresh browser context (1280x800) that records every request, every
    dialog and every console error."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.base = base
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.set_default_timeout(15_000)

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def xss_markers(self) -> list[str]:
        return list(self.page.evaluate("Object.keys(window).filter(k => k.startsWith('__xss'))"))

    def close(self) -> None:
        outside = [u for u in self.requests if not u.startswith(self.base)]
        self.context.close()
        assert outside == [], f"requests left claimwire: {outside}"


@pytest.fixture()
def tab(browser: Any, site: tuple[WebServer, Seeded]) -> Iterator[Tab]:
    t = Tab(browser, site[0].base)
    yield t
    t.close()


def test_search_open_a_cluster_see_its_chart_then_the_highlighted_claim(
    tab: Tab, site: tuple[WebServer, Seeded]
) -> None:
    _, seeded = site
    page = tab.page
    tab.go("/claims")
    page.fill("input[name=q]", "steelworks")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/claims?q=steelworks")  # empty filters left out of the URL
    results = page.locator("li.claim")
    assert results.count() == 3
    assert CLAIM in page.locator("li.claim mark.content").nth(1).inner_text()
    # the cluster of the first result, with its chart drawn
    page.locator("li.claim a.cluster").first.click()
    page.wait_for_url(f"**/clusters/{seeded.cluster_id}")
    chart = page.locator("svg#spread-chart")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 100
    assert chart.locator("circle.mark").count() == 4
    assert chart.locator("circle.mark.first").count() == 1
    assert chart.locator("circle.mark.reworded").count() == 1
    assert chart.locator("circle.mark.copy").count() == 1
    labels = chart.locator("text.outlet-label").all_text_contents()
    assert labels == seeded.outlets
    # every mark was laid out inside the chart, left to right in time order
    xs = [float(c.get_attribute("cx") or 0) for c in chart.locator("circle.mark").all()]
    assert xs == sorted(xs) and xs[0] < xs[-1]
    # the first repeat's article, scrolled to its claim, highlighted
    page.locator("#repeat-1 a").first.click()
    page.wait_for_url(f"**/articles/{seeded.first_article_id}#claim-{seeded.claim_ids[0]}")
    mark = page.locator(f"mark.claim#claim-{seeded.claim_ids[0]}")
    assert mark.is_visible() and mark.inner_text() == CLAIM
    assert mark.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert page.locator("section.group li").count() == 2  # its duplicate group
    assert tab.errors == []


def test_pages_with_script_payloads_run_no_script(tab: Tab, site: tuple[WebServer, Seeded]) -> None:
    _, seeded = site
    page = tab.page
    for path in (
        f"/articles/{seeded.hostile_article_id}",
        "/claims",
        "/claims?q=harbour",
        "/feeds",
        "/speakers",
        "/clusters",
        "/status",
        "/articles",
    ):
        tab.go(path)
        page.wait_for_load_state("load")
        assert tab.xss_markers() == [], path
    tab.go(f"/articles/{seeded.hostile_article_id}")
    title = page.locator("#article-title").inner_text()
    assert "<script>window.__xss_title = 1</script>" in title  # shown as text
    assert "<script>" in page.locator("#article-text").inner_text()
    assert page.locator("#article-text script, #article-text img").count() == 0
    assert tab.dialogs == []


def test_feeds_need_the_token(
    browser: Any, site: tuple[WebServer, Seeded], readonly_site: tuple[WebServer, Seeded]
) -> None:
    # read-only: no form, and a forged post from the page itself is refused
    ro = Tab(browser, readonly_site[0].base)
    try:
        ro.go("/feeds")
        assert ro.page.locator("form#add-feed").count() == 0
        assert "Read-only" in ro.page.locator("main").inner_text()
        status = ro.page.evaluate(
            """async () => (await fetch('/feeds/add', {method: 'POST',
                 body: new URLSearchParams({url: 'https://example.com/feed'})})).status"""
        )
        assert status == 403
        api = ro.page.evaluate(
            """async () => (await fetch('/api/v1/feeds', {method: 'POST',
                 headers: {'content-type': 'application/json', 'authorization': 'Bearer x'},
                 body: JSON.stringify({urls: ['https://example.com/feed']})})).status"""
        )
        assert api == 403
    finally:
        ro.close()
    # with the token: sign in, add a feed, pause it
    server, _ = site
    tab = Tab(browser, server.base)
    try:
        page = tab.page
        tab.go("/feeds")
        assert page.locator("form#add-feed").count() == 0
        page.click("text=Sign in")
        page.fill("input[name=token]", "not the token")
        page.click("button[type=submit]")
        assert "wrong token" in page.locator("main").inner_text()
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url("**/feeds")
        feed_url = f"http://127.0.0.1:{free_port()}/browser-feed.xml"
        page.fill("form#add-feed input[name=url]", feed_url)
        page.click("form#add-feed button")
        page.wait_for_url("**/feeds")
        assert f"Added {feed_url}" in page.locator(".flash").inner_text()
        row = page.locator("tr", has_text="browser-feed.xml")
        assert row.count() == 1 and "active" in row.inner_text()
        row.locator("button", has_text="Pause").click()
        page.wait_for_url("**/feeds")
        assert "paused" in page.locator("tr", has_text="browser-feed.xml").inner_text()
        # a URL the guard refuses: a clear error page, nothing added
        page.fill("form#add-feed input[name=url]", "file:///etc/passwd")
        page.click("form#add-feed button")
        assert page.locator("#error-message").count() == 1
        assert tab.xss_markers() == []
    finally:
        tab.close()


def test_status_page_refreshes_itself(tab: Tab) -> None:
    page = tab.page
    tab.go("/status")
    assert page.locator("#status-live .tile").count() == 4
    page.wait_for_function("() => document.documentElement.dataset.refreshed", timeout=15_000)
    assert page.locator("#status-live .tile").count() == 4
    assert tab.errors == []


def test_a_long_cluster_pages_and_every_page_fits_a_phone(
    browser: Any, site: tuple[WebServer, Seeded]
) -> None:
    from tests.support.webdata import big_cluster
    from worker.core.db import dispose_engines
    from worker.core.settings import Settings

    server, _ = site
    settings = Settings(data_dir=Path(server.env["CLAIMWIRE_DATA_DIR"]), _env_file=None)  # type: ignore[call-arg]
    cid, _ = big_cluster(settings, 230, 40)
    dispose_engines()
    tab = Tab(browser, server.base)
    page = tab.page
    tab.go(f"/clusters/{cid}")
    rows = page.locator("table.repeats tbody tr")
    assert rows.count() == 100
    assert page.locator("p.count").first.inner_text().startswith("Repeats 1–100 of 232")
    chart = page.locator("svg#spread-chart")
    assert chart.locator("circle.mark").count() > 100
    assert "12 other outlets" in chart.locator("text.outlet-label").all_text_contents()
    # a mark opens the list where its repeats are (the last of one outlet's row)
    chart.locator("circle.mark", has=page.locator("title", has_text="o5.example,")).last.click()
    page.wait_for_url("**start=**")
    number = int(page.locator("table.repeats tbody tr td.num").first.inner_text())
    assert number > 100
    # the next page goes on where the first stopped
    tab.go(f"/clusters/{cid}")
    page.get_by_text("Next 100 repeats").click()
    page.wait_for_url("**cursor=**")
    assert page.locator("table.repeats tbody tr td.num").first.inner_text() == "101"
    assert tab.errors == []
    tab.close()

    phone = Tab(browser, server.base)
    phone.page.set_viewport_size({"width": 390, "height": 800})
    for path in (f"/clusters/{cid}", "/claims?q=steelworks", "/feeds", "/articles", "/speakers"):
        phone.go(path)
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide on a 390px screen"
    # a table is one card per row, each cell named by its column
    phone.go("/feeds")
    cell = phone.page.locator("table.feeds tbody tr").first.locator("td").nth(1)
    assert cell.get_attribute("data-label") == "State"
    shown = cell.evaluate("e => getComputedStyle(e, '::before').content")
    assert "State" in shown
    assert phone.page.locator("table.feeds thead").is_hidden()
    assert phone.errors == []
    phone.close()


def test_long_words_never_widen_a_page_and_right_to_left_text_reads_from_the_right(
    browser: Any, site: tuple[WebServer, Seeded]
) -> None:
    """A word longer than the line (in a feed's title and URL, an article's title and
    text, a speaker's name, a claim) made the claims page 2,300 px wide at 1280 and at
    390; it breaks instead, on every page, at both widths. A claim in Arabic reads from
    the right: its sentence starts at the right edge of its quote, not at the left."""
    from tests.support.webdata import RTL_CLAIM, seed_unruly
    from worker.core.db import dispose_engines
    from worker.core.settings import Settings

    server, _ = site
    settings = Settings(data_dir=Path(server.env["CLAIMWIRE_DATA_DIR"]), _env_file=None)  # type: ignore[call-arg]
    unruly = seed_unruly(settings)
    dispose_engines()
    paths = [
        "/claims",
        "/claims?speaker=Engineer",
        "/clusters",
        f"/clusters/{unruly.cluster_id}",
        f"/clusters/{unruly.rtl_cluster_id}",
        "/articles",
        f"/articles/{unruly.article_id}",
        f"/articles/{unruly.rtl_article_id}",
        "/speakers",
        "/feeds",
        "/status",
    ]
    for width in (1280, 390):
        tab = Tab(browser, server.base)
        tab.page.set_viewport_size({"width": width, "height": 900})
        for path in paths:
            tab.go(path)
            scroll = tab.page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"{path} is {scroll}px wide on a {width}px screen"
        tab.go("/claims?speaker=Rahimi")
        quote = tab.page.locator("li.claim blockquote")
        assert quote.count() == 1 and RTL_CLAIM in quote.inner_text()
        gap = quote.evaluate(
            """q => { const r = document.createRange(); r.selectNodeContents(q);
                      const t = r.getBoundingClientRect(), s = getComputedStyle(q);
                      const b = q.getBoundingClientRect();
                      return {left: t.left - b.left - parseFloat(s.paddingLeft)
                                    - parseFloat(s.borderLeftWidth),
                              right: b.right - t.right - parseFloat(s.paddingRight)
                                     - parseFloat(s.borderRightWidth)}; }"""
        )
        assert gap["right"] < 3 and gap["left"] > 30, (width, gap)
        assert tab.errors == []
        tab.close()
