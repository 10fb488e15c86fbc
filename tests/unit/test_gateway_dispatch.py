"""aiosmtpd finds the gateway's commands and hooks by name prefix; the shortened dir() keeps every one.
What the gateway does in place of aiosmtpd's per-connection work is held to what aiosmtpd does."""

from __future__ import annotations

import asyncio
import inspect
import types

from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.frontends.smtp_proxy import GatewaySMTP, _Hooks


def by_prefix(names: list[str], prefixes: tuple[str, ...]) -> set[str]:
    return {name for name in names if name.startswith(prefixes)}


def test_the_hooks_dir_keeps_every_hook() -> None:
    hooks = _Hooks.__new__(_Hooks)
    full = object.__dir__(hooks)
    assert by_prefix(dir(hooks), ("handle_", "auth_")) == by_prefix(full, ("handle_", "auth_"))
    assert {"handle_RCPT", "handle_EHLO", "handle_exception"} <= set(dir(hooks))


def test_the_sessions_dir_keeps_every_command() -> None:
    session = GatewaySMTP.__new__(GatewaySMTP)
    full = object.__dir__(session)
    assert by_prefix(dir(session), ("smtp_", "auth_")) == by_prefix(full, ("smtp_", "auth_"))
    assert {"smtp_EHLO", "smtp_MAIL", "smtp_DATA"} <= set(dir(session))


def test_handle_ehlo_carries_the_signature_aiosmtpd_reads() -> None:
    function = _Hooks.handle_EHLO
    bare = types.FunctionType(function.__code__, function.__globals__, function.__name__, function.__defaults__)
    bare.__annotations__ = function.__annotations__
    assert "__signature__" in vars(function)
    assert inspect.signature(function) == inspect.signature(bare)
    assert len(inspect.signature(_Hooks.__new__(_Hooks).handle_EHLO).parameters) == 5  # aiosmtpd's "new" hook


class Writer:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def drain(self) -> None:
        pass


def replies(lines: list[str]) -> list[bytes]:
    """What a session's `push` writes for `lines`, write by write."""
    session = GatewaySMTP.__new__(GatewaySMTP)
    session.hello_reply, session.session, session.lines = True, None, bytearray()
    session.enable_SMTPUTF8, session.close_after_reply, session.transport = True, False, None
    writer = session._writer = Writer()  # type: ignore[assignment]

    async def push_all() -> None:
        for line in lines:
            await session.push(line)

    asyncio.run(push_all())
    return writer.writes


@given(st.lists(st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=20), min_size=1, max_size=9)))
def test_a_multi_line_reply_goes_out_in_one_write(texts: list[list[str]]) -> None:
    """Each reply is one write, byte for byte the lines aiosmtpd would have written one by one."""
    lines = [
        f"250{'-' if index < len(reply) - 1 else ' '}{text}" for reply in texts for index, text in enumerate(reply)
    ]
    expected = [
        b"".join(f"250{'-' if index < len(reply) - 1 else ' '}{text}\r\n".encode() for index, text in enumerate(reply))
        for reply in texts
    ]
    assert replies(lines) == expected
