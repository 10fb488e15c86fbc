"""One conversation with one SMTP client, as every mail face drives it.

The gateway calls `Session.helo`, `mail` and `rcpt` as the commands arrive;
the Postfix policy service, which gets HELO and sender with every request,
calls `Session.evaluate` and then `answer`.  Both get the same thing back: a
`Decision`, and whether its refusal is due at the stage they are at.  The
session owns everything that decides a reply:

- the `Policy` (profile, switched-off checks, reply extras), fixed when the
  session starts, so a reload never changes a conversation half-way;
- switched-off checks are never looked up;
- the whitelist, read from its holder at each decision (a refresh applies at
  once, also within a session);
- the HELO verdict across repeated HELO/EHLO: the worse result stands, so a
  client cannot try again with another name;
- the stage at which a refusal is due (`due`);
- one decision record per refusal and one per accepted message (`record`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from rdnsgate.checks.helo import classify_helo, evaluate_alignment, evaluate_helo
from rdnsgate.checks.sender import SenderForm, parse_reverse_path
from rdnsgate.errors import ConfigError
from rdnsgate.model import (
    Check,
    CheckResult,
    DecisionRecord,
    IPAddress,
    IprevReport,
    Lookup,
    Report,
    Result,
    Status,
    WhitelistEntry,
)
from rdnsgate.policy.decide import Decision, decide, temporary_instead
from rdnsgate.policy.decision_log import make_record
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.exceptions import LinkSigner
from rdnsgate.policy.profiles import Profile, Stage, apply_overrides, get_profile, switched_off
from rdnsgate.policy.whitelist import match

SEVERITY = {Result.PASS: 0, Result.NONE: 0, Result.TEMPERROR: 1, Result.FAIL: 2, Result.PERMERROR: 3}
STAGE_RANK = {Stage.HELO: 0, Stage.MAIL: 1, Stage.RCPT: 2}
NO_HELO = CheckResult(Check.HELO, Result.NONE, "not-given", "no HELO yet")
NO_ALIGN = CheckResult(Check.HELO_ALIGN, Result.NONE, "not-checked", "no HELO yet")
NO_SENDER = CheckResult(Check.SENDER, Result.NONE, "not-given", "no MAIL FROM yet")
REPORT_TTL = 60.0  # seconds a report may serve later sessions of the same client, at most
DECIDED_KEPT = 4096  # decisions remembered per policy for reports shared between sessions


def worse(old: CheckResult | None, new: CheckResult) -> CheckResult:
    """The verdict that stands after a repeated HELO: the new one unless the old one is worse."""
    return new if old is None or SEVERITY[new.result] >= SEVERITY[old.result] else old


class Recorder(Protocol):
    def record(self, record: DecisionRecord) -> None: ...


class PolicySettings(Protocol):
    """What a face's settings say about deciding (GatewaySettings and PolicySettings both do)."""

    @property
    def profile(self) -> str: ...
    @property
    def overrides(self) -> tuple[str, ...]: ...
    @property
    def authserv_id(self) -> str: ...
    @property
    def check_url(self) -> str: ...
    @property
    def reject_footer(self) -> str: ...


class WhitelistHolder(Protocol):
    whitelist: list[WhitelistEntry]


