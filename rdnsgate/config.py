"""Typed settings with their defaults and meaning, validated where they are made.

The one place that says what can be configured.  Settings come, in rising
precedence, from the defaults here, ``rdnsgate.toml`` (sections ``[dns]``,
``[checks]``, ``[gateway]``, ``[policy]``, ``[storage]``, ``[web]``, ``[monitor]``), ``RDNSGATE_SECTION_KEY``
environment variables, and command-line flags.  An unknown key or a value of
the wrong type is a `ConfigError` that names the file and key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rdnsgate.errors import ConfigError, UsageError

ENV_PREFIX = "RDNSGATE_"
T = typing.TypeVar("T")


def setting(default: T, help: str, *, shown: str = "") -> T:
    """A settings field with its help (docs/config.md, the CLI's option help); `shown` explains an empty default."""
    return field(default=default, metadata={"help": help, "shown": shown})


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """How rdnsgate asks DNS questions."""

    nameservers: tuple[str, ...] = setting(
        (), "resolvers as `HOST[:PORT]`, IPv6 as `[::1]:53`", shown="the system's, from resolv.conf"
    )
    timeout: float = setting(2.0, "seconds for a question's first try; each retry waits half as long again, ±10%")
    tries: int = setting(3, "tries per question, rotating over the nameservers")
    max_inflight: int = setting(100, "questions on the wire at once")
    cache_size: int = setting(
        50_000, "answers kept (TTL-bound, negative answers per RFC 2308); `0` turns the cache off"
    )
    max_cnames: int = setting(8, "CNAME hops followed; a longer chain or a loop is a temporary error")
    default_negative_ttl: int = setting(300, "cache time of a negative answer that carries no SOA")
    canaries: tuple[str, ...] = setting(
        ("@hostname", "."),
        "names that must exist, asked every `canary_interval` seconds: while one does not answer (or answers NXDOMAIN), the resolver is taken as broken and every permanent refusal becomes a 4xx; `@hostname` is this host's name, `.` the root zone's SOA; a name missing already at start is dropped with a warning; empty: none",
    )
    canary_interval: float = setting(30.0, "seconds between two rounds of canary questions")

    def __post_init__(self) -> None:
        _positive("dns.timeout", self.timeout)
        _positive("dns.canary_interval", self.canary_interval)
        _positive("dns.tries", self.tries)
        _positive("dns.max_inflight", self.max_inflight)
        _at_least("dns.cache_size", self.cache_size, 0)
        _at_least("dns.max_cnames", self.max_cnames, 0)
        _at_least("dns.default_negative_ttl", self.default_negative_ttl, 0)


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """How the checks run."""

    max_ptr_names: int = setting(10, "PTR names examined per client IP")
    deadline: float = setting(
        20.0, "seconds one evaluation may take in all; lookups still open then count as timed out"
    )
    generic_exempt_domains: tuple[str, ...] = setting(
        (),
        "more mail operators' domains whose PTR names are never called generic, beside the built-in list (the `generic` check, docs/checks.md)",
    )

    def __post_init__(self) -> None:
        _positive("checks.max_ptr_names", self.max_ptr_names)
        _positive("checks.deadline", self.deadline)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """The SMTP before-queue proxy."""

    listen: tuple[str, ...] = setting(("127.0.0.1:2525",), "`HOST:PORT` or `[IPv6]:PORT` to listen on")
    profile: str = setting("classic", "`classic`, `postfix`, `strict` or `monitor` (docs/profiles.md)")
    next_hop: str = setting("", "`smtp://HOST:PORT` of the MTA behind; empty: deliver into `maildir`")
    maildir: str = setting("var/mail", "the Maildir used when there is no next hop")
    relay_domains: tuple[str, ...] = setting(
        (), "recipient domains accepted; every other recipient gets `554 5.7.1 Relay access denied`"
    )
    hostname: str = setting("", "name in the banner and in `Received:`", shown="this host's FQDN")
    authserv_id: str = setting("", "authserv-id of `Authentication-Results`", shown="the hostname")
    check_url: str = setting("", "check page appended to every refusal as `- see URL?ip=CLIENT`")
    reject_footer: str = setting("", "text appended to every refusal")
    overrides: tuple[str, ...] = setting(
        (),
        'per check: `"CHECK=off"` (not run), `"CHECK=log"`, `"CHECK=tempfail CODE ENH TEXT"`, `"CHECK=reject CODE ENH TEXT"`; a reject never covers temperror',
    )
    max_message_size: int = setting(26_214_400, "bytes; announced as SIZE, larger messages get `552`")
    max_recipients: int = setting(100, "recipients per message; more get `452 4.5.3`")
    command_timeout: float = setting(300.0, "seconds a client may stay silent")
    next_hop_timeout: float = setting(60.0, "seconds for each next-hop step; past it the client gets `451 4.4.1`")
    max_sessions: int = setting(1000, "concurrent sessions in all; more get `421 4.7.0`")
    max_sessions_per_ip: int = setting(20, "concurrent sessions per client IP")
    tls_cert: str = setting("", "PEM certificate chain; STARTTLS is offered when set (with `tls_key`)")
    tls_key: str = setting("", "PEM private key")
    trusted_proxies: tuple[str, ...] = setting((), "IPs/CIDRs whose PROXY header or XCLIENT is believed")
    trusted_networks: tuple[str, ...] = setting(
        (), "networks (CIDR) whose clients are not checked (your own relays, monitoring): no lookups, logged as skipped"
    )
    proxy_protocol: bool = setting(
        False, "expect a PROXY v1/v2 header from trusted proxies (others are served directly)"
    )
    whitelist_refresh: float = setting(5.0, "seconds between whitelist reloads")
    workers: int = setting(
        1, "processes sharing the listening ports (SO_REUSEPORT); `0`: one per core. Session limits apply per worker"
    )
    bare_line_ends: str = setting(
        "normalise",
        "a bare CR or LF inside a message: `normalise` (made CRLF, as Postfix's `smtpd_forbid_bare_newline = normalize`) or `reject` (`554 5.5.2` at the end of DATA); either way no command can be smuggled past the gateway",
    )
    drain_seconds: float = setting(
        30.0,
        "after SIGTERM: seconds sessions in progress may take to finish; the rest then get `421 4.3.2` and are closed (a second SIGTERM ends them at once)",
    )

    def __post_init__(self) -> None:
        if not self.listen:
            raise ConfigError("gateway.listen needs at least one HOST:PORT")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("gateway.tls_cert and gateway.tls_key must be given together")
        if self.next_hop and not self.next_hop.startswith("smtp://"):
            raise ConfigError(f"gateway.next_hop must look like smtp://HOST:PORT, not {self.next_hop!r}")
        for key in ("max_message_size", "max_recipients", "max_sessions", "max_sessions_per_ip"):
            _positive(f"gateway.{key}", getattr(self, key))
        _at_least("gateway.workers", self.workers, 0)
        _networks("gateway.trusted_proxies", self.trusted_proxies)
        _networks("gateway.trusted_networks", self.trusted_networks)
        _domains("gateway.relay_domains", self.relay_domains)
        for item in self.listen:
            parse_listen(item, "gateway.listen")
        for key in ("command_timeout", "next_hop_timeout", "whitelist_refresh"):
            _positive(f"gateway.{key}", getattr(self, key))
        _at_least("gateway.drain_seconds", self.drain_seconds, 0)
        if self.bare_line_ends not in ("normalise", "reject"):
            raise ConfigError(f"gateway.bare_line_ends must be 'normalise' or 'reject', not {self.bare_line_ends!r}")


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The Postfix policy service (check_policy_service)."""

    listen: tuple[str, ...] = setting(("127.0.0.1:10040",), "`HOST:PORT`, `[IPv6]:PORT` or `unix:/path` to listen on")
    exim_listen: tuple[str, ...] = setting(
        (), "where Exim's ACLs ask (`${readsocket}`, one line each way; docs/exim.md): addresses as `listen`"
    )
    profile: str = setting("postfix", "`classic`, `postfix`, `strict` or `monitor`")
    overrides: tuple[str, ...] = setting((), "as `gateway.overrides`")
    authserv_id: str = setting(
        "", "authserv-id of the `PREPEND`ed `Authentication-Results` (monitor)", shown="this host's FQDN"
    )
    check_url: str = setting(
        "", "check page appended to every refusal", shown="`web.public_url` + `/check` when that is set"
    )
    reject_footer: str = setting("", "text appended to every refusal")
    max_instances: int = setting(10_000, "Postfix sessions whose evaluations are kept")
    whitelist_refresh: float = setting(5.0, "seconds between whitelist reloads")
    skip_authenticated: bool = setting(
        True,
        "clients that authenticated (`sasl_username` in the request) are submission traffic: not checked, `DUNNO`, logged as skipped",
    )
    trusted_networks: tuple[str, ...] = setting(
        (), "networks (CIDR) whose clients are not checked (your own relays, monitoring): `DUNNO`, logged as skipped"
    )

    def __post_init__(self) -> None:
        _networks("policy.trusted_networks", self.trusted_networks)
        if not self.listen and not self.exim_listen:
            raise ConfigError("policy.listen (or policy.exim_listen) needs at least one address")
        for key, items in (("policy.listen", self.listen), ("policy.exim_listen", self.exim_listen)):
            for item in items:
                if not item.startswith("unix:"):
                    parse_listen(item, key)
        _positive("policy.max_instances", self.max_instances)
        _positive("policy.whitelist_refresh", self.whitelist_refresh)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where the whitelist and the decision log live."""

    url: str = setting(
        "sqlite:///var/rdnsgate.db",
        "the database: `sqlite:///PATH` (relative to the working directory), or `postgresql://USER:PASS@HOST[:PORT]/DB` for several nodes sharing one whitelist, decision log and fleet (docs/deploy-multinode.md)",
    )
    decision_queue: int = setting(
        10_000,
        "decisions waiting to be written (also while the database is away); beyond that they are counted as dropped and logged once a minute, never waited for",
    )
    node: str = setting(
        "",
        "this node's name in a shared store: on its decision records, in the node list (`rdnsgate db status`), on the fleet servers its monitor holds",
        shown="`gateway.hostname`, else this host's FQDN",
    )
    decision_days: int = setting(30, "days decisions are kept; older ones are pruned in small batches every hour")
    pool_size: int = setting(5, "PostgreSQL: connections each process keeps open")
    pool_timeout: float = setting(10.0, "PostgreSQL: seconds to wait for a free connection of the pool")
    pgbouncer: bool = setting(
        False,
        "PostgreSQL behind pgbouncer in transaction mode: no prepared statement outlives its transaction (asyncpg `statement_cache_size=0`); whitelist changes then reach other nodes only by `whitelist_refresh` (LISTEN needs a direct connection)",
    )

    def __post_init__(self) -> None:
        for key in ("decision_queue", "decision_days", "pool_size", "pool_timeout"):
            _positive(f"storage.{key}", getattr(self, key))


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The web app: the public check page, the admin pages, the JSON API, /metrics."""

    listen: str = setting("127.0.0.1:8080", "`HOST:PORT` or `[IPv6]:PORT` of the web app")
    public_url: str = setting(
        "",
        "how senders reach the app, e.g. `https://rdns.example`; refusals of the gateway and policy service then link to `/check?ip=…`, alerts to `/servers/IP`",
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        "IPs/CIDRs of reverse proxies whose `X-Forwarded-For` / `Forwarded` header names the visitor; from anyone else these headers are ignored",
    )
    check_rate: float = setting(
        10.0,
        "checks per minute per visitor address (IPv6: per /64) for visitors who are not logged in; beyond it: 429 with `Retry-After`",
    )
    check_burst: int = setting(5, "checks a visitor may run back to back before the rate applies")
    login_rate: float = setting(5.0, "login attempts per minute per address")
    max_concurrent_checks: int = setting(
        50,
        "anonymous checks running at once from all visitors together; beyond it: 503 with `Retry-After`, so a crowd cannot turn the page into a DNS flood",
    )
    session_hours: float = setting(12.0, "how long a login lasts")
    secure_cookies: bool = setting(
        False, "mark the session cookie `Secure`; set `true` when the app is served over HTTPS"
    )
    secret_key: str = setting(
        "",
        "signs session cookies; empty: a random key made on first start and kept in the store, so nodes sharing a store share it",
    )

    def __post_init__(self) -> None:
        parse_listen(self.listen, "web.listen")
        _networks("web.trusted_proxies", self.trusted_proxies)
        for key in ("check_rate", "check_burst", "login_rate", "session_hours", "max_concurrent_checks"):
            _positive(f"web.{key}", getattr(self, key))
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"web.public_url must start with http:// or https://, not {self.public_url!r}")


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """The fleet monitor: re-checks your sending servers and alerts on changes."""

    interval: float = setting(300.0, "seconds between two checks of one server")
    jitter: float = setting(
        0.1, "each interval varies by up to ± this fraction, so many servers are not checked in the same second"
    )
    confirmations: int = setting(2, "checks in a row that must agree before a state changes (and an alert goes out)")
    webhook_url: str = setting("", "POST the alert JSON (docs/monitor.md) here; empty: none")
    webhook_timeout: float = setting(10.0, "seconds for one POST")
    webhook_tries: int = setting(3, "attempts per alert (1 s, 2 s, 4 s … apart); then it is logged as failed")
    log_alerts: bool = setting(True, "write a WARNING log line for every state change")
    authoritative: bool = setting(
        False,
        'when a chain fails, ask the reverse (and forward) zones\' own servers, found through their NS records, and say "fixed at the source; resolvers may keep the old answer until HH:MM"',
    )
    authoritative_port: int = setting(53, "the port of those servers")
    concurrency: int = setting(10, "servers checked at once")
    history_days: int = setting(90, "stored checks older than this are forgotten (alerts are kept)")

    def __post_init__(self) -> None:
        for key in ("interval", "confirmations", "webhook_timeout", "webhook_tries", "concurrency", "history_days"):
            _positive(f"monitor.{key}", getattr(self, key))
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"monitor.jitter must be between 0 and 1 (a fraction), not {self.jitter!r}")
        if not 0 < self.authoritative_port < 65536:
            raise ConfigError(f"monitor.authoritative_port must be a port number, not {self.authoritative_port!r}")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ConfigError(f"monitor.webhook_url must start with http:// or https://, not {self.webhook_url!r}")


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Started as root (not by the shipped systemd units): whom to become once the ports are bound."""

    user: str = setting(
        "",
        "started as root: bind the listeners, then switch to this user (supplementary groups cleared) before the store is opened or a client is read; as root without it the services refuse to start unless given `--allow-root`",
    )
    group: str = setting("", "the group to switch to", shown="the user's own group")


LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class LogSettings:
    """What the services write to stderr (the journal, under systemd)."""

    format: str = setting(
        "text",
        "`text` (time, level, logger, message) or `json` (one JSON object per line: `time`, `level`, `logger`, `message`; a decision line carries its fields instead of a message)",
    )
    level: str = setting("info", "`debug`, `info`, `warning` or `error`")

    def __post_init__(self) -> None:
        if self.format not in ("text", "json"):
            raise ConfigError(f"log.format must be 'text' or 'json', not {self.format!r}")
        if self.level not in LOG_LEVELS:
            raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}, not {self.level!r}")


