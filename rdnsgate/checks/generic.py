"""Generic (dynamic-looking) PTR names: does the client's PTR name look like an ISP's default?

Receivers score or refuse mail from names such as
``c-198-51-100-7.hsd1.example.net`` or ``dyn-7-100.pool.example.net``.  This
module says whether a name looks like that, and why: which label of the
*host part* embeds which form of the client's address, which dynamic-pool
keyword it names, and which exemption applied.  Only the host part counts:
the registered domain (the Public Suffix List's ICANN section, bundled with
`publicsuffixlist`; no network fetch) never decides, so ``example.online``
or ``dsl-provider.example`` are never held against a sender.

The check never refuses in a built-in profile (every profile logs it); an
admin may set ``generic=reject ...`` in overrides.  No I/O here besides
reading the bundled list once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache

from rdnsgate.model import Check, CheckResult, IPAddress, IprevReport, Result

REASONS = {
    "no-ptr": "none: the client has no PTR name to judge",
    "not-generic": "pass: the host part embeds no form of the address and names no dynamic-pool keyword",
    "bare-domain": "pass: the PTR name is a registered domain without a host part (a weak signal: it names no host)",
    "static": "pass: a keyword such as static, business or fixed says the address was assigned on purpose",
    "mail-host": "pass: the host part starts like a mail server's name (mail, smtp, mx, mta, ...)",
    "mail-operator": "pass: the registered domain is a mail operator's (`checks.generic_exempt_domains`)",
    "embeds-address": "fail: a label of the host part embeds the client's whole address",
    "pool-keyword": "fail: a dynamic-pool keyword beside a part of the client's address",
}

# Words ISPs put in the names of addresses they hand out dynamically or to home users.
KEYWORDS = (
    "dyn", "dynamic", "dynip", "dhcp", "pool", "pools", "ppp", "pppoe", "dsl", "adsl", "vdsl", "xdsl", "sdsl",
    "cable", "dialup", "dial", "dialin", "broadband", "bb", "customer", "customers", "cust", "client", "clients",
    "residential", "resi", "home", "user", "users", "subscriber", "sub", "hsd", "cpe", "ftth", "fttx", "fttc",
    "fiber", "fibre", "wireless", "wifi", "mobile", "cell", "lte", "nat", "cgnat", "dip", "ip",
    "unassigned", "unknown", "generic", "reverse", "rev", "noname",
)  # fmt: skip
# Keywords that only a dynamic assignment uses: they cancel a static exemption.
DYNAMIC_ONLY = ("dyn", "dhcp", "pool", "ppp")
# Words that say the opposite: an address assigned on purpose.
STATIC_WORDS = ("static", "stat", "fixed", "fix", "business", "biz", "corporate", "dedicated", "server", "srv")
# A first host label like these names a mail server (mail, smtp2, mx-out, mta5, relay, ...).
MAIL_HOST = re.compile(
    r"(?:e?mail|mail[a-z]*|smtp[a-z]*|mx|mta|mx[a-z]*|relay|out|outbound|outgoing|mailer|post|bounces?|"
    r"exchange|exch|postfix|exim|sendmail)\d*(?:[-_][a-z0-9_-]*)?"
)
# Pool keywords that also appear inside words ("dsl" in "adsl2", "dyn" in "dynamicip"): matched as token prefixes.
PREFIX_KEYWORDS = ("dyn", "dhcp", "dsl", "adsl", "vdsl", "ppp", "dial", "cable", "cust", "client", "broadband", "pool")
DEFAULT_EXEMPT_DOMAINS = (
    "google.com", "googlemail.com", "outlook.com", "hotmail.com", "yahoo.com", "yahoodns.net", "aol.com",
    "icloud.com", "apple.com", "me.com", "gmx.net", "gmx.de", "web.de", "freenet.de", "fastmail.com",
    "messagingengine.com", "zoho.com", "zohomail.com", "protonmail.ch", "proton.me", "amazonses.com",
    "sendgrid.net", "mailgun.net", "mailgun.org", "mcsv.net", "rsgsv.net", "mandrillapp.com", "mcdlv.net",
    "sparkpostmail.com", "postmarkapp.com", "mtasv.net", "messagelabs.com", "pphosted.com", "mimecast.com",
    "barracudanetworks.com", "iphmx.com", "exacttarget.com", "hubspotemail.net", "salesforce.com",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the classifier saw in one name (for the detail text and the tests)."""

    name: str
    registered: str | None  # the registered domain (ICANN section), None when the name has none
    host_labels: tuple[str, ...]
    embedded: tuple[tuple[str, str], ...] = ()  # (label, form) where the whole address appears
    partial: tuple[tuple[str, str], ...] = ()  # (label, form) where a part of the address appears
    keywords: tuple[tuple[str, str], ...] = ()  # (label, keyword)
    exemption: str | None = None  # static, mail-host, mail-operator
    exempt_word: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@cache
