"""The policy service's shortcut for a Postfix session that shares a recent report (`_shared_answer`) against
the general path through a `Session`: the same answers, the same records, the same later behaviour.

Two services get the same requests: one as it runs, one with the shortcut taken away.  The engine answers
from a table (tests/unit/test_session.py); what the session does with real DNS answers is covered through
knotd in tests/integration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rdnsgate.frontends.policy_server import PolicyService
from rdnsgate.model import DecisionRecord, WhitelistEntry
from rdnsgate.policy.decide import Decision
from rdnsgate.policy.decision_log import DecisionLog, log_line
from rdnsgate.policy.profiles import get_profile
from rdnsgate.policy.session import Policy
from tests.unit.test_session import TableEngine

CLIENTS = ("192.0.2.1", "192.0.2.7")  # confirmed by its PTR name; not (the name's address is 192.0.2.1)
HELOS = (None, "", "mail.example.org", "other.example.org", "nx.example.org", "[192.0.2.1]")
SENDERS = (None, "", "bob@example.org", "eve@example.net")
STATES = ("HELO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA", "END-OF-MESSAGE", "CONNECT")
AT = datetime(2026, 1, 1, tzinfo=UTC)


class Records(DecisionLog):
    """The decision log without a store, keeping each record (its time set aside) and its log line."""

    def __init__(self) -> None:
        super().__init__(None)
        self.records: list[DecisionRecord] = []
        self.lines: list[str] = []

    def _keep(self, record: DecisionRecord, line: str, counted: tuple[tuple[str, str, str], ...]) -> None:
        self.records.append(dataclasses.replace(record, at=AT))
        self.lines.append(line)
        super()._keep(record, line, counted)


class General(PolicyService):
    """The service without its shortcut: every request through a Session."""

    def _shared_answer(self, request: dict[str, str], state: str) -> None:
        return None


def service(kind: type[PolicyService], profile: str, max_instances: int) -> tuple[PolicyService, Records]:
    records = Records()
    made = kind(
        TableEngine(),  # type: ignore[arg-type]
        Policy(get_profile(profile), authserv_id="mx", node="mx1"),
        records,
        max_instances=max_instances,
    )
    return made, records


def request(instance: int, client: int, state: str, helo: str | None, sender: str | None, rcpt: int, sasl: bool):
    made = {"request": "smtpd_access_policy", "protocol_state": state, "client_address": CLIENTS[client]}
    made["instance"] = f"i{instance}"
    if helo is not None:
        made["helo_name"] = helo
    if sender is not None:
        made["sender"] = sender
    if rcpt:
        made["recipient"] = f"r{rcpt}@example.com"
    if sasl:
        made["sasl_username"] = "alice"
    return made


requests = st.lists(
    st.one_of(
        st.builds(
            request,
            st.integers(0, 4),
            st.sampled_from((0, 0, 0, 1)),
            st.sampled_from(STATES),
            st.sampled_from(HELOS),
            st.sampled_from(SENDERS),
            st.integers(0, 2),
            st.sampled_from((False, False, False, False, True)),
        ),
        st.sampled_from(("whitelist client", "whitelist domain", "whitelist none")),
    ),
    max_size=40,
)
WHITELISTS = {
    "whitelist client": [WhitelistEntry("network", "192.0.2.7/32", "ticket 7")],
    "whitelist domain": [WhitelistEntry("domain", "example.net", "partner")],
    "whitelist none": [],
}


def shown(decision: Decision | None) -> Any:
    return None if decision is None else (decision.action, decision.stage, decision.reply, decision.whitelisted)


async def both(profile: str, max_instances: int, steps: list[dict[str, str] | str]) -> None:
    fast, fast_records = service(PolicyService, profile, max_instances)
    general, general_records = service(General, profile, max_instances)
    for step in steps:
        if isinstance(step, str):
            fast.whitelist, general.whitelist = list(WHITELISTS[step]), list(WHITELISTS[step])
            continue
        ours, theirs = await fast.judge(step), await general.judge(step)
        assert (shown(ours[0]), *ours[1:]) == (shown(theirs[0]), *theirs[1:]), step
        assert await fast.answer(step) == await general.answer(step), step
        assert fast_records.records == general_records.records, step
        assert fast_records.lines == general_records.lines and fast_records.counts == general_records.counts
    assert fast_records.lines == [log_line(record) for record in general_records.records]
    assert list(fast.instances) == list(general.instances)  # the same sessions kept, in the same order


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(("postfix", "monitor", "strict", "classic")),
    st.sampled_from((2, 3, 10_000)),
    requests,
)
@example(  # a worse HELO stands in the first session; its report is kept under the better name
    "monitor",
    10_000,
    [
        request(1, 0, "RCPT", "nx.example.org", "bob@example.org", 1, False),
        request(1, 0, "RCPT", "mail.example.org", "bob@example.org", 1, False),
        request(2, 0, "RCPT", "mail.example.org", "bob@example.org", 1, False),
    ],
)
@example(  # shared sessions answered, then a new message, a new HELO and a whitelist change in one of them
    "monitor",
    10_000,
    [
        request(1, 0, "RCPT", "mail.example.org", "bob@example.org", 1, False),
        request(2, 0, "RCPT", "mail.example.org", "bob@example.org", 1, False),
        request(2, 0, "RCPT", "mail.example.org", "bob@example.org", 2, False),
        request(2, 0, "END-OF-MESSAGE", "mail.example.org", "bob@example.org", 0, False),
        request(2, 0, "RCPT", "mail.example.org", "eve@example.net", 1, False),
        request(3, 0, "RCPT", "mail.example.org", "bob@example.org", 1, False),
        "whitelist domain",
        request(3, 0, "RCPT", "mail.example.org", "bob@example.org", 2, False),
        request(3, 0, "RCPT", "nx.example.org", "bob@example.org", 1, False),
        request(3, 1, "RCPT", "mail.example.org", "bob@example.org", 1, False),
    ],
)
@example(  # a shared session asked again is the newest: the oldest goes first when there are too many
    "postfix",
    2,
    [request(number, 0, "RCPT", "mail.example.org", "bob@example.org", 1, False) for number in (1, 2, 3, 2, 4)],
)
def test_the_shortcut_answers_records_and_goes_on_as_a_session_would(
    profile: str, max_instances: int, steps: list[dict[str, str] | str]
) -> None:
    asyncio.run(both(profile, max_instances, steps))


async def test_a_shared_session_is_answered_without_a_session_until_it_needs_one() -> None:
    """The shortcut is taken (the common case: a known client with the same names), and the first request
    that changes a name makes the Session, which goes on from the shared report."""
    made, records = service(PolicyService, "postfix", 10_000)
    first = request(1, 0, "RCPT", "mail.example.org", "bob@example.org", 1, False)
    assert await made.answer(first) == "DUNNO"
    assert made.instances["i1"].session is not None  # the first of its client: evaluated
    second = request(2, 0, "RCPT", "mail.example.org", "bob@example.org", 1, False)
    assert await made.answer(second) == "DUNNO"
    kept = made.instances["i2"]
    assert (
        kept.session is None
        and kept.shared is not None
        and kept.shared.report
        is made.recent.get((str(ipaddress.ip_address(CLIENTS[0])), "mail.example.org", "<bob@example.org>"))
    )
    assert len(records.records) == 2  # one accepted message each
    assert await made.answer({**second, "recipient": "r2@example.com"}) == "DUNNO"
    assert len(records.records) == 2 and kept.session is None
    assert (await made.answer({**second, "helo_name": "nx.example.org"})).startswith("450 ")
    assert kept.session is not None and kept.shared is None
    assert [record.action for record in records.records] == ["accept", "accept", "reject"]
