"""The web app as a user meets it: `rdnsgate serve web` against knotd, driven over real HTTP.

Public check page and API, the trusted-proxy rules, the rate limit, and the
security of the admin pages: login required, CSRF tokens, cookie flags,
escaping of everything that comes from DNS or from clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from rdnsgate.config import load_settings
from rdnsgate.model import DecisionRecord
from rdnsgate.storage import open_store
from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.knot import KnotServer
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess
from tests.harness.web import PASSWORD, csrf_of, logged_in, set_password, web_process, web_settings

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, knot: KnotServer, stores: Stores) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("web")
    extra = 'trusted_proxies = ["127.0.0.1"]\ncheck_rate = 1.0\ncheck_burst = 3\nlogin_rate = 60\n'
    process = web_process(workdir, web_settings(knot.nameserver, extra, store=stores.url(workdir)))
    process.start()  # writes rdnsgate.toml, which set-password reads
    assert set_password(workdir).returncode == 0
    yield process
    process.stop()


def base(web: GatewayProcess) -> str:
    return f"http://127.0.0.1:{web.web_port}"


def visitor(address: str) -> dict[str, str]:
    """Headers of a request that our trusted proxy (127.0.0.1) forwards for `address`."""
    return {"X-Forwarded-For": f"203.0.113.250, {address}"}


def test_check_page_opens_with_the_visitors_address(web: GatewayProcess) -> None:
    direct = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), base_url=base(web))
    home = direct.get("/")
    assert 'name="ip" value="127.0.0.2"' in home.text
    assert "set-cookie" not in home.headers  # no cookie for visitors of the public page
    # 127.0.0.2 is no trusted proxy: its forwarding headers are ignored
    assert 'value="127.0.0.2"' in direct.get("/", headers={"X-Forwarded-For": "198.51.100.7"}).text
    proxied = httpx.Client(base_url=base(web))
    assert 'value="198.51.100.7"' in proxied.get("/", headers={"X-Forwarded-For": "198.51.100.7"}).text
    forwarded = {"Forwarded": 'for="[2001:db8::5]:4711";proto=https'}
    assert 'value="2001:db8::5"' in proxied.get("/", headers=forwarded).text


def test_check_page_shows_chain_verdict_fix_and_recheck(web: GatewayProcess) -> None:
    client = httpx.Client(base_url=base(web), timeout=20)
    good = client.get("/check", params={"ip": "192.0.2.1", "helo": "mail.example.org"}, headers=visitor("198.51.100.1"))
    assert good.status_code == 200
    assert 'class="verdict pass"' in good.text and "mail.example.org" in good.text
    assert '<svg class="chain"' in good.text and 'href="/check?ip=192.0.2.1&amp;helo=mail.example.org"' in good.text
    bad = client.get("/check", params={"ip": "192.0.2.2"}, headers=visitor("198.51.100.2"))
    assert 'class="verdict fail"' in bad.text
    assert "How to fix it" in bad.text and "Check again after" in bad.text
    assert "501 5.7.25 PTR Records mismatch" in bad.text  # the classic profile's answer


def test_api_answers_what_the_cli_prints(web: GatewayProcess, knot: KnotServer) -> None:
    reply = httpx.get(
        f"{base(web)}/api/v1/check",
        params={"ip": "192.0.2.5", "helo": "other.example.org"},
        headers=visitor("198.51.100.3"),
        timeout=20,
    )
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "rdnsgate",
            "check",
            "192.0.2.5",
            "--helo",
            "other.example.org",
            "--json",
            "--nameserver",
            knot.nameserver,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    api, printed = reply.json(), json.loads(cli.stdout)
    for data in (api, printed):
        data.pop("checked_at")
        data.pop("recheck", None)
        data.pop("advice")
    assert api == printed


def test_bad_input_is_a_clear_error(web: GatewayProcess) -> None:
    client = httpx.Client(base_url=base(web), timeout=20)
    page = client.get("/check", params={"ip": "not-an-ip"}, headers=visitor("198.51.100.4"))
    assert page.status_code == 400 and "is not an IP address" in page.text
    api = client.get("/api/v1/check", params={"ip": "999.1.1.1"}, headers=visitor("198.51.100.4"))
    assert api.status_code == 400 and "is not an IP address" in api.json()["detail"]
    assert client.get("/api/v1/check").status_code == 422
    assert client.get("/api/v1/check", params={"ip": "1" * 200}).status_code == 422


def test_dns_data_and_input_are_escaped(web: GatewayProcess) -> None:
    page = httpx.get(
        f"{base(web)}/check",
        params={"ip": "192.0.2.12", "helo": XSS, "sender": f"a@{XSS}"},
        headers=visitor("198.51.100.5"),
        timeout=20,
    )
    assert page.status_code == 200
    assert "<script" not in page.text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.example.org" in page.text  # the PTR name, as text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script" not in policy  # no script may run, not even ours
    assert page.headers["x-content-type-options"] == "nosniff"


def test_rate_limit_of_anonymous_checks(web: GatewayProcess) -> None:
    client = httpx.Client(base_url=base(web), timeout=20)
    who = visitor("198.51.100.66")
    codes = [client.get("/check", params={"ip": "192.0.2.1"}, headers=who).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    limited = client.get("/check", params={"ip": "192.0.2.1"}, headers=who)
    assert limited.status_code == 429 and "Too many checks" in limited.text
    api = client.get("/api/v1/check", params={"ip": "192.0.2.1"}, headers=who)
    assert api.status_code == 429 and int(api.headers["Retry-After"]) >= 1
    # the form itself never costs a lookup, another visitor has its own allowance, admins have none
    assert client.get("/", headers=who).status_code == 200
    assert client.get("/check", params={"ip": "192.0.2.1"}, headers=visitor("198.51.100.67")).status_code == 200
    admin = logged_in(base(web), headers=who)
    assert all(admin.get("/check", params={"ip": "192.0.2.1"}).status_code == 200 for _ in range(5))
    metrics = httpx.get(f"{base(web)}/metrics").text
    assert 'rdnsgate_web_checks_total{outcome="rate_limited",page="check"}' in metrics


def test_admin_pages_need_a_login(web: GatewayProcess) -> None:
    client = httpx.Client(base_url=base(web), timeout=20)
    for path in ("/servers", "/whitelist", "/decisions", "/servers/192.0.2.1"):
        reply = client.get(path)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/login?next="), path
    token = csrf_of(client.get("/login").text)  # a CSRF token alone does not make an admin
    for path in ("/servers", "/whitelist", "/whitelist/1/remove", "/servers/192.0.2.1/remove"):
        assert client.post(path, data={"csrf": token, "ip": "192.0.2.1"}).status_code == 403, path


def test_login_cookie_flags_and_wrong_passwords(web: GatewayProcess) -> None:
    client = httpx.Client(base_url=base(web), timeout=20)
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"username": "admin", "password": "nope", "csrf": token})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    unknown = client.post("/login", data={"username": "root", "password": PASSWORD, "csrf": token})
    assert unknown.status_code == 401
    no_token = httpx.post(f"{base(web)}/login", data={"username": "admin", "password": PASSWORD})
    assert no_token.status_code == 403
    good = client.post(
        "/login", data={"username": "admin", "password": PASSWORD, "csrf": token, "next": "//evil.example/"}
    )
    assert good.status_code == 303 and good.headers["location"] == "/servers"  # never an open redirect
    cookie = good.headers["set-cookie"].lower()
    assert cookie.startswith("rdnsgate_session=") and "httponly" in cookie and "samesite=lax" in cookie
    assert "path=/" in cookie and "max-age=43200" in cookie and "secure" not in cookie
    assert client.get("/servers").status_code == 200


def test_csrf_is_required_on_every_form(web: GatewayProcess) -> None:
    admin = logged_in(base(web))
    form = {"target": "198.51.100.128/25", "reason": "partner relay", "ticket": "HD-9", "expires": "30d"}
    assert admin.post("/whitelist", data=form).status_code == 403
    assert admin.post("/whitelist", data={**form, "csrf": "forged"}).status_code == 403
    other = logged_in(base(web))  # a token of another session is no good either
    assert admin.post("/whitelist", data={**form, "csrf": csrf_of(other.get("/whitelist").text)}).status_code == 403
    assert "198.51.100.128/25" not in admin.get("/whitelist").text
    assert admin.post("/logout", data={}).status_code == 403


def test_whitelist_add_and_remove(web: GatewayProcess) -> None:
    admin = logged_in(base(web))
    token = csrf_of(admin.get("/whitelist").text)
    bad = admin.post("/whitelist", data={"target": "no such thing!", "reason": "x", "csrf": token})
    assert bad.status_code == 400 and "error" in bad.text
    added = admin.post(
        "/whitelist",
        data={"target": "198.51.100.77", "reason": f"partner {XSS}", "ticket": "HD-1", "expires": "30d", "csrf": token},
    )
    assert added.status_code == 303
    page = admin.get("/whitelist").text
    assert "198.51.100.77/32" in page and "&lt;script&gt;" in page and "<script" not in page
    listed = web.run("whitelist", "list", "--json")
    entry = next(item for item in json.loads(listed.stdout) if item["value"] == "198.51.100.77/32")
    assert entry["ticket"] == "HD-1" and entry["expires_at"] and entry["changed_by"] == "web:admin"
    assert admin.post(f"/whitelist/{entry['id']}/remove", data={"csrf": token}).status_code == 303
    entries, _, changes = admin.get("/whitelist").text.partition('id="whitelist-changes"')
    assert "198.51.100.77" not in entries
    # who did what, and when: both changes, newest first
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>(\w+)</td><td>198\.51\.100\.77/32</td>", changes)
    assert [(who, what) for _at, who, what in rows[:2]] == [("web:admin", "remove"), ("web:admin", "add")], changes


def test_decisions_are_searchable_and_explained(web: GatewayProcess) -> None:
    record = DecisionRecord(
        at=datetime.now(UTC),
        session="s1",
        client_ip="192.0.2.2",
        ptr=None,
        helo=XSS,
        sender="bob@example.org",
        recipients=("alice@example.net",),
        profile="classic",
        action="reject",
        stage="connect",
        reply="501 5.7.25 PTR Records mismatch",
        checks={"iprev": {"result": "permerror", "reason": "no-ptr", "detail": "no PTR record for 192.0.2.2"}},
    )

    async def seed() -> None:
        store = await open_store(load_settings(web.workdir / "rdnsgate.toml").storage)
        await store.decisions_add([record])
        await store.close()

    asyncio.run(seed())
    admin = logged_in(base(web))
    found = admin.get("/decisions", params={"ip": "192.0.2.2", "since": "1h"}).text
    assert "reject at CONNECT: 501 5.7.25 PTR Records mismatch" in found
    assert "iprev permerror (no-ptr): no PTR record for 192.0.2.2" in found
    assert "&lt;script&gt;" in found and "<script" not in found
    assert "No decisions match" in admin.get("/decisions", params={"ip": "192.0.2.3"}).text
    bad = admin.get("/decisions", params={"since": "yesterday"})
    assert bad.status_code == 400 and "use 45s" in bad.text


def test_servers_page_add_remove_and_history(web: GatewayProcess) -> None:
    admin = logged_in(base(web))
    token = csrf_of(admin.get("/servers").text)
    assert admin.post("/servers", data={"ip": "nope", "csrf": token}).status_code == 400
    form = {"ip": "192.0.2.1", "helo": "mail.example.org", "label": f"eu {XSS}", "csrf": token}
    assert admin.post("/servers", data=form).status_code == 303
    for _ in range(2):
        assert web.run("fleet", "status").returncode == 0
    page = admin.get("/servers").text
    assert "192.0.2.1" in page and "mail.example.org" in page and 'class="state ok"' in page
    assert "<script" not in page
    detail = admin.get("/servers/192.0.2.1").text
    assert '<svg class="timeline"' in detail and 'class="seg ok"' in detail and "unknown → " not in detail
    assert admin.post("/servers/192.0.2.1/remove", data={"csrf": token}).status_code == 303
    assert "No servers are watched yet" in admin.get("/servers").text
    assert admin.get("/servers/192.0.2.1").status_code == 404


def test_new_password_ends_old_sessions(web: GatewayProcess) -> None:
    admin = logged_in(base(web))
    assert set_password(web.workdir, PASSWORD + "!").returncode == 0
    try:
        assert admin.get("/servers").status_code == 303
    finally:
        assert set_password(web.workdir, PASSWORD).returncode == 0
    assert set_password(web.workdir, "short").returncode == 2


def test_health_and_metrics(web: GatewayProcess) -> None:
    assert httpx.get(f"{base(web)}/healthz").json()["status"] == "ok"
    metrics = httpx.get(f"{base(web)}/metrics").text
    for name in (
        "rdnsgate_dns_queries_total",
        "rdnsgate_dns_question_seconds_bucket",
        "rdnsgate_dns_cache_total",
        "rdnsgate_fleet_servers",
        "rdnsgate_decisions_total",
        "rdnsgate_smtp_sessions_active",
    ):
        assert name in metrics, name


def test_secure_cookies_when_configured(tmp_path: Path, knot: KnotServer, stores: Stores) -> None:
    extra = "secure_cookies = true\nsession_hours = 1\n"
    process = web_process(tmp_path, web_settings(knot.nameserver, extra, store=stores.url(tmp_path)))
    process.start()
    assert set_password(tmp_path).returncode == 0
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{process.web_port}")
        form = client.get("/login")
        first = form.headers["set-cookie"]
        assert "; secure" in first.lower()  # so a client on plain HTTP (like this one) does not send it back
        session = first.split(";", 1)[0]
        reply = client.post(
            "/login",
            data={"username": "admin", "password": PASSWORD, "csrf": csrf_of(form.text)},
            headers={"Cookie": session},
        )
        assert reply.status_code == 303
        cookie = reply.headers["set-cookie"].lower()
        assert "; secure" in cookie and "max-age=3600" in cookie and "httponly" in cookie
    finally:
        process.stop()


def test_accept_a_drifted_chain(web: GatewayProcess, knot: KnotServer) -> None:
    ip, rev = "192.0.2.63", "2.0.192.in-addr.arpa"
    knot.update(rev, add=[("63", "PTR", "mta63.example.org.")])
    knot.update("example.org", add=[("mta63", "A", ip), ("mta63b", "A", ip)])
    admin = logged_in(base(web))
    token = csrf_of(admin.get("/servers").text)
    try:
        assert admin.post("/servers", data={"ip": ip, "label": "renamed", "csrf": token}).status_code == 303
        for _ in range(2):
            web.run("fleet", "status")
        refused = web.run("fleet", "accept", ip)
        assert refused.returncode == 2 and "only the chain of a drifted server" in refused.stderr
        knot.update(rev, delete=[("63", "PTR")], add=[("63", "PTR", "mta63b.example.org.")])
        for _ in range(2):
            web.run("fleet", "status")
        page = admin.get(f"/servers/{ip}").text
        assert 'class="state drift"' in page and 'id="accept"' in page
        assert admin.post(f"/servers/{ip}/accept", data={}).status_code == 403  # CSRF here too
        assert admin.post(f"/servers/{ip}/accept", data={"csrf": token}).status_code == 303
        page = admin.get(f"/servers/{ip}").text
        assert 'class="state ok"' in page and 'id="accept"' not in page
        assert "->" not in web.run("fleet", "status").stdout  # the new chain is the good one now
    finally:
        admin.post(f"/servers/{ip}/remove", data={"csrf": token})
        knot.update(rev, delete=[("63", "PTR")])
        knot.update("example.org", delete=[("mta63", "A"), ("mta63b", "A")])


def test_anonymous_checks_at_once_are_capped(tmp_path: Path, faults: FaultResponder, stores: Stores) -> None:
    extra = "max_concurrent_checks = 1\ncheck_burst = 10\n"
    settings = web_settings(faults.nameserver, extra, store=stores.url(tmp_path)).replace(
        "timeout = 0.5\ntries = 2", "timeout = 2.0\ntries = 1"
    )
    process = web_process(tmp_path, settings)
    process.start()
    faults.add("2.2.0.192.in-addr.arpa", "PTR", Fault.TIMEOUT)
    try:
        url = f"http://127.0.0.1:{process.web_port}/api/v1/check"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(httpx.get, url, params={"ip": "192.0.2.2"}, timeout=20)
            deadline = time.monotonic() + 10
            while not faults.asked("2.2.0.192.in-addr.arpa", "PTR"):  # the slow check is waiting for its PTR now
                assert time.monotonic() < deadline
                time.sleep(0.02)
            busy = httpx.get(url, params={"ip": "192.0.2.1"}, timeout=20)
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
            assert slow.result().json()["verdict"] == "temperror"
        assert httpx.get(url, params={"ip": "192.0.2.1"}, timeout=20).status_code == 200  # the slot is free again
    finally:
        process.stop()
