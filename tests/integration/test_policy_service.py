"""``rdnsgate serve policy`` over TCP and a unix socket, against the knotd fixture."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.knot import free_port
from tests.harness.postgres import Stores
from tests.harness.smtp import as_root, rdnsgate_cli


class PolicyProcess:
    def __init__(
        self, workdir: Path, nameserver: str, profile: str, extra: str = "", *, store: str, more: str = ""
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.exim_port = free_port()
        self.socket_path = workdir / "policy.sock"
        self.exim_path = workdir / "exim.sock"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rdnsgate.toml").write_text(
            f'[dns]\nnameservers = ["{nameserver}"]\ntimeout = 0.3\ntries = 2\ncache_size = 0\n'
            f'[policy]\nlisten = ["127.0.0.1:{self.port}", "unix:{self.socket_path}"]\nprofile = "{profile}"\n'
            f'exim_listen = ["127.0.0.1:{self.exim_port}", "unix:{self.exim_path}"]\n'
            'trusted_networks = ["127.0.20.0/24"]\n'
            f'authserv_id = "mx.example.net"\n{extra}\n[storage]\nurl = "{store}"\n{more}'
        )
        self.log_path = workdir / "policy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PolicyProcess:
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rdnsgate",
                "serve",
                "policy",
                *as_root(["serve"]),
                "--config",
                str(self.workdir / "rdnsgate.toml"),
            ],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 20
        while "policy service ready" not in self.log():
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory, _responder: FaultResponder, stores: Stores
) -> Iterator[dict[str, PolicyProcess]]:
    started = {}
    try:
        for profile in ("postfix", "monitor", "classic"):
            workdir = tmp_path_factory.mktemp(f"policy-{profile}")
            started[profile] = PolicyProcess(workdir, _responder.nameserver, profile, store=stores.url(workdir)).start()
        yield started
    finally:
        for service in started.values():
            service.stop()


def request(**attributes: str) -> bytes:
    base = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": "127.0.10.1",
        "helo_name": "good1.example.org",
        "sender": "bob@example.org",
        "recipient": "alice@example.net",
        "instance": "inst-1",
    }
    base.update(attributes)
    return b"".join(f"{key}={value}\n".encode() for key, value in base.items()) + b"\n"


def ask(sock: socket.socket, data: bytes) -> str:
    sock.sendall(data)
    answer = b""
    while not answer.endswith(b"\n\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer.decode()


def connect(service: PolicyProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=10)


def test_answers_per_profile_on_one_kept_connection(services: dict[str, PolicyProcess]) -> None:
    with connect(services["postfix"]) as sock:
        assert ask(sock, request()) == "action=DUNNO\n\n"
        assert ask(sock, request(client_address="127.0.10.2", instance="i2")) == (
            "action=450 4.7.1 Client host rejected: cannot find your reverse hostname, [127.0.10.2]\n\n"
        )
        assert ask(sock, request(client_address="127.0.10.3", instance="i3")).startswith("action=450 4.7.25 ")
        assert ask(sock, request(sender="bob@nullmx.example.org", instance="i4")).startswith("action=550 5.7.27 ")
        assert ask(sock, request(helo_name="localhost", instance="i5")).startswith("action=504 5.5.2 ")
    with connect(services["classic"]) as sock:
        # classic refuses at HELO: its refusal is given from the first state that can carry it
        answer = ask(sock, request(client_address="127.0.10.2", protocol_state="EHLO", instance="c1"))
        assert answer.startswith("action=501 5.7.25 PTR Records mismatch")


def test_temporary_error_is_defer_if_permit(services: dict[str, PolicyProcess], faults: FaultResponder) -> None:
    faults.add("4.10.0.127.in-addr.arpa", "PTR", Fault.TIMEOUT)
    with connect(services["postfix"]) as sock:
        answer = ask(sock, request(client_address="127.0.10.4", helo_name="slow4.example.org", instance="t1"))
    assert answer.startswith("action=DEFER_IF_PERMIT 4.7.1 Client host rejected")


def test_monitor_prepends_once_per_message(services: dict[str, PolicyProcess]) -> None:
    with connect(services["monitor"]) as sock:
        first = ask(sock, request(client_address="127.0.10.2", instance="m1"))
        second = ask(sock, request(client_address="127.0.10.2", instance="m1", recipient="carol@example.net"))
    assert first == (
        "action=PREPEND Authentication-Results: mx.example.net; iprev=permerror policy.iprev=127.0.10.2\n\n"
    )
    assert second == "action=DUNNO\n\n"


def test_one_evaluation_per_instance(services: dict[str, PolicyProcess], faults: FaultResponder) -> None:
    with connect(services["postfix"]) as sock:
        for number in range(20):
            answer = ask(sock, request(instance="many", sender="once@example.org", recipient=f"r{number}@example.net"))
            assert answer == "action=DUNNO\n\n"
    assert faults.asked("example.org", "MX") == 1


def test_later_sessions_of_the_same_client_reuse_fresh_results(
    services: dict[str, PolicyProcess], faults: FaultResponder
) -> None:
    with connect(services["postfix"]) as sock:
        for number in range(5):  # five Postfix sessions, same client, HELO and sender
            answer = ask(sock, request(instance=f"again-{number}", sender="again@example.org"))
            assert answer == "action=DUNNO\n\n"
    assert faults.asked("example.org", "MX") == 1  # well within every TTL behind the result


def test_unix_socket(services: dict[str, PolicyProcess]) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(services["postfix"].socket_path))
        assert ask(sock, request(instance="u1")) == "action=DUNNO\n\n"


@pytest.mark.parametrize(
    "junk",
    [
        b"a=" + b"x" * 600 + b"\n",
        b"".join(b"a%d=1\n" % i for i in range(101)),
        b"no equals\n\n",
        b"".join(b"k%03d=" % i + b"v" * 400 + b"\n" for i in range(45)),
    ],
)
def test_trouble_disconnects_without_a_reply(services: dict[str, PolicyProcess], junk: bytes) -> None:
    with connect(services["postfix"]) as sock:
        sock.sendall(junk)
        assert sock.recv(4096) == b""  # disconnected, no action at all
    assert "disconnecting" in services["postfix"].log()
    with connect(services["postfix"]) as sock:  # still serving
        assert ask(sock, request(instance="after-junk")) == "action=DUNNO\n\n"


def test_bad_client_address_disconnects(services: dict[str, PolicyProcess]) -> None:
    with connect(services["postfix"]) as sock:
        sock.sendall(request(client_address="not-an-ip", instance="bad"))
        assert sock.recv(4096) == b""


def logged(service: PolicyProcess, ip: str, recipient: str) -> subprocess.CompletedProcess[str]:
    """`rdnsgate decisions --ip IP --json`, once the record for `recipient` is stored (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        found = rdnsgate_cli(service.workdir / "rdnsgate.toml", "decisions", "--ip", ip, "--json")
        if recipient in found.stdout or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_decisions_are_logged_like_the_gateways(services: dict[str, PolicyProcess]) -> None:
    with connect(services["postfix"]) as sock:
        ask(sock, request(client_address="127.0.10.2", instance="logged-1", recipient="dave@example.net"))
    found = logged(services["postfix"], "127.0.10.2", "dave@example.net")
    assert '"action":"reject"' in found.stdout and '"no-ptr"' in found.stdout, found.stdout + found.stderr


# -- the Exim face: one line in, one line out, one request per connection (${readsocket}) --------------------------
def exim(service: PolicyProcess, line: str | bytes, *, shutdown: bool = True) -> str:
    with socket.create_connection(("127.0.0.1", service.exim_port), timeout=10) as sock:
        sock.sendall(line.encode() if isinstance(line, str) else line)
        if shutdown:  # as Exim's readsocket does by default
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer.decode()


def test_exim_answers_per_profile(services: dict[str, PolicyProcess]) -> None:
    good = "ip=127.0.10.1 port=40001 helo=good1.example.org sender=bob@example.org rcpt=alice@example.net\n"
    assert exim(services["postfix"], good) == "accept\n"
    assert exim(services["postfix"], good.replace("10.1 port=40001", "10.2 port=40002")) == (
        "deny 450 4.7.1 Client host rejected: cannot find your reverse hostname, [127.0.10.2]\n"
    )
    nullmx = 'ip=127.0.10.1 port=3 helo=good1.example.org sender="bob@nullmx.example.org"\n'
    assert exim(services["postfix"], nullmx).startswith("deny 550 5.7.27 ")
    assert exim(services["postfix"], "ip=127.0.10.1 port=4 helo=localhost sender=bob@example.org\n").startswith(
        "deny 504 5.5.2 "
    )
    # classic closes the connection after its 501: Exim's drop
    answer = exim(services["classic"], "stage=helo ip=127.0.10.2 port=5 helo=good1.example.org\n")
    assert answer.startswith("drop 501 5.7.25 PTR Records mismatch"), answer
    # a bounce (the empty sender, quoted as Exim quotes it) is a sender like any other
    assert exim(services["postfix"], 'ip=127.0.10.1 port=6 helo=good1.example.org sender=""\n') == "accept\n"
    # without shutting the write side down, the line's end is enough
    assert exim(services["postfix"], good.replace("40001", "40007"), shutdown=False) == "accept\n"


def test_exim_temporary_error_is_defer(services: dict[str, PolicyProcess], faults: FaultResponder) -> None:
    faults.add("4.10.0.127.in-addr.arpa", "PTR", Fault.TIMEOUT)
    answer = exim(services["postfix"], "ip=127.0.10.4 port=7 helo=slow4.example.org sender=bob@example.org\n")
    assert answer.startswith("defer 4"), answer
    assert " 5." not in answer


def test_exim_monitor_adds_the_header_once_per_message(services: dict[str, PolicyProcess]) -> None:
    line = "ip=127.0.10.2 port=8 helo=good1.example.org sender=bob@example.org rcpt={}\n"
    assert exim(services["monitor"], line.format("a@example.net")) == (
        "header Authentication-Results: mx.example.net; iprev=permerror policy.iprev=127.0.10.2\n"
    )
    assert exim(services["monitor"], line.format("b@example.net")) == "accept\n"


@pytest.mark.parametrize(
    ("junk", "reason"),
    [
        ("helo=good1.example.org\n", "no ip="),
        ("ip=not-an-ip\n", "no IP address"),
        ("ip=127.0.10.1 stage=banner\n", "stage="),
        ('ip=127.0.10.1 helo="unterminated\n', "cannot read"),
        ("x" * 5000 + "\n", "longer than"),
    ],
)
def test_exim_bad_request_is_a_temporary_refusal(services: dict[str, PolicyProcess], junk: str, reason: str) -> None:
    answer = exim(services["postfix"], junk)
    assert answer.startswith("defer 451 4.3.5 ") and reason in answer, answer
    assert exim(services["postfix"], "ip=127.0.10.1 port=9 helo=good1.example.org\n") == "accept\n"


def test_exim_unix_socket(services: dict[str, PolicyProcess]) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(services["postfix"].exim_path))
        sock.sendall(b"ip=127.0.10.2 port=10 helo=good1.example.org sender=bob@example.org\n")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(4096).startswith(b"deny 450 4.7.1 ")


def test_submission_and_trusted_networks_are_skipped_and_logged(services: dict[str, PolicyProcess]) -> None:
    with connect(services["classic"]) as sock:  # classic would refuse a client without PTR at once
        answer = ask(sock, request(client_address="127.0.10.2", sasl_username="alice", instance="sub-1"))
        assert answer == "action=DUNNO\n\n"
        answer = ask(sock, request(client_address="127.0.20.5", instance="trusted-1", recipient="zed@example.net"))
        assert answer == "action=DUNNO\n\n"
        assert ask(sock, request(client_address="127.0.10.2", instance="sub-2")).startswith("action=501 ")
    service = services["classic"]
    found = logged(service, "127.0.20.5", "zed@example.net")
    record = json.loads(found.stdout.splitlines()[0])
    assert record["action"] == "skipped" and record["whitelisted"] == "trusted network 127.0.20.0/24", record
    words = rdnsgate_cli(service.workdir / "rdnsgate.toml", "decisions", "--ip", "127.0.10.2").stdout
    assert "not checked: authenticated as alice" in words, words
