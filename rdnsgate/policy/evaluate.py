"""The checks with their lookups: gather what each check asks, concurrently, and run `checks/`.

`Engine.report(ip, helo, sender)` runs the iprev chain (PTR, then A/AAAA of
every examined name), the HELO lookups and the sender lookups concurrently
under one deadline, then applies the pure checks (the CLI, the web app and
the monitor call it).  A mail conversation goes through `policy.session`,
which calls the stages one by one (`iprev` at connect, HELO, sender at MAIL).
`iprev_at_source` runs the iprev chain against the zones' own servers.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from rdnsgate.checks.generic import DEFAULT_EXEMPT_DOMAINS, evaluate_generic
from rdnsgate.checks.helo import HeloForm, classify_helo, evaluate_alignment, evaluate_helo
from rdnsgate.checks.iprev import PtrNames, evaluate_iprev, forward_type, names_to_examine
from rdnsgate.checks.names import is_postfix_hostname, reverse_pointer
from rdnsgate.checks.sender import SenderForm, evaluate_sender, parse_reverse_path
from rdnsgate.config import CheckSettings
from rdnsgate.lookups.authority import AuthorityLookups
from rdnsgate.lookups.bulk import BulkResolver
from rdnsgate.lookups.gather import host_lookups, lookup_all, mail_lookups
from rdnsgate.lookups.lookup import Chase, Resolver
from rdnsgate.lookups.wire import TYPES, decode_reply, only_record, reverse_question_v4
from rdnsgate.model import CheckResult, IPAddress, IprevReport, Lookup, Report

HeloLookups = tuple[Lookup | None, Lookup | None, Lookup | None]


class Engine:
    def __init__(self, resolver: Resolver, settings: CheckSettings | None = None) -> None:
        self.resolver = resolver
        self.settings = settings or CheckSettings()
        self.exempt_domains = DEFAULT_EXEMPT_DOMAINS + tuple(
            domain.lower().rstrip(".") for domain in self.settings.generic_exempt_domains
        )

    def dns_problem(self) -> str | None:
        """Why the resolver cannot be trusted now (canaries, failure shares), or None (lookups/health.py)."""
        health = self.resolver.client.health
        return None if health is None else health.problem(asyncio.get_running_loop().time())

    def generic(self, iprev: IprevReport) -> CheckResult:
        """Whether the client's PTR name looks like an ISP's default (no lookups: from the iprev report)."""
        return evaluate_generic(iprev, self.exempt_domains)

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.settings.deadline

    async def iprev(self, ip: IPAddress, deadline: float | None = None) -> IprevReport:
        """Forward-confirmed reverse DNS of `ip`."""
        deadline = deadline or self._deadline()
        ptr = await self.resolver.lookup(reverse_pointer(ip), "PTR", deadline)
        names = names_to_examine(ptr, self.settings.max_ptr_names)
        forward = await lookup_all(self.resolver, names.examined, forward_type(ip), deadline) if names.examined else {}
        return evaluate_iprev(ip, ptr, forward, self.settings.max_ptr_names, names)

    async def iprev_at_source(self, source: AuthorityLookups, ip: IPAddress) -> IprevReport:
        """The iprev chain of `ip` as the authoritative servers see it, no cache in between."""
        ptr = await source.lookup(reverse_pointer(ip), "PTR")
        names = names_to_examine(ptr, self.settings.max_ptr_names)
        qtype = forward_type(ip)
        forward = await asyncio.gather(*(source.lookup(name, qtype) for name in names.examined))
        return evaluate_iprev(
            ip, ptr, dict(zip(names.examined, forward, strict=True)), self.settings.max_ptr_names, names
        )

    async def helo_lookups(self, form: HeloForm, deadline: float | None = None) -> HeloLookups:
        if not form.needs_lookup:
            return None, None, None
        return await host_lookups(self.resolver, form.name, deadline or self._deadline())

    async def helo(self, helo: str | None, ip: IPAddress, iprev: IprevReport) -> tuple[CheckResult, CheckResult]:
        """The HELO check and its alignment with the client, given its iprev report (the audit)."""
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
            generic=self.generic(iprev),
        )


class BulkIprev:
    """iprev of many addresses at once, on callbacks (the audit): the questions and rules of `Engine.iprev`.

    `check(ip, done)` asks the PTR, then the forward record of every examined
    name, and calls `done(report)` once all are in; each check has the same
    deadline as the engine's.
    """

    def __init__(self, resolver: BulkResolver, settings: CheckSettings | None = None) -> None:
        self.resolver = resolver
        self.settings = settings or CheckSettings()

    def check(
        self,
        ip: IPAddress,
        done: Callable[[IprevReport], None],
        confirmed: Callable[[str], None] | None = None,
        text: str | None = None,
    ) -> None:
        """`done(report)` once the chain is in; with `confirmed`, the common pass (the PTR is one host name
        whose one forward record is `ip`) calls `confirmed(name)` instead, made from the two replies' bytes
        without a `Lookup` or a report: the pass `evaluate_iprev` would give, with `name` as its confirmed
        name and only PTR name (a property test holds the two together).  `text` is ``str(ip)``."""
        deadline = asyncio.get_running_loop().time() + self.settings.deadline
        _IprevChain(self, ip, done, deadline, confirmed, text or str(ip)).start()


class _IprevChain:
    __slots__ = (
        "bulk", "confirmed", "deadline", "done", "forward", "ip", "missing", "name", "names", "ptr", "ptr_reply",
        "text",
    )  # fmt: skip
    ptr: Lookup
    names: PtrNames

    def __init__(
        self,
        bulk: BulkIprev,
        ip: IPAddress,
        done: Callable[[IprevReport], None],
        deadline: float,
        confirmed: Callable[[str], None] | None,
        text: str,
    ) -> None:
        self.bulk = bulk
        self.ip = ip
        self.done = done
        self.deadline = deadline
        self.confirmed = confirmed
        self.text = text
        self.forward: dict[str, Lookup] = {}
        self.missing = 0
        self.ptr_reply = b""  # the PTR reply `_quick_ptr` took, decoded only if the forward record does not confirm
        self.name = ""  # the PTR name `_quick_ptr` found

    def start(self) -> None:
        quick = self._quick_ptr if self.confirmed is not None else None
        ip = self.ip
        question = reverse_question_v4(ip.packed) if ip.version == 4 else None
        self.bulk.resolver.lookup(reverse_pointer(ip), "PTR", self._got_ptr, self.deadline, quick, question)

    def _quick_ptr(self, reply: bytes, answer_at: int) -> bool:
        """The PTR reply is one host name: ask its forward record, offering that reply to `_quick_forward`."""
        name = only_record(reply, answer_at, TYPES["PTR"])
        if not isinstance(name, str) or not is_postfix_hostname(name):
            return False  # decoded and classified as usual (`_got_ptr`)
        self.ptr_reply, self.name = reply, name
        self.missing = 1
        self.bulk.resolver.lookup(
            name, forward_type(self.ip), self._forward_after_quick, self.deadline, self._quick_forward
        )
        return True

    def _quick_forward(self, reply: bytes, answer_at: int) -> bool:
        if only_record(reply, answer_at, TYPES[forward_type(self.ip)]) != self.text:
            return False  # not the common pass: decoded and evaluated as usual (`_forward_after_quick`)
        assert self.confirmed is not None
        self.confirmed(self.name)
        return True

    def _forward_after_quick(self, lookup: Lookup) -> None:
        """The forward lookup of the name `_quick_ptr` found: the PTR reply it took is decoded now, as
        `_got_ptr` would have had it, and the chain ends as usual."""
        name = self.name
        ptr_name = reverse_pointer(self.ip)
        chase = Chase(ptr_name, "PTR", self.bulk.resolver.max_cnames, self.bulk.resolver.default_negative_ttl)
        ptr = chase.step(decode_reply(self.ptr_reply, ptr_name))
        assert ptr is not None  # one PTR record owned by the question's name settles the chase
        self.ptr = ptr
        self.names = names_to_examine(ptr, self.bulk.settings.max_ptr_names)
        self._got_forward(name, lookup)

    def _got_ptr(self, ptr: Lookup) -> None:
        self.ptr = ptr
        self.names = names_to_examine(ptr, self.bulk.settings.max_ptr_names)
        names = self.names.examined
        if not names:
            self._finish()
            return
        self.missing = len(names)
        qtype = forward_type(self.ip)
        for name in names:
            self.bulk.resolver.lookup(name, qtype, functools.partial(self._got_forward, name), self.deadline)

    def _got_forward(self, name: str, lookup: Lookup) -> None:
        self.forward[name] = lookup
        self.missing -= 1
        if not self.missing:
            self._finish()

    def _finish(self) -> None:
        self.done(evaluate_iprev(self.ip, self.ptr, self.forward, self.bulk.settings.max_ptr_names, self.names))
