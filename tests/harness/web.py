"""The web app as a subprocess, and an HTTP client that logs in and carries CSRF tokens."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.harness.smtp import GatewayProcess

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "correct horse battery"


def web_settings(nameserver: str, extra: str = "", *, store: str) -> str:
    return (
        f'[dns]\nnameservers = ["{nameserver}"]\ntimeout = 0.5\ntries = 2\n'
        f'[storage]\nurl = "{store}"\n'
        f'[web]\nlisten = "127.0.0.1:{{web_port}}"\n{extra}'
    )


def set_password(
    workdir: Path, password: str = PASSWORD, user: str = "admin", role: str | None = None
) -> subprocess.CompletedProcess[str]:
    roles = ["--role", role] if role else []
    return subprocess.run(
        [sys.executable, "-m", "rdnsgate", "admin", "set-password", "--user", user, *roles, "--password-stdin"],
        cwd=workdir,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def web_process(workdir: Path, settings: str) -> GatewayProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return GatewayProcess(workdir, settings, service=("serve", "web"), ready=("Uvicorn running on",))


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def logged_in(base: str, password: str = PASSWORD, **client_args: object) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=20, **client_args)  # type: ignore[arg-type]
    token = csrf_of(client.get("/login").text)
    reply = client.post("/login", data={"username": "admin", "password": password, "csrf": token, "next": "/servers"})
    assert reply.status_code == 303, reply.text
    return client
