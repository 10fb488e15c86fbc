"""Pure: what real receivers (Gmail, Microsoft, Yahoo, GMX, ...) would likely answer a client, and when.

The sender's question is "what will Gmail do with my IP?", not "what would
profile strict do".  The models are data (receivers.toml, like the profiles):
each receiver's rules, the stage and reply text as published or seen in real
bounces, and where that comes from.  `predict` applies them to a report.
Receivers change their rules without notice: every face says so.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from rdnsgate.errors import ConfigError
from rdnsgate.model import Check, Report, Result

CONDITIONS = (
    "no-ptr",
    "iprev-fail",
    "iprev-temperror",
    "ipv6-iprev",
    "helo-fail",
    "sender-fail",
    "null-mx",
    "generic",
)
ACTIONS = ("reject", "tempfail", "junk", "accept")
STAGES = ("connect", "helo", "mail", "rcpt", "data")
CONFIDENCE = ("published", "reported", "assumed")
CAVEAT = (
    "Likely answers, from each receiver's published rules and real bounces; receivers change their rules "
    "without notice, and reputation, SPF, DKIM and DMARC decide much more than DNS alone."
)


@dataclass(frozen=True, slots=True)
class ReceiverRule:
    when: tuple[str, ...]
    action: str
    stage: str
    reply: str
    confidence: str


@dataclass(frozen=True, slots=True)
class Receiver:
    name: str
    title: str
    source: str
    rules: tuple[ReceiverRule, ...]


@dataclass(frozen=True, slots=True)
class Prediction:
    receiver: str
    title: str
    action: str  # reject | tempfail | junk | accept
    stage: str | None  # when the answer comes; None when nothing here stops the mail
    reply: str | None
    because: str | None  # the condition that decided, in words
    confidence: str | None
    source: str


CONDITION_WORDS = {
    "no-ptr": "the IP has no PTR record",
    "iprev-fail": "the PTR name does not lead back to the IP",
    "iprev-temperror": "the PTR lookup failed temporarily",
    "ipv6-iprev": "an IPv6 client without forward-confirmed reverse DNS",
    "helo-fail": "the HELO name is invalid or does not exist",
    "sender-fail": "the sender domain does not exist or has no mail records",
    "null-mx": "the sender domain publishes a null MX",
    "generic": "the PTR name looks like an ISP's default",
}


def conditions(report: Report) -> frozenset[str]:
    """The conditions of receivers.toml that `report` fits."""
    found = set()
    iprev = report.iprev.result
    if iprev.result is Result.PERMERROR:
        found.add("no-ptr")
    if iprev.result is Result.FAIL:
        found.add("iprev-fail")
    if iprev.result is Result.TEMPERROR:
        found.add("iprev-temperror")
    if report.ip.version == 6 and iprev.failed:
        found.add("ipv6-iprev")
    if report.helo.failed and report.helo.reason != "helo-missing":
        found.add("helo-fail")
    if report.sender.failed:
        found.add("null-mx" if report.sender.reason == "null-mx" else "sender-fail")
    if report.generic.check is Check.GENERIC and report.generic.result is Result.FAIL:
        found.add("generic")
    return frozenset(found)


def predict(report: Report, receivers: dict[str, Receiver] | None = None) -> list[Prediction]:
    """Each receiver's likely answer to `report`: its first rule that fits, else accepted."""
    fits = conditions(report)
    values = {"{ip}": str(report.ip), "{helo}": report.helo_name or "", "{sender}": report.sender_address or ""}
    out = []
    for model in (receivers or RECEIVERS).values():
        rule = next((rule for rule in model.rules if fits.intersection(rule.when)), None)
        if rule is None:
            out.append(Prediction(model.name, model.title, "accept", None, None, None, None, model.source))
            continue
        reply: str | None = rule.reply or None
        for key, value in values.items():
            reply = reply.replace(key, value) if reply else reply
        because = next(CONDITION_WORDS[item] for item in rule.when if item in fits)
        out.append(
            Prediction(model.name, model.title, rule.action, rule.stage, reply, because, rule.confidence, model.source)
        )
    return out


def prediction_dict(item: Prediction) -> dict[str, Any]:
    """A prediction as the JSON of docs/check-json.md (``receivers[]``): its fields, as they are."""
    return asdict(item)


def parse_receivers(data: dict[str, Any]) -> dict[str, Receiver]:
    """receivers.toml as models; ConfigError names what is wrong."""
    out = {}
    for name, table in data.items():
        rules = []
        for index, rule in enumerate(table.get("rules", [])):
            where = f"receivers.toml {name} rule {index + 1}"
            when = tuple(rule["when"])
            if not when or any(item not in CONDITIONS for item in when):
                raise ConfigError(f"{where}: when {when!r}: each one of {', '.join(CONDITIONS)}")
            for key, allowed in (("action", ACTIONS), ("stage", STAGES), ("confidence", CONFIDENCE)):
                if rule[key] not in allowed:
                    raise ConfigError(f"{where}: {key} {rule[key]!r}: one of {', '.join(allowed)}")
            rules.append(ReceiverRule(when, rule["action"], rule["stage"], rule["reply"], rule["confidence"]))
        out[name] = Receiver(name, table["title"], table["source"], tuple(rules))
    return out


def _load() -> dict[str, Receiver]:
    text = resources.files(__package__).joinpath("receivers.toml").read_text(encoding="utf-8")
    return parse_receivers(tomllib.loads(text))


RECEIVERS: dict[str, Receiver] = _load()


def receivers_markdown() -> str:
    """docs/receivers.md's table: every model, its rules and its source."""
    lines = ["| receiver | when | answer | stage | confidence |", "|---|---|---|---|---|"]
    for model in RECEIVERS.values():
        if not model.rules:
            lines.append(f"| {model.title} | anything here | accepted | | assumed |")
        for rule in model.rules:
            when = ", ".join(CONDITION_WORDS[item] for item in rule.when)
            reply = f": `{rule.reply}`".replace("|", "\\|") if rule.reply else " (250, then scored)"
            lines.append(f"| {model.title} | {when} | {rule.action}{reply} | {rule.stage} | {rule.confidence} |")
    lines += ["", "Sources:", ""]
    lines += [f"- **{model.title}**: {model.source}" for model in RECEIVERS.values()]
    return "\n".join(lines)
