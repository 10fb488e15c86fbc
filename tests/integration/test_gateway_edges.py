"""The gateway's edges: PROXY protocol, XCLIENT, STARTTLS, overrides, Maildir, hostile input."""

from __future__ import annotations

import ipaddress
import json
import signal
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.faultdns import FaultResponder
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess, NextHop
from tests.integration.test_gateway import GOOD, NO_PTR, client, settings, transact

PROXY = "127.0.0.50"  # the trusted proxy's address
STRANGER = "127.0.0.51"


@pytest.fixture(scope="module")
def next_hop() -> NextHop:
    hop = NextHop(stall_seconds=1.0).start()
    yield hop  # type: ignore[misc]
    hop.stop()


def lines(sock: socket.socket, until: bytes = b"\r\n") -> bytes:
    data = b""
    sock.settimeout(10)
    while not data.endswith(until):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def raw(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def proxy_v2(source: str, destination: str, sport: int = 40000, dport: int = 25) -> bytes:
    body = (
        ipaddress.IPv4Address(source).packed
        + ipaddress.IPv4Address(destination).packed
        + struct.pack("!HH", sport, dport)
    )
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


@pytest.fixture(scope="module")
def proxied(
    tmp_path_factory: pytest.TempPathFactory, _responder: FaultResponder, next_hop: NextHop, stores: Stores
) -> GatewayProcess:
    extra = f'proxy_protocol = true\ntrusted_proxies = ["{PROXY}/32"]\n'
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("gw-proxy"),
        settings(
            _responder.nameserver,
            next_hop.url,
            "classic",
            extra,
            store=stores.url(tmp_path_factory.mktemp("gw-proxy-store")),
        ),
    ).start()
    yield gateway  # type: ignore[misc]
    gateway.stop()


@pytest.mark.parametrize("version", [1, 2])
def test_proxy_header_from_trusted_proxy_names_the_client(proxied: GatewayProcess, version: int) -> None:
    header = f"PROXY TCP4 {NO_PTR} 127.0.0.1 40000 25\r\n".encode() if version == 1 else proxy_v2(NO_PTR, "127.0.0.1")
    sock = raw(proxied.port, PROXY)
    try:
        sock.sendall(header)
        assert lines(sock).startswith(b"220 ")
        sock.sendall(b"EHLO good1.example.org\r\n")
        reply = lines(sock)
        assert reply.startswith(b"501 5.7.25") and NO_PTR.encode() in reply  # judged as the real client
    finally:
        sock.close()
    sock = raw(proxied.port, PROXY)
    try:
        sock.sendall(
            f"PROXY TCP4 {GOOD} 127.0.0.1 40000 25\r\n".encode() if version == 1 else proxy_v2(GOOD, "127.0.0.1")
        )
        assert lines(sock).startswith(b"220 ")
        sock.sendall(b"EHLO good1.example.org\r\n")
        assert lines(sock, b"HELP\r\n").startswith(b"250-")
    finally:
        sock.close()


def test_proxy_header_from_a_stranger_is_not_believed(proxied: GatewayProcess) -> None:
    sock = raw(proxied.port, STRANGER)
    try:
        assert lines(sock).startswith(b"220 ")  # no PROXY header awaited from a stranger
        sock.sendall(f"PROXY TCP4 {GOOD} 127.0.0.1 40000 25\r\n".encode())
        reply = lines(sock)
        assert reply.startswith(b"500 "), reply  # just an unknown command from an untrusted peer
        sock.sendall(b"EHLO good1.example.org\r\n")
        reply = lines(sock)  # judged by its own address, whose reverse zone this DNS does not serve
        assert reply.startswith(b"451 4.4.3") and b"51.0.0.127.in-addr.arpa" in reply, reply
    finally:
        sock.close()


@pytest.fixture(scope="module")
def xclient_gateway(
    tmp_path_factory: pytest.TempPathFactory, _responder: FaultResponder, next_hop: NextHop, stores: Stores
) -> GatewayProcess:
    extra = f'trusted_proxies = ["{PROXY}/32"]\n'
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("gw-xclient"),
        settings(
            _responder.nameserver,
            next_hop.url,
            "strict",
            extra,
            store=stores.url(tmp_path_factory.mktemp("gw-xclient-store")),
        ),
    ).start()
    yield gateway  # type: ignore[misc]
    gateway.stop()


