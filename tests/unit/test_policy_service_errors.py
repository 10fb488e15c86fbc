"""An internal error in the policy service: a logged traceback and a closed connection, no answer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rdnsgate.frontends.policy_server import PolicyConnection, PolicyService, reply
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.profiles import get_profile
from rdnsgate.policy.session import Policy


class BrokenEngine:
    async def iprev(self, *args: object) -> None:
        raise RuntimeError("secret internal detail")


async def test_internal_error_disconnects_without_answer(caplog: pytest.LogCaptureFixture) -> None:
    policy = Policy(get_profile("postfix"), authserv_id="mx")
    service = PolicyService(BrokenEngine(), policy, DecisionLog(None))  # type: ignore[arg-type]
    server = await asyncio.get_running_loop().create_server(lambda: PolicyConnection(service), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"protocol_state=RCPT\nclient_address=192.0.2.1\ninstance=x\n\n")
        with caplog.at_level(logging.ERROR):
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing said
        assert "internal error; disconnecting" in caplog.text and "secret internal detail" in caplog.text
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # still serving
        writer.write(b"protocol_state=CONNECT\nclient_address=192.0.2.1\n\n")
        assert await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) == reply("DUNNO")
        writer.close()
    finally:
        server.close()


class SlowEngine:
    """iprev takes a while (as a lookup does), then fails inside: the answer comes from a task."""

    async def iprev(self, *args: object) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("after a wait")


async def test_requests_behind_one_that_waits_are_answered_after_it_in_order(caplog: pytest.LogCaptureFixture) -> None:
    policy = Policy(get_profile("postfix"), authserv_id="mx")
    service = PolicyService(SlowEngine(), policy, DecisionLog(None))  # type: ignore[arg-type]
    server = await asyncio.get_running_loop().create_server(lambda: PolicyConnection(service), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"protocol_state=CONNECT\nclient_address=192.0.2.1\n\n" * 3)
        for _ in range(3):
            assert await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) == reply("DUNNO")
        # One that waits, then two that would not: nothing is answered out of order; the failure after
        # the wait closes the connection without an answer to any of them.
        writer.write(
            b"protocol_state=RCPT\nclient_address=192.0.2.1\ninstance=y\n\n"
            + b"protocol_state=CONNECT\nclient_address=192.0.2.1\n\n" * 2
        )
        with caplog.at_level(logging.ERROR):
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert "after a wait" in caplog.text
        writer.close()
    finally:
        server.close()


class Echo(PolicyService):
    """Answers `say`, after `wait` seconds when a request asks for a wait."""

    async def answer(self, request: dict[str, str]) -> str:
        if "wait" in request:
            await asyncio.sleep(float(request["wait"]))
        return request["say"]


async def test_answers_keep_the_order_of_the_requests() -> None:
    service = Echo(None, Policy(get_profile("postfix")), DecisionLog(None))  # type: ignore[arg-type]
    server = await asyncio.get_running_loop().create_server(lambda: PolicyConnection(service), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        said = [f"a{number}" for number in range(500)]
        requests = [
            f"say={word}\n" + ("wait=0.01\n" if number % 97 == 0 else "") + "\n" for number, word in enumerate(said)
        ]
        writer.write("".join(requests).encode())  # far more than are read ahead: reading pauses and resumes
        for word in said:
            assert await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) == reply(word)
        writer.close()
    finally:
        server.close()