def _suffixes() -> object:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(only_icann=True)


def registered_domain(name: str) -> str | None:
    """The registered domain of `name` (``example.co.uk``) by the PSL's ICANN section, or None."""
    found = _suffixes().privatesuffix(name)  # type: ignore[attr-defined]
    return str(found) if found else None


def _tokens(label: str) -> list[str]:
    return [token for token in re.split(r"[^a-z]+", label) if token]


def _v4_forms(ip: ipaddress.IPv4Address) -> tuple[dict[str, str], dict[str, str]]:
    """Whole-address forms (text -> form name) and partial forms (the last two octets)."""
    a, b, c, d = (str(octet) for octet in ip.packed)
    pad = [f"{octet:03d}" for octet in ip.packed]
    whole = {}
    for sep in ("-", ".", "_", ""):
        if sep:
            whole[sep.join((a, b, c, d))] = {"-": "dashed", ".": "dotted", "_": "underscored"}[sep]
            whole[sep.join((d, c, b, a))] = "reversed"
        whole[sep.join(pad)] = "zero-padded"
        whole[sep.join(reversed(pad))] = "reversed zero-padded"
    whole[f"{int(ip):08x}"] = "hex"
    if int(ip) >= 10**7:  # a short integer would match unrelated digits
        whole[str(int(ip))] = "integer"
    partial = {}
    for sep in ("-", ".", "_"):
        partial[sep.join((c, d))] = "last two octets"
        partial[sep.join((d, c))] = "last two octets reversed"
        partial[sep.join((b, c, d))] = "last three octets"
        partial[sep.join((d, c, b))] = "last three octets reversed"
    return whole, partial


def _v6_forms(ip: ipaddress.IPv6Address) -> tuple[dict[str, str], dict[str, str]]:
    groups = ip.exploded.split(":")
    short = [group.lstrip("0") or "0" for group in groups]
    nibbles = ip.exploded.replace(":", "")
    whole = {
        "-".join(groups): "groups",
        "-".join(short): "groups",
        str(ip).replace(":", "-"): "compressed groups",
        nibbles: "hex",
        ".".join(reversed(nibbles)): "reversed nibbles",
        ".".join(nibbles): "nibbles",
    }
    iid = groups[4:]
    partial = {
        "-".join(iid): "interface id groups",
        "-".join(group.lstrip("0") or "0" for group in iid): "interface id groups",
        "".join(iid): "interface id hex",
        ".".join(reversed("".join(iid))): "interface id nibbles reversed",
    }
    return whole, partial


def _contains(host: str, labels: Iterable[str], text: str) -> str | None:
    """The label (or run of labels, for dotted forms) of the host part holding `text` as a whole token."""
    if "." in text:
        pattern = re.compile(rf"(?:^|[.\-_a-z]){re.escape(text)}(?:$|[.\-_a-z])")
        return host if pattern.search(host) else None
    pattern = re.compile(
        rf"(?:^|[^0-9a-f]){re.escape(text)}(?:$|[^0-9a-f])"
        if not text.isdigit()
        else rf"(?:^|\D){re.escape(text)}(?:$|\D)"
    )
    for label in labels:
        if pattern.search(label):
            return label
    return None