def test_xclient_from_trusted_proxy(xclient_gateway: GatewayProcess) -> None:
    smtp = client(xclient_gateway, PROXY)
    try:
        code, text = smtp.ehlo("proxy.example.org")
        assert b"XCLIENT" in text
        assert smtp.docmd("XCLIENT", f"ADDR={NO_PTR} NAME=[UNAVAILABLE]")[0] == 220
        code, text = smtp.ehlo("good1.example.org")
        assert code == 550 and NO_PTR.encode() in text
    finally:
        smtp.close()


def test_xclient_from_anyone_else_is_refused(xclient_gateway: GatewayProcess) -> None:
    smtp = client(xclient_gateway, GOOD)
    try:
        _code, text = smtp.ehlo("good1.example.org")
        assert b"XCLIENT" not in text
        assert smtp.docmd("XCLIENT", f"ADDR={GOOD}")[0] == 550
    finally:
        smtp.close()


def test_starttls(tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, stores: Stores) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=gw.example.net",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    extra = f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
    gateway = GatewayProcess(
        tmp_path / "gw", settings(_responder.nameserver, next_hop.url, "classic", extra, store=stores.url(tmp_path))
    ).start()
    next_hop.clear()
    try:
        smtp = client(gateway, GOOD)
        _code, text = smtp.ehlo("good1.example.org")
        assert b"STARTTLS" in text
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        smtp._host = "gw.example.net"  # type: ignore[attr-defined]  # the name TLS verifies
        assert smtp.starttls(context=context)[0] == 220
        assert smtp.ehlo("good1.example.org")[0] == 250
        assert smtp.sock is not None and smtp.sock.version() is not None  # type: ignore[attr-defined]
        smtp.mail("bob@example.org")
        smtp.rcpt("alice@example.net")
        assert smtp.data("Subject: tls\r\n\r\nsecret\r\n")[0] == 250
        smtp.quit()
        assert b"with ESMTPS id" in next_hop.received[0].content
    finally:
        gateway.stop()


def test_overrides_footer_and_check_url(
    tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, stores: Stores
) -> None:
    extra = (
        'overrides = ["helo=off", "iprev=reject 550 5.7.25 Fix your reverse DNS"]\n'
        'check_url = "https://rdns.example.net/check"\nreject_footer = "Questions: postmaster@example.net"\n'
    )
    gateway = GatewayProcess(
        tmp_path, settings(_responder.nameserver, next_hop.url, "postfix", extra, store=stores.url(tmp_path))
    ).start()
    try:
        refused = transact(gateway, source=NO_PTR)
        assert (refused.stage, refused.code) == ("rcpt", 550)
        assert "Fix your reverse DNS" in refused.text
        assert (
            f"https://rdns.example.net/check?ip={NO_PTR}" in refused.text and "postmaster@example.net" in refused.text
        )
        assert transact(gateway, helo="nxhost.example.org").stage == "done"  # the HELO check is off
    finally:
        gateway.stop()


def test_generic_ptr_is_logged_and_refused_only_when_an_admin_says_so(
    tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, stores: Stores
) -> None:
    """127.0.10.42's PTR c-127-0-10-42.hsd1.example.org forward-confirms but looks like an ISP's default."""
    generic = "127.0.10.42"
    logging = GatewayProcess(
        tmp_path / "log", settings(_responder.nameserver, next_hop.url, "strict", store=stores.url(tmp_path / "log"))
    ).start()
    try:
        assert transact(logging, source=generic, helo="c-127-0-10-42.hsd1.example.org").stage == "done"
        found = logging.run("decisions", "--ip", generic, "--json")
        record = json.loads(found.stdout.splitlines()[0])
        assert record["action"] == "accept" and record["checks"]["generic"]["result"] == "fail"
        assert "label 'c-127-0-10-42' embeds the address (dashed)" in record["checks"]["generic"]["detail"]
    finally:
        logging.stop()
    extra = 'overrides = ["generic=reject 550 5.7.1 Your PTR looks like a dynamic address: {detail}"]\n'
    refusing = GatewayProcess(
        tmp_path / "refuse",
        settings(_responder.nameserver, next_hop.url, "strict", extra, store=stores.url(tmp_path / "refuse")),
    ).start()
    try:
        refused = transact(refusing, source=generic, helo="c-127-0-10-42.hsd1.example.org")
        assert refused.code == 550 and "looks like a dynamic address" in refused.text and "embeds" in refused.text
        assert transact(refusing).stage == "done"  # good1.example.org is no generic name
    finally:
        refusing.stop()


