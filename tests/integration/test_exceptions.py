"""Self-service exceptions, end to end: a real gateway refuses, its link leads to the page, the sender asks,
the helpdesk grants (in a real browser: Playwright driving Debian's chromium), the same client is accepted,
the exception expires, the client is refused again.  Also `auto`, forged and reused links, the per-IP limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from rdnsgate.policy.exceptions import LinkSigner
from tests.harness.faultdns import FaultResponder
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess, NextHop
from tests.harness.web import PASSWORD, csrf_of, set_password
from tests.harness.webhook import Receiver
from tests.integration.test_browser import CHROMIUM, FLAGS
from tests.integration.test_gateway import NO_PTR, settings, transact

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)"
    ),
]
SECONDS = 10  # how long a granted exception lasts here: long enough to be seen, short for the suite
LINK = re.compile(r"see (http://\S+\?ip=[0-9.]+&t=\S+)")


def serve(tmp_path: Path, responder: FaultResponder, hop: NextHop, store: str, mode: str, hook: str) -> GatewayProcess:
    text = settings(responder.nameserver, hop.url, "strict", store=store)
    extra = (
        '[web]\nlisten = "127.0.0.1:{web_port}"\npublic_url = "http://127.0.0.1:{web_port}"\n'
        f'[exceptions]\nmode = "{mode}"\ndays = {SECONDS / 86400}\nwebhook_url = "{hook}"\n'
    )
    process = GatewayProcess(
        tmp_path, text.replace("[storage]", extra + "[storage]"), service=("serve",),
        ready=(" ready: profile", "Uvicorn running on", "monitor ready"),
    )  # fmt: skip
    return process.start()


@pytest.fixture
def hop() -> Iterator[NextHop]:
    started = NextHop().start()
    yield started
    started.stop()


@pytest.fixture
def hook() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


def test_refused_link_request_granted_accepted_expired_refused(
    tmp_path: Path, _responder: FaultResponder, hop: NextHop, stores: Stores, hook: Receiver
) -> None:
    gateway = serve(tmp_path, _responder, hop, stores.url(tmp_path), "approve", hook.url)
    try:
        assert set_password(gateway.workdir).returncode == 0
        refused = transact(gateway, source=NO_PTR)
        assert refused.code == 550
        link = LINK.search(refused.text)
        assert link, refused.text
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                sender = browser.new_page()
                sender.goto(link.group(1))
                expect(sender.locator("#verdict")).to_contain_text("Fail")
                expect(sender.locator("#exception")).to_contain_text("iprev check failed")
                sender.fill("input[name=message]", "postmaster of example.org; PTR fix ordered")
                sender.click("#exception-form button")
                expect(sender.locator("#exception-state")).to_contain_text("Asked")
                # the same link cannot ask twice
                sender.goto(link.group(1))
                expect(sender.locator("#exception")).to_contain_text("used already")

                helpdesk = browser.new_page()
                helpdesk.goto(f"http://127.0.0.1:{gateway.web_port}/login")
                helpdesk.fill("input[name=username]", "admin")
                helpdesk.fill("input[name=password]", PASSWORD)
                helpdesk.click("button[type=submit]")
                helpdesk.goto(f"http://127.0.0.1:{gateway.web_port}/whitelist")
                requests = helpdesk.locator("#exception-requests")
                expect(requests).to_contain_text(NO_PTR)
                expect(requests).to_contain_text("PTR fix ordered")
                helpdesk.click(f"button[aria-label='Grant {NO_PTR}']")
                expect(helpdesk.locator("table.whitelist")).to_contain_text("self-service: iprev fails")
                expect(helpdesk.locator("#whitelist-changes")).to_contain_text("grant")
            finally:
                browser.close()
        granted_at = time.monotonic()
        deadline = granted_at + 10
        while (accepted := transact(gateway, source=NO_PTR)).code != 250:
            assert time.monotonic() < deadline, accepted  # the gateway reloads its whitelist every 0.5 s
            time.sleep(0.3)
        while time.monotonic() < granted_at + SECONDS + 10:
            again = transact(gateway, source=NO_PTR)
            if again.code == 550:
                break
            time.sleep(1)
        assert again.code == 550, "the exception did not expire"
        assert hook.bodies and hook.bodies[0]["event"] == "exception.requested" and hook.bodies[0]["ip"] == NO_PTR
        log = gateway.log()
        assert (
            "exception requested for 127.0.10.2 (iprev failed" in log and "web:admin granted exception request" in log
        )
    finally:
        gateway.stop()


def test_auto_mode_forged_links_and_the_per_ip_limit(
    tmp_path: Path, _responder: FaultResponder, hop: NextHop, stores: Stores, hook: Receiver
) -> None:
    gateway = serve(tmp_path, _responder, hop, stores.url(tmp_path), "auto", "")
    web = f"http://127.0.0.1:{gateway.web_port}"
    try:
        link = LINK.search(transact(gateway, source=NO_PTR).text)
        assert link
        token = link.group(1).split("&t=")[1]
        client = httpx.Client(base_url=web, timeout=20)

        csrf = csrf_of(client.get("/check", params={"ip": NO_PTR, "t": token}).text)  # the form of the valid link

        def ask(ip: str, t: str) -> httpx.Response:
            return client.post("/exception", data={"ip": ip, "t": t, "message": "", "csrf": csrf})

        # a forged token, or the right token for another IP, offers nothing and is refused
        forged = LinkSigner(b"not the key").sign(NO_PTR, "iprev", int(time.time()))
        assert 'id="exception-form"' not in client.get("/check", params={"ip": NO_PTR, "t": forged}).text
        assert ask("127.0.10.3", token).status_code == 403
        assert ask(NO_PTR, forged).status_code == 403
        granted = ask(NO_PTR, token)
        assert granted.status_code == 200 and "Granted" in granted.text, granted.text
        deadline = time.monotonic() + 10
        while transact(gateway, source=NO_PTR).code != 250:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        # one exception per IP within per_ip_days: a new refusal's link offers no second one
        time.sleep(SECONDS + 1)
        second = LINK.search(transact(gateway, source=NO_PTR).text)
        assert second
        page = client.get(second.group(1).replace(web, ""))
        assert "had an exception (or asked for one) in the last 30 days" in page.text, page.text
    finally:
        gateway.stop()
