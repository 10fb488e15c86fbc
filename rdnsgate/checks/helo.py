"""The HELO/EHLO name: syntax, existence, and alignment with the client.

`classify_helo` reads the syntax and says which lookups are needed;
`evaluate_helo` turns those lookups into the HELO check; `evaluate_alignment`
compares the name with the confirmed PTR name and the client IP.  RFC 5321
§4.1.4 forbids refusing mail for a mismatch alone, so alignment is its own
check (`helo-align`) that every built-in profile only logs.  No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rdnsgate.checks.iprev import forward_type, holds_address
from rdnsgate.checks.names import (
    is_bare_ip,
    is_fqdn,
    is_hostname,
    is_postfix_hostname,
    normalize,
    parse_address_literal,
)
from rdnsgate.model import Check, CheckResult, IPAddress, IprevReport, Lookup, Result, Status

MAX_HELO = 255

REASONS = {
    "not-given": "none: no HELO name to judge (a check without --helo)",
    "helo-missing": "fail: the client sent MAIL without HELO/EHLO",
    "literal": "pass: a valid address literal such as [192.0.2.1]",
    "bare-ip": "fail: an IP address without the brackets of a literal",
    "invalid": "permerror: not an RFC 1123 host name, or a broken literal",
    "underscore": "permerror: an existing name with `_` in a label: not RFC 1123, but Postfix takes it",
    "not-fqdn": "fail: a single label such as localhost",
    "exists": "pass: the name has an A or AAAA record",
    "unknown": "fail: the name does not exist",
    "no-address": "fail: the name exists but has no A, AAAA or MX record",
    "mx-only": "fail: the name has an MX record (a null MX too) but no address (Postfix accepts it)",
    "helo-lookup": "temperror: a lookup of the name failed temporarily",
}
ALIGN_REASONS = {
    "ptr-name": "pass: the HELO name is the client's confirmed PTR name",
    "resolves-to-ip": "pass: the HELO name resolves to the client IP",
    "literal": "pass: the address literal is the client IP",
    "literal-mismatch": "fail: the address literal is another address",
    "mismatch": "fail: neither the PTR name nor a name of the client IP",
    "lookup": "temperror: a lookup needed for the comparison failed",
    "not-checked": "none: no usable HELO name to compare",
}


class Form(StrEnum):
    NOT_GIVEN = "not-given"  # no HELO to judge (a CLI check without --helo)
    MISSING = "missing"  # the client sent MAIL without HELO/EHLO
    LITERAL = "literal"  # [192.0.2.1] or [IPv6:...]
    BARE_IP = "bare-ip"  # 192.0.2.1 without brackets
    INVALID = "invalid"  # no RFC 1123 host name, or a broken literal
    NOT_FQDN = "not-fqdn"  # a single label
    NAME = "name"  # a syntactically valid FQDN: needs lookups
    UNDERSCORE = "underscore"  # an FQDN but for `_` in a label (Postfix takes it): looked up, then judged


@dataclass(frozen=True, slots=True)
class HeloForm:
    form: Form
    name: str = ""  # normalised name (Form.NAME, Form.NOT_FQDN), else the text given
    literal: IPAddress | None = None

    @property
    def needs_lookup(self) -> bool:
        return self.form in (Form.NAME, Form.UNDERSCORE)


def classify_helo(helo: str | None) -> HeloForm:
    """Syntax only: what kind of HELO argument this is.

    None means "not given" (nothing to judge); an empty string means the client
    sent no HELO/EHLO before MAIL.
    """
    if helo is None:
        return HeloForm(Form.NOT_GIVEN)
    if not helo.strip():
        return HeloForm(Form.MISSING)
    text = helo.strip()
    if len(text) > MAX_HELO or not text.isascii() or any(c.isspace() for c in text):
        return HeloForm(Form.INVALID, text)
    try:
        literal = parse_address_literal(text)
    except ValueError:
        return HeloForm(Form.INVALID, text)
    if literal is not None:
        return HeloForm(Form.LITERAL, text, literal)
    if is_bare_ip(text):
        return HeloForm(Form.BARE_IP, text)
    name = normalize(text)
    if not is_hostname(name):
        if is_postfix_hostname(name) and "." in name:
            return HeloForm(Form.UNDERSCORE, name)
        return HeloForm(Form.INVALID, text)
    if not is_fqdn(name):
        return HeloForm(Form.NOT_FQDN, name)
    return HeloForm(Form.NAME, name)


def _helo(result: Result, reason: str, detail: str, lookups: tuple[Lookup, ...] = ()) -> CheckResult:
    return CheckResult(Check.HELO, result, reason, detail, lookups)


def _align(result: Result, reason: str, detail: str) -> CheckResult:
    return CheckResult(Check.HELO_ALIGN, result, reason, detail)


def _present(lookups: tuple[Lookup | None, ...]) -> tuple[Lookup, ...]:
    return tuple(item for item in lookups if item is not None)


def evaluate_helo(
    form: HeloForm,
    a: Lookup | None = None,
    aaaa: Lookup | None = None,
    mx: Lookup | None = None,
) -> CheckResult:
    """The HELO check from its syntax and the A, AAAA and (if asked) MX lookups.

    MX is looked up only when both address lookups say NODATA; an MX-only name
    gives `fail/mx-only`, which a profile may accept (Postfix does).
    """
    if form.form is Form.NOT_GIVEN:
        return _helo(Result.NONE, "not-given", "no HELO name was given")
    if form.form is Form.MISSING:
        return _helo(Result.FAIL, "helo-missing", "the client sent no HELO/EHLO before MAIL")
    if form.form is Form.LITERAL:
        return _helo(Result.PASS, "literal", f"{form.name} is a valid address literal")
    if form.form is Form.BARE_IP:
        return _helo(
            Result.FAIL, "bare-ip", f"{form.name!r} is an IP address without brackets; use [{form.name}] or a host name"
        )
    if form.form is Form.INVALID:
        return _helo(Result.PERMERROR, "invalid", f"{form.name!r} is not a valid host name")
    if form.form is Form.NOT_FQDN:
        return _helo(Result.FAIL, "not-fqdn", f"{form.name!r} is not a fully-qualified domain name")

    found = _existence(form, a, aaaa, mx)
    if form.form is Form.UNDERSCORE and found.reason in ("exists", "mx-only"):
        return _helo(
            Result.PERMERROR,
            "underscore",
            f"{form.name!r} has '_' in a label, which RFC 1123 host names may not (it exists: {found.detail})",
            found.lookups,
        )
    return found


def _existence(form: HeloForm, a: Lookup | None, aaaa: Lookup | None, mx: Lookup | None) -> CheckResult:
    lookups = _present((a, aaaa, mx))
    addresses = [item for item in (a, aaaa) if item is not None and item.status is Status.ANSWER]
    if addresses:
        shown = "; ".join(f"{item.qtype} {', '.join(item.records)}" for item in addresses)
        return _helo(Result.PASS, "exists", f"{form.name} has {shown}", lookups)
    if any(item is not None and item.status is Status.NXDOMAIN for item in (a, aaaa, mx)):
        return _helo(Result.FAIL, "unknown", f"the HELO name {form.name} does not exist", lookups)
    temporary = next((item for item in (a, aaaa, mx) if item is not None and item.temporary), None)
    if temporary is not None:
        return _helo(
            Result.TEMPERROR,
            "helo-lookup",
            f"the {temporary.qtype} lookup of {form.name} failed temporarily ({temporary.status}: {temporary.detail})",
            lookups,
        )
    if mx is not None and mx.status is Status.ANSWER and mx.mx:
        # Any MX counts, a null MX ("MX 0 .") too: Postfix's reject_unknown_helo_hostname wants "no A or MX".
        hosts = ", ".join(item.exchange or ". (null MX)" for item in mx.mx)
        return _helo(Result.FAIL, "mx-only", f"{form.name} has no A or AAAA record, only MX ({hosts})", lookups)
    return _helo(Result.FAIL, "no-address", f"{form.name} exists but has no A or AAAA record", lookups)


def evaluate_alignment(
    form: HeloForm,
    ip: IPAddress,
    iprev: IprevReport,
    a: Lookup | None = None,
    aaaa: Lookup | None = None,
) -> CheckResult:
    """Does the HELO name match the client: the confirmed PTR name, or an address of the client?"""
    if form.form is Form.LITERAL:
        if form.literal == ip:
            return _align(Result.PASS, "literal", f"{form.name} is the client's address")
        return _align(Result.FAIL, "literal-mismatch", f"{form.name} is not the client's address {ip}")
    if form.form not in (Form.NAME, Form.UNDERSCORE):
        return _align(Result.NONE, "not-checked", "no usable HELO name to compare")
    if iprev.confirmed_name is not None and iprev.confirmed_name == form.name:
        return _align(Result.PASS, "ptr-name", f"{form.name} is the client's confirmed PTR name")
    same_family = a if forward_type(ip) == "A" else aaaa
    if same_family is not None and holds_address(same_family, ip):
        return _align(Result.PASS, "resolves-to-ip", f"{form.name} resolves to the client's address {ip}")
    if (same_family is not None and same_family.temporary) or iprev.result.temporary:
        return _align(Result.TEMPERROR, "lookup", f"could not compare {form.name} with {ip}: a lookup failed")
    ptr = iprev.confirmed_name or "none confirmed"
    return _align(
        Result.FAIL,
        "mismatch",
        f"{form.name} is not the client's PTR name ({ptr}) and does not resolve to {ip}",
    )