def test_trusted_networks_are_not_checked_and_logged_as_skipped(
    tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, stores: Stores
) -> None:
    extra = 'trusted_networks = ["127.0.10.2/32"]\n'
    gateway = GatewayProcess(
        tmp_path, settings(_responder.nameserver, next_hop.url, "strict", extra, store=stores.url(tmp_path))
    ).start()
    try:
        assert transact(gateway, source=NO_PTR, helo="nxhost.example.org").stage == "done"  # strict would refuse
        assert transact(gateway, source="127.0.10.3").code == 550  # not trusted: checked
        found = gateway.run("decisions", "--ip", NO_PTR, "--json")
        record = json.loads(found.stdout.splitlines()[0])
        assert record["action"] == "skipped" and record["whitelisted"] == "trusted network 127.0.10.2/32", record
        assert all(item["reason"] == "off" for item in record["checks"].values())  # nothing was looked up
    finally:
        gateway.stop()


def test_maildir_without_next_hop(tmp_path: Path, _responder: FaultResponder, stores: Stores) -> None:
    gateway = GatewayProcess(
        tmp_path, settings(_responder.nameserver, "", "classic", store=stores.url(tmp_path))
    ).start()
    try:
        assert transact(gateway, body="Subject: to the maildir\r\n\r\nkept\r\n").code == 250
        files = list((tmp_path / "var" / "mail" / "new").iterdir())
        assert len(files) == 1 and not list((tmp_path / "var" / "mail" / "tmp").iterdir())
        content = files[0].read_bytes()
        assert b"Authentication-Results: gw.example.net; iprev=pass policy.iprev=127.0.10.1" in content
        assert content.endswith(b"kept\n")
    finally:
        gateway.stop()


