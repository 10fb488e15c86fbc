"""The receiver models (rdnsgate/policy/receivers.toml): each prediction holds to its data."""

from __future__ import annotations

import ipaddress

import pytest

from rdnsgate.errors import ConfigError
from rdnsgate.model import Check, CheckResult, IprevReport, Lookup, Report, Result, Status
from rdnsgate.policy.receivers import CONDITIONS, RECEIVERS, conditions, parse_receivers, predict

NAMES = ["gmail", "microsoft", "yahoo", "gmx", "freenet", "free", "ovh", "comcast", "icloud", "postfix-default",
         "classic-gateway"]  # fmt: skip


def report(
    ip: str = "192.0.2.1", iprev: tuple[Result, str] = (Result.PASS, "confirmed"), **checks: tuple[Result, str]
) -> Report:
    address = ipaddress.ip_address(ip)

    def made(check: Check, value: tuple[Result, str]) -> CheckResult:
        return CheckResult(check, value[0], value[1], "")

    return Report(
        address,
        IprevReport(address, made(Check.IPREV, iprev), Lookup("x", "PTR", Status.ANSWER)),
        "mail.example.org",
        made(Check.HELO, checks.get("helo", (Result.PASS, "exists"))),
        made(Check.HELO_ALIGN, (Result.PASS, "ptr-name")),
        "bob@example.org",
        "example.org",
        made(Check.SENDER, checks.get("sender", (Result.PASS, "mx"))),
        made(Check.GENERIC, checks.get("generic", (Result.PASS, "not-generic"))),
    )


def by_name(found: Report) -> dict[str, tuple[str, str | None, str | None]]:
    return {item.receiver: (item.action, item.stage, item.reply) for item in predict(found)}


def test_every_model_named_in_the_issue_is_there_with_a_source() -> None:
    assert list(RECEIVERS) == NAMES
    assert all(model.source and model.title for model in RECEIVERS.values())


def test_a_good_client_is_accepted_everywhere() -> None:
    assert {action for action, _stage, _reply in by_name(report()).values()} == {"accept"}


def test_no_ptr() -> None:
    found = by_name(report(iprev=(Result.PERMERROR, "no-ptr")))
    assert found["gmail"][:2] == ("reject", "data") and found["gmail"][2].startswith("550-5.7.25 ")
    assert found["gmx"][:2] == ("reject", "connect") and "Bad DNS PTR resource record" in found["gmx"][2]
    assert found["microsoft"][0] == "junk" and found["microsoft"][2] is None  # IPv4: scored, not refused
    assert found["freenet"] == (
        "tempfail",
        "rcpt",
        "450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
    )
    assert found["postfix-default"][0] == "accept"
    assert found["classic-gateway"][:2] == ("reject", "helo")


def test_ipv6_without_ptr_is_refused_by_microsoft_at_connect() -> None:
    found = by_name(report("2001:db8::7", iprev=(Result.PERMERROR, "no-ptr")))
    assert found["microsoft"] == (
        "reject",
        "connect",
        "550 5.7.25 Service unavailable, sending IPv6 address [2001:db8::7] must have reverse DNS record.",
    )


def test_each_rule_predicts_its_own_reply() -> None:
    """For every rule of every model: a report with just its first condition gets that rule's answer (or an
    earlier rule's of the same model, when it names the condition too)."""
    samples = {
        "no-ptr": {"iprev": (Result.PERMERROR, "no-ptr")},
        "iprev-fail": {"iprev": (Result.FAIL, "ptr-mismatch")},
        "iprev-temperror": {"iprev": (Result.TEMPERROR, "ptr-lookup")},
        "ipv6-iprev": {"ip": "2001:db8::1", "iprev": (Result.PERMERROR, "no-ptr")},
        "helo-fail": {"helo": (Result.FAIL, "unknown")},
        "sender-fail": {"sender": (Result.FAIL, "unknown-domain")},
        "null-mx": {"sender": (Result.FAIL, "null-mx")},
        "generic": {"generic": (Result.FAIL, "embeds-address")},
    }
    assert set(samples) == set(CONDITIONS)
    for model in RECEIVERS.values():
        for rule in model.rules:
            sample = dict(samples[rule.when[0]])
            found = report(str(sample.pop("ip", "192.0.2.1")), **sample)  # type: ignore[arg-type]
            assert rule.when[0] in conditions(found)
            first = next(item for item in model.rules if conditions(found).intersection(item.when))
            action, stage, reply = by_name(found)[model.name]
            assert (action, stage) == (first.action, first.stage), (model.name, rule)
            expected = first.reply.replace("{ip}", str(found.ip)).replace("{helo}", "mail.example.org") or None
            assert reply == expected, (model.name, rule)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            {
                "x": {
                    "title": "X",
                    "source": "s",
                    "rules": [
                        {"when": ["nope"], "action": "reject", "stage": "data", "reply": "", "confidence": "published"}
                    ],
                }
            },
            "when",
        ),
        (
            {
                "x": {
                    "title": "X",
                    "source": "s",
                    "rules": [
                        {
                            "when": ["no-ptr"],
                            "action": "bounce",
                            "stage": "data",
                            "reply": "",
                            "confidence": "published",
                        }
                    ],
                }
            },
            "action",
        ),
        (
            {
                "x": {
                    "title": "X",
                    "source": "s",
                    "rules": [
                        {
                            "when": ["no-ptr"],
                            "action": "reject",
                            "stage": "quit",
                            "reply": "",
                            "confidence": "published",
                        }
                    ],
                }
            },
            "stage",
        ),
    ],
)
def test_a_broken_model_is_refused_with_the_reason(table: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_receivers(table)  # type: ignore[arg-type]
