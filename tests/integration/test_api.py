"""The management API (bearer tokens, roles), web users with roles, who changed what, and the fleet as CSV.

Against ``rdnsgate serve web`` and the ``rdnsgate`` command on one store,
SQLite and PostgreSQL both (the ``stores`` fixture).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from rdnsgate.config import load_settings
from rdnsgate.model import DecisionRecord
from rdnsgate.storage import open_store
from tests.harness.knot import KnotServer
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess
from tests.harness.web import PASSWORD, csrf_of, logged_in, set_password, web_process, web_settings


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, knot: KnotServer, stores: Stores) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("api")
    process = web_process(workdir, web_settings(knot.nameserver, "login_rate = 600\n", store=stores.url(workdir)))
    process.start()
    assert set_password(workdir).returncode == 0
    yield process
    process.stop()


def client(web: GatewayProcess, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{web.web_port}", headers=headers, timeout=20)


def make_token(web: GatewayProcess, name: str, role: str) -> str:
    made = web.run("admin", "token", "create", "--name", name, "--role", role)
    assert made.returncode == 0, made.stderr
    assert "shown only now" in made.stderr
    token = made.stdout.strip()
    assert token.startswith("rdg_") and len(token) > 40
    return token


def test_helpdesk_adds_an_exception_with_one_request_and_sees_who_added_what(web: GatewayProcess) -> None:
    desk = client(web, make_token(web, "tickets", "helpdesk"))
    added = desk.post(
        "/api/v1/whitelist",
        json={"target": "198.51.100.20", "reason": "legacy MTA, PTR fix ordered", "ticket": "HD-77", "expires": "7d"},
    )
    assert added.status_code == 201, added.text
    entry = added.json()
    assert entry["value"] == "198.51.100.20/32" and entry["ticket"] == "HD-77" and entry["expires_at"]
    assert entry["changed_by"] == "token:tickets" and entry["changed_at"]
    again = desk.post("/api/v1/whitelist", json={"target": "198.51.100.20", "reason": "renewed"})
    assert again.status_code == 200 and again.json()["id"] == entry["id"] and again.json()["expires_at"] is None
    listed = desk.get("/api/v1/whitelist").json()
    assert [item["reason"] for item in listed if item["value"] == "198.51.100.20/32"] == ["renewed"]
    # the CLI and the admin page say who it was
    shown = web.run("whitelist", "list", "--json")
    assert any(item["changed_by"] == "token:tickets" for item in json.loads(shown.stdout)), shown.stdout
    page = logged_in(f"http://127.0.0.1:{web.web_port}").get("/whitelist").text
    assert "token:tickets" in page
    # removal by target, then it is gone (404 the second time); the change log keeps who removed it
    assert desk.delete("/api/v1/whitelist", params={"target": "198.51.100.20"}).status_code == 204
    gone = desk.delete("/api/v1/whitelist", params={"target": "198.51.100.20"})
    assert gone.status_code == 404 and "not on the whitelist" in gone.json()["detail"]
    page = logged_in(f"http://127.0.0.1:{web.web_port}").get("/whitelist").text
    assert page.count("token:tickets") >= 3  # add, update, remove in the recent changes
    bad = desk.post("/api/v1/whitelist", json={"target": "not a thing!", "reason": "x"})
    assert bad.status_code == 400 and "neither an IP address" in bad.json()["detail"]
    assert desk.post("/api/v1/whitelist", json={"target": "192.0.2.1"}).status_code == 422  # no reason


def test_helpdesk_reads_decisions_but_not_the_fleet(web: GatewayProcess) -> None:
    record = DecisionRecord(
        at=datetime.now(UTC),
        session="api-1",
        client_ip="192.0.2.44",
        ptr=None,
        helo="mail.example.org",
        sender="bob@example.org",
        recipients=("alice@example.net",),
        profile="strict",
        action="reject",
        stage="rcpt",
        reply="550 5.7.25 no PTR",
        checks={"iprev": {"result": "permerror", "reason": "no-ptr", "detail": "no PTR record"}},
    )

    async def seed() -> None:
        store = await open_store(load_settings(web.workdir / "rdnsgate.toml").storage)
        await store.decisions_add([record])
        await store.close()

    asyncio.run(seed())
    desk = client(web, make_token(web, "desk-read", "helpdesk"))
    found = desk.get("/api/v1/decisions", params={"ip": "192.0.2.44", "since": "1h"})
    assert found.status_code == 200
    assert [(row["session"], row["reply"]) for row in found.json()] == [("api-1", "550 5.7.25 no PTR")]
    assert desk.get("/api/v1/decisions", params={"since": "yesterday"}).status_code == 400
    for method, path, body in (
        ("GET", "/api/v1/fleet", None),
        ("POST", "/api/v1/fleet", [{"ip": "192.0.2.1"}]),
        ("DELETE", "/api/v1/fleet/192.0.2.1", None),
    ):
        denied = desk.request(method, path, json=body)
        assert denied.status_code == 403 and "helpdesk" in denied.json()["detail"], (method, path, denied.text)


def test_no_token_a_wrong_one_or_a_revoked_one_is_401(web: GatewayProcess) -> None:
    anonymous = client(web)
    answer = anonymous.get("/api/v1/whitelist")
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
    assert client(web, "rdg_wrong").get("/api/v1/whitelist").status_code == 401
    basic = anonymous.get("/api/v1/whitelist", headers={"Authorization": "Basic YWRtaW46eA=="})
    assert basic.status_code == 401
    token = make_token(web, "short-lived", "admin")
    assert client(web, token).get("/api/v1/fleet").status_code == 200
    duplicate = web.run("admin", "token", "create", "--name", "short-lived", "--role", "admin")
    assert duplicate.returncode == 2 and "exists already" in duplicate.stderr
    listed = web.run("admin", "token", "list")
    assert "short-lived" in listed.stdout and token not in listed.stdout
    assert web.run("admin", "token", "revoke", "short-lived").returncode == 0
    assert client(web, token).get("/api/v1/fleet").status_code == 401
    assert web.run("admin", "token", "revoke", "short-lived").returncode == 2
    bad_role = web.run("admin", "token", "create", "--name", "x", "--role", "root")
    assert bad_role.returncode == 2 and "want one of admin, helpdesk" in bad_role.stderr


def test_a_platform_provisions_many_ips_at_once(web: GatewayProcess) -> None:
    platform = client(web, make_token(web, "provisioning", "admin"))
    servers = [{"ip": f"203.0.113.{n}", "helo": f"out{n}.example.org", "label": f"pool-{n % 3}"} for n in range(1, 101)]
    added = platform.post("/api/v1/fleet", json=servers)
    assert added.status_code == 200, added.text
    assert added.json()["added"] == 100 and added.json()["updated"] == 0
    assert {item["changed_by"] for item in added.json()["servers"]} == {"token:provisioning"}
    # one bad server: named by its index, nothing of the request stored
    bad = platform.post("/api/v1/fleet", json=[{"ip": "203.0.113.200"}, {"ip": "999.1.1.1"}])
    assert bad.status_code == 400 and bad.json()["detail"].startswith("server 1: '999.1.1.1' is not an IP address")
    watched = {item["ip"] for item in platform.get("/api/v1/fleet").json()}
    assert "203.0.113.200" not in watched and len(watched & {s["ip"] for s in servers}) == 100
    again = platform.post("/api/v1/fleet", json=[{"ip": "203.0.113.1", "helo": "new.example.org"}])
    assert again.json()["added"] == 0 and again.json()["updated"] == 1
    assert platform.delete("/api/v1/fleet/203.0.113.1").status_code == 204
    assert platform.delete("/api/v1/fleet/203.0.113.1").status_code == 404
    assert platform.post("/api/v1/fleet", json=[]).status_code == 422
    # the export is what a platform re-imports
    exported = web.run("fleet", "export")
    assert exported.returncode == 0 and exported.stdout.startswith("ip,helo,label\n")
    assert "203.0.113.2,out2.example.org,pool-2" in exported.stdout.splitlines()
    for ip in sorted(watched - {"203.0.113.1"}):
        platform.delete(f"/api/v1/fleet/{ip}")


def test_fleet_import_from_csv(web: GatewayProcess) -> None:
    good = web.workdir / "fleet.csv"
    good.write_text(
        "ip,helo,label\n198.51.100.31,mta31.example.org,eu-1\n198.51.100.32,,\n2001:db8::32,mta6.example.org,v6\n"
    )
    done = web.run("fleet", "import", str(good))
    assert done.returncode == 0, done.stderr
    assert "3 servers, 3 newly watched" in done.stdout
    exported = web.run("fleet", "export").stdout.splitlines()
    assert {"198.51.100.31,mta31.example.org,eu-1", "198.51.100.32,,", "2001:db8::32,mta6.example.org,v6"} <= set(
        exported
    )
    assert "cli:" in web.run("fleet", "list").stdout
    bad = web.workdir / "bad.csv"
    bad.write_text("198.51.100.41,ok.example.org,x\n198.51.100.42,bad name,x\n")
    refused = web.run("fleet", "import", str(bad))
    assert refused.returncode == 2 and "line 2" in refused.stderr, refused.stderr
    assert "198.51.100.41" not in web.run("fleet", "export").stdout  # nothing of a bad file is stored
    again = web.run("fleet", "import", str(good))
    assert "3 servers, 0 newly watched, 3 already watched" in again.stdout
    for ip in ("198.51.100.31", "198.51.100.32", "2001:db8::32"):
        assert web.run("fleet", "remove", ip).returncode == 0


def test_web_users_have_roles(web: GatewayProcess) -> None:
    made = set_password(web.workdir, user="desk")  # a new user is an admin unless --role says otherwise
    assert made.returncode == 0
    done = set_password(web.workdir, user="desk", role="helpdesk")
    assert done.returncode == 0 and "(helpdesk)" in done.stdout, done.stderr
    listed = web.run("admin", "list").stdout
    assert "desk" in listed and "helpdesk" in listed and "admin" in listed
    base = f"http://127.0.0.1:{web.web_port}"
    desk = httpx.Client(base_url=base, timeout=20)
    token = csrf_of(desk.get("/login").text)
    login = desk.post("/login", data={"username": "desk", "password": PASSWORD, "csrf": token, "next": "/servers"})
    assert login.status_code == 303 and login.headers["location"] == "/whitelist"
    page = desk.get("/whitelist")
    assert page.status_code == 200 and 'href="/servers"' not in page.text
    assert desk.get("/decisions").status_code == 200
    assert desk.get("/servers").status_code == 403
    form = {"ip": "192.0.2.90", "csrf": csrf_of(page.text)}
    assert desk.post("/servers", data=form).status_code == 403
    # the session also reaches the API: reading freely, changing only with the CSRF header
    assert desk.get("/api/v1/whitelist").status_code == 200
    body = {"target": "192.0.2.91", "reason": "session test"}
    assert desk.post("/api/v1/whitelist", json=body).status_code == 403
    with_header = desk.post("/api/v1/whitelist", json=body, headers={"X-CSRF-Token": csrf_of(page.text)})
    assert with_header.status_code == 201 and with_header.json()["changed_by"] == "web:desk"
    assert (
        desk.delete(
            f"/api/v1/whitelist/{with_header.json()['id']}", headers={"X-CSRF-Token": csrf_of(page.text)}
        ).status_code
        == 204
    )
    # removed: the session ends at once
    assert web.run("admin", "remove", "desk").returncode == 0
    assert desk.get("/whitelist", follow_redirects=False).status_code == 303
    assert web.run("admin", "remove", "desk").returncode == 2
