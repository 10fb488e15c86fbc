"""The exit statuses of every ``rdnsgate`` command, in one place (docs/cli.md shows this table)."""

from __future__ import annotations

from enum import IntEnum

from rdnsgate.model import Result


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    TEMPORARY = 3

    @property
    def meaning(self) -> str:
        return _MEANING[self]


_MEANING = {
    Exit.OK: "every check passed; a command or service finished as asked",
    Exit.FAILED: "a check failed (HELO alignment never counts); a service stopped on its own",
    Exit.USAGE: "bad usage: a wrong option or argument, a settings error (the message names the key), nothing matched",
    Exit.TEMPORARY: "a temporary DNS error, and nothing failed; or the store cannot be reached: ask again later",
}


def for_result(result: Result) -> Exit:
    """The status of a check or audit whose overall result is `result` (pass, fail or temperror)."""
    if result in (Result.FAIL, Result.PERMERROR):
        return Exit.FAILED
    if result is Result.TEMPERROR:
        return Exit.TEMPORARY
    return Exit.OK


def exits_markdown() -> str:
    lines = ["| status | meaning |", "|---|---|"]
    lines += [f"| `{item.value}` | {item.meaning} |" for item in Exit]
    return "\n".join(lines)
