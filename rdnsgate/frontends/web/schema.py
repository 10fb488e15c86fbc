"""The report object of docs/check-json.md as pydantic models: the API's OpenAPI document and its validation.

`policy/serialize.py` builds the object; these models describe it for API
users (``/api/v1/openapi.json``) and hold it to its documentation: the API
validates every answer against them, and the check scenarios validate what
``rdnsgate check --json`` prints.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Result = Literal["pass", "fail", "temperror", "permerror", "none"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MxRecord(_Strict):
    preference: int
    exchange: str = Field(description='"" for a null MX (RFC 7505)')


class LookupModel(_Strict):
    name: str = Field(description="the name asked, lower case, no trailing dot")
    type: Literal["PTR", "A", "AAAA", "MX", "NS", "SOA", "CNAME"]
    status: Literal["answer", "nxdomain", "nodata", "timeout", "servfail", "refused", "error"]
    records: list[str] = Field(description="names for PTR and MX, addresses for A/AAAA")
    ttl: int | None = Field(description="seconds the answer may be cached")
    mx: list[MxRecord] | None = None
    cnames: list[str] | None = Field(None, description="the CNAME targets followed, when there were any")
    negative_ttl: int | None = Field(None, description="RFC 2308 negative TTL (nxdomain/nodata with an SOA)")
    soa_zone: str | None = None
    detail: str | None = Field(None, description="what went wrong, for temporary statuses")


class PtrName(_Strict):
    name: str
    confirms: bool = Field(description="its A/AAAA leads back to the client IP")
    forward: LookupModel


class ChainModel(_Strict):
    ptr: LookupModel
    names: list[PtrName]
    invalid_names: list[str]
    omitted_names: list[str]
    confirmed_name: str | None


class CheckModel(_Strict):
    result: Result
    reason: str = Field(description="a reason code of docs/checks.md")
    detail: str
    lookups: list[LookupModel]


class ProfileAnswer(_Strict):
    action: Literal["accept", "tag", "tempfail", "reject"]
    stage: Literal["helo", "mail", "rcpt"] | None
    code: int | None
    enhanced: str | None
    text: str | None
    close: bool
    check: str | None
    headers: list[str]


class AdviceStep(_Strict):
    check: str
    text: str


class Recheck(_Strict):
    after_seconds: int
    at: str


class ReportModel(_Strict):
    """One client's chain IP → PTR → A/AAAA → HELO → sender domain, its checks, each profile's answer, the fix."""

    schema_: int = Field(alias="schema", description="1; goes up whenever a field changes meaning")
    checked_at: str
    ip: str
    helo: str | None
    sender: str | None
    sender_domain: str | None
    verdict: Literal["pass", "fail", "temperror"]
    chain: ChainModel
    checks: dict[str, CheckModel] = Field(description="iprev, helo, helo-align, sender")
    profiles: dict[str, ProfileAnswer] = Field(description="classic, postfix, strict, monitor")
    advice: list[AdviceStep]
    recheck: Recheck | None