@dataclass(frozen=True, slots=True)
class ExceptionSettings:
    """Self-service exceptions: a refused sender asks for a temporary whitelist entry from the refusal's link."""

    mode: str = setting(
        "approve",
        "`off` (the link only explains), `approve` (a request waits on /whitelist for the helpdesk, and goes to `webhook_url`) or `auto` (granted at once)",
    )
    days: float = setting(7.0, "how long a granted exception lasts")
    checks: tuple[str, ...] = setting(
        ("iprev", "helo", "sender", "generic"),
        "the checks whose failure may be excepted (a null MX never is: the domain says it sends no mail)",
    )
    per_ip: int = setting(1, "exceptions (granted or waiting) per client IP within `per_ip_days`")
    per_ip_days: float = setting(30.0, "the window of `per_ip`")
    link_hours: float = setting(48.0, "how long a refusal's link may ask for an exception")
    request_rate: float = setting(6.0, "requests per hour per visitor address (a burst of 3)")
    webhook_url: str = setting("", "POST each new request here (JSON)", shown="`monitor.webhook_url`")

    def __post_init__(self) -> None:
        if self.mode not in ("off", "approve", "auto"):
            raise ConfigError(f"exceptions.mode must be off, approve or auto, not {self.mode!r}")
        for name in self.checks:
            if name not in ("iprev", "helo", "helo-align", "sender", "generic"):
                raise ConfigError(
                    f"exceptions.checks: unknown check {name!r} (iprev, helo, helo-align, sender, generic)"
                )
        _positive("exceptions.days", self.days)
        _positive("exceptions.per_ip", self.per_ip)
        _positive("exceptions.per_ip_days", self.per_ip_days)
        _positive("exceptions.link_hours", self.link_hours)
        _positive("exceptions.request_rate", self.request_rate)


