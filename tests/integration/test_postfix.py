"""rdnsgate's policy service behind a real Postfix, and held to Postfix's own checks.

Runs tests/harness/postfix_lab.py in a network namespace of its own (Postfix
resolves through resolv.conf, which there points at the knotd fixture), as
root, with Debian's postfix.  Every scenario goes through a Postfix with its
own ``reject_unknown_*`` checks and through a Postfix asking rdnsgate, once
per profile.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytest

from tests.harness.postfix import netns, run_in

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("postfix") is None or shutil.which("ip") is None,
        reason="needs root, postfix and iproute2 (make test installs them)",
    ),
]

GOOD = "127.0.10.1"
SCENARIOS = [
    {"id": "all-good", "source": GOOD, "helo": "good1.example.org", "sender": "bob@example.org"},
    {"id": "no-ptr", "source": "127.0.10.2", "helo": "good1.example.org", "sender": "bob@example.org"},
    {"id": "ptr-mismatch", "source": "127.0.10.3", "helo": "good1.example.org", "sender": "bob@example.org"},
    {
        "id": "second-ptr-confirms",
        "source": "127.0.10.40",
        "helo": "b40-second.example.org",
        "sender": "bob@example.org",
    },
    {"id": "helo-not-fqdn", "source": GOOD, "helo": "localhost", "sender": "bob@example.org"},
    {"id": "helo-unknown", "source": GOOD, "helo": "nxhost.example.org", "sender": "bob@example.org"},
    {"id": "helo-mx-only", "source": GOOD, "helo": "mxonly.example.org", "sender": "bob@example.org"},
    {"id": "helo-underscore", "source": GOOD, "helo": "bad_name.example.org", "sender": "bob@example.org"},
    {"id": "sender-unknown", "source": GOOD, "helo": "good1.example.org", "sender": "bob@nx.example.org"},
    {"id": "sender-null-mx", "source": GOOD, "helo": "good1.example.org", "sender": "bob@nullmx.example.org"},
    {"id": "sender-no-mail-records", "source": GOOD, "helo": "good1.example.org", "sender": "bob@nomail.example.org"},
    {"id": "sender-not-fqdn", "source": GOOD, "helo": "good1.example.org", "sender": "bob@localhost"},
    {"id": "bounce", "source": GOOD, "helo": "good1.example.org", "sender": ""},
    # SERVFAIL from the DNS (the lab's fault responder), for Postfix and rdnsgate alike
    {"id": "ptr-servfail", "source": "127.0.10.4", "helo": "slow4.example.org", "sender": "bob@example.org"},
    {"id": "helo-servfail", "source": GOOD, "helo": "helo-slow.example.org", "sender": "bob@example.org"},
    {"id": "sender-servfail", "source": GOOD, "helo": "good1.example.org", "sender": "bob@mx-slow.example.org"},
    # The families of issue 10: PTR and HELO name syntax, null MX, address syntax at MAIL, UTF-8.
    {
        "id": "ptr-underscore-confirms",
        "source": "127.0.10.41",
        "helo": "good1.example.org",
        "sender": "bob@example.org",
    },
    {"id": "helo-underscore-exists", "source": GOOD, "helo": "helo_ok.example.org", "sender": "bob@example.org"},
    {"id": "helo-leading-hyphen", "source": GOOD, "helo": "-bad.example.org", "sender": "bob@example.org"},
    {"id": "helo-literal", "source": GOOD, "helo": "[127.0.10.1]", "sender": "bob@example.org"},
    {"id": "helo-bare-ip", "source": GOOD, "helo": "127.0.10.1", "sender": "bob@example.org"},
    {"id": "helo-trailing-dot", "source": GOOD, "helo": "good1.example.org.", "sender": "bob@example.org"},
    {"id": "helo-null-mx", "source": GOOD, "helo": "nullmx.example.org", "sender": "bob@example.org"},
    {"id": "sender-null-mx-with-a", "source": GOOD, "helo": "good1.example.org", "sender": "bob@nullmx-a.example.org"},
    {"id": "sender-trailing-dot", "source": GOOD, "helo": "good1.example.org", "sender": "bob@example.org."},
    {"id": "sender-address-literal", "source": GOOD, "helo": "good1.example.org", "sender": "bob@[127.0.0.1]"},
    {"id": "sender-no-domain", "source": GOOD, "helo": "good1.example.org", "sender": "bob"},
    {"id": "sender-a-only", "source": GOOD, "helo": "good1.example.org", "sender": "bob@aonly.example.org"},
    {"id": "sender-utf8", "source": GOOD, "helo": "good1.example.org", "sender": "bøb@example.org", "smtputf8": True},
    {"id": "sender-utf8-undeclared", "source": GOOD, "helo": "good1.example.org", "sender": "bøb@example.org"},
]

# What a client gets at RCPT, per Postfix: (code, enhanced status).
EXPECTED = {
    "all-good": {
        "builtin": (250, ""),
        "postfix": (250, ""),
        "classic": (250, ""),
        "strict": (250, ""),
        "monitor": (250, ""),
    },
    "no-ptr": {
        "builtin": (450, "4.7.1"),
        "postfix": (450, "4.7.1"),
        "classic": (501, "5.7.25"),
        "strict": (550, "5.7.25"),
        "monitor": (250, ""),
    },
    "ptr-mismatch": {
        "builtin": (450, "4.7.25"),
        "postfix": (450, "4.7.25"),
        "classic": (501, "5.7.25"),
        "strict": (550, "5.7.25"),
        "monitor": (250, ""),
    },
    "second-ptr-confirms": {"postfix": (250, ""), "classic": (250, ""), "strict": (250, ""), "monitor": (250, "")},
    "helo-not-fqdn": {
        "builtin": (504, "5.5.2"),
        "postfix": (504, "5.5.2"),
        "classic": (501, "5.5.2"),
        "strict": (504, "5.5.2"),
        "monitor": (250, ""),
    },
    "helo-unknown": {
        "builtin": (450, "4.7.1"),
        "postfix": (450, "4.7.1"),
        "classic": (501, "5.7.1"),
        "strict": (550, "5.7.1"),
        "monitor": (250, ""),
    },
    "helo-mx-only": {
        "builtin": (250, ""),
        "postfix": (250, ""),
        "classic": (501, "5.7.1"),
        "strict": (250, ""),
        "monitor": (250, ""),
    },
    "helo-underscore": {  # a `_` name is looked up, as Postfix does: this one does not exist
        "builtin": (450, "4.7.1"),
        "postfix": (450, "4.7.1"),
        "classic": (501, "5.7.1"),
        "strict": (550, "5.7.1"),
        "monitor": (250, ""),
    },
    # Behind check_policy_service in smtpd_recipient_restrictions, Postfix maps a reply's sender-address
    # status code to its recipient twin (X.1.8 -> X.1.2, X.1.7 -> X.1.3): see POSTFIX_CONTEXT.
    "sender-unknown": {
        "builtin": (450, "4.1.8"),
        "postfix": (450, "4.1.2"),
        "classic": (501, "5.1.2"),
        "strict": (550, "5.1.2"),
        "monitor": (250, ""),
    },
    "sender-null-mx": {
        "builtin": (550, "5.7.27"),
        "postfix": (550, "5.7.27"),
        "classic": (550, "5.7.27"),
        "strict": (550, "5.7.27"),
        "monitor": (250, ""),
    },
    "sender-no-mail-records": {
        "builtin": (450, "4.1.8"),
        "postfix": (450, "4.1.2"),
        "classic": (501, "5.1.2"),
        "strict": (550, "5.1.2"),
        "monitor": (250, ""),
    },
    "sender-not-fqdn": {
        "builtin": (504, "5.5.2"),
        "postfix": (504, "5.5.2"),
        "classic": (501, "5.1.3"),
        "strict": (550, "5.1.3"),
        "monitor": (250, ""),
    },
    "bounce": {p: (250, "") for p in ("builtin", "postfix", "classic", "strict", "monitor")},
    # A temporary DNS error is a 4xx everywhere (DEFER_IF_PERMIT from rdnsgate: Postfix answers 450).
    "ptr-servfail": {
        "builtin": (450, "4.7.1"),
        "postfix": (450, "4.7.1"),
        "classic": (450, "4.4.3"),
        "strict": (450, "4.4.3"),
        "monitor": (250, ""),
    },
    "helo-servfail": {
        "builtin": (450, "4.7.1"),
        "postfix": (450, "4.7.1"),
        "classic": (450, "4.4.3"),
        "strict": (450, "4.4.3"),
        "monitor": (250, ""),
    },
    "sender-servfail": {
        "builtin": (450, "4.1.8"),
        "postfix": (450, "4.1.2"),
        "classic": (450, "4.4.3"),
        "strict": (450, "4.4.3"),
        "monitor": (250, ""),
    },
}

# Postfix's own rewrite of a policy reply's status code in smtpd_recipient_restrictions (docs/postfix.md).
POSTFIX_CONTEXT = {"4.1.8": "4.1.2", "5.1.8": "5.1.2", "4.1.7": "4.1.3", "5.1.7": "5.1.3"}

# Where rdnsgate's postfix profile deliberately answers differently from Postfix (docs/profiles.md).
DELIBERATE = {
    "second-ptr-confirms": "Postfix confirms only the first PTR name; rdnsgate accepts any confirming name (RFC 8601)",
    "helo-trailing-dot": "a root-anchored HELO name is the same name; Postfix does not find it",
}


@pytest.fixture(scope="module")
def lab() -> dict[str, Any]:
    with netns("rdnsgate-lab") as name:
        proc = run_in(name, ["-m", "tests.harness.postfix_lab", json.dumps(SCENARIOS)], timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rcpt_reply(outcome: dict[str, Any]) -> tuple[int, str]:
    assert "error" not in outcome, outcome
    if outcome["mail"][0] != 250:
        return outcome["mail"][0], outcome["mail"][1].split(" ", 1)[0]
    code, text = outcome["rcpt"]
    return code, text.split(" ", 1)[0] if code != 250 else ""


# Where the gateway's postfix profile deliberately answers differently from Postfix 3.7 (docs/profiles.md).
GATEWAY_DELIBERATE = {
    "helo-trailing-dot": "a root-anchored HELO name is the same name; Postfix calls it invalid",
    "sender-utf8-undeclared": "RFC 6531: a UTF-8 address without SMTPUTF8 is refused (553 5.6.7); Postfix takes it",
}


def first_refusal(outcome: dict[str, Any]) -> tuple[str, int]:
    """(stage, reply class) of the first reply that is not 2xx, or ("accepted", 2)."""
    assert "error" not in outcome, outcome
    if outcome["ehlo"] // 100 != 2:
        return "ehlo", outcome["ehlo"] // 100
    for stage in ("mail", "rcpt", "data"):
        if stage in outcome and outcome[stage][0] // 100 != 2:
            return stage, outcome[stage][0] // 100
    return "accepted", 2


# Where Postfix's own answer changes from run to run: it confirms only the first PTR name, and the order of
# a PTR RRset is the resolver's.  rdnsgate examines every name, so its answer is always the accepting one.
POSTFIX_ORDER_DEPENDENT = {"second-ptr-confirms": ("accepted", 2)}


def test_gateway_postfix_profile_answers_as_postfix(lab: dict[str, Any]) -> None:
    """The gateway with the postfix profile refuses in the same class (4xx/5xx) at the same stage as Postfix."""
    differences = {}
    for item in SCENARIOS:
        scenario = item["id"]
        builtin, ours = first_refusal(lab["builtin"][scenario]), first_refusal(lab["gateway"][scenario])
        if scenario in POSTFIX_ORDER_DEPENDENT:
            assert ours == POSTFIX_ORDER_DEPENDENT[scenario], (scenario, ours)
        elif builtin != ours:
            differences[scenario] = {"postfix": builtin, "gateway": ours}
    unexpected = {key: value for key, value in differences.items() if key not in GATEWAY_DELIBERATE}
    assert not unexpected, (unexpected, lab["_logs"]["gateway"][-1500:])
    assert set(GATEWAY_DELIBERATE) <= set(differences), differences  # each documented departure is still one


@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_each_profile_behind_postfix(lab: dict[str, Any], scenario: str) -> None:
    for variant, expected in EXPECTED[scenario].items():
        got = rcpt_reply(lab[variant][scenario])
        assert got == expected, (variant, lab[variant][scenario])
        if variant == "monitor" and got[0] == 250:
            assert lab[variant][scenario]["data"][0] == 250


def test_postfix_profile_agrees_with_postfix(lab: dict[str, Any]) -> None:
    """Scenario by scenario, Postfix's own checks and rdnsgate's postfix profile give the same reply."""
    differences = {}
    for item in SCENARIOS:
        scenario = item["id"]
        code, enhanced = rcpt_reply(lab["builtin"][scenario])
        builtin = (code, POSTFIX_CONTEXT.get(enhanced, enhanced))
        ours = rcpt_reply(lab["postfix"][scenario])
        if builtin != ours:
            differences[scenario] = (builtin, ours)
    assert set(differences) <= set(DELIBERATE), {k: v for k, v in differences.items() if k not in DELIBERATE}
    # and the texts are the ones Postfix gives, inside Postfix's own "Recipient address rejected:" context
    builtin_text = lab["builtin"]["no-ptr"]["rcpt"][1].split(" ", 1)[1]
    assert lab["postfix"]["no-ptr"]["rcpt"][1].endswith(builtin_text)
