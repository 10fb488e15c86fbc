"""The gateway as a user runs it: ``rdnsgate serve gateway`` with real SMTP clients and a real next hop.

Clients connect from loopback sources whose reverse DNS the knotd fixture
serves (tests/data/zones.py): 127.0.10.1 is well configured, .2 has no PTR,
.3 a PTR that does not lead back, .4 a PTR lookup the tests make time out.
"""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import authres
import pytest

from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess, NextHop

PROFILES = ("classic", "postfix", "strict", "monitor")
GOOD, NO_PTR, MISMATCH, SLOW = "127.0.10.1", "127.0.10.2", "127.0.10.3", "127.0.10.4"


def settings(nameserver: str, next_hop: str, profile: str, extra: str = "", *, store: str) -> str:
    return f"""
[dns]
nameservers = ["{nameserver}"]
timeout = 0.3
tries = 2
cache_size = 0

[gateway]
listen = ["127.0.0.1:{{port}}"]
profile = "{profile}"
next_hop = "{next_hop}"
relay_domains = ["example.net"]
hostname = "gw.example.net"
next_hop_timeout = 1.0
whitelist_refresh = 0.5
command_timeout = 20
{extra}

[storage]
url = "{store}"
"""


@pytest.fixture(scope="module")
def next_hop() -> Iterator[NextHop]:
    hop = NextHop(stall_seconds=3.0).start()
    yield hop
    hop.stop()


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, _responder: FaultResponder, next_hop: NextHop, stores: Stores
) -> Iterator[dict[str, GatewayProcess]]:
    started = {}
    try:
        for profile in PROFILES:
            workdir = tmp_path_factory.mktemp(f"gw-{profile}")
            text = settings(_responder.nameserver, next_hop.url, profile, store=stores.url(workdir))
            started[profile] = GatewayProcess(workdir, text).start()
        yield started
    finally:
        for gateway in started.values():
            gateway.stop()


@dataclass
class Outcome:
    stage: str  # ehlo, mail, rcpt, data, or done
    code: int
    text: str
    closed: bool


def client(gateway: GatewayProcess, source: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP(source_address=(source, 0), timeout=15)
    smtp.connect("127.0.0.1", gateway.port)
    return smtp


def _closed(smtp: smtplib.SMTP) -> bool:
    try:
        smtp.noop()
    except (smtplib.SMTPServerDisconnected, OSError):
        return True
    return False


def transact(
    gateway: GatewayProcess,
    source: str = GOOD,
    helo: str = "good1.example.org",
    sender: str = "bob@example.org",
    recipients: tuple[str, ...] = ("alice@example.net",),
    body: str = "Subject: test\r\n\r\nhello\r\n",
) -> Outcome:
    """EHLO, MAIL, RCPT..., DATA; stops at the first refusal."""
    smtp = client(gateway, source)
    try:
        code, text = smtp.ehlo(helo)
        if code != 250:
            return Outcome("ehlo", code, text.decode(), _closed(smtp))
        code, text = smtp.mail(sender)
        if code != 250:
            return Outcome("mail", code, text.decode(), _closed(smtp))
        accepted = 0
        last = (0, b"")
        for rcpt in recipients:
            code, text = smtp.rcpt(rcpt)
            last = (code, text)
            accepted += code == 250
        if not accepted:
            return Outcome("rcpt", last[0], last[1].decode(), _closed(smtp))
        code, text = smtp.data(body)
        return Outcome("done" if code == 250 else "data", code, text.decode(), _closed(smtp))
    except smtplib.SMTPServerDisconnected:
        return Outcome("disconnected", 0, "", True)
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPServerDisconnected, OSError):
            smtp.close()


# --- every profile, every check, every outcome --------------------------------------------------

