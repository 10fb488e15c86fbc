"""Every check's reason codes in one table: the result each goes with and what it means.

Each check module declares its reasons once (``REASONS``, the HELO module
also ``ALIGN_REASONS``) as ``code -> "result: meaning"``; this module
gathers them.  Profile rules are validated against it at load (a typo in a
rule key is a config error naming the key), docs/checks.md's tables are
generated from it, and the tests take their coverage list from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdnsgate.checks import generic, helo, iprev, sender
from rdnsgate.model import Check, Result

OFF = "off"  # the reason of every check an admin switched off (result none)


@dataclass(frozen=True, slots=True)
class Reason:
    check: Check
    code: str
    result: Result
    meaning: str


def _declared(check: Check, table: dict[str, str]) -> dict[str, Reason]:
    out = {}
    for code, text in table.items():
        word, _, meaning = text.partition(": ")
        out[code] = Reason(check, code, Result(word), meaning)
    out[OFF] = Reason(check, OFF, Result.NONE, "switched off in the configuration")
    return out


REASONS: dict[Check, dict[str, Reason]] = {
    Check.IPREV: _declared(Check.IPREV, iprev.REASONS),
    Check.HELO: _declared(Check.HELO, helo.REASONS),
    Check.HELO_ALIGN: _declared(Check.HELO_ALIGN, helo.ALIGN_REASONS),
    Check.SENDER: _declared(Check.SENDER, sender.REASONS),
    Check.GENERIC: _declared(Check.GENERIC, generic.REASONS),
}


def reason_problem(check: str, result: str, reason: str) -> str | None:
    """What is wrong with the rule key "CHECK RESULT REASON" (CHECK may be "*"), or None."""
    checks = list(REASONS) if check == "*" else [Check(check)]
    fitting = sorted({code for item in checks for code, found in REASONS[item].items() if found.result.value == result})
    if reason in fitting:
        return None
    known = ", ".join(fitting) or "none"
    if check == "*":
        return f"no check has a reason {reason!r} with result {result} (those are: {known})"
    return f"{check} has no reason {reason!r} with result {result} (those are: {known})"


def reasons_markdown(check: Check) -> str:
    """The table of `check`'s reasons for docs/checks.md."""
    lines = ["| reason | result: meaning |", "|---|---|"]
    for item in REASONS[check].values():
        if item.code != OFF:
            lines.append(f"| `{item.code}` | {item.result.value}: {item.meaning} |")
    return "\n".join(lines)
