"""The policy session's own logic, with an engine that answers from a table (no DNS).

What the session does with DNS answers is covered through real knotd in
tests/integration/test_faces_agree.py; here: what it asks, what it keeps,
what it records.
"""

from __future__ import annotations

import ipaddress
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.checks.generic import evaluate_generic
from rdnsgate.checks.helo import HeloForm
from rdnsgate.checks.iprev import evaluate_iprev
from rdnsgate.checks.sender import SenderForm, evaluate_sender
from rdnsgate.model import (
    MX,
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
from rdnsgate.policy.exceptions import LinkSigner
from rdnsgate.policy.profiles import Stage, apply_overrides, get_profile
from rdnsgate.policy.session import REPORT_TTL, SEVERITY, Policy, RecentReports, Session, due, worse

CLIENT = ipaddress.ip_address("192.0.2.1")
PTR = Lookup("1.2.0.192.in-addr.arpa", "PTR", Status.ANSWER, ("mail.example.org",), ttl=3600)
NAMES = {
    "mail.example.org": Lookup("mail.example.org", "A", Status.ANSWER, ("192.0.2.1",), ttl=3600),
    "other.example.org": Lookup("other.example.org", "A", Status.ANSWER, ("192.0.2.9",), ttl=3600),
}


class TableEngine:
    """Answers from NAMES and counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def iprev(self, ip: IPAddress) -> IprevReport:
        self.asked.append("iprev")
        return evaluate_iprev(ip, PTR, {"mail.example.org": NAMES["mail.example.org"]})

    async def helo_lookups(self, form: HeloForm) -> tuple[Lookup | None, Lookup | None, Lookup | None]:
        if not form.needs_lookup:
            return None, None, None
        self.asked.append(f"helo {form.name}")
        a = NAMES.get(form.name, Lookup(form.name, "A", Status.NXDOMAIN, negative_ttl=300))
        aaaa = Lookup(form.name, "AAAA", Status.NODATA if form.name in NAMES else Status.NXDOMAIN, negative_ttl=300)
        return a, aaaa, None

    async def sender_check(self, form: SenderForm) -> CheckResult:
        if not form.needs_lookup:
            return evaluate_sender(form)
        self.asked.append(f"sender {form.domain}")
        mx = Lookup(form.domain, "MX", Status.ANSWER, mx=(MX(10, "mail.example.org"),), ttl=3600)
        return evaluate_sender(form, mx, None, None)

    def generic(self, iprev: IprevReport) -> CheckResult:
        return evaluate_generic(iprev)

    def dns_problem(self) -> str | None:
        return self.broken

    broken: str | None = None  # what the resolver guard says (lookups/health.py)


class Log:
    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []
        self.whitelist: list[WhitelistEntry] = []

    def record(self, record: DecisionRecord) -> None:
        self.records.append(record)


def session(profile: str = "strict", overrides: tuple[str, ...] = ()) -> tuple[Session, TableEngine, Log]:
    changed, off = apply_overrides(get_profile(profile), overrides, "test")
    engine, log = TableEngine(), Log()
    made = Session(Policy(changed, off, node="mx1"), engine, log, log, id="s1")  # type: ignore[arg-type]
    made.begin(CLIENT)
    return made, engine, log


async def test_switched_off_checks_are_never_looked_up() -> None:
    made, engine, _log = session(overrides=("iprev=off", "helo=off", "sender=off"))
    assert await made.helo("nope.example.org") is None
    assert await made.mail("<bob@nope.example>") is None
    assert not (await made.rcpt("alice@example.net")).refused
    assert engine.asked == []
    report = await made.report()
    assert [(item.result, item.reason) for item in report.checks] == [(Result.NONE, "off")] * 5  # generic: no PTR


async def test_the_worse_helo_stands() -> None:
    made, _engine, _log = session("monitor")
    await made.helo("nope.example.org")  # does not exist: fail
    await made.helo("mail.example.org")  # exists: pass, but the first verdict stands
    report = await made.report()
    assert (report.helo.result, report.helo.reason, report.helo_name) == (Result.FAIL, "unknown", "nope.example.org")
    made, _engine, _log = session("monitor")
    await made.helo("mail.example.org")
    await made.helo("nope.example.org")
    assert (await made.report()).helo_name == "nope.example.org"


async def test_refusals_recorded_each_time_acceptance_once_per_message() -> None:
    made, _engine, log = session("postfix")
    assert await made.helo("nope.example.org") is None  # postfix: refusals wait for RCPT
    assert await made.mail("<bob@example.org>") is None
    for rcpt in ("a@example.net", "b@example.net"):
        assert (await made.rcpt(rcpt)).stage is Stage.RCPT
    assert [(item.action, item.recipients, item.node) for item in log.records] == [
        ("reject", ("a@example.net",), "mx1"),
        ("reject", ("b@example.net",), "mx1"),
    ]
    made, _engine, log = session("postfix")
    await made.helo("mail.example.org")
    for sender in ("<bob@example.org>", "<carol@example.org>"):
        await made.mail(sender)
        for rcpt in ("a@example.net", "b@example.net"):
            report, decision = await made.decision()
            made.record(report, decision, [rcpt])
    assert [item.sender for item in log.records] == ["bob@example.org", "carol@example.org"]


async def test_a_whitelist_change_applies_at_the_next_decision() -> None:
    made, _engine, log = session("strict")
    assert (await made.helo("nope.example.org")) is not None
    log.whitelist = [WhitelistEntry("network", "192.0.2.0/24", "ticket")]
    _report, decision = await made.decision()
    assert not decision.refused and decision.whitelisted and "ticket" in decision.whitelisted


async def test_evaluate_asks_only_what_changed() -> None:
    made, engine, _log = session("postfix")
    await made.evaluate("mail.example.org", "<bob@example.org>")
    await made.evaluate("mail.example.org", "<bob@example.org>")
    await made.evaluate("mail.example.org", "<carol@example.net>")
    assert sorted(engine.asked) == ["helo mail.example.org", "iprev", "sender example.net", "sender example.org"]


async def test_recent_reports_serve_a_later_session() -> None:
    recent = RecentReports()
    first, engine, log = session("postfix")
    first.recent = recent
    await first.evaluate("mail.example.org", "<bob@example.org>")
    second = Session(first.policy, engine, log, log, id="s2", recent=recent)  # type: ignore[arg-type]
    second.begin(CLIENT)
    await second.evaluate("mail.example.org", "<bob@example.org>")
    assert sorted(engine.asked) == ["helo mail.example.org", "iprev", "sender example.org"]  # nothing asked again
    assert await second.report() == await first.report()


def test_recent_reports_keep_no_temporary_error() -> None:
    recent = RecentReports()
    temp = CheckResult(Check.SENDER, Result.TEMPERROR, "mx-lookup", "timed out")
    ok = CheckResult(Check.HELO, Result.PASS, "exists", "", (Lookup("x", "A", Status.ANSWER, ("192.0.2.1",), ttl=5),))
    iprev = evaluate_iprev(CLIENT, PTR, {"mail.example.org": NAMES["mail.example.org"]})
    align = CheckResult(Check.HELO_ALIGN, Result.PASS, "ptr-name", "")
    generic = CheckResult(Check.GENERIC, Result.PASS, "mail-host", "")
    recent.put(("a", "", ""), Report(CLIENT, iprev, "x", ok, align, None, None, temp, generic))
    assert recent.get(("a", "", "")) is None
    recent.put(("b", "", ""), Report(CLIENT, iprev, "x", ok, align, None, None, ok, generic))
    assert recent.get(("b", "", "")) is not None


@given(st.sampled_from(list(Stage)), st.sampled_from(list(Stage)))
def test_due_is_at_the_stage_or_after(refusal: Stage, now: Stage) -> None:
    from rdnsgate.policy.decide import Decision, Reply
    from rdnsgate.policy.profiles import Action

    decision = Decision("x", Action.REJECT, refusal, Reply(550, "5.7.1", "no"), False, None, ())
    order = list(Stage)
    assert due(decision, now) is (order.index(refusal) <= order.index(now))


@pytest.mark.parametrize("old", list(Result))
@pytest.mark.parametrize("new", list(Result))
def test_worse_never_improves(old: Result, new: Result) -> None:
    first, second = CheckResult(Check.HELO, old, "a", ""), CheckResult(Check.HELO, new, "b", "")
    assert SEVERITY[worse(first, second).result] == max(SEVERITY[old], SEVERITY[new])


@given(st.text(), st.integers(min_value=4, max_value=300))
def test_printable_fast_path_agrees_with_the_character_rule(text: str, limit: int) -> None:
    """The C fast path (ASCII and printable) and the per-character rule give the same text."""
    from rdnsgate.policy.headers import printable

    slow = "".join(c if " " <= c <= "~" else "?" for c in text)
    assert printable(text, limit) == (slow if len(slow) <= limit else slow[: limit - 3] + "...")
    assert printable(text + "\x7f", 10_000).endswith("?") and printable("é\n", 10) == "??"


async def test_a_new_session_of_a_known_client_shares_the_report_and_its_decision() -> None:
    """The policy service's many short sessions: the second one reuses the first's report object and decision
    without a lookup, and a whitelist entry added in between still changes the decision."""
    engine, log = TableEngine(), Log()
    policy, recent = Policy(get_profile("classic")), RecentReports()
    reports = []
    for number in (1, 2):
        made = Session(policy, engine, log, log, id=str(number), recent=recent)  # type: ignore[arg-type]
        made.begin(CLIENT, look_up=False)
        await made.evaluate("mail.example.org", "<bob@example.org>")
        reports.append(await made.decision())
        if number == 1:
            recent.put((str(CLIENT), "mail.example.org", "<bob@example.org>"), reports[0][0])
    (first, decided), (second, again) = reports
    assert second is first and again is decided
    assert sorted(engine.asked) == ["helo mail.example.org", "iprev", "sender example.org"]  # the first session only
    log.whitelist = [WhitelistEntry("network", f"{CLIENT}/32", "ticket 1", None, None, None)]
    _report, whitelisted = await made.decision()
    assert whitelisted.whitelisted and not decided.whitelisted


async def test_a_broken_resolver_makes_every_permanent_refusal_temporary() -> None:
    made, engine, log = session("classic")  # refuses an unknown HELO with 501 and closes
    engine.broken = "the canary example.org does not exist (NXDOMAIN), though it must exist"
    decision = await made.helo("nope.example.org")
    assert decision is not None and decision.action.value == "tempfail" and decision.reply is not None
    assert (decision.reply.code, decision.reply.enhanced) == (451, "4.4.3") and "canary" in decision.reply.text
    assert not decision.close
    engine.broken = None
    decision = await made.rcpt("bob@example.net")
    assert decision.action.value == "reject" and decision.reply is not None and decision.reply.code >= 500
    assert [record.action for record in log.records] == ["tempfail", "reject"]


async def test_sessions_with_equal_reports_share_one_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's sessions build new, equal reports: the decision made on the first serves the others (the
    profile is not applied again) for REPORT_TTL, and is what deciding afresh gives."""
    first, engine, log = session("strict")
    await first.helo("nope.example.org")
    second = Session(first.policy, engine, log, log, id="s2")  # type: ignore[arg-type]
    second.begin(CLIENT)
    await second.helo("nope.example.org")
    (one, decided), (other, again) = await first.decision(), await second.decision()
    assert one is not other and one == other
    assert again is decided and decided == first.policy._decide(other, None)
    entry = WhitelistEntry("network", "192.0.2.0/24", "ticket")
    assert first.policy.decide(other, entry).whitelisted  # another entry: decided again
    later = time.monotonic() + REPORT_TTL
    monkeypatch.setattr(time, "monotonic", lambda: later)
    third = Session(first.policy, engine, log, log, id="s3")  # type: ignore[arg-type]
    third.begin(CLIENT)
    await third.helo("nope.example.org")
    (_report, fresh) = await third.decision()
    assert fresh is not decided and fresh == decided  # made again once REPORT_TTL has passed


async def test_a_refusal_with_a_signed_link_is_never_shared() -> None:
    """Each refusal's link names that refusal alone (one exception request per refusal): sessions with equal
    reports get refusals with links of their own, while acceptances are still shared."""
    changed, off = apply_overrides(get_profile("strict"), (), "test")
    policy = Policy(changed, off, check_url="https://mx.example/check", signer=LinkSigner(b"k" * 32))
    engine, log = TableEngine(), Log()
    links, accepted = [], []
    for number in range(3):
        made = Session(policy, engine, log, log, id=f"s{number}")  # type: ignore[arg-type]
        made.begin(CLIENT)
        refusal = await made.helo("nope.example.org")
        assert refusal is not None and refusal.reply is not None
        links.append(refusal.reply.text)
        good = Session(policy, engine, log, log, id=f"g{number}")  # type: ignore[arg-type]
        good.begin(CLIENT)
        await good.helo("mail.example.org")
        accepted.append((await good.decision())[1])
    assert len(set(links)) == 3 and all("&t=" in link for link in links)
    assert accepted[0] is accepted[1] is accepted[2] and not accepted[0].refused