def test_hostile_helo_cannot_inject_headers_or_log_lines(
    tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, stores: Stores
) -> None:
    gateway = GatewayProcess(
        tmp_path, settings(_responder.nameserver, next_hop.url, "monitor", store=stores.url(tmp_path))
    ).start()
    next_hop.clear()
    try:
        sock = raw(gateway.port, GOOD)
        lines(sock)
        sock.sendall(b"EHLO evil\x01\x7f(x)\tX-Injected: yes\r\n")
        assert lines(sock, b"HELP\r\n").startswith(b"250")
        sock.sendall(b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\n")
        time.sleep(0.5)
        sock.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        reply = lines(sock, b"221 2.0.0 Bye\r\n")
        assert b"250 2.0.0 Ok" in reply
        sock.close()
        headers = next_hop.received[0].content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert not any(line.startswith(b"X-Injected") for line in headers)
        assert all(32 <= byte < 127 or byte == 9 for line in headers[:4] for byte in line)
        log = gateway.log()
        decision = next(line for line in log.splitlines() if '"event":"decision"' in line)
        assert "\\u0001" in decision or "?" in decision  # escaped, on one line
    finally:
        gateway.stop()


def test_swaks_and_ipv6_listener(tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, stores: Stores) -> None:
    text = settings(_responder.nameserver, next_hop.url, "monitor", store=stores.url(tmp_path)).replace(
        'listen = ["127.0.0.1:{port}"]', 'listen = ["127.0.0.1:{port}", "[::1]:{port}"]'
    )
    gateway = GatewayProcess(tmp_path, text).start()
    next_hop.clear()
    try:
        for server in (f"127.0.0.1:{gateway.port}", f"[::1]:{gateway.port}"):
            proc = subprocess.run(
                [
                    "swaks",
                    "--server",
                    server.replace("[", "").replace("]:", ":") if server.startswith("[") else server,
                    "--helo",
                    "good1.example.org",
                    "--from",
                    "bob@example.org",
                    "--to",
                    "alice@example.net",
                    *(["--local-interface", GOOD] if server.startswith("127.") else ["-6"]),
                    "--timeout",
                    "20",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert "250 2.0.0 Ok: queued as NEXTHOP" in proc.stdout, proc.stdout[-1500:]
        peers = [item.content for item in next_hop.received]
        assert len(peers) == 2
        assert b"policy.iprev=::1" in peers[1]  # the IPv6 client was checked as itself
    finally:
        gateway.stop()


def test_silent_client_is_timed_out_and_sessions_are_capped(
    tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, stores: Stores
) -> None:
    text = settings(
        _responder.nameserver, next_hop.url, "classic", "max_sessions = 2\n", store=stores.url(tmp_path)
    ).replace("command_timeout = 20", "command_timeout = 1")
    gateway = GatewayProcess(tmp_path, text).start()
    try:
        first, second = raw(gateway.port, GOOD), raw(gateway.port, "127.0.10.5")
        assert lines(first).startswith(b"220") and lines(second).startswith(b"220")
        third = raw(gateway.port, "127.0.10.6")
        assert lines(third).startswith(b"421 4.7.0")  # over max_sessions in all
        third.close()
        first.settimeout(5)
        assert lines(first) == b""  # the silent client was disconnected after command_timeout
        second.close()
        first.close()
        deadline = time.monotonic() + 5  # until the gateway has counted both sessions as gone
        while (outcome := transact(gateway, source="127.0.10.7", helo="good7.example.org")).stage != "done":
            assert time.monotonic() < deadline, outcome
            time.sleep(0.05)
    finally:
        gateway.stop()


def _mid_data(port: int) -> socket.socket:
    """A client that has sent half a message and stopped."""
    sock = raw(port, GOOD)
    assert lines(sock).startswith(b"220")
    sock.sendall(b"EHLO good1.example.org\r\n")
    assert lines(sock, b"250 HELP\r\n").startswith(b"250")
    for command, expected in ((b"MAIL FROM:<bob@example.org>", b"250"), (b"RCPT TO:<alice@example.net>", b"250")):
        sock.sendall(command + b"\r\n")
        assert lines(sock).startswith(expected)
    sock.sendall(b"DATA\r\n")
    assert lines(sock).startswith(b"354")
    sock.sendall(b"Subject: half\r\n\r\nthe first half of a message, and then nothing\r\n")
    return sock


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("second_signal", [False, True], ids=["drain deadline", "second SIGTERM"])
def test_sigterm_drains_then_421(
    tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, second_signal: bool, stores: Stores
) -> None:
    """SIGTERM: no new connections, sessions get gateway.drain_seconds, then 421 4.3.2; a second SIGTERM: at once."""
    drain = 30.0 if second_signal else 1.0
    gateway = GatewayProcess(
        tmp_path,
        settings(
            _responder.nameserver, next_hop.url, "classic", f"drain_seconds = {drain}", store=stores.url(tmp_path)
        ),
    ).start()
    next_hop.clear()
    try:
        sock = _mid_data(gateway.port)
        assert gateway.proc is not None
        started = time.monotonic()
        gateway.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not _refused(gateway.port):
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        if second_signal:
            while "sessions may finish" not in gateway.log():
                assert time.monotonic() < deadline
                time.sleep(0.05)
            gateway.proc.send_signal(signal.SIGTERM)
        sock.settimeout(10)
        assert lines(sock).startswith(b"421 4.3.2"), gateway.log()
        assert gateway.proc.wait(10) == 0
        took = time.monotonic() - started
        assert took < 5 if second_signal else drain - 0.2 <= took < drain + 5, took
        assert next_hop.received == []  # the client got no 250: nothing was taken
        sock.close()
    finally:
        gateway.stop()


def test_a_client_that_hangs_up_frees_its_session(
    tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, stores: Stores
) -> None:
    """Port probes (connect, close) must not keep session slots until the command timeout."""
    text = settings(
        _responder.nameserver,
        next_hop.url,
        "classic",
        "max_sessions = 2\nmax_sessions_per_ip = 2",
        store=stores.url(tmp_path),
    )
    gateway = GatewayProcess(tmp_path, text).start()
    try:
        for _ in range(5):
            socket.create_connection(("127.0.0.1", gateway.port), timeout=5).close()
        deadline = time.monotonic() + 5
        while (outcome := transact(gateway)).stage != "done":
            assert time.monotonic() < deadline, outcome  # 421 4.7.0 here meant the probes still held slots
            time.sleep(0.05)
    finally:
        gateway.stop()
    assert "0 sessions may finish" in gateway.log()
