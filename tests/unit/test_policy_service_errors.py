"""An internal error in the policy service: a logged traceback and a closed connection, no answer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rdnsgate.frontends.policy_server import PolicyService, reply
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.profiles import get_profile
from rdnsgate.policy.session import Policy


class BrokenEngine:
    async def iprev(self, *args: object) -> None:
        raise RuntimeError("secret internal detail")


async def test_internal_error_disconnects_without_answer(caplog: pytest.LogCaptureFixture) -> None:
    policy = Policy(get_profile("postfix"), authserv_id="mx")
    service = PolicyService(BrokenEngine(), policy, DecisionLog(None))  # type: ignore[arg-type]
    server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
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
