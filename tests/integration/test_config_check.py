"""`rdnsgate config check`: every problem of a settings file named, then what the settings point at tried for real.

The things probed are real: knotd as a nameserver, an SMTP next hop, a TLS
pair made by openssl, the store (SQLite and PostgreSQL); and closed loopback
ports where something is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.knot import KnotServer, free_port
from tests.harness.smtp import NextHop


def check(workdir: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    (workdir / "rdnsgate.toml").write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "rdnsgate", "config", "check", "--config", str(workdir / "rdnsgate.toml"), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def tls_pair(workdir: Path, name: str) -> tuple[Path, Path]:
    cert, key = workdir / f"{name}.pem", workdir / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gw.example.net",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_every_problem_of_a_file_is_named(tmp_path: Path) -> None:
    text = '[gateway]\nprofile = "clasic"\nmax_sessions = 0\nbogus = 1\n[dns]\ntimeout = -1\n[nope]\nx = 1\n'
    done = check(tmp_path, text, "--offline")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    joined = "\n".join(lines)
    for needle in ("unknown key 'bogus'", "unknown section [nope]", "dns.timeout", "gateway.max_sessions"):
        assert needle in joined, needle
    # The profile is checked once the rest loads.
    done = check(tmp_path, '[gateway]\nprofile = "clasic"\n[policy]\noverrides = ["helo=maybe"]\n', "--offline")
    assert done.returncode == 1
    assert "gateway.profile: unknown profile 'clasic'" in done.stdout and "policy.overrides" in done.stdout


def test_what_the_settings_point_at_is_tried(tmp_path: Path, knot: KnotServer, store_url: str) -> None:
    hop = NextHop().start()
    try:
        cert, key = tls_pair(tmp_path, "good")
        good = (
            f'[dns]\nnameservers = ["{knot.nameserver}"]\ntimeout = 0.5\n'
            f'[gateway]\nnext_hop = "{hop.url}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
            f'[storage]\nurl = "{store_url}"\n'
        )
        done = check(tmp_path, good)
        assert done.returncode == 0, done.stdout
        levels = {line.split(":")[0]: line for line in done.stdout.splitlines()}
        assert set(levels) == {"ok", "warning"}, done.stdout
        assert "schema empty" in levels["warning"]  # a new store: services migrate it, or `rdnsgate db upgrade`
        for needle in (
            "the key matches the certificate",
            "answers EHLO",
            f"dns.nameservers {knot.nameserver}: answers",
            "dns.canaries good1.example.org: answers",  # the canary of tests/conftest.py
        ):
            assert needle in done.stdout, needle

        _other_cert, other_key = tls_pair(tmp_path, "other")
        broken = (
            f'[dns]\nnameservers = ["127.0.0.1:{free_port()}"]\ntimeout = 0.2\n'
            f'[gateway]\nnext_hop = "smtp://127.0.0.1:{free_port()}"\ntls_cert = "{cert}"\ntls_key = "{other_key}"\n'
            f'[storage]\nurl = "{store_url}"\n'
        )
        done = check(tmp_path, broken)
        assert done.returncode == 1
        errors = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
        assert len(errors) == 4, done.stdout
        assert any("do not make a pair" in line for line in errors)
        assert any("gateway.next_hop" in line and "refused" in line.lower() for line in errors)
        assert any("does not answer" in line for line in errors)
        assert any("dns.canaries good1.example.org: could not be resolved" in line for line in errors)
        assert check(tmp_path, broken, "--offline").returncode == 0  # the file itself is fine
    finally:
        hop.stop()
