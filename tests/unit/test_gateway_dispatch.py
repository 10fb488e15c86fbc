"""aiosmtpd finds the gateway's commands and hooks by name prefix; the shortened dir() keeps every one."""

from __future__ import annotations

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