@dataclass(frozen=True, slots=True)
class Settings:
    dns: DnsSettings = field(default_factory=DnsSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    web: WebSettings = field(default_factory=WebSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    exceptions: ExceptionSettings = field(default_factory=ExceptionSettings)
    log: LogSettings = field(default_factory=LogSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)


SECTIONS: dict[str, type[Any]] = {
    "dns": DnsSettings,
    "checks": CheckSettings,
    "gateway": GatewaySettings,
    "policy": PolicySettings,
    "storage": StorageSettings,
    "web": WebSettings,
    "monitor": MonitorSettings,
    "exceptions": ExceptionSettings,
    "log": LogSettings,
    "service": ServiceSettings,
}


def _networks(key: str, values: tuple[str, ...]) -> None:
    for item in values:
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise ConfigError(f"{key}: {item!r} is not an IP address or network (CIDR)") from None


def _domains(key: str, values: tuple[str, ...]) -> None:
    for item in values:
        name = item.strip().rstrip(".")
        labels = name.split(".")
        if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
            raise ConfigError(f"{key}: {item!r} is not a domain name (A-labels, e.g. example.org)")


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be greater than 0, not {value!r}")


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{key} must be at least {low}, not {value!r}")


def _kind(cls: type[Any], name: str) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[name]


def _coerce(value: Any, kind: Any, where: str, from_text: bool) -> Any:
    """`value` as `kind` (str, int, float, bool, tuple[str, ...]); from_text for env variables."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return str(value).lower() in ("1", "true", "yes", "on")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text and str(value).strip().lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_text:
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(kind) is tuple:
        if isinstance(value, str) and from_text:
            return tuple(item.strip() for item in value.split(",") if item.strip())
        if isinstance(value, str):
            return (value,)
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            return tuple(value)
    name = kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")
    if isinstance(kind, types.GenericAlias):
        name = "a list of strings"
    raise ConfigError(f"{where}: expected {name}, found {value!r}")


def _section(
    cls: type[Any], values: Mapping[str, Any], where: str, from_text: bool = False, problems: list[str] | None = None
) -> dict[str, Any]:
    known = {item.name for item in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        try:
            if key not in known:
                hint = ", ".join(sorted(known))
                raise ConfigError(f"{where}: unknown key {key!r} (known: {hint})")
            out[key] = _coerce(value, _kind(cls, key), f"{where}.{key}", from_text)
        except ConfigError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    return out


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Defaults < `path` (TOML) < `env` (RDNSGATE_SECTION_KEY) < `overrides` (flags).

    Raises ConfigError for the first problem found; `check_settings` finds them all.
    """
    settings = _load(path, env, overrides, None)
    assert settings is not None
    return settings


def check_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Settings | None, list[str]]:
    """Every problem of the file and the environment (not only the first); the settings when there is none."""
    problems: list[str] = []
    settings = _load(path, env, None, problems)
    return (settings if not problems else None), problems


def _load(
    path: Path | None,
    env: Mapping[str, str] | None,
    overrides: Mapping[str, Mapping[str, Any]] | None,
    problems: list[str] | None,
) -> Settings | None:
    def problem(message: str) -> None:
        if problems is None:
            raise ConfigError(message)
        problems.append(message)

    merged: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problem(f"{path}: cannot read ({exc.strerror})")
            return None
        except tomllib.TOMLDecodeError as exc:
            problem(f"{path}: not valid TOML: {exc}")
            return None
        for name, values in data.items():
            if name not in SECTIONS or not isinstance(values, dict):
                problem(f"{path}: unknown section [{name}] (known: {', '.join(SECTIONS)})")
                continue
            merged[name].update(_section(SECTIONS[name], values, f"{path}: {name}", problems=problems))
    for variable, value in (env if env is not None else os.environ).items():
        if not variable.startswith(ENV_PREFIX) or variable == ENV_PREFIX + "CONFIG":
            continue
        rest = variable[len(ENV_PREFIX) :].lower()
        section = next((name for name in SECTIONS if rest.startswith(name + "_")), None)
        if section is None:
            problem(f"environment {variable}: no such section (RDNSGATE_<{'|'.join(SECTIONS).upper()}>_KEY)")
            continue
        key = rest[len(section) + 1 :]
        merged[section].update(
            _section(SECTIONS[section], {key: value}, f"environment {variable}", from_text=True, problems=problems)
        )
    for name, values in (overrides or {}).items():
        merged[name].update({key: value for key, value in values.items() if value is not None})
    public = merged["web"].get("public_url")
    if public:  # refusal texts link to this app's check page unless told otherwise
        for section in ("gateway", "policy"):
            merged[section].setdefault("check_url", f"{str(public).rstrip('/')}/check")
    sections = {}
    for name, values in merged.items():  # each section checks itself: one problem per section at most
        try:
            sections[name] = SECTIONS[name](**values)
        except ConfigError as exc:
            problem(str(exc))
        except TypeError as exc:  # pragma: no cover - _section catches unknown keys first
            problem(str(exc))
    if problems:
        return None
    return Settings(**sections)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_moment(text: str, now: datetime, *, ago: bool) -> datetime:
    """A duration ("45s", "90m", "12h", "30d", "2w") before (`ago`) or after `now`, or an ISO time (UTC by default).

    Raises UsageError saying which forms are understood.
    """
    value = text.strip().lower()
    if value[:-1].isdigit() and value[-1] in _UNITS:
        delta = timedelta(seconds=int(value[:-1]) * _UNITS[value[-1]])
        return now - delta if ago else now + delta
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{text!r}: use 45s, 90m, 12h, 30d, 2w or an ISO time such as 2026-12-31T09:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_listen(text: str, key: str = "gateway.listen") -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        port_text = rest[1:] if sep and rest.startswith(":") else ""
    else:
        host, _, port_text = value.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{key} {text!r}: write HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:2525 or [::]:25")
    return host, int(port_text)


def describe(settings: Settings) -> str:
    """The effective settings as TOML, for ``rdnsgate config show`` (written by tomli-w, so any value round-trips)."""
    import tomli_w

    data = {
        name: {item.name: _plain(getattr(getattr(settings, name), item.name)) for item in dataclasses.fields(cls)}
        for name, cls in SECTIONS.items()
    }
    return tomli_w.dumps(data)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _inline(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_inline(item) for item in value) + "]"
    import tomli_w

    return tomli_w.dumps({"v": value}).strip()[4:]


def settings_markdown(section: str) -> str:
    """The table of one section's settings for docs/config.md: key, default, meaning."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for item in dataclasses.fields(SECTIONS[section]):
        shown = item.metadata.get("shown", "")
        default = f"`{_inline(item.default)}`" + (f" ({shown})" if shown else "")
        lines.append(f"| `{item.name}` | {default} | {item.metadata['help']} |")
    return "\n".join(lines)


def setting_help(section: str, key: str) -> str:
    """The help of one setting, for the option of a command that sets it."""
    found = next(item for item in dataclasses.fields(SECTIONS[section]) if item.name == key)
    text: str = found.metadata["help"]
    return text.replace("`", "")
