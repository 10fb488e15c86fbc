"""The MAIL FROM domain: does it exist and can it receive mail?

`parse_reverse_path` reads the SMTP reverse-path (``<bob@example.org>``,
``<>``) and says which domain to look up, in A-labels; `evaluate_sender` turns
the MX (and, without MX, A/AAAA) lookups into the sender check.  A single MX
whose exchange is the root (RFC 7505 null MX) means "this domain sends and
receives no mail".  Bounces (``<>``) are never refused.  No I/O here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum

from rdnsgate.checks.names import is_fqdn, is_hostname, parse_address_literal, to_ascii_domain
from rdnsgate.model import Check, CheckResult, Lookup, Result, Status

MAX_PATH = 256  # RFC 5321 §4.5.3.1.3

REASONS = {
    "not-given": "none: no sender to judge (a check without --sender)",
    "null-sender": "none: the null reverse-path <> of a bounce is never refused",
    "address-literal": "none: the domain is an address literal; nothing to look up",
    "invalid-address": "permerror: the address or its domain is not valid syntax",
    "not-fqdn": "fail: the address has no domain, or a single-label one",
    "mx": "pass: the domain has MX records",
    "address": "pass: no MX, but an A or AAAA record (RFC 5321 §5.1)",
    "null-mx": "fail: a null MX (RFC 7505): the domain handles no mail",
    "unknown-domain": "fail: the domain does not exist",
    "no-mail-records": "fail: the domain has no MX, A or AAAA record",
    "mx-lookup": "temperror: the MX lookup failed temporarily",
    "address-lookup": "temperror: the A/AAAA lookup failed temporarily",
}


class Form(StrEnum):
    NOT_GIVEN = "not-given"
    NULL = "null"  # <>
    LITERAL = "literal"  # bob@[192.0.2.1]
    INVALID = "invalid"
    NOT_FQDN = "not-fqdn"
    DOMAIN = "domain"  # needs lookups


@dataclass(frozen=True, slots=True)
class SenderForm:
    form: Form
    address: str = ""  # as given, without angle brackets
    domain: str = ""  # A-labels, normalised
    problem: str = ""  # why the address is invalid

    @property
    def needs_lookup(self) -> bool:
        return self.form is Form.DOMAIN


@functools.lru_cache(maxsize=4096)  # pure: the same senders come again and again (the policy service's sessions)
def parse_reverse_path(text: str | None) -> SenderForm:
    """Syntax only: the reverse-path's form and domain."""
    if text is None:
        return SenderForm(Form.NOT_GIVEN)
    path = text.strip()
    if path.startswith("<") and path.endswith(">"):
        path = path[1:-1].strip()
    if not path:
        return SenderForm(Form.NULL)
    if len(path) > MAX_PATH or any(c.isspace() or ord(c) < 32 for c in path):
        return SenderForm(Form.INVALID, path, problem="the address is too long or holds white space")
    if path.startswith("@") and ":" in path:  # obsolete source route: <@a,@b:user@domain>
        path = path.split(":", 1)[1]
    if "@" not in path:
        return SenderForm(Form.NOT_FQDN, path, problem="the address has no domain")
    local, _, raw_domain = path.rpartition("@")
    if not local or not raw_domain:
        return SenderForm(Form.INVALID, path, problem="the address has an empty local part or domain")
    try:
        if parse_address_literal(raw_domain) is not None:
            return SenderForm(Form.LITERAL, path, raw_domain)
    except ValueError:
        return SenderForm(Form.INVALID, path, raw_domain, "the address literal is not valid")
    try:
        domain = to_ascii_domain(raw_domain)
    except ValueError as exc:
        return SenderForm(Form.INVALID, path, raw_domain, str(exc))
    if not is_hostname(domain):
        return SenderForm(Form.INVALID, path, domain, "the domain is not a valid domain name")
    if not is_fqdn(domain):
        return SenderForm(Form.NOT_FQDN, path, domain, "the domain is not fully qualified")
    return SenderForm(Form.DOMAIN, path, domain)


def _sender(result: Result, reason: str, detail: str, lookups: tuple[Lookup, ...] = ()) -> CheckResult:
    return CheckResult(Check.SENDER, result, reason, detail, lookups)


def evaluate_sender(
    form: SenderForm,
    mx: Lookup | None = None,
    a: Lookup | None = None,
    aaaa: Lookup | None = None,
) -> CheckResult:
    """The sender check from the reverse-path's form and the lookups of its domain."""
    if form.form is Form.NOT_GIVEN:
        return _sender(Result.NONE, "not-given", "no sender address was given")
    if form.form is Form.NULL:
        return _sender(Result.NONE, "null-sender", "the null reverse-path <> (a bounce) is never refused")
    if form.form is Form.LITERAL:
        return _sender(Result.NONE, "address-literal", f"{form.domain} is an address literal; nothing to look up")
    if form.form is Form.INVALID:
        return _sender(Result.PERMERROR, "invalid-address", f"<{form.address}>: {form.problem}")
    if form.form is Form.NOT_FQDN:
        return _sender(Result.FAIL, "not-fqdn", f"<{form.address}>: {form.problem}")

    domain = form.domain
    lookups = tuple(item for item in (mx, a, aaaa) if item is not None)
    if mx is None:
        return _sender(Result.TEMPERROR, "mx-lookup", f"the MX lookup of {domain} was not made", lookups)
    if mx.status is Status.ANSWER:
        real = [item.exchange for item in mx.mx if item.exchange]
        if not real:
            return _sender(
                Result.FAIL,
                "null-mx",
                f"{domain} publishes a null MX (RFC 7505): it declares that it sends and receives no mail",
                lookups,
            )
        return _sender(Result.PASS, "mx", f"{domain} has MX {', '.join(real)}", lookups)
    if mx.status is Status.NXDOMAIN:
        return _sender(Result.FAIL, "unknown-domain", f"the sender domain {domain} does not exist", lookups)
    if mx.temporary:
        return _sender(
            Result.TEMPERROR,
            "mx-lookup",
            f"the MX lookup of {domain} failed temporarily ({mx.status}: {mx.detail})",
            lookups,
        )
    addresses = [item for item in (a, aaaa) if item is not None and item.status is Status.ANSWER]
    if addresses:
        shown = "; ".join(f"{item.qtype} {', '.join(item.records)}" for item in addresses)
        return _sender(Result.PASS, "address", f"{domain} has no MX but {shown}", lookups)
    temporary = next((item for item in (a, aaaa) if item is not None and item.temporary), None)
    if temporary is not None or a is None or aaaa is None:
        cause = f"{temporary.status}: {temporary.detail}" if temporary else "not made"
        return _sender(
            Result.TEMPERROR, "address-lookup", f"the address lookup of {domain} failed temporarily ({cause})", lookups
        )
    if Status.NXDOMAIN in (a.status, aaaa.status):
        return _sender(Result.FAIL, "unknown-domain", f"the sender domain {domain} does not exist", lookups)
    return _sender(Result.FAIL, "no-mail-records", f"{domain} has no MX, A or AAAA record", lookups)
