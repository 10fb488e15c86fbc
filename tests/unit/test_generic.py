"""The `generic` check: PTR names that look like an ISP's default, explained (rdnsgate.checks.generic).

The public examples of Haraka's fcrdns plugin and pymilter's dynip module,
re-expressed with documentation addresses and example domains, beside our
own; then properties: no address form and no keyword is never `fail`, and
the registered domain never decides.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.checks.generic import evaluate_generic, examine, registered_domain, verdict
from rdnsgate.checks.iprev import evaluate_iprev
from rdnsgate.model import Lookup, Result, Status


def judge(ip: str, name: str, exempt: tuple[str, ...] = ()) -> tuple[str, str, str]:
    result, reason, detail = verdict(examine(ipaddress.ip_address(ip), name, exempt or ("mailer.example",)))
    return result.value, reason, detail


@pytest.mark.parametrize(
    ("ip", "name", "result", "reason"),
    [
        # Haraka fcrdns (is_generic_rdns), mapped into documentation ranges
        ("198.51.100.165", "mail.example.com", "pass", "mail-host"),
        ("198.51.100.136", "dsl-198-51-100-136.example.net", "fail", "embeds-address"),
        ("198.51.100.159", "c-198-51-100-159.hsd1.wa.example.net", "fail", "embeds-address"),
        ("198.51.100.159", "c-198-51-100-159.business.wa.example.net", "pass", "static"),
        ("192.0.2.1", "com", "pass", "not-generic"),
        # pymilter dynip, mapped likewise
        ("203.0.113.112", "post3.example-deals.com", "pass", "mail-host"),
        ("203.0.113.177", "adsl-203-0-113-177.dsl.city.example.net", "fail", "embeds-address"),
        ("203.0.113.151", "c-203-0-113-151.hsd1.mn.example.net", "fail", "embeds-address"),
        # every form of the address
        ("198.51.100.7", "7.100.51.198.dynamic.example.net", "fail", "embeds-address"),
        ("198.51.100.7", "198.51.100.7.example.net", "fail", "embeds-address"),
        ("198.51.100.7", "host198051100007.example.net", "fail", "embeds-address"),
        ("198.51.100.7", "ip-c6336407.example.net", "fail", "embeds-address"),
        ("198.51.100.7", "u3325256711.example.net", "fail", "embeds-address"),
        ("198.51.100.7", "198_51_100_7.example.co.uk", "fail", "embeds-address"),
        ("198.51.100.7", "dyn-7-100.pool.example.net", "fail", "pool-keyword"),
        ("198.51.100.7", "ppp100-7.example.net", "fail", "pool-keyword"),
        ("2001:db8::7", "2001-db8-0-0-0-0-0-7.dyn.example.net", "fail", "embeds-address"),
        ("2001:db8::7", "2001-db8--7.example.net", "fail", "embeds-address"),
        ("2001:db8::7", "20010db8000000000000000000000007.example.net", "fail", "embeds-address"),
        ("2001:db8::1:7", "cpe-0-0-1-7.pool.example.net", "fail", "pool-keyword"),
        # exemptions and weak signals
        ("198.51.100.7", "198-51-100-7.static.example.net", "pass", "static"),
        ("198.51.100.7", "static-198-51-100-7.dyn.example.net", "fail", "embeds-address"),  # dyn cancels it
        ("198.51.100.7", "mx2-198-51-100-7.example.net", "pass", "mail-host"),
        ("198.51.100.7", "smtp-out.example.org", "pass", "mail-host"),
        ("198.51.100.7", "o1-198-51-100-7.mailer.example", "pass", "mail-operator"),
        ("198.51.100.7", "example.net", "pass", "bare-domain"),
        ("198.51.100.7", "pool.example.net", "pass", "not-generic"),  # a keyword alone: weak
        ("198.51.100.7", "web42.example.net", "pass", "not-generic"),
        ("198.51.100.7", "c-198-51-100-8.hsd1.example.net", "pass", "not-generic"),  # another address
        ("198.51.100.7", "198-51-100-7.example", "pass", "bare-domain"),  # the registered domain never counts
        ("198.51.100.7", "www.198-51-100-7.online", "pass", "not-generic"),
    ],
)
def test_examples(ip: str, name: str, result: str, reason: str) -> None:
    got = judge(ip, name)
    assert got[:2] == (result, reason), got


def test_the_detail_names_label_form_keyword_and_domain() -> None:
    _result, _reason, detail = judge("198.51.100.159", "c-198-51-100-159.hsd1.wa.example.net")
    assert "label 'c-198-51-100-159' embeds the address (dashed)" in detail
    assert "keyword 'hsd' in 'hsd1'" in detail
    assert "the registered domain example.net is not considered" in detail
    assert (
        "'business' says the address is assigned on purpose"
        in judge("198.51.100.1", "c-198-51-100-1.business.example.net")[2]
    )


def test_registered_domain_uses_the_icann_section() -> None:
    assert registered_domain("c-1.hsd1.example.co.uk") == "example.co.uk"
    assert registered_domain("ec2-198-51-100-7.compute-1.amazonaws.com") == "amazonaws.com"  # private suffixes ignored
    assert judge("198.51.100.7", "ec2-198-51-100-7.compute-1.amazonaws.com")[:2] == ("fail", "embeds-address")


def test_the_check_on_a_report() -> None:
    ip = ipaddress.ip_address("198.51.100.7")
    none = evaluate_iprev(ip, Lookup("7.100.51.198.in-addr.arpa", "PTR", Status.NXDOMAIN), {})
    assert (evaluate_generic(none).result, evaluate_generic(none).reason) == (Result.NONE, "no-ptr")
    ptr = Lookup("7.100.51.198.in-addr.arpa", "PTR", Status.ANSWER, ("c-198-51-100-7.hsd1.example.net",), ttl=60)
    forward = {
        "c-198-51-100-7.hsd1.example.net": Lookup(
            "c-198-51-100-7.hsd1.example.net", "A", Status.ANSWER, ("198.51.100.7",)
        )
    }
    found = evaluate_generic(evaluate_iprev(ip, ptr, forward))
    assert (found.result, found.reason) == (Result.FAIL, "embeds-address")


# -- properties --------------------------------------------------------------------------------------------------
words = st.from_regex(r"[a-z]{3,8}", fullmatch=True).filter(
    lambda word: (
        not any(
            word.startswith(k)
            for k in (
                "dyn",
                "dhcp",
                "dsl",
                "adsl",
                "vdsl",
                "ppp",
                "dial",
                "cable",
                "cust",
                "client",
                "broadband",
                "pool",
            )
        )
    )
)
domains = st.sampled_from(
    ["example.net", "example.co.uk", "example.online", "dsl-provider.example", "198-51-100-7.example"]
)


@given(st.ip_addresses(v=4), st.lists(words, min_size=1, max_size=3), domains)
def test_no_address_and_no_keyword_is_never_fail(ip: ipaddress.IPv4Address, labels: list[str], domain: str) -> None:
    from rdnsgate.checks.generic import KEYWORDS

    labels = [label for label in labels if label not in KEYWORDS] or ["host"]
    name = ".".join([*labels, domain])
    assert judge(str(ip), name)[0] != "fail"


@given(st.ip_addresses(v=4), domains, domains)
def test_the_registered_domain_never_decides(ip: ipaddress.IPv4Address, first: str, second: str) -> None:
    host = "c-" + str(ip).replace(".", "-") + ".hsd1"
    assert judge(str(ip), f"{host}.{first}")[:2] == judge(str(ip), f"{host}.{second}")[:2] == ("fail", "embeds-address")