@dataclass(frozen=True, slots=True)
class Policy:
    """How one face decides: the profile with its overrides, and what every reply carries."""

    profile: Profile
    off: frozenset[Check] = frozenset()
    authserv_id: str = "localhost"
    check_url: str | None = None
    footer: str | None = None
    node: str = ""
    signer: LinkSigner | None = None  # signs the check page's link in refusals (policy/exceptions.py)
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # clients not checked at all
    # Decisions already made on a report shared by many sessions (RecentReports): (report, entry, decision)
    # by (id(report), id(entry)); checked by identity, so a reused id never answers for another report.
    _decided: dict[tuple[int, int], tuple[Report, WhitelistEntry | None, Decision]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # ... and by an equal report: (made at, entry, decision) by (report, id(entry)) (`_alike`)
    _equal: dict[tuple[Report, int], tuple[float, WhitelistEntry | None, Decision]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_settings(
        cls, settings: PolicySettings, section: str, hostname: str, node: str = "", signer: LinkSigner | None = None
    ) -> Policy:
        """From a face's settings section (``gateway`` or ``policy``); a bad profile or override names its key.

        `node` names this node on the decision records (default: `hostname`).
        """
        try:
            base = get_profile(settings.profile)
        except ConfigError as exc:
            raise ConfigError(f"{section}.profile: {exc}") from None
        changed, off = apply_overrides(base, settings.overrides, f"{section}.overrides")
        return cls(
            changed,
            off,
            settings.authserv_id or hostname,
            settings.check_url or None,
            settings.reject_footer or None,
            node or hostname,
            signer,
            tuple(
                ipaddress.ip_network(item.strip(), strict=False) for item in getattr(settings, "trusted_networks", ())
            ),
        )

    def trusted_reason(self, ip: IPAddress) -> str | None:
        """Why `ip` is not checked at all (a trusted network), or None."""
        network = next((net for net in self.trusted if ip.version == net.version and ip in net), None)
        return None if network is None else f"trusted network {network}"

    def decide_listed(self, report: Report, whitelist: Sequence[WhitelistEntry]) -> Decision:
        """The decision on `report` with the entry of `whitelist` that covers it now, if any."""
        return self.decide(report, match(whitelist, report.ip, report.sender_domain, datetime.now(UTC)))

    def decide(self, report: Report, whitelisted: WhitelistEntry | None) -> Decision:
        key = (id(report), id(whitelisted))
        known = self._decided.get(key)
        if known is not None and known[0] is report and known[1] is whitelisted:
            return known[2]
        decision = self._alike(report, whitelisted)
        if self._unique(decision):
            return decision
        if len(self._decided) >= DECIDED_KEPT:
            self._decided.clear()
        self._decided[key] = (report, whitelisted, decision)
        return decision

    def _alike(self, report: Report, whitelisted: WhitelistEntry | None) -> Decision:
        """The decision made on an equal report (with the same entry) within REPORT_TTL, else a new one.

        The gateway builds a new report for each session, equal to the last one of the same client, HELO and
        sender while the cached answers behind it stand; comparing costs a tenth of deciding again.  A refusal
        with a signed link is never shared (`_unique`).
        """
        now = time.monotonic()
        key = (report, id(whitelisted))
        known = self._equal.get(key)
        if known is not None and known[1] is whitelisted and now - known[0] < REPORT_TTL:
            return known[2]
        decision = self._decide(report, whitelisted)
        if self._unique(decision):
            return decision
        if len(self._equal) >= DECIDED_KEPT:
            self._equal.clear()
        self._equal[key] = (now, whitelisted, decision)
        return decision

    def _unique(self, decision: Decision) -> bool:
        """A refusal whose reply links to the check page with a signed token: the token's nonce names this one
        refusal (one exception request per refusal, policy/exceptions.py), so the decision is never shared."""
        return decision.reply is not None and self.signer is not None and self.check_url is not None

    def _decide(self, report: Report, whitelisted: WhitelistEntry | None) -> Decision:
        return decide(
            report,
            self.profile,
            whitelisted=whitelisted.describe() if whitelisted else None,
            authserv_id=self.authserv_id,
            check_url=self.check_url,
            footer=self.footer,
            link=self._link(report) if self.signer is not None and self.check_url else None,
        )

    def _link(self, report: Report) -> Callable[[CheckResult], str]:
        signer, ip, at = self.signer, str(report.ip), int(time.time())
        assert signer is not None
        return lambda outcome: signer.sign(ip, outcome.check.value, at)


def shares_fresh(known: Report, helo: str) -> bool:
    """Whether a new session whose first request names `helo` and a sender takes `known`, the recent report of
    its client, `helo` and that sender (`RecentReports`), as its own: what `evaluate` and `_same_as` find for a
    session with nothing before, without making one.

    The client and the sender fields always agree (they are the key's, and a report is kept under the reverse
    path it was made from); the HELO name may not, when an earlier, worse HELO stood in the session that made
    it.  A property test holds the policy service's answers with and without this shortcut together.
    """
    return known.helo_name == helo


def due(decision: Decision, stage: Stage) -> bool:
    """True when `decision` refuses and its refusal belongs at `stage` or before."""
    return decision.refused and decision.stage is not None and STAGE_RANK[decision.stage] <= STAGE_RANK[stage]


def _fresh_for(lookup: Lookup) -> float:
    return float(lookup.negative_ttl if lookup.negative_ttl is not None else lookup.ttl)


@dataclass
class RecentReports:
    """Reports shared by later sessions of the same client, HELO and sender while every answer behind them is fresh.

    Never longer than REPORT_TTL, never a report with a temporary error, at
    most `size` of them (the oldest go first).
    """

    size: int = 10_000
    items: OrderedDict[tuple[str, str, str], tuple[float, Report]] = field(default_factory=OrderedDict)

    def get(self, key: tuple[str, str, str]) -> Report | None:
        found = self.items.get(key)
        if found is None:
            return None
        expires, report = found
        if expires <= time.monotonic():
            del self.items[key]
            return None
        return report

    def put(self, key: tuple[str, str, str], report: Report) -> None:
        if any(item.temporary for item in report.checks):
            return  # a temporary error is asked again next time
        ttl = min([REPORT_TTL, *(_fresh_for(lookup) for item in report.checks for lookup in item.lookups)])
        if ttl <= 0:
            return
        self.items[key] = (time.monotonic() + ttl, report)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


class Session:
    """One client: its checks so far, the decisions they lead to, and what was recorded."""

    def __init__(
        self,
        policy: Policy,
        engine: Engine,
        whitelist: WhitelistHolder,
        recorder: Recorder | None,
        *,
        id: str,
        recent: RecentReports | None = None,
    ) -> None:
        self.policy = policy
        self.engine = engine
        self.holder = whitelist
        self.recorder = recorder
        self.id = id
        self.recent = recent
        self.ip: IPAddress | None = None
        self._ip_text = ""  # str(ip), which the policy service's every request asks for
        self._iprev: asyncio.Task[IprevReport] | IprevReport | None = None
        self.helo_name: str | None = None  # the name whose verdict stands
        self._helo_seen = False
        self.helo_given: str | None = None  # the last name given (the policy service compares with it)
        self.helo_result: CheckResult = NO_HELO
        self.align: CheckResult = NO_ALIGN
        self.sender_given: str | None = None  # the reverse path as given, None before MAIL
        self.sender_address: str | None = None
        self.sender_domain: str | None = None
        self.sender_result: CheckResult = NO_SENDER
        self._accepted_recorded = False
        self.skipped: str | None = None  # why this client is not checked at all (a trusted network)
        self._cached: tuple[int, int, Report, Decision] | None = None  # (state version, whitelist id, ...)
        self._shared: tuple[int, Report] | None = None  # (state version, a RecentReports report equal to ours)
        self._version = 0

    # -- the client ---------------------------------------------------------------------------------
    def begin(self, ip: IPAddress, *, look_up: bool = True, text: str | None = None) -> None:
        """The client is `ip` (at connect, or when a trusted proxy says so): start its iprev lookup now,
        or (`look_up` false: the policy service, whose first request may find a recent report) when needed.
        `text` is ``str(ip)`` when the caller has it already."""
        self.close()
        self.ip, self._ip_text = ip, text or str(ip)
        self._version += 1
        self.skipped = self.policy.trusted_reason(ip) if self.policy.trusted else None
        if Check.IPREV in self.policy.off or self.skipped:
            self._iprev = IprevReport(ip, switched_off(Check.IPREV), Lookup("", "PTR", Status.NODATA))
        elif look_up:
            self._start_iprev()

    def _start_iprev(self) -> asyncio.Task[IprevReport]:
        assert self.ip is not None
        task = self._iprev = asyncio.get_running_loop().create_task(self.engine.iprev(self.ip))
        return task

    def close(self) -> None:
        if isinstance(self._iprev, asyncio.Task) and not self._iprev.done():
            self._iprev.cancel()
        self._iprev = None

    @property
    def ptr_name(self) -> str | None:
        """The client's PTR name as shown in logs, once its lookup has finished (None before, or without one)."""
        known = self._iprev
        if isinstance(known, asyncio.Task):
            known = known.result() if known.done() and not known.cancelled() and not known.exception() else None
        return known.shown_name if isinstance(known, IprevReport) else None

    async def iprev(self) -> IprevReport:
        task = self._iprev
        if task is None:
            if self.ip is None:
                raise RuntimeError("Session.begin(ip) was not called")
            task = self._start_iprev()
        if isinstance(task, IprevReport):
            return task
        report = await asyncio.shield(task)
        if self._iprev is task:
            self._iprev = report
        return report

    # -- the commands -------------------------------------------------------------------------------
    async def _helo_results(self, name: str) -> tuple[CheckResult, CheckResult]:
        """The HELO check and its alignment; the HELO lookups run while the iprev lookup may still be running."""
        if Check.HELO in self.policy.off or self.skipped:
            return switched_off(Check.HELO), switched_off(Check.HELO_ALIGN)
        form = classify_helo(name)
        (a, aaaa, mx), iprev = await asyncio.gather(self.engine.helo_lookups(form), self.iprev())
        return evaluate_helo(form, a, aaaa, mx), evaluate_alignment(form, self._ip(), iprev, a, aaaa)

    def _set_helo(self, name: str, helo: CheckResult, align: CheckResult) -> None:
        self.helo_given = name
        self.helo_result = worse(self.helo_result if self._helo_seen else None, helo)
        self.align = worse(self.align if self._helo_seen else None, align)
        self._helo_seen = True
        if self.helo_result is helo:
            self.helo_name = name
        self._version += 1

    async def _sender_result(self, form: SenderForm) -> CheckResult:
        if Check.SENDER in self.policy.off or self.skipped:
            return switched_off(Check.SENDER)
        return await self.engine.sender_check(form)

    def _set_sender(self, given: str, form: SenderForm, result: CheckResult) -> None:
        self.sender_given = given
        self.sender_address = form.address
        self.sender_domain = form.domain or None
        self.sender_result = result
        self._accepted_recorded = False  # a new message
        self._version += 1

    async def helo(self, name: str) -> Decision | None:
        """HELO/EHLO `name`: the refusal due now, or None when the session goes on."""
        helo, align = await self._helo_results(name)
        self._set_helo(name, helo, align)
        return await self._due_now(Stage.HELO)

    async def mail(self, reverse_path: str) -> Decision | None:
        """MAIL FROM: the refusal due now (a pending HELO one included), or None."""
        form = parse_reverse_path(reverse_path)
        self._set_sender(reverse_path, form, await self._sender_result(form))
        return await self._due_now(Stage.MAIL)

    async def rcpt(self, recipient: str) -> Decision:
        """RCPT TO: the decision for this recipient; a refusal is recorded here."""
        report, decision, _due = await self.answer(Stage.RCPT)
        if decision.refused:
            self.record(report, decision, [recipient])
        return decision

    async def evaluate(self, helo: str | None, sender: str | None) -> None:
        """Bring the session up to `helo` and `sender` (the policy service's requests carry both).

        What changed is looked up concurrently with whatever is still running;
        a report a recent session of the same client made with the same names
        is reused while its answers are fresh.
        """
        helo_changed = helo is not None and helo != self.helo_given
        sender_changed = sender is not None and sender != self.sender_given
        if not helo_changed and not sender_changed:
            return
        key = (self._ip_text, helo or "", sender or "")
        known = self.recent.get(key) if self.recent is not None else None
        if known is not None:
            self.adopt(known, helo, sender)
            return
        helo_results: tuple[CheckResult, CheckResult] | None = None
        sender_result: CheckResult | None = None

        async def judge_helo(name: str) -> None:
            nonlocal helo_results
            helo_results = await self._helo_results(name)

        async def judge_sender(form: SenderForm) -> None:
            nonlocal sender_result
            sender_result = await self._sender_result(form)

        form = parse_reverse_path(sender) if sender_changed and sender is not None else None
        jobs = [judge_helo(helo)] if helo_changed and helo is not None else []
        if form is not None:
            jobs.append(judge_sender(form))
        await asyncio.gather(*jobs)
        if helo_results is not None and helo is not None:
            self._set_helo(helo, *helo_results)
        if form is not None and sender_result is not None and sender is not None:
            self._set_sender(sender, form, sender_result)
        if self.recent is not None:
            self.recent.put(key, await self.report())

    def adopt(
        self,
        known: Report,
        helo: str | None,
        sender: str | None,
        *,
        recorded: bool = False,
        decided: tuple[int, Decision] | None = None,
    ) -> None:
        """Take `known`, a recent report of this client with `helo` and `sender`, as this session's results.

        `evaluate` does when it finds one; the policy service does for a Postfix session it answered
        without a Session so far (`shares_fresh`), passing on whether its accepted message was `recorded`
        and the decision made (whitelist id, decision), as this session would hold them.
        """
        self.close()
        self._iprev = known.iprev
        if helo is not None:
            self._set_helo(helo, known.helo, known.helo_align)
        if sender is not None:
            self._set_sender(sender, parse_reverse_path(sender), known.sender)
        if self._same_as(known):  # a new session of a known client: its report, and its decisions, are shared
            self._shared = (self._version, known)
        self._accepted_recorded = self._accepted_recorded or recorded
        if decided is not None and self._shared is not None and self._shared[0] == self._version:
            self._cached = (self._version, decided[0], known, decided[1])

    # -- decisions ----------------------------------------------------------------------------------
    def _ip(self) -> IPAddress:
        if self.ip is None:
            raise RuntimeError("Session.begin(ip) was not called")
        return self.ip

    def _same_as(self, known: Report) -> bool:
        """Whether the report this session would build now is `known`, field for field."""
        return (
            self.ip == known.ip
            and self._iprev is known.iprev
            and self.helo_result is known.helo
            and self.align is known.helo_align
            and self.helo_name == known.helo_name
            and self.sender_result is known.sender
            and self.sender_address == known.sender_address
            and self.sender_domain == known.sender_domain
        )

    @property
    def _generic_off(self) -> bool:
        """Switched off, or without its input: the PTR name comes from the iprev check."""
        return Check.GENERIC in self.policy.off or Check.IPREV in self.policy.off or self.skipped is not None

    async def report(self) -> Report:
        shared = self._shared
        if shared is not None and shared[0] == self._version:
            return shared[1]
        iprev = await self.iprev()
        return Report(
            ip=self._ip(),
            iprev=iprev,
            helo_name=self.helo_name,
            helo=self.helo_result,
            helo_align=self.align,
            sender_address=self.sender_address,
            sender_domain=self.sender_domain,
            sender=self.sender_result,
            generic=switched_off(Check.GENERIC) if self._generic_off else self.engine.generic(iprev),
        )

    async def decision(self) -> tuple[Report, Decision]:
        """The report so far and the profile's decision on it (computed again only when something changed)."""
        whitelist = self.holder.whitelist
        cached = self._cached
        if cached is not None and cached[0] == self._version and cached[1] == id(whitelist):
            return cached[2], cached[3]
        report = await self.report()
        decision = self.policy.decide_listed(report, whitelist)
        self._cached = (self._version, id(whitelist), report, decision)
        return report, decision

    async def answer(self, stage: Stage) -> tuple[Report, Decision, bool]:
        """The decision at `stage`, and whether its refusal is due there; a permanent refusal is made
        temporary while the resolver cannot be trusted (a broken resolver never refuses mail for good)."""
        report, decision = await self.decision()
        if decision.reply is not None and decision.reply.code >= 500 and decision.refused:
            problem = self.engine.dns_problem()
            if problem is not None:
                decision = temporary_instead(decision, problem)
        return report, decision, due(decision, stage)

    async def _due_now(self, stage: Stage) -> Decision | None:
        report, decision, refuse = await self.answer(stage)
        if not refuse:
            return None
        self.record(report, decision)
        return decision

    def record(self, report: Report, decision: Decision, recipients: Sequence[str] = ()) -> None:
        """Log `decision`: every refusal, and an accepted message once (the first call after MAIL)."""
        if not decision.refused:
            if self._accepted_recorded:
                return
            self._accepted_recorded = True
        if self.recorder is not None:
            record = make_record(report, decision, session=self.id, recipients=list(recipients), node=self.policy.node)
            if self.skipped is not None:  # not checked at all: say so, and why
                record = dataclasses.replace(record, action="skipped", whitelisted=self.skipped)
            self.recorder.record(record)
