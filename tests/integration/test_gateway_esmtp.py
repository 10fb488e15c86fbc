"""The gateway as an ESMTP server: extensions mirrored from the next hop, DSN, pipelining, enhanced codes,
streamed DATA, and no SMTP smuggling.  Real `rdnsgate serve gateway` processes, raw sockets and smtplib."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.faultdns import FaultResponder
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess, NextHop
from tests.integration.test_gateway import GOOD, client, settings

# Every known way to end DATA early with a non-CRLF dot line (the SMTP smuggling family).
SMUGGLING = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r\n.\n",
    b"\r\n.\r",
    b"\n.\r",
    b"\r.\n",
    b"\r\n\x00.\r\n",
    b"\r\n.\x00\r\n",
]
SMUGGLED = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"


@pytest.fixture(scope="module")
def hops() -> Iterator[dict[str, NextHop]]:
    started = {"plain": NextHop().start(), "dsn": NextHop(dsn=True).start()}
    yield started
    for hop in started.values():
        hop.stop()


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, _responder: FaultResponder, hops: dict[str, NextHop], stores: Stores
) -> Iterator[dict[str, GatewayProcess]]:
    made: dict[str, GatewayProcess] = {}
    extra = {
        "plain": "max_message_size = 5000000",
        "dsn": "",
        "reject": 'bare_line_ends = "reject"',
    }
    try:
        for name, line in extra.items():
            hop = hops["dsn" if name == "dsn" else "plain"]
            workdir = tmp_path_factory.mktemp(f"esmtp-{name}")
            text = settings(_responder.nameserver, hop.url, "monitor", line, store=stores.url(workdir))
            made[name] = GatewayProcess(workdir, text).start()
        yield made
    finally:
        for process in made.values():
            process.stop()


def raw(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((GOOD, 0))
    sock.connect(("127.0.0.1", port))
    sock.settimeout(15)
    return sock


def replies(sock: socket.socket, count: int) -> list[bytes]:
    """Read `count` complete replies (a multi-line reply counts once)."""
    data = b""
    while True:
        lines = data.split(b"\r\n")[:-1]
        done = [line for line in lines if line[3:4] == b" "]
        if len(done) >= count:
            return done[:count]
        chunk = sock.recv(65536)
        if not chunk:
            return done
        data += chunk


def ehlo(sock: socket.socket) -> list[str]:
    assert replies(sock, 1)[0].startswith(b"220")
    sock.sendall(b"EHLO good1.example.org\r\n")
    data = b""
    while not data.endswith(b"250 HELP\r\n"):
        data += sock.recv(65536)
    return [line[4:].decode() for line in data.split(b"\r\n") if line]


def test_ehlo_offers_what_the_next_hop_honours(gateways: dict[str, GatewayProcess]) -> None:
    with raw(gateways["plain"].port) as sock:
        offered = ehlo(sock)
    assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "SIZE 5000000"} <= set(offered)
    assert "DSN" not in offered  # the plain next hop does not offer it
    with raw(gateways["dsn"].port) as sock:
        offered = ehlo(sock)
    assert "DSN" in offered and "SIZE 26214400" in offered  # the smaller of ours and the next hop's 32 MiB


def test_dsn_parameters_reach_the_next_hop_unchanged(
    gateways: dict[str, GatewayProcess], hops: dict[str, NextHop]
) -> None:
    hop = hops["dsn"]
    hop.clear()
    smtp = client(gateways["dsn"], GOOD)
    try:
        smtp.ehlo("good1.example.org")
        assert smtp.has_extn("dsn")
        assert smtp.docmd("MAIL", "FROM:<bob@example.org> RET=HDRS ENVID=QQ314159+2Bx")[0] == 250
        code, _ = smtp.docmd("RCPT", "TO:<alice@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice@Example.NET")
        assert code == 250
        assert smtp.docmd("RCPT", "TO:<carol@example.net> NOTIFY=NEVER")[0] == 250
        assert smtp.data(b"Subject: dsn\r\n\r\nhello\r\n")[0] == 250
    finally:
        smtp.quit()
    [message] = hop.received
    assert message.commands == [
        "MAIL FROM:<bob@example.org> RET=HDRS ENVID=QQ314159+2Bx",
        "RCPT TO:<alice@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice@Example.NET",
        "RCPT TO:<carol@example.net> NOTIFY=NEVER",
    ]
    smtp = client(gateways["plain"], GOOD)  # DSN not offered: its parameters are refused, not dropped
    try:
        smtp.ehlo("good1.example.org")
        assert smtp.docmd("MAIL", "FROM:<bob@example.org> RET=HDRS")[0] == 555
    finally:
        smtp.close()


def test_pipelined_commands_answered_in_order(gateways: dict[str, GatewayProcess], hops: dict[str, NextHop]) -> None:
    hops["plain"].clear()
    with raw(gateways["plain"].port) as sock:
        ehlo(sock)
        sock.sendall(
            b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.net>\r\nRCPT TO:<nobody@elsewhere.example>\r\n"
            b"RCPT TO:<carol@example.net>\r\nDATA\r\n"
        )
        got = replies(sock, 5)
        assert [line[:3] for line in got] == [b"250", b"250", b"554", b"250", b"354"], got
        sock.sendall(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        got = replies(sock, 3)
        assert got[0].startswith(b"250 ") and got[1] == b"250 2.0.0 OK" and got[2].startswith(b"221 2.0.0"), got
    [message] = hops["plain"].received
    assert message.recipients == ["alice@example.net", "carol@example.net"]


def test_every_reply_after_ehlo_has_an_enhanced_code(gateways: dict[str, GatewayProcess]) -> None:
    with raw(gateways["plain"].port) as sock:
        ehlo(sock)
        for command in (b"NOOP", b"FROB", b"DATA", b"RCPT TO:<alice@example.net>", b"MAIL FROM:<", b"VRFY x"):
            sock.sendall(command + b"\r\n")
            [reply] = replies(sock, 1)
            assert reply[4:5].isdigit() and reply[5:6] == b"." and reply[0:1] == reply[4:5], (command, reply)


@pytest.mark.parametrize("ending", SMUGGLING, ids=[repr(item) for item in SMUGGLING])
def test_no_smuggling(ending: bytes, gateways: dict[str, GatewayProcess], hops: dict[str, NextHop]) -> None:
    hop = hops["plain"]
    hop.clear()
    with raw(gateways["plain"].port) as sock:
        ehlo(sock)
        sock.sendall(b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\n")
        assert [line[:3] for line in replies(sock, 3)] == [b"250", b"250", b"354"]
        sock.sendall(b"Subject: innocent\r\n\r\nhello" + ending + SMUGGLED + b".\r\nQUIT\r\n")
        got = replies(sock, 2)
        assert got[0].startswith(b"250 ") and got[1].startswith(b"221"), got
    [message] = hop.received  # exactly one message, from bob, holding the attempt as text
    assert message.sender == "bob@example.org" and message.recipients == ["alice@example.net"]
    assert b"MAIL FROM:<evil@example.org>" in message.content and b"Subject: innocent" in message.content
    for line in message.content.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line  # every line end is CRLF now


def test_bare_line_ends_refused_when_asked(gateways: dict[str, GatewayProcess], hops: dict[str, NextHop]) -> None:
    hop = hops["plain"]
    hop.clear()
    with raw(gateways["reject"].port) as sock:
        ehlo(sock)
        sock.sendall(b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\n")
        replies(sock, 3)
        sock.sendall(b"Subject: x\r\n\r\nbare\n.\nMAIL FROM:<evil@example.org>\r\n.\r\nNOOP\r\n")
        got = replies(sock, 2)
        assert got[0].startswith(b"554 5.5.2") and got[1].startswith(b"250"), got
    assert hop.received == []


def test_a_big_message_streams_through_intact(gateways: dict[str, GatewayProcess], hops: dict[str, NextHop]) -> None:
    hop = hops["plain"]
    hop.clear()
    lines = [f"line {number:07d} " + "x" * 60 for number in range(40_000)]  # ~3 MB, many 64 KiB blocks
    lines[1000] = "." + lines[1000]  # a line that starts with a dot, inside a block
    lines[20_000] = "."  # a line that is only a dot
    body = "Subject: big\r\n\r\n" + "\r\n".join(lines) + "\r\n"
    smtp = client(gateways["plain"], GOOD)
    try:
        smtp.ehlo("good1.example.org")
        assert smtp.sendmail("bob@example.org", ["alice@example.net"], body) == {}
    finally:
        smtp.quit()
    [message] = hop.received
    assert (
        message.content.split(b"\r\n\r\n", 1)[1]
        .split(b"\r\n\r\n", 1)[-1]
        .endswith(body.split("\r\n\r\n", 1)[1].encode())
    )


def test_over_size_and_a_client_gone_mid_data_leave_nothing(
    gateways: dict[str, GatewayProcess], hops: dict[str, NextHop]
) -> None:
    hop = hops["plain"]
    hop.clear()
    smtp = client(gateways["plain"], GOOD)
    try:
        smtp.ehlo("good1.example.org")
        with pytest.raises(smtplib.SMTPSenderRefused) as early:  # smtplib says SIZE=: refused at MAIL
            smtp.sendmail("bob@example.org", ["alice@example.net"], b"Subject: big\r\n\r\n" + b"y" * 6_000_000)
        assert early.value.smtp_code == 552
    finally:
        smtp.close()
    with raw(gateways["plain"].port) as sock:  # no SIZE=: read to the end, then refused
        ehlo(sock)
        sock.sendall(b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\n")
        replies(sock, 3)
        sock.sendall(b"Subject: big\r\n\r\n" + b"y" * 70 + b"\r\n" * 1 + (b"y" * 998 + b"\r\n") * 6000 + b".\r\n")
        [reply] = replies(sock, 1)
        assert reply.startswith(b"552 5.3.4"), reply
    with raw(gateways["plain"].port) as sock:
        ehlo(sock)
        sock.sendall(b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\n")
        replies(sock, 3)
        sock.sendall(b"Subject: half\r\n\r\n" + b"z" * 300_000 + b"\r\n")  # more than one block went out
    time.sleep(0.5)
    assert hop.received == []  # the next hop never got the final dot
    assert "Traceback" not in gateways["plain"].log()


def test_maildir_streams_too(tmp_path: Path, _responder: FaultResponder, stores: Stores) -> None:
    text = settings(
        _responder.nameserver, "", "monitor", f'maildir = "{tmp_path / "mail"}"', store=stores.url(tmp_path)
    )
    gateway = GatewayProcess(tmp_path / "gw", text).start()
    try:
        smtp = client(gateway, GOOD)
        body = "Subject: maildir\r\n\r\n" + "".join(f".dot line {n}\r\n" for n in range(30_000))
        assert smtp.sendmail("bob@example.org", ["alice@example.net"], body) == {}
        smtp.quit()
    finally:
        gateway.stop()
    [stored] = list((tmp_path / "mail" / "new").iterdir())
    assert stored.read_bytes().endswith(body.split("\r\n\r\n", 1)[1].replace("\r\n", "\n").encode())
    assert list((tmp_path / "mail" / "tmp").iterdir()) == []
