"""The one async entry every front end calls: gather lookups, run the checks, decide.

`Engine.report(ip, helo, sender)` runs the iprev chain (PTR, then A/AAAA of
every examined name), the HELO lookups and the sender lookups concurrently
under one deadline, then applies the pure checks.  The gateway calls the
stages one by one (`iprev` at connect, `helo` at HELO, `sender` at MAIL);
`evaluate` is report + decision in one call.
"""

from __future__ import annotations

import asyncio

from rdnsgate.checks.helo import HeloForm, classify_helo, evaluate_alignment, evaluate_helo
from rdnsgate.checks.iprev import evaluate_iprev, forward_type, names_to_examine
from rdnsgate.checks.names import reverse_pointer
from rdnsgate.checks.sender import SenderForm, evaluate_sender, parse_reverse_path
from rdnsgate.config import CheckSettings
from rdnsgate.lookups.gather import host_lookups, lookup_all, mail_lookups
from rdnsgate.lookups.lookup import Resolver
from rdnsgate.model import CheckResult, IPAddress, IprevReport, Lookup, Report
from rdnsgate.policy.decide import Decision, decide
from rdnsgate.policy.profiles import Profile

HeloLookups = tuple[Lookup | None, Lookup | None, Lookup | None]


class Engine:
    def __init__(self, resolver: Resolver, settings: CheckSettings | None = None) -> None:
        self.resolver = resolver
        self.settings = settings or CheckSettings()

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.settings.deadline

    async def iprev(self, ip: IPAddress, deadline: float | None = None) -> IprevReport:
        """Forward-confirmed reverse DNS of `ip`."""
        deadline = deadline or self._deadline()
        ptr = await self.resolver.lookup(reverse_pointer(ip), "PTR", deadline)
        names = names_to_examine(ptr, self.settings.max_ptr_names)
        forward = await lookup_all(self.resolver, names.examined, forward_type(ip), deadline) if names.examined else {}
        return evaluate_iprev(ip, ptr, forward, self.settings.max_ptr_names)

    async def helo_lookups(self, form: HeloForm, deadline: float | None = None) -> HeloLookups:
        if not form.needs_lookup:
            return None, None, None
        return await host_lookups(self.resolver, form.name, deadline or self._deadline())

    async def helo(self, helo: str | None, ip: IPAddress, iprev: IprevReport) -> tuple[CheckResult, CheckResult]:
        """The HELO check and its alignment with the client, given its iprev report."""
        form = classify_helo(helo)
        a, aaaa, mx = await self.helo_lookups(form)
        return evaluate_helo(form, a, aaaa, mx), evaluate_alignment(form, ip, iprev, a, aaaa)

    async def sender_check(self, form: SenderForm, deadline: float | None = None) -> CheckResult:
        if not form.needs_lookup:
            return evaluate_sender(form)
        mx, a, aaaa = await mail_lookups(self.resolver, form.domain, deadline or self._deadline())
        return evaluate_sender(form, mx, a, aaaa)

    async def report(self, ip: IPAddress, helo: str | None = None, sender: str | None = None) -> Report:
        """The whole chain for one client; None for `helo`/`sender` means "not given"."""
        deadline = self._deadline()
        helo_form = classify_helo(helo)
        sender_form = parse_reverse_path(sender)
        iprev, (a, aaaa, mx), sender_result = await asyncio.gather(
            self.iprev(ip, deadline),
            self.helo_lookups(helo_form, deadline),
            self.sender_check(sender_form, deadline),
        )
        return Report(
            ip=ip,
            iprev=iprev,
            helo_name=helo,
            helo=evaluate_helo(helo_form, a, aaaa, mx),
            helo_align=evaluate_alignment(helo_form, ip, iprev, a, aaaa),
            sender_address=sender_form.address or None,
            sender_domain=sender_form.domain or None,
            sender=sender_result,
        )


async def evaluate(
    engine: Engine, profile: Profile, ip: IPAddress, helo: str | None = None, sender: str | None = None
) -> tuple[Report, Decision]:
    """Report and decision for one client in one call."""
    report = await engine.report(ip, helo, sender)
    return report, decide(report, profile)
