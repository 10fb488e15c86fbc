"""Profiles: data that maps each check outcome to an action and an SMTP reply.

The built-in profiles live in ``profiles.toml`` beside this module; admins
write overrides in the same "CHECK RESULT [REASON]" = "ACTION [CODE ENHANCED
TEXT]" form.  Parsing validates every rule and names the bad key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any

from rdnsgate.checks.reasons import OFF, reason_problem
from rdnsgate.errors import ConfigError
from rdnsgate.model import Check, CheckResult, Result


class Action(StrEnum):
    ACCEPT = "accept"
    LOG = "log"
    TAG = "tag"
    TEMPFAIL = "tempfail"
    REJECT = "reject"

    @property
    def refuses(self) -> bool:
        return self in REFUSING


REFUSING = frozenset({Action.TEMPFAIL, Action.REJECT})  # the actions that refuse mail (a set: asked per request)


class Stage(StrEnum):
    """The SMTP command whose reply carries a refusal."""

    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"


class When(StrEnum):
    EARLIEST = "earliest"  # at the command where the failing check is known
    RCPT = "rcpt"  # every refusal at RCPT TO, like Postfix's smtpd_delay_reject


EARLIEST_STAGE = {
    Check.IPREV: Stage.HELO,
    Check.HELO: Stage.HELO,
    Check.HELO_ALIGN: Stage.HELO,
    Check.SENDER: Stage.MAIL,
    Check.GENERIC: Stage.HELO,
}

_REPLY = re.compile(r"(?P<code>[245]\d\d) (?P<enhanced>[245]\.\d{1,3}\.\d{1,3}) (?P<text>\S.*)\Z")


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    code: int | None = None
    enhanced: str | None = None
    text: str = ""

    @classmethod
    def parse(cls, value: str, key: str) -> Rule:
        """Parse "ACTION [CODE ENHANCED TEXT]"; refusals need the reply, others must not have one."""
        action_word, _, rest = value.strip().partition(" ")
        try:
            action = Action(action_word)
        except ValueError:
            choices = ", ".join(item.value for item in Action)
            raise ConfigError(f"{key}: unknown action {action_word!r} (one of {choices})") from None
        rest = rest.strip()
        if not action.refuses:
            if rest:
                raise ConfigError(f"{key}: {action} takes no reply, found {rest!r}")
            return cls(action)
        match = _REPLY.match(rest)
        if match is None:
            raise ConfigError(f"{key}: {action} needs 'CODE ENHANCED TEXT', e.g. '550 5.7.25 text', found {rest!r}")
        code, enhanced = int(match["code"]), match["enhanced"]
        expected = "4" if action is Action.TEMPFAIL else "5"
        if action is Action.TEMPFAIL and str(code)[0] != "4":
            raise ConfigError(f"{key}: a tempfail reply must be 4xx, not {code}")
        if action is Action.REJECT and str(code)[0] not in "45":
            raise ConfigError(f"{key}: a reject reply must be 4xx or 5xx, not {code}")
        if enhanced[0] != str(code)[0]:
            raise ConfigError(f"{key}: enhanced code {enhanced} does not match {code} (want {expected}.x.x)")
        return cls(action, code, enhanced, match["text"])


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    when: When
    close_on_reject: bool
    tag: bool
    rules: Mapping[tuple[str, str, str], Rule] = field(default_factory=dict)

    def rule_for(self, outcome: CheckResult) -> Rule:
        """The most specific rule for `outcome`; accept when none matches."""
        check, result = outcome.check.value, outcome.result.value
        for key in (
            (check, result, outcome.reason),
            (check, result, ""),
            ("*", result, outcome.reason),
            ("*", result, ""),
        ):
            rule = self.rules.get(key)
            if rule is not None:
                return rule
        return Rule(Action.ACCEPT)

    def stage_for(self, check: Check) -> Stage:
        return Stage.RCPT if self.when is When.RCPT else EARLIEST_STAGE[check]


def switched_off(check: Check) -> CheckResult:
    """The result of a check an override switched off: none/off, and no lookups made."""
    return CheckResult(check, Result.NONE, OFF, "switched off in the configuration")


def apply_overrides(profile: Profile, overrides: Sequence[str], where: str) -> tuple[Profile, frozenset[Check]]:
    """Per-check overrides "CHECK=off|log|tempfail CODE ENH TEXT|reject CODE ENH TEXT" on top of `profile`.

    Returns the new profile and the checks switched off (not run at all).  An
    override covers the check's fail and permerror outcomes; tempfail and log
    cover temperror too, but a reject never does: a temporary error stays 4xx.
    """
    rules = dict(profile.rules)
    off: set[Check] = set()
    for item in overrides:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        key = f"{where}: override {item!r}"
        try:
            check = Check(name)
        except ValueError:
            choices = ", ".join(c.value for c in Check)
            raise ConfigError(f"{key}: unknown check {name!r} (one of {choices})") from None
        if not sep or not value:
            raise ConfigError(f"{key}: write CHECK=off, CHECK=log, CHECK=tempfail CODE ENH TEXT or CHECK=reject ...")
        if value == OFF:
            off.add(check)
            continue
        rule = Rule.parse(value, key)
        results = ["fail", "permerror"] + (["temperror"] if rule.action is not Action.REJECT else [])
        for result in results:
            for existing in [k for k in rules if k[0] == check.value and k[1] == result]:
                del rules[existing]
            rules[(check.value, result, "")] = rule
    changed = Profile(profile.name, profile.description, profile.when, profile.close_on_reject, profile.tag, rules)
    return changed, frozenset(off)


def parse_rule_key(key: str, where: str) -> tuple[str, str, str]:
    parts = key.split()
    if len(parts) not in (2, 3):
        raise ConfigError(f"{where}: rule key {key!r} must be 'CHECK RESULT [REASON]'")
    check, result = parts[0], parts[1]
    if check != "*" and check not in {item.value for item in Check}:
        raise ConfigError(f"{where}: rule key {key!r}: unknown check {check!r}")
    if result not in {item.value for item in Result}:
        raise ConfigError(f"{where}: rule key {key!r}: unknown result {result!r}")
    reason = parts[2] if len(parts) == 3 else ""
    problem = reason_problem(check, result, reason) if reason else None
    if problem is not None:
        raise ConfigError(f"{where}: rule key {key!r}: {problem}")
    return check, result, reason


def parse_rules(table: Mapping[str, Any], where: str) -> dict[tuple[str, str, str], Rule]:
    rules = {}
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{key!r}: a rule is a string 'ACTION [CODE ENHANCED TEXT]'")
        rules[parse_rule_key(key, where)] = Rule.parse(value, f"{where}.{key!r}")
    return rules


def parse_profile(name: str, table: Mapping[str, Any]) -> Profile:
    known = {"description", "when", "close_on_reject", "tag", "rules"}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"profile {name}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        when = When(table.get("when", "earliest"))
    except ValueError:
        raise ConfigError(f"profile {name}: when must be 'earliest' or 'rcpt'") from None
    return Profile(
        name=name,
        description=str(table.get("description", "")),
        when=when,
        close_on_reject=bool(table.get("close_on_reject", False)),
        tag=bool(table.get("tag", False)),
        rules=parse_rules(table.get("rules", {}), f"profile {name}.rules"),
    )


def _load_builtin() -> dict[str, Profile]:
    text = resources.files(__package__).joinpath("profiles.toml").read_text(encoding="utf-8")
    return {name: parse_profile(name, table) for name, table in tomllib.loads(text).items()}


BUILTIN: dict[str, Profile] = _load_builtin()


def get_profile(name: str) -> Profile:
    try:
        return BUILTIN[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r} (one of {', '.join(BUILTIN)})") from None


def rules_markdown() -> str:
    """The built-in profiles' rules as one Markdown table (docs/profiles.md embeds it)."""
    keys = sorted({key for profile in BUILTIN.values() for key in profile.rules}, key=_key_order)
    lines = ["| outcome | " + " | ".join(f"`{name}`" for name in BUILTIN) + " |", "|---" * (len(BUILTIN) + 1) + "|"]
    for key in keys:
        cells = []
        for profile in BUILTIN.values():
            rule = profile.rules.get(key)
            if rule is None:
                cells.append("")
            elif rule.code is None:
                cells.append(rule.action.value)
            else:
                cells.append(f"{rule.action.value} `{rule.code} {rule.enhanced}` {rule.text}")
        outcome = " ".join(part for part in key if part)
        lines.append(f"| `{outcome}` | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _key_order(key: tuple[str, str, str]) -> tuple[int, str, str]:
    order = {"iprev": 0, "helo": 1, "helo-align": 2, "sender": 3, "*": 4}
    return order.get(key[0], 5), key[1], key[2]
