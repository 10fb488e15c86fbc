"""The web app in a real browser: Playwright driving Debian's chromium (never a downloaded browser).

Fills the check form and reads the verdict, logs in, adds and removes a
fleet server and a whitelist entry, and saves a screenshot of each page under
test-output/screenshots/ (RDNSGATE_TEST_OUTPUT overrides the folder).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.harness.knot import KnotServer
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess
from tests.harness.web import PASSWORD, set_password, web_process, web_settings

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("RDNSGATE_TEST_OUTPUT", ROOT / "test-output")) / "screenshots"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)"
    ),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, knot: KnotServer, stores: Stores) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("browser")
    process = web_process(workdir, web_settings(knot.nameserver, "check_burst = 50\n", store=stores.url(workdir)))
    process.start()
    assert set_password(process.workdir).returncode == 0
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, app: GatewayProcess) -> Iterator[Page]:
    context = browser.new_context(base_url=f"http://127.0.0.1:{app.web_port}", viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()
    assert not dialogs, f"a script ran: {dialogs}"  # nothing from DNS may ever execute


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login(page: Page) -> None:
    page.goto("/servers")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fservers$"))
    shot(page, "login")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(re.compile(r"/servers$"))


def test_check_form_and_verdict(page: Page) -> None:
    page.goto("/")
    expect(page.locator("input[name=ip]")).to_have_value("127.0.0.1")  # the visitor's own address
    shot(page, "home")
    page.fill("input[name=ip]", "192.0.2.2")
    page.fill("input[name=helo]", "mail.example.org")
    page.click("button:has-text('Check')")
    expect(page).to_have_url(re.compile(r"/check\?ip=192\.0\.2\.2&helo=mail\.example\.org"))
    expect(page.locator("#verdict")).to_contain_text("Fail")
    expect(page.locator("svg.chain")).to_be_visible()
    expect(page.locator("ol.advice")).to_contain_text("PTR")
    shot(page, "check-fail")
    page.fill("input[name=ip]", "192.0.2.1")
    page.click("button:has-text('Check')")
    expect(page.locator("#verdict")).to_contain_text("Pass")
    shot(page, "check-pass")


def test_ptr_with_markup_renders_as_text(page: Page) -> None:
    page.goto("/check?ip=192.0.2.12&helo=%3Cimg%20src%3Dx%20onerror%3Dalert(2)%3E")
    expect(page.locator("table.checks")).to_contain_text("<script>alert(1)</script>.example.org")
    assert page.locator("main script, main img").count() == 0
    shot(page, "check-xss")


def test_login_add_and_remove_a_fleet_server(page: Page, app: GatewayProcess) -> None:
    login(page)
    page.fill("#add-server input[name=ip]", "192.0.2.1")
    page.fill("#add-server input[name=helo]", "mail.example.org")
    page.fill("#add-server input[name=label]", "eu-1")
    page.click("#add-server button")
    row = page.locator("table.servers tr", has_text="192.0.2.1")
    expect(row).to_contain_text("eu-1")
    for _ in range(2):
        assert app.run("fleet", "status").returncode == 0
    page.reload()
    expect(row.locator(".state")).to_have_text("ok")
    shot(page, "servers")
    page.click("text=192.0.2.1")
    expect(page.locator("svg.timeline")).to_be_visible()
    expect(page.locator("h1")).to_contain_text("ok")
    shot(page, "server-detail")
    page.goto("/servers")
    page.click("button[aria-label='Remove 192.0.2.1']")
    expect(page.locator("main")).to_contain_text("No servers are watched yet")


def test_whitelist_add_and_remove(page: Page) -> None:
    login(page)
    page.goto("/whitelist")
    page.fill("#add-whitelist input[name=target]", "198.51.100.0/24")
    page.fill("#add-whitelist input[name=reason]", "partner relay without PTR")
    page.fill("#add-whitelist input[name=ticket]", "HD-42")
    page.click("#add-whitelist button")
    row = page.locator("table.whitelist tr", has_text="198.51.100.0/24")
    expect(row).to_contain_text("HD-42")
    shot(page, "whitelist")
    page.click("button[aria-label='Remove 198.51.100.0/24']")
    expect(page.locator("main")).to_contain_text("The whitelist is empty")
    page.goto("/decisions")
    expect(page.locator("h1")).to_contain_text("Why was this mail refused")
    shot(page, "decisions")
