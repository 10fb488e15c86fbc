"""The report object of docs/check-json.md as pydantic models: the API's OpenAPI document and its validation.

`policy/serialize.py` builds the object; these models describe it for API
users (``/api/v1/openapi.json``) and hold it to its documentation: the API
validates every answer against them, and the check scenarios validate what
``rdnsgate check --json`` prints.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Result = Literal["pass", "fail", "temperror", "permerror", "none"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MxRecord(_Strict):
    preference: int
    exchange: str = Field(description='"" for a null MX (RFC 7505)')


class LookupModel(_Strict):
    name: str = Field(description="the name asked, lower case, no trailing dot")
    type: Literal["PTR", "A", "AAAA", "MX", "NS", "SOA", "CNAME"] = Field(description="`PTR`, `A`, `AAAA`, `MX`")
    status: Literal["answer", "nxdomain", "nodata", "timeout", "servfail", "refused", "error"] = Field(
        description="`answer`, `nxdomain`, `nodata`, `timeout`, `servfail`, `refused`, `error`"
    )
    records: list[str] = Field(description="the answer: names for PTR and MX, addresses for A/AAAA")
    ttl: int = Field(description="seconds the answer may be cached")
    mx: list[MxRecord] | None = Field(
        None,
        description='MX only: `{"preference": 10, "exchange": "mail.example.org"}`; `exchange` is `""` for a null MX',
    )
    cnames: list[str] | None = Field(None, description="present when CNAMEs were followed: the chain of targets")
    negative_ttl: int | None = Field(
        None, description="`nxdomain`/`nodata` only, when the reply carried an SOA: the RFC 2308 negative TTL"
    )
    soa_zone: str | None = Field(None, description="with `negative_ttl`: the zone whose SOA said so")
    detail: str | None = Field(
        None, description="temporary statuses: what went wrong (`no reply from 192.0.2.53:53 within 2.0s`)"
    )


class PtrName(_Strict):
    name: str
    confirms: bool = Field(description="its A/AAAA leads back to the client IP")
    forward: LookupModel


class ChainModel(_Strict):
    ptr: LookupModel = Field(description="the PTR lookup of the reverse name")
    names: list[PtrName] = Field(description='each examined PTR name: `{"name", "confirms": bool, "forward": lookup}`')
    invalid_names: list[str] = Field(description="PTR data that is no valid host name (escaped, see below)")
    omitted_names: list[str] = Field(description="valid names beyond `max_ptr_names`")
    confirmed_name: str | None = Field(description="the PTR name that leads back to the IP")


class CheckModel(_Strict):
    result: Result = Field(description="`pass`, `fail`, `temperror`, `permerror`, `none` (RFC 8601)")
    reason: str = Field(description="a reason code from docs/checks.md")
    detail: str = Field(description="the same in plain words")
    lookups: list[LookupModel] = Field(description="the lookups behind the result")


class ProfileAnswer(_Strict):
    action: Literal["accept", "tag", "tempfail", "reject"] = Field(
        description="`accept`, `tag`, `tempfail` or `reject`"
    )
    stage: Literal["helo", "mail", "rcpt"] | None = Field(
        description="`helo`, `mail` or `rcpt`: the command whose reply carries the refusal"
    )
    code: int | None = Field(description="the SMTP reply code (`450`)")
    enhanced: str | None = Field(description="its enhanced status code (`4.7.25`)")
    text: str | None = Field(description="its text")
    close: bool = Field(description="the connection is closed after the reply")
    check: str | None = Field(description="the check that caused the refusal")
    headers: list[str] = Field(description="headers added to accepted mail (`Authentication-Results: ...`)")


class AdviceStep(_Strict):
    check: str
    text: str


class Recheck(_Strict):
    after_seconds: int
    at: str


class ReceiverAnswer(_Strict):
    receiver: str = Field(description="the model's key in receivers.toml, e.g. `gmail`")
    title: str = Field(description="the receiver in words")
    action: Literal["reject", "tempfail", "junk", "accept"] = Field(
        description="`reject` (5xx), `tempfail` (4xx), `junk` (accepted, likely spam-foldered or scored down), `accept`"
    )
    stage: Literal["connect", "helo", "mail", "rcpt", "data"] | None = Field(
        description="when the answer comes (`data`: after the end of DATA); null when nothing here stops the mail"
    )
    reply: str | None = Field(description="the reply text as published or seen in real bounces")
    because: str | None = Field(description="the finding that decides, in words")
    confidence: Literal["published", "reported", "assumed"] | None = Field(
        description="`published` (the receiver documents it), `reported` (real bounces), `assumed` (a default)"
    )
    source: str = Field(description="where the model comes from (docs/receivers.md)")


class AuthoritativeModel(_Strict):
    chain: ChainModel = Field(description="the PTR chain as the zones' own servers give it now, past every cache")
    iprev: CheckModel = Field(description="the iprev check on that chain")
    note: str = Field(
        description="beside what resolvers see: fixed at the source, and until when resolvers may keep the old answer"
    )


class ReportModel(_Strict):
    """One client's chain IP → PTR → A/AAAA → HELO → sender domain, its checks, each profile's answer, the fix."""

    schema_: int = Field(alias="schema", description="`1`; goes up whenever a field changes meaning")
    checked_at: str = Field(description="ISO 8601 time (UTC) of the check")
    ip: str = Field(description="the client IP, normalised (an IPv4-mapped IPv6 address shows as IPv4)")
    helo: str | None = Field(description="the HELO name as given")
    sender: str | None = Field(description='the reverse-path without angle brackets (`""` for `<>`)')
    sender_domain: str | None = Field(description="the sender's domain in A-labels (`xn--bcher-kva.example`)")
    verdict: Literal["pass", "fail", "temperror"] = Field(
        description="`pass`, `fail` or `temperror`: `fail` when any of iprev, helo, sender is `fail` or "
        "`permerror`; else `temperror` when any is `temperror`; `helo-align` and `generic` never count"
    )
    chain: ChainModel = Field(description="the reverse-DNS chain, below")
    checks: dict[str, CheckModel] = Field(
        description="`iprev`, `helo`, `helo-align`, `sender`, `generic`: a check object each"
    )
    profiles: dict[str, ProfileAnswer] = Field(
        description="`classic`, `postfix`, `strict`, `monitor`: what each would answer"
    )
    receivers: list[ReceiverAnswer] = Field(
        description="what real receivers (Gmail, Microsoft, Yahoo, GMX, ...) would likely answer, and when: a "
        "receiver answer each, below; likely, not certain: receivers change their rules"
    )
    advice: list[AdviceStep] = Field(description='fix steps: `{"check": "iprev", "text": "..."}`, most important first')
    authoritative: AuthoritativeModel | None = Field(
        None, description="only with `check --authoritative` (or the page's box): the zones' own servers' view, below"
    )
    recheck: Recheck | None = Field(
        description='`{"after_seconds": 600, "at": "2026-11-23T10:40:00+00:00"}`: when every negative answer '
        "behind a failure has expired from resolver caches (the longest negative TTL), or null"
    )


_NAMES = {LookupModel: "lookup", CheckModel: "check object", ChainModel: "object", Recheck: "object"}


def _type(annotation: Any) -> str:
    """A field's type in the words of docs/check-json.md."""
    args = [item for item in typing.get_args(annotation) if item is not type(None)]
    if typing.get_origin(annotation) in (types.UnionType, typing.Union) and len(args) == 1:
        return f"{_type(args[0])} or null"
    origin = typing.get_origin(annotation)
    if origin is list:
        return "array of strings" if args == [str] else "array"
    if origin is dict:
        return "object"
    if origin is Literal or annotation is str:
        return "string"
    if annotation is int:
        return "int"
    if annotation is bool:
        return "bool"
    return _NAMES.get(annotation, "object")


def fields_markdown(model: type[BaseModel]) -> str:
    """The field table of one object for docs/check-json.md."""
    lines = ["| field | type | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        lines.append(f"| `{info.alias or name}` | {_type(info.annotation)} | {info.description or ''} |")
    return "\n".join(lines)
