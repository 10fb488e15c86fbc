"""End to end: ``rdnsgate check --json`` as a subprocess against knotd (behind the fault responder).

Each row: the command's arguments, the faults to inject, and what the JSON
report must say — each check's "result/reason" (checks not named must be
"none"), the exit status, and optional extra expectations.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from rdnsgate.frontends.web.schema import ReportModel
from tests.harness.faultdns import Fault, FaultResponder


@dataclass
class Scenario:
    id: str
    args: list[str]
    iprev: str
    helo: str = "none/not-given"
    align: str | None = None
    sender: str = "none/not-given"
    exit: int | None = None
    faults: list[tuple[str, str, Fault]] = field(default_factory=list)
    confirmed: str | None = None
    profiles: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # name -> (action, code)
    extra: dict[str, Any] = field(default_factory=dict)  # dotted JSON path -> expected value


def S(*args: Any, **kwargs: Any) -> Scenario:
    return Scenario(*args, **kwargs)


REV = "2.0.192.in-addr.arpa"
C = "192.0.2.1"  # a client whose chain is all good: PTR mail.example.org, A back

SCENARIOS = [
    # --- generic PTR names: logged by every profile, refused by none ---------------------
    S(
        "generic-embeds-address",
        ["192.0.2.160"],
        "pass/confirmed",
        exit=0,
        profiles={"classic": ("accept", None), "postfix": ("accept", None), "strict": ("accept", None)},
        extra={"checks.generic.result": "fail", "checks.generic.reason": "embeds-address", "verdict": "pass"},
    ),
    S(
        "generic-pool-keyword",
        ["192.0.2.161"],
        "pass/confirmed",
        exit=0,
        extra={"checks.generic.reason": "pool-keyword"},
    ),
    S("generic-static", ["192.0.2.162"], "pass/confirmed", exit=0, extra={"checks.generic.reason": "static"}),
    S("generic-mail-host", ["192.0.2.163"], "pass/confirmed", exit=0, extra={"checks.generic.reason": "mail-host"}),
    S("generic-no-ptr", ["192.0.2.2"], "permerror/no-ptr", exit=1, extra={"checks.generic.reason": "no-ptr"}),
    # Haraka's and pymilter's public examples, mapped into the test zones (tests/data/zones.py)
    *(
        S(
            f"generic-peer-{last}",
            [f"192.0.2.{last}"],
            "pass/confirmed",
            exit=0,
            extra={"checks.generic.reason": reason},
        )
        for last, reason in (
            (170, "mail-host"),
            (136, "embeds-address"),
            (159, "embeds-address"),
            (158, "static"),
            (112, "mail-host"),
            (177, "embeds-address"),
            (151, "embeds-address"),
        )
    ),
    # --- iprev, IPv4 ----------------------------------------------------------------------
    S("v4-pass", [C], "pass/confirmed", exit=0, confirmed="mail.example.org"),
    S(
        "v4-nxdomain",
        ["192.0.2.2"],
        "permerror/no-ptr",
        exit=1,
        profiles={
            "classic": ("reject", 501),
            "postfix": ("reject", 450),
            "strict": ("reject", 550),
            "monitor": ("tag", None),
        },
    ),
    S("v4-nodata", ["192.0.2.3"], "permerror/no-ptr", exit=1, extra={"chain.ptr.status": "nodata"}),
    S("v4-ptr-name-unknown", ["192.0.2.4"], "fail/ptr-name-unknown", exit=1),
    S(
        "v4-mismatch",
        ["192.0.2.5"],
        "fail/ptr-mismatch",
        exit=1,
        profiles={"classic": ("reject", 501), "postfix": ("reject", 450), "strict": ("reject", 550)},
    ),
    S("v4-ptr-name-nodata", ["192.0.2.6"], "fail/ptr-mismatch", exit=1),
    S("v4-second-name-confirms", ["192.0.2.7"], "pass/confirmed", exit=0, confirmed="second7.example.org"),
    S("v4-third-name-confirms", ["192.0.2.8"], "pass/confirmed", confirmed="c8.example.org"),
    S("v4-uppercase-trailing-dot", ["192.0.2.9"], "pass/confirmed", confirmed="mail9.example.org"),
    S(
        "v4-rfc2317-cname",
        ["192.0.2.10"],
        "pass/confirmed",
        confirmed="classless.example.net",
        extra={"chain.ptr.cnames": ["10.0-63.2.0.192.in-addr.arpa"]},
    ),
    S(
        "v4-invalid-ptr",
        ["192.0.2.11"],
        "fail/invalid-ptr",
        exit=1,
        extra={"chain.invalid_names": ["-bad11.example.org"]},
    ),
    S(
        "v4-xss-ptr",
        ["192.0.2.12"],
        "fail/invalid-ptr",
        extra={"chain.invalid_names": ["<script>alert(1)</script>.example.org"]},
    ),
    S(
        "v4-invalid-and-valid",
        ["192.0.2.13"],
        "pass/confirmed",
        confirmed="good13.example.org",
        extra={"chain.invalid_names": ["-bad13.example.org"]},
    ),
    S("v4-underscore-ptr-confirms", ["192.0.2.29"], "pass/confirmed", confirmed="mail_29.example.org"),
    S("v4-several-addresses", ["192.0.2.14"], "pass/confirmed", confirmed="multi.example.org"),
    S("v4-forward-via-cname", ["192.0.2.15"], "pass/confirmed", confirmed="alias15.example.org"),
    S(
        "v4-forward-timeout",
        ["192.0.2.16"],
        "temperror/forward-lookup",
        exit=3,
        faults=[("slow16.example.org", "A", Fault.TIMEOUT)],
        profiles={"classic": ("tempfail", 451), "postfix": ("tempfail", 450), "strict": ("tempfail", 451)},
    ),
    S("v4-ptr-timeout", ["192.0.2.17"], "temperror/ptr-lookup", exit=3, faults=[(f"17.{REV}", "PTR", Fault.TIMEOUT)]),
    S("v4-ptr-servfail", ["192.0.2.18"], "temperror/ptr-lookup", exit=3, faults=[(f"18.{REV}", "PTR", Fault.SERVFAIL)]),
    S("v4-ptr-refused", ["192.0.2.19"], "temperror/ptr-lookup", exit=3, faults=[(f"19.{REV}", "PTR", Fault.REFUSED)]),
    S("v4-ptr-truncated-then-tcp", ["192.0.2.20"], "pass/confirmed", faults=[(f"20.{REV}", "PTR", Fault.TRUNCATE)]),
    S("v4-ptr-garbage", ["192.0.2.21"], "temperror/ptr-lookup", exit=3, faults=[(f"21.{REV}", "PTR", Fault.GARBAGE)]),
    S(
        "v4-wrong-id-ignored",
        ["192.0.2.22"],
        "pass/confirmed",
        faults=[(f"22.{REV}", "PTR", Fault.WRONG_ID_THEN_RIGHT)],
    ),
    S(
        "v4-wrong-id-only",
        ["192.0.2.22"],
        "temperror/ptr-lookup",
        exit=3,
        faults=[(f"22.{REV}", "PTR", Fault.WRONG_ID)],
    ),
    S(
        "v4-ptr-cname-loop",
        ["192.0.2.23"],
        "temperror/ptr-lookup",
        exit=3,
        faults=[(f"23.{REV}", "PTR", Fault.CNAME_LOOP)],
    ),
    S("v4-ptr-100-names-tcp", ["192.0.2.24"], "pass/confirmed"),
    S("v4-ptr-100-names-capped", ["192.0.2.25"], "fail/ptr-name-unknown", extra={"chain.omitted_names#len": 90}),
    S("v4-huge-txt-padding", ["192.0.2.26"], "pass/confirmed", faults=[(f"26.{REV}", "PTR", Fault.HUGE_TXT)]),
    S(
        "v4-one-forward-flaky-other-confirms",
        ["192.0.2.27"],
        "pass/confirmed",
        confirmed="good27.example.org",
        faults=[("flaky27.example.org", "A", Fault.TIMEOUT)],
    ),
    S("v4-nxdomain-and-nodata-names", ["192.0.2.28"], "fail/ptr-mismatch"),
    S("v4-ptr-to-other-hosts-name", ["192.0.2.30"], "fail/ptr-mismatch"),
    S("v4-mapped-ipv6", ["::ffff:192.0.2.1"], "pass/confirmed", extra={"ip": "192.0.2.1"}),
    # --- iprev, IPv6 ----------------------------------------------------------------------
    S("v6-pass", ["2001:db8::1"], "pass/confirmed", exit=0, confirmed="mail6.example.org"),
    S("v6-no-ptr", ["2001:db8::2"], "permerror/no-ptr", exit=1),
    S("v6-name-has-only-a", ["2001:db8::3"], "fail/ptr-mismatch", exit=1),
    S("v6-aaaa-mismatch", ["2001:db8::4"], "fail/ptr-mismatch"),
    S("v6-second-name-confirms", ["2001:db8::5"], "pass/confirmed", confirmed="second6.example.org"),
    S(
        "v6-forward-timeout",
        ["2001:db8::6"],
        "temperror/forward-lookup",
        exit=3,
        faults=[("host6.example.org", "AAAA", Fault.TIMEOUT)],
    ),
    S(
        "v6-ptr-timeout",
        ["2001:db8::6"],
        "temperror/ptr-lookup",
        exit=3,
        faults=[("6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR", Fault.TIMEOUT)],
    ),
    # --- HELO -----------------------------------------------------------------------------
    S("helo-ptr-name", [C, "--helo", "mail.example.org"], "pass/confirmed", "pass/exists", "pass/ptr-name", exit=0),
    S(
        "helo-mismatch-only-logged",
        [C, "--helo", "other.example.org"],
        "pass/confirmed",
        "pass/exists",
        "fail/mismatch",
        exit=0,
        profiles={"classic": ("accept", None), "postfix": ("accept", None), "strict": ("accept", None)},
    ),
    S(
        "helo-resolves-to-ip",
        [C, "--helo", "alias1.example.org"],
        "pass/confirmed",
        "pass/exists",
        "pass/resolves-to-ip",
    ),
    S("helo-literal-match", [C, "--helo", "[192.0.2.1]"], "pass/confirmed", "pass/literal", "pass/literal", exit=0),
    S(
        "helo-literal-mismatch",
        [C, "--helo", "[192.0.2.77]"],
        "pass/confirmed",
        "pass/literal",
        "fail/literal-mismatch",
        exit=0,
    ),
    S(
        "helo-ipv6-literal",
        ["2001:db8::1", "--helo", "[IPv6:2001:db8::1]"],
        "pass/confirmed",
        "pass/literal",
        "pass/literal",
    ),
    S(
        "helo-bare-ip",
        [C, "--helo", "192.0.2.1"],
        "pass/confirmed",
        "fail/bare-ip",
        "none/not-checked",
        exit=1,
        profiles={"classic": ("reject", 501), "postfix": ("reject", 504), "strict": ("reject", 504)},
    ),
    S(
        "helo-not-fqdn",
        [C, "--helo", "localhost"],
        "pass/confirmed",
        "fail/not-fqdn",
        exit=1,
        profiles={"postfix": ("reject", 504)},
    ),
    S(
        "helo-invalid",
        [C, "--helo", "-bad.example.org"],
        "pass/confirmed",
        "permerror/invalid",
        exit=1,
        profiles={"classic": ("reject", 501), "postfix": ("reject", 501)},
    ),
    S(
        "helo-underscore-exists",
        [C, "--helo", "helo_ok.example.org"],
        "pass/confirmed",
        "permerror/underscore",
        exit=1,
        profiles={"classic": ("reject", 501), "postfix": ("accept", None), "strict": ("reject", 501)},
    ),
    S(
        "helo-underscore-unknown",
        [C, "--helo", "bad_name.example.org"],
        "pass/confirmed",
        "fail/unknown",
        exit=1,
        profiles={"classic": ("reject", 501), "postfix": ("reject", 450)},
    ),
    S(
        "helo-unknown",
        [C, "--helo", "nxhost.example.org"],
        "pass/confirmed",
        "fail/unknown",
        "fail/mismatch",
        exit=1,
        profiles={"classic": ("reject", 501), "postfix": ("reject", 450), "strict": ("reject", 550)},
    ),
    S(
        "helo-mx-only",
        [C, "--helo", "mxonly.example.org"],
        "pass/confirmed",
        "fail/mx-only",
        exit=1,
        profiles={"classic": ("reject", 501), "postfix": ("accept", None), "strict": ("accept", None)},
    ),
    S("helo-no-address", [C, "--helo", "txtonly.example.org"], "pass/confirmed", "fail/no-address", exit=1),
    S(
        "helo-timeout",
        [C, "--helo", "helo-slow.example.org"],
        "pass/confirmed",
        "temperror/helo-lookup",
        exit=3,
        faults=[("helo-slow.example.org", "A", Fault.TIMEOUT)],
        profiles={"classic": ("tempfail", 451), "postfix": ("tempfail", 450)},
    ),
    S(
        "helo-mx-timeout",
        [C, "--helo", "mx-helo-slow.example.org"],
        "pass/confirmed",
        "temperror/helo-lookup",
        exit=3,
        faults=[("mx-helo-slow.example.org", "MX", Fault.TIMEOUT)],
    ),
    S(
        "helo-missing",
        [C, "--helo", ""],
        "pass/confirmed",
        "fail/helo-missing",
        "none/not-checked",
        exit=1,
        profiles={"classic": ("reject", 503), "postfix": ("reject", 503), "strict": ("reject", 503)},
    ),
    S(
        "helo-align-undecidable",
        ["192.0.2.17", "--helo", "other.example.org"],
        "temperror/ptr-lookup",
        "pass/exists",
        "temperror/lookup",
        exit=3,
        faults=[(f"17.{REV}", "PTR", Fault.TIMEOUT)],
    ),
    S(
        "helo-uppercase-trailing-dot",
        [C, "--helo", "MAIL.EXAMPLE.ORG."],
        "pass/confirmed",
        "pass/exists",
        "pass/ptr-name",
    ),
    S("helo-broken-literal", [C, "--helo", "[999.1.1.1]"], "pass/confirmed", "permerror/invalid"),
    S("helo-ipv6-only-name", [C, "--helo", "v6name.example.org"], "pass/confirmed", "pass/exists", "fail/mismatch"),
    # --- sender domain ----------------------------------------------------------------------
    S("sender-mx", [C, "--sender", "bob@example.org"], "pass/confirmed", sender="pass/mx", exit=0),
    S("sender-angle-brackets", [C, "--sender", "<bob@example.org>"], "pass/confirmed", sender="pass/mx"),
    S("sender-null", [C, "--sender", "<>"], "pass/confirmed", sender="none/null-sender", exit=0),
    S(
        "sender-null-mx",
        [C, "--sender", "bob@nullmx.example.org"],
        "pass/confirmed",
        sender="fail/null-mx",
        exit=1,
        profiles={"classic": ("reject", 550), "postfix": ("reject", 550), "strict": ("reject", 550)},
    ),
    S("sender-null-mx-with-a", [C, "--sender", "bob@nullmx-a.example.org"], "pass/confirmed", sender="fail/null-mx"),
    S("sender-a-only", [C, "--sender", "bob@aonly.example.org"], "pass/confirmed", sender="pass/address"),
    S("sender-aaaa-only", [C, "--sender", "bob@v6only.example.org"], "pass/confirmed", sender="pass/address"),
    S(
        "sender-no-mail-records",
        [C, "--sender", "bob@nomail.example.org"],
        "pass/confirmed",
        sender="fail/no-mail-records",
        exit=1,
        profiles={"classic": ("reject", 501), "postfix": ("reject", 450)},
    ),
    S(
        "sender-unknown-domain",
        [C, "--sender", "bob@nx.example.org"],
        "pass/confirmed",
        sender="fail/unknown-domain",
        profiles={"classic": ("reject", 501), "postfix": ("reject", 450), "strict": ("reject", 550)},
    ),
    S("sender-mx-pointing-nowhere", [C, "--sender", "bob@mxnowhere.example.org"], "pass/confirmed", sender="pass/mx"),
    S(
        "sender-idn",
        [C, "--sender", "bob@bücher.example"],
        "pass/confirmed",
        sender="pass/mx",
        extra={"sender_domain": "xn--bcher-kva.example"},
    ),
    S(
        "sender-mx-timeout",
        [C, "--sender", "bob@mx-slow.example.org"],
        "pass/confirmed",
        sender="temperror/mx-lookup",
        exit=3,
        faults=[("mx-slow.example.org", "MX", Fault.TIMEOUT)],
    ),
    S(
        "sender-address-fallback-timeout",
        [C, "--sender", "bob@a-slow.example.org"],
        "pass/confirmed",
        sender="temperror/address-lookup",
        exit=3,
        faults=[("a-slow.example.org", "A", Fault.TIMEOUT)],
    ),
    S("sender-no-domain", [C, "--sender", "bob"], "pass/confirmed", sender="fail/not-fqdn"),
    S(
        "sender-single-label",
        [C, "--sender", "bob@localhost"],
        "pass/confirmed",
        sender="fail/not-fqdn",
        profiles={"postfix": ("reject", 504)},
    ),
    S("sender-invalid", [C, "--sender", "bob@exa mple.org"], "pass/confirmed", sender="permerror/invalid-address"),
    S("sender-address-literal", [C, "--sender", "bob@[192.0.2.1]"], "pass/confirmed", sender="none/address-literal"),
    # --- combinations -------------------------------------------------------------------------
    S(
        "all-good",
        [C, "--helo", "mail.example.org", "--sender", "bob@example.org"],
        "pass/confirmed",
        "pass/exists",
        "pass/ptr-name",
        "pass/mx",
        exit=0,
        profiles={
            "classic": ("accept", None),
            "postfix": ("accept", None),
            "strict": ("accept", None),
            "monitor": ("tag", None),
        },
    ),
    S(
        "iprev-fails-sender-null-mx",
        ["192.0.2.5", "--helo", "other.example.org", "--sender", "bob@nullmx.example.org"],
        "fail/ptr-mismatch",
        "pass/exists",
        "fail/mismatch",
        "fail/null-mx",
        exit=1,
        profiles={"postfix": ("reject", 450)},
        extra={"profiles.classic.stage": "helo", "profiles.classic.close": True},
    ),
    S(
        "fail-beats-temperror-exit",
        ["192.0.2.2", "--sender", "bob@mx-slow.example.org"],
        "permerror/no-ptr",
        sender="temperror/mx-lookup",
        exit=1,
        faults=[("mx-slow.example.org", "MX", Fault.TIMEOUT)],
    ),
]


def _get(data: Any, path: str) -> Any:
    length = path.endswith("#len")
    for part in path.removesuffix("#len").split("."):
        data = data[part]
    return len(data) if length else data


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_check_scenario(scenario: Scenario, faults: FaultResponder) -> None:
    for name, rtype, fault in scenario.faults:
        faults.add(name, rtype, fault)
    command = [
        sys.executable,
        "-m",
        "rdnsgate",
        "check",
        *scenario.args,
        "--json",
        "--nameserver",
        faults.nameserver,
        "--timeout",
        "0.3",
        "--tries",
        "2",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    ReportModel.model_validate(report)  # as documented, and as the API's OpenAPI document says

    got = {name: f"{item['result']}/{item['reason']}" for name, item in report["checks"].items()}
    assert got["iprev"] == scenario.iprev, report["checks"]["iprev"]
    assert got["helo"] == scenario.helo, report["checks"]["helo"]
    if scenario.align is not None:
        assert got["helo-align"] == scenario.align, report["checks"]["helo-align"]
    assert got["sender"] == scenario.sender, report["checks"]["sender"]
    if scenario.exit is not None:
        assert proc.returncode == scenario.exit
    if scenario.confirmed is not None:
        assert report["chain"]["confirmed_name"] == scenario.confirmed
    for name, (action, code) in scenario.profiles.items():
        answer = report["profiles"][name]
        assert (answer["action"], answer["code"]) == (action, code), (name, answer)
    for path, expected in scenario.extra.items():
        assert _get(report, path) == expected, path

    # Whatever the scenario: a temporary error is never answered with a 5xx, and the
    # exit status follows the verdict.
    if any(item["result"] == "temperror" for item in report["checks"].values()) and report["verdict"] == "temperror":
        for name, answer in report["profiles"].items():
            assert answer["code"] is None or answer["code"] < 500, (name, answer)
    assert proc.returncode == {"pass": 0, "fail": 1, "temperror": 3}[report["verdict"]]


def test_scenarios_cover_every_reason() -> None:
    """Every reason code documented for iprev, HELO and sender appears in some scenario."""
    reasons = {s.iprev for s in SCENARIOS} | {s.helo for s in SCENARIOS} | {s.sender for s in SCENARIOS}
    reasons |= {s.align for s in SCENARIOS if s.align}
    expected = {
        "pass/confirmed",
        "permerror/no-ptr",
        "temperror/ptr-lookup",
        "temperror/forward-lookup",
        "fail/invalid-ptr",
        "fail/ptr-name-unknown",
        "fail/ptr-mismatch",
        "pass/exists",
        "pass/literal",
        "fail/bare-ip",
        "fail/not-fqdn",
        "permerror/invalid",
        "fail/unknown",
        "fail/no-address",
        "fail/mx-only",
        "temperror/helo-lookup",
        "pass/ptr-name",
        "pass/resolves-to-ip",
        "fail/mismatch",
        "fail/literal-mismatch",
        "none/not-checked",
        "pass/mx",
        "pass/address",
        "none/null-sender",
        "fail/null-mx",
        "fail/no-mail-records",
        "fail/unknown-domain",
        "temperror/mx-lookup",
        "permerror/invalid-address",
        "none/address-literal",
        "temperror/address-lookup",
        "fail/helo-missing",
        "temperror/lookup",
        "none/not-given",
    }
    assert expected <= reasons, expected - reasons
    assert len(SCENARIOS) >= 60


def test_bad_usage_exits_2() -> None:
    for args in (
        ["check", "not-an-ip"],
        ["check", "192.0.2.1", "--nameserver", "nameserver.example"],
        ["audit"],
        ["audit", "10.0.0.0/7"],
    ):
        proc = subprocess.run([sys.executable, "-m", "rdnsgate", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "error" in proc.stderr.lower() or "usage" in proc.stderr.lower()