def examine(ip: IPAddress, name: str, exempt_domains: Iterable[str] = DEFAULT_EXEMPT_DOMAINS) -> Evidence:
    """What `name` (a PTR name of `ip`) shows: the evidence, before a verdict. Pure."""
    name = name.lower().rstrip(".")
    registered = registered_domain(name)
    host = name[: -len(registered) - 1] if registered and name != registered else ("" if registered else name)
    labels = tuple(label for label in host.split(".") if label)
    whole, partial = _v4_forms(ip) if isinstance(ip, ipaddress.IPv4Address) else _v6_forms(ip)
    embedded = []
    for text, form in whole.items():
        where = _contains(host, labels, text)
        if where is not None and (where, form) not in embedded:
            embedded.append((where, form))
    parts = []
    if not embedded:
        for text, form in partial.items():
            where = _contains(host, labels, text)
            if where is not None and (where, form) not in parts:
                parts.append((where, form))
    keywords, static = [], []
    for label in labels:
        for token in _tokens(label):
            if token in KEYWORDS or any(token.startswith(word) for word in PREFIX_KEYWORDS):
                keywords.append((label, token))
            if token in STATIC_WORDS:
                static.append(token)
    exemption, word = None, ""
    exempt = {domain.lower().rstrip(".") for domain in exempt_domains}
    if registered in exempt or any(name.endswith("." + domain) for domain in exempt):
        exemption, word = "mail-operator", registered or ""
    elif static and not any(word.startswith(DYNAMIC_ONLY) for _label, word in keywords):
        exemption, word = "static", static[0]
    elif labels and MAIL_HOST.fullmatch(labels[0]) and not keywords:
        exemption, word = "mail-host", labels[0]
    return Evidence(name, registered, labels, tuple(embedded), tuple(parts), tuple(keywords), exemption, word)


def verdict(evidence: Evidence) -> tuple[Result, str, str]:
    """(result, reason, detail) from the evidence. Pure."""
    name = evidence.name
    if evidence.registered is not None and not evidence.host_labels:
        return (
            Result.PASS,
            "bare-domain",
            f"{name} is a registered domain with no host part: not generic, but a PTR that names a host "
            f"(mail.{name}) says more",
        )
    seen = _seen(evidence)
    if evidence.exemption == "mail-operator":
        return Result.PASS, "mail-operator", f"{name}: {evidence.exempt_word or name} is a mail operator's domain{seen}"
    if evidence.exemption == "static":
        return Result.PASS, "static", f"{name}: '{evidence.exempt_word}' says the address is assigned on purpose{seen}"
    if evidence.exemption == "mail-host":
        return Result.PASS, "mail-host", f"{name}: '{evidence.exempt_word}' names a mail server{seen}"
    domain = f"; the registered domain {evidence.registered} is not considered" if evidence.registered else ""
    if evidence.embedded:
        return Result.FAIL, "embeds-address", f"{name} looks generic: {_said(evidence)}{domain}"
    if evidence.keywords and evidence.partial:
        return Result.FAIL, "pool-keyword", f"{name} looks generic: {_said(evidence)}{domain}"
    return Result.PASS, "not-generic", f"{name}: the host part embeds no form of the address{_keywords_only(evidence)}"


def _said(evidence: Evidence) -> str:
    parts = [f"label '{label}' embeds the address ({form})" for label, form in evidence.embedded[:2]]
    parts += [f"label '{label}' holds part of the address ({form})" for label, form in evidence.partial[:2]]
    parts += [f"keyword '{word}' in '{label}'" for label, word in evidence.keywords[:3]]
    return ", ".join(parts)


def _seen(evidence: Evidence) -> str:
    said = _said(evidence)
    return f" (although {said})" if said else ""


def _keywords_only(evidence: Evidence) -> str:
    if not evidence.keywords:
        return " and names no dynamic-pool keyword"
    words = ", ".join(f"'{word}'" for _label, word in evidence.keywords[:3])
    return f"; it names {words}, but no part of the address beside it (a weak signal)"


def evaluate_generic(iprev: IprevReport, exempt_domains: tuple[str, ...] = DEFAULT_EXEMPT_DOMAINS) -> CheckResult:
    """The `generic` check of the client's PTR name (the confirmed one, else the first examined)."""
    name = iprev.shown_name
    if name is None:
        return CheckResult(Check.GENERIC, Result.NONE, "no-ptr", f"{iprev.ip} has no PTR name to judge")
    return _judged(iprev.ip, name, exempt_domains)


@lru_cache(maxsize=4096)
def _judged(ip: IPAddress, name: str, exempt_domains: tuple[str, ...]) -> CheckResult:
    """The verdict on one (address, name): the same client comes back often (a memo, bounded)."""
    result, reason, detail = verdict(examine(ip, name, exempt_domains))
    return CheckResult(Check.GENERIC, result, reason, detail)