REV = "10.0.127.in-addr.arpa"
# name -> (transaction arguments, faults, {profile: (stage, code, closed)})
MATRIX = {
    "all-pass": (
        {},
        [],
        {p: ("done", 250, False) for p in PROFILES},
    ),
    "iprev-permerror": (
        {"source": NO_PTR},
        [],
        {
            "classic": ("ehlo", 501, True),
            "postfix": ("rcpt", 450, False),
            "strict": ("ehlo", 550, False),
            "monitor": ("done", 250, False),
        },
    ),
    "iprev-fail": (
        {"source": MISMATCH},
        [],
        {
            "classic": ("ehlo", 501, True),
            "postfix": ("rcpt", 450, False),
            "strict": ("ehlo", 550, False),
            "monitor": ("done", 250, False),
        },
    ),
    "iprev-temperror": (
        {"source": SLOW},
        [(f"4.{REV}", "PTR", Fault.TIMEOUT)],
        {
            "classic": ("ehlo", 451, False),
            "postfix": ("rcpt", 450, False),
            "strict": ("ehlo", 451, False),
            "monitor": ("done", 250, False),
        },
    ),
    "helo-permerror": (
        {"helo": "-bad.example.org"},
        [],
        {
            "classic": ("ehlo", 501, True),
            "postfix": ("rcpt", 501, False),
            "strict": ("ehlo", 501, False),
            "monitor": ("done", 250, False),
        },
    ),
    "helo-fail": (
        {"helo": "nxhost.example.org"},
        [],
        {
            "classic": ("ehlo", 501, True),
            "postfix": ("rcpt", 450, False),
            "strict": ("ehlo", 550, False),
            "monitor": ("done", 250, False),
        },
    ),
    "helo-not-fqdn": (
        {"helo": "localhost"},
        [],
        {
            "classic": ("ehlo", 501, True),
            "postfix": ("rcpt", 504, False),
            "strict": ("ehlo", 504, False),
            "monitor": ("done", 250, False),
        },
    ),
    "helo-temperror": (
        {"helo": "helo-slow.example.org"},
        [("helo-slow.example.org", "A", Fault.TIMEOUT)],
        {
            "classic": ("ehlo", 451, False),
            "postfix": ("rcpt", 450, False),
            "strict": ("ehlo", 451, False),
            "monitor": ("done", 250, False),
        },
    ),
    "helo-mismatch-only-logged": (
        {"helo": "other.example.org"},
        [],
        {p: ("done", 250, False) for p in PROFILES},
    ),
    "sender-fail": (
        {"sender": "bob@nx.example.org"},
        [],
        {
            "classic": ("mail", 501, True),
            "postfix": ("rcpt", 450, False),
            "strict": ("mail", 550, False),
            "monitor": ("done", 250, False),
        },
    ),
    "sender-null-mx": (
        {"sender": "bob@nullmx.example.org"},
        [],
        {
            "classic": ("mail", 550, True),
            "postfix": ("rcpt", 550, False),
            "strict": ("mail", 550, False),
            "monitor": ("done", 250, False),
        },
    ),
    "sender-permerror": (
        {"sender": "bob@bad_domain.example"},
        [],
        {
            "classic": ("mail", 501, True),
            "postfix": ("rcpt", 501, False),
            "strict": ("mail", 550, False),
            "monitor": ("done", 250, False),
        },
    ),
    "sender-temperror": (
        {"sender": "bob@mx-slow.example.org"},
        [("mx-slow.example.org", "MX", Fault.TIMEOUT)],
        {
            "classic": ("mail", 451, False),
            "postfix": ("rcpt", 450, False),
            "strict": ("mail", 451, False),
            "monitor": ("done", 250, False),
        },
    ),
    "bounce-never-refused-for-sender": (
        {"sender": ""},
        [],
        {p: ("done", 250, False) for p in PROFILES},
    ),
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("case", list(MATRIX))
def test_profile_matrix(
    case: str, profile: str, gateways: dict[str, GatewayProcess], faults: FaultResponder, next_hop: NextHop
) -> None:
    arguments, injected, expected = MATRIX[case]
    for name, rtype, fault in injected:
        faults.add(name, rtype, fault)
    next_hop.clear()
    outcome = transact(gateways[profile], **arguments)  # type: ignore[arg-type]
    stage, code, closed = expected[profile]
    assert (outcome.stage, outcome.code) == (stage, code), outcome
    assert outcome.closed == closed, outcome
    if outcome.code >= 400:
        assert outcome.code < 500 or not any(f for f in injected), "a temporary error gave a 5xx"
        assert len(next_hop.received) == 0
    if stage == "done":
        assert len(next_hop.received) == 1
        message = next_hop.received[0].content.decode()
        header = next(line for line in message.split("\r\n") if line.startswith("Authentication-Results:"))
        parsed = authres.AuthenticationResultsHeader.parse(header)
        assert parsed.authserv_id == "gw.example.net"
        iprev = next(result for result in parsed.results if result.method == "iprev")
        assert iprev.result in ("pass", "fail", "permerror", "temperror")
        assert "Received: from " in message and "by gw.example.net (rdnsgate)" in message


def test_repeated_ehlo_keeps_the_worse_verdict(gateways: dict[str, GatewayProcess]) -> None:
    smtp = client(gateways["strict"], GOOD)
    try:
        assert smtp.ehlo("nxhost.example.org")[0] == 550
        code, _ = smtp.ehlo("good1.example.org")  # a better name later does not undo the verdict
        assert code == 550
        assert smtp.mail("bob@example.org")[0] == 503  # no accepted EHLO: aiosmtpd wants one first
    finally:
        smtp.close()


# --- the next hop ------------------------------------------------------------------------------------


def test_next_hop_refuses_some_recipients(gateways: dict[str, GatewayProcess], next_hop: NextHop) -> None:
    next_hop.clear()
    smtp = client(gateways["classic"], GOOD)
    try:
        smtp.ehlo("good1.example.org")
        smtp.mail("bob@example.org")
        assert smtp.rcpt("alice@example.net")[0] == 250
        code, text = smtp.rcpt("refuse-carol@example.net")
        assert code == 550 and b"User unknown" in text  # the next hop's own reply
        assert smtp.rcpt("later-dave@example.net")[0] == 450
        assert smtp.data("Subject: x\r\n\r\nbody\r\n")[0] == 250
    finally:
        smtp.quit()
    assert [item.recipients for item in next_hop.received] == [["alice@example.net"]]


def test_next_hop_refuses_all(gateways: dict[str, GatewayProcess], next_hop: NextHop) -> None:
    next_hop.clear()
    outcome = transact(gateways["classic"], recipients=("refuse-a@example.net", "refuse-b@example.net"))
    assert (outcome.stage, outcome.code) == ("rcpt", 550)
    assert next_hop.received == []


@pytest.mark.parametrize("local", ["drop", "stall"])
def test_next_hop_lost_or_stalled_gives_451(local: str, gateways: dict[str, GatewayProcess], next_hop: NextHop) -> None:
    next_hop.clear()
    outcome = transact(gateways["classic"], recipients=(f"{local}-x@example.net",))
    assert (outcome.stage, outcome.code) == ("data", 451) and outcome.text.startswith("4.4.1"), outcome
    if local == "stall":  # a stalled next hop must not deliver the message later either: wait out its stall
        time.sleep(next_hop.stall_seconds + 0.5)
    assert next_hop.received == []  # not accepted anywhere: the client will retry, nothing is lost


def test_next_hop_refuses_the_message(gateways: dict[str, GatewayProcess], next_hop: NextHop) -> None:
    outcome = transact(gateways["classic"], recipients=("reject-data-x@example.net",))
    assert (outcome.stage, outcome.code) == ("data", 554)


def test_next_hop_down_gives_451(tmp_path: Path, _responder: FaultResponder, stores: Stores) -> None:
    from tests.harness.knot import free_port

    gateway = GatewayProcess(
        tmp_path,
        settings(_responder.nameserver, f"smtp://127.0.0.1:{free_port()}", "classic", store=stores.url(tmp_path)),
    ).start()
    try:
        outcome = transact(gateway)
        assert (outcome.stage, outcome.code) == ("rcpt", 451) and "4.4.1" in outcome.text
    finally:
        gateway.stop()


def test_every_message_arrives_once(gateways: dict[str, GatewayProcess], next_hop: NextHop) -> None:
    next_hop.clear()
    for number in range(10):
        outcome = transact(
            gateways["postfix"],
            source=f"127.0.10.{5 + number}",
            helo=f"good{5 + number}.example.org",
            body=f"Subject: n{number}\r\n\r\nmessage {number}\r\n",
        )
        assert outcome.stage == "done", outcome
    bodies = sorted(item.content.split(b"\r\n\r\n", 1)[1] for item in next_hop.received)
    assert bodies == sorted(f"message {n}\r\n".encode() for n in range(10))


# --- relay, limits ------------------------------------------------------------------------------------


def test_internationalised_mail_passes_with_smtputf8(gateways: dict[str, GatewayProcess], next_hop: NextHop) -> None:
    """RFC 6531: a UTF-8 reverse path and headers reach the next hop with SMTPUTF8; without it: 553 5.6.7."""
    next_hop.clear()
    smtp = client(gateways["classic"], GOOD)
    try:
        assert smtp.ehlo("good1.example.org")[0] == 250 and smtp.has_extn("smtputf8")
        body = "From: Bøb <bøb@example.org>\r\nSubject: grüße\r\n\r\nhéllo\r\n".encode()
        refused = smtp.sendmail("bøb@example.org", ["alice@example.net"], body, mail_options=["SMTPUTF8"])
        assert refused == {}
    finally:
        smtp.quit()
    [message] = next_hop.received
    assert message.sender == "bøb@example.org" and "SMTPUTF8" in message.mail_options
    assert "Subject: grüße".encode() in message.content

    smtp = client(gateways["classic"], GOOD)
    try:
        smtp.ehlo("good1.example.org")
        smtp.command_encoding = "utf-8"
        assert smtp.docmd("MAIL", "FROM:<bøb@example.org>") == (
            553,
            b"5.6.7 Must declare SMTPUTF8 to send unicode address",
        )
        assert smtp.docmd("MAIL", "FROM:<bob@example.org>")[0] == 250
        assert smtp.docmd("RCPT", "TO:<ålice@example.net>")[0] == 553
    finally:
        smtp.close()


def test_open_relay_refused(gateways: dict[str, GatewayProcess], next_hop: NextHop) -> None:
    next_hop.clear()
    for profile in PROFILES:
        smtp = client(gateways[profile], GOOD)
        try:
            smtp.ehlo("good1.example.org")
            smtp.mail("bob@example.org")
            for target in ("victim@elsewhere.example", "alice@example.net.evil.example", "postmaster"):
                code, text = smtp.rcpt(target)
                assert code == 554 and b"Relay access denied" in text, (profile, target)
        finally:
            smtp.close()
    assert next_hop.received == []


def test_limits(tmp_path: Path, _responder: FaultResponder, next_hop: NextHop, stores: Stores) -> None:
    extra = "max_recipients = 2\nmax_message_size = 2000\nmax_sessions_per_ip = 2\n"
    text = settings(_responder.nameserver, next_hop.url, "classic", extra, store=stores.url(tmp_path))
    gateway = GatewayProcess(tmp_path, text).start()
    try:
        smtp = client(gateway, GOOD)
        smtp.ehlo("good1.example.org")
        smtp.mail("bob@example.org")
        assert smtp.rcpt("a@example.net")[0] == 250 and smtp.rcpt("b@example.net")[0] == 250
        assert smtp.rcpt("c@example.net")[0] == 452
        assert smtp.data("Subject: big\r\n\r\n" + ("x" * 78 + "\r\n") * 40)[0] == 552
        smtp.mail("bob@example.org")
        smtp.rcpt("a@example.net")
        assert smtp.data("Subject: long line\r\n\r\n" + "y" * 1500 + "\r\n")[0] == 500
        smtp.close()
        held = [client(gateway, "127.0.10.6"), client(gateway, "127.0.10.6")]
        third = smtplib.SMTP(source_address=("127.0.10.6", 0), timeout=10)
        assert third.connect("127.0.0.1", gateway.port)[0] == 421
        third.close()
        for smtp in held:
            smtp.close()
        assert transact(gateway, source="127.0.10.7", helo="good7.example.org").stage == "done"
    finally:
        gateway.stop()


# --- whitelist and decision log ----------------------------------------------------------------------


def test_whitelist_during_a_run_and_the_decision_log(gateways: dict[str, GatewayProcess]) -> None:
    gateway = gateways["strict"]
    assert transact(gateway, source=NO_PTR).code == 550
    added = gateway.run(
        "whitelist",
        "add",
        f"{NO_PTR}/32",
        "--reason",
        "legacy MTA, PTR ordered",
        "--ticket",
        "HD-123",
        "--expires",
        "1h",
    )
    assert added.returncode == 0 and "added" in added.stdout, added.stderr
    deadline = time.monotonic() + 10
    while transact(gateway, source=NO_PTR).code != 250:
        assert time.monotonic() < deadline, "the running gateway did not see the whitelist entry within 10 s"
        time.sleep(0.3)
    listed = gateway.run("whitelist", "list", "--json")
    assert [item["value"] for item in json.loads(listed.stdout)] == [f"{NO_PTR}/32"]
    assert gateway.run("whitelist", "remove", NO_PTR).returncode == 0
    deadline = time.monotonic() + 10
    while transact(gateway, source=NO_PTR).code != 550:
        assert time.monotonic() < deadline, "the removal was not seen within 10 s"
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while True:  # the decision log is written in the background
        found = gateway.run("decisions", "--ip", NO_PTR, "--since", "2h", "--json")
        records = [json.loads(line) for line in found.stdout.splitlines()]
        if any(item["whitelisted"] and "HD-123" in item["whitelisted"] for item in records):
            break
        assert time.monotonic() < deadline, records
        time.sleep(0.1)
    refused = [item for item in records if item["action"] == "reject"]
    assert refused and refused[0]["checks"]["iprev"]["reason"] == "no-ptr"
    words = gateway.run("decisions", "--ip", NO_PTR, "--since", "2h")
    assert "no-ptr" in words.stdout and "reject at HELO" in words.stdout


def test_whitelist_entry_expires(gateways: dict[str, GatewayProcess]) -> None:
    gateway = gateways["strict"]
    # 8 s leaves room for a slow CLI start on a loaded machine: the entry must be seen
    # before it expires, or the first loop could never succeed.
    lifetime = 8.0
    start = time.monotonic()
    assert gateway.run("whitelist", "add", MISMATCH, "--reason", "short test", "--expires", "8s").returncode == 0
    while transact(gateway, source=MISMATCH).code != 250:
        assert time.monotonic() < start + lifetime, "the running gateway never let the whitelisted client in"
        time.sleep(0.2)
    deadline = start + lifetime + 10  # after it expires, the next refresh drops it
    while transact(gateway, source=MISMATCH).code != 550:
        assert time.monotonic() < deadline, "the expired entry still lets the client in"
        time.sleep(0.2)
    gateway.run("whitelist", "remove", MISMATCH)
