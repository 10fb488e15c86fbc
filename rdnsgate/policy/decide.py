"""Pure: a `Report` plus a profile (and a whitelist match) -> a `Decision`.

Each check's outcome gets its profile rule.  Refusals are ordered by the SMTP
stage that carries them; within a stage the first `reject` in check order
(iprev, HELO, sender — Postfix's restriction order) wins, and a `tempfail`
applies only when nothing rejects (Postfix's DEFER_IF_PERMIT).  A temporary
error can therefore never turn into a permanent refusal, and no rule of a
built-in profile maps a temperror to 5xx (a property test holds both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from rdnsgate.model import Check, CheckResult, Report
from rdnsgate.policy.headers import authentication_results, printable
from rdnsgate.policy.profiles import REFUSING, Action, Profile, Rule, Stage

STAGE_ORDER = (Stage.HELO, Stage.MAIL, Stage.RCPT)
CHECK_ORDER = (Check.IPREV, Check.HELO, Check.HELO_ALIGN, Check.SENDER, Check.GENERIC)


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the profile does with one check's outcome."""

    outcome: CheckResult
    action: Action
    stage: Stage
    reply: Reply | None


@dataclass(frozen=True, slots=True)
class Decision:
    profile: str
    action: Action  # accept, tag, tempfail or reject
    stage: Stage | None  # when the refusal is given
    reply: Reply | None
    close: bool  # drop the connection after the reply
    cause: CheckResult | None
    verdicts: tuple[Verdict, ...]
    whitelisted: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def refused(self) -> bool:
        return self.action in REFUSING


def render_text(
    template: str,
    report: Report,
    outcome: CheckResult,
    check_url: str | None,
    footer: str | None = None,
    link: Callable[[CheckResult], str] | None = None,
) -> str:
    """Fill a rule's text; every value is made printable and capped.  The check page's link (with its signed
    token, policy/exceptions.py, when `link` signs) and the footer are kept whole: the text gives way."""
    ptr = report.iprev.shown_name or ""
    values = {
        "ip": str(report.ip),
        "helo": printable(report.helo_name or "", 100),
        "sender": printable(report.sender_address or "", 100),
        "domain": printable(report.sender_domain or "", 100),
        "ptr": printable(ptr, 100),
        "detail": printable(outcome.detail, 300),
    }
    text = template
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    tail = ""
    if check_url:
        separator = "&" if "?" in check_url else "?"
        token = f"&t={link(outcome)}" if link is not None else ""
        tail += f" - see {printable(check_url, 200)}{separator}ip={report.ip}{token}"
    if footer:
        tail += f" {printable(footer, 200)}"
    tail = printable(tail, 400)
    return printable(text, 480 - len(tail)) + tail


def _reply(
    rule: Rule,
    report: Report,
    outcome: CheckResult,
    check_url: str | None,
    footer: str | None,
    link: Callable[[CheckResult], str] | None,
) -> Reply | None:
    if rule.code is None or rule.enhanced is None:
        return None
    return Reply(rule.code, rule.enhanced, render_text(rule.text, report, outcome, check_url, footer, link))


def decide(
    report: Report,
    profile: Profile,
    *,
    whitelisted: str | None = None,
    authserv_id: str = "localhost",
    check_url: str | None = None,
    footer: str | None = None,
    link: Callable[[CheckResult], str] | None = None,
) -> Decision:
    """Apply `profile` to `report`; `whitelisted` (the matching entry) skips refusals."""
    outcomes = {item.check: item for item in report.checks}
    verdicts = []
    for check in CHECK_ORDER:
        outcome = outcomes[check]
        rule = profile.rule_for(outcome)
        verdicts.append(
            Verdict(
                outcome, rule.action, profile.stage_for(check), _reply(rule, report, outcome, check_url, footer, link)
            )
        )
    headers = (("Authentication-Results", authentication_results(authserv_id, report.iprev)),)

    if whitelisted is None:
        for stage in STAGE_ORDER:
            here = [item for item in verdicts if item.stage is stage]
            chosen = next((item for item in here if item.action is Action.REJECT), None)
            chosen = chosen or next((item for item in here if item.action is Action.TEMPFAIL), None)
            if chosen is not None:
                close = (
                    profile.close_on_reject
                    and chosen.action is Action.REJECT
                    and chosen.reply is not None
                    and chosen.reply.code >= 500
                )
                return Decision(
                    profile.name, chosen.action, stage, chosen.reply, close, chosen.outcome, tuple(verdicts)
                )
    tagged = profile.tag or any(item.action is Action.TAG for item in verdicts)
    action = Action.TAG if tagged else Action.ACCEPT
    return Decision(profile.name, action, None, None, False, None, tuple(verdicts), whitelisted, headers)


def temporary_instead(decision: Decision, why: str) -> Decision:
    """A permanent refusal made temporary because the resolver cannot be trusted now (lookups/health.py):
    the sender retries, and nothing is refused for good on the word of a broken resolver."""
    if decision.reply is None or decision.reply.code < 500:
        return decision
    text = printable(f"Temporary DNS failure on our side ({why}); not refused for good, try again later", 480)
    return replace(decision, action=Action.TEMPFAIL, reply=Reply(451, "4.4.3", text), close=False)
