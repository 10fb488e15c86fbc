"""``rdnsgate serve``, ``whitelist``, ``decisions``, ``config``: running and administering the gateway."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rdnsgate.config import Settings, describe, load_settings
from rdnsgate.errors import RdnsgateError, UsageError
from rdnsgate.frontends.cli.runtime import run_loop, usage_error
from rdnsgate.model import WhitelistEntry
from rdnsgate.policy.decision_log import explain, record_dict, search_terms
from rdnsgate.policy.whitelist import parse_expiry, parse_target
from rdnsgate.storage import SqlStore, open_store

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Settings file (default: $RDNSGATE_CONFIG, else ./rdnsgate.toml when it exists).",
        dir_okay=False,
    ),
]

serve_app = typer.Typer(
    help="Run rdnsgate's services; with no sub-command: gateway, web app and monitor in one process.",
    invoke_without_command=True,
)
admin_app = typer.Typer(help="Admin logins of the web app.", no_args_is_help=True)
whitelist_app = typer.Typer(help="Senders that skip the checks: IPs, networks, sender domains.", no_args_is_help=True)
config_app = typer.Typer(help="The effective settings.", no_args_is_help=True)
fleet_app = typer.Typer(help="Your sending servers, watched for broken or drifting DNS.", no_args_is_help=True)


def settings_from(config: Path | None, overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    path = config
    if path is None and os.environ.get("RDNSGATE_CONFIG"):
        path = Path(os.environ["RDNSGATE_CONFIG"])
    if path is None and Path("rdnsgate.toml").is_file():
        path = Path("rdnsgate.toml")
    return load_settings(path, overrides=overrides)


def with_store(settings: Settings, work: Any) -> Any:
    """Open the store, run `work(store)` (a coroutine function), close the store."""

    async def go() -> Any:
        store = await open_store(settings.storage.url)
        try:
            return await work(store)
        finally:
            await store.close()

    return run_loop(go())


NameserverOpt = Annotated[list[str] | None, typer.Option(help="Resolver HOST[:PORT], repeatable.")]
StorageOpt = Annotated[str | None, typer.Option(help="Database URL (sqlite:///PATH or postgresql://...).")]
PublicUrlOpt = Annotated[
    str | None, typer.Option(help="How senders reach the web app, e.g. https://rdns.example (linked in refusals).")
]


def _with_store_and_dns(
    overrides: dict[str, dict[str, Any]], nameserver: list[str] | None, storage: str | None
) -> dict[str, dict[str, Any]]:
    """The service's own `overrides` plus the --nameserver and --storage every service takes."""
    return {**overrides, "dns": {"nameservers": tuple(nameserver) if nameserver else None}, "storage": {"url": storage}}


def _serve(
    run: Any,
    config: Path | None,
    overrides: dict[str, dict[str, Any]],
    nameserver: list[str] | None,
    storage: str | None,
) -> None:
    from rdnsgate.daemon import configure_logging

    try:
        settings = settings_from(config, _with_store_and_dns(overrides, nameserver, storage))
        configure_logging()
        run_loop(run(settings))
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None


@serve_app.callback()
def serve_all(
    ctx: typer.Context,
    config: ConfigOpt = None,
    listen: Annotated[list[str] | None, typer.Option(help="Gateway HOST:PORT, repeatable.")] = None,
    web_listen: Annotated[str | None, typer.Option(help="Web app HOST:PORT.")] = None,
    profile: Annotated[str | None, typer.Option(help="Gateway profile: classic, postfix, strict or monitor.")] = None,
    next_hop: Annotated[str | None, typer.Option(help="smtp://HOST:PORT of the MTA behind the gateway.")] = None,
    relay_domain: Annotated[list[str] | None, typer.Option(help="Recipient domain to accept, repeatable.")] = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
    public_url: PublicUrlOpt = None,
) -> None:
    """Gateway + web app + monitor in one process (what `make run` starts); or a single service below."""
    if ctx.invoked_subcommand is not None:
        return
    from rdnsgate.daemon import run_all

    overrides: dict[str, dict[str, Any]] = {
        "gateway": {
            "listen": tuple(listen) if listen else None,
            "profile": profile,
            "next_hop": next_hop,
            "relay_domains": tuple(relay_domain) if relay_domain else None,
        },
        "web": {"listen": web_listen, "public_url": public_url},
    }
    _serve(run_all, config, overrides, nameserver, storage)


@serve_app.command("web")
def serve_web(
    config: ConfigOpt = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT to listen on (default 127.0.0.1:8080).")] = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
    trusted_proxy: Annotated[
        list[str] | None, typer.Option(help="IP/CIDR whose X-Forwarded-For / Forwarded is believed, repeatable.")
    ] = None,
    public_url: PublicUrlOpt = None,
) -> None:
    """The web app: the public check page and JSON API, the admin pages, /metrics, /healthz."""
    from rdnsgate.daemon import run_web

    overrides: dict[str, dict[str, Any]] = {
        "web": {
            "listen": listen,
            "trusted_proxies": tuple(trusted_proxy) if trusted_proxy else None,
            "public_url": public_url,
        },
    }
    _serve(run_web, config, overrides, nameserver, storage)


@serve_app.command("monitor")
def serve_monitor(
    config: ConfigOpt = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
    interval: Annotated[float | None, typer.Option(help="Seconds between checks of one server (default 300).")] = None,
    webhook: Annotated[str | None, typer.Option(help="URL to POST a JSON alert to on every state change.")] = None,
    authoritative: Annotated[
        bool | None,
        typer.Option("--authoritative/--no-authoritative", help="Ask the reverse zone's own servers when a PTR fails."),
    ] = None,
) -> None:
    """The fleet monitor: re-checks every watched server and alerts on confirmed state changes."""
    from rdnsgate.daemon import run_monitor

    overrides: dict[str, dict[str, Any]] = {
        "monitor": {"interval": interval, "webhook_url": webhook, "authoritative": authoritative},
    }
    _serve(run_monitor, config, overrides, nameserver, storage)


@admin_app.command("set-password")
def admin_set_password(
    user: Annotated[str, typer.Option(help="The admin's user name.")] = "admin",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Set (or change) an admin's web password; sessions made with the old one end."""
    import sys

    from rdnsgate.frontends.web.auth import hash_password

    if not user.strip() or len(user) > 64 or any(ch.isspace() for ch in user):
        raise usage_error("--user: 1 to 64 characters, no spaces")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        hashed = hash_password(password)
        settings = settings_from(config)

        async def work(store: SqlStore) -> bool:
            return await store.admin_set_password(user, hashed)

        created = with_store(settings, work)
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    typer.echo(f"{'created' if created else 'changed'} the password of {user}")


@serve_app.command("gateway")
def serve_gateway(
    config: ConfigOpt = None,
    listen: Annotated[
        list[str] | None, typer.Option(help="HOST:PORT to listen on, repeatable ([::]:25 for IPv6).")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="classic, postfix, strict or monitor.")] = None,
    next_hop: Annotated[
        str | None, typer.Option(help="smtp://HOST:PORT of the MTA behind; none: a Maildir under ./var/mail.")
    ] = None,
    relay_domain: Annotated[
        list[str] | None, typer.Option(help="Recipient domain to accept, repeatable (never an open relay).")
    ] = None,
    nameserver: NameserverOpt = None,
    maildir: Annotated[str | None, typer.Option(help="Maildir used without a next hop.")] = None,
    storage: StorageOpt = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes sharing the listening ports; 0: one per core.", min=0, max=64)
    ] = None,
) -> None:
    """The SMTP gateway: a before-queue proxy that refuses clients with broken DNS."""
    from rdnsgate.daemon import configure_logging, run_gateway, run_gateway_processes, worker_count

    overrides: dict[str, dict[str, Any]] = {
        "gateway": {
            "listen": tuple(listen) if listen else None,
            "profile": profile,
            "next_hop": next_hop,
            "relay_domains": tuple(relay_domain) if relay_domain else None,
            "maildir": maildir,
            "workers": workers,
        },
    }
    try:
        settings = settings_from(config, _with_store_and_dns(overrides, nameserver, storage))
        configure_logging()
        if worker_count(settings) > 1:
            raise typer.Exit(run_gateway_processes(settings, run_loop))
        run_loop(run_gateway(settings))
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None


@serve_app.command("policy")
def serve_policy(
    config: ConfigOpt = None,
    listen: Annotated[list[str] | None, typer.Option(help="HOST:PORT or unix:/path to listen on, repeatable.")] = None,
    profile: Annotated[str | None, typer.Option(help="classic, postfix, strict or monitor.")] = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
) -> None:
    """The Postfix policy service: check_policy_service inet:127.0.0.1:10040 (docs/postfix.md)."""
    from rdnsgate.daemon import run_policy

    overrides: dict[str, dict[str, Any]] = {
        "policy": {"listen": tuple(listen) if listen else None, "profile": profile},
    }
    _serve(run_policy, config, overrides, nameserver, storage)


@whitelist_app.command("add")
def whitelist_add(
    target: Annotated[str, typer.Argument(help="IP, network (CIDR) or sender domain.")],
    reason: Annotated[str, typer.Option(help="Why this sender may skip the checks (required).")],
    ticket: Annotated[str | None, typer.Option(help="Helpdesk ticket, e.g. HD-123.")] = None,
    expires: Annotated[
        str | None, typer.Option(help="30d, 12h, 90m, 2w, an ISO date, or 'never' (the default).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Let a misconfigured but legitimate sender through, with a reason and an expiry."""
    try:
        if not reason.strip():
            raise UsageError("--reason must say why")
        kind, value = parse_target(target)
        now = datetime.now(UTC)
        entry = WhitelistEntry(kind, value, reason.strip(), ticket, now, parse_expiry(expires, now))
        settings = settings_from(config)

        async def work(store: SqlStore) -> tuple[WhitelistEntry, bool]:
            return await store.whitelist_add(entry)

        saved, created = with_store(settings, work)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    until = f", expires {saved.expires_at:%Y-%m-%d %H:%M} UTC" if saved.expires_at else ", never expires"
    verb = "added" if created else "updated"
    typer.echo(f"{verb} #{saved.id} {saved.value}{until}: {saved.reason}")


@whitelist_app.command("list")
def whitelist_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include expired entries.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
    config: ConfigOpt = None,
) -> None:
    """The whitelist, oldest first."""
    try:
        settings = settings_from(config)
        now = datetime.now(UTC)

        async def work(store: SqlStore) -> list[WhitelistEntry]:
            return await store.whitelist_list(None if show_all else now)

        entries = with_store(settings, work)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([_entry_json(item) for item in entries], indent=2))
        return
    table = Table(show_edge=False)
    for column in ("id", "value", "reason", "ticket", "added", "expires"):
        table.add_column(column, overflow="fold")
    for item in entries:
        expired = item.expires_at is not None and item.expires_at <= now
        expires = f"{item.expires_at:%Y-%m-%d %H:%M}" if item.expires_at else "never"
        table.add_row(
            str(item.id),
            escape(item.value),
            escape(item.reason),
            escape(item.ticket or ""),
            f"{item.created_at:%Y-%m-%d}" if item.created_at else "",
            expires + (" (expired)" if expired else ""),
        )
    Console().print(table if entries else "the whitelist is empty")


def _entry_json(item: WhitelistEntry) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "value": item.value,
        "reason": item.reason,
        "ticket": item.ticket,
        "created_at": item.created_at.isoformat() if item.created_at else None,
        "expires_at": item.expires_at.isoformat() if item.expires_at else None,
    }


@whitelist_app.command("remove")
def whitelist_remove(
    target: Annotated[str, typer.Argument(help="The IP, network or domain as added, or #ID.")],
    config: ConfigOpt = None,
) -> None:
    """Remove an entry; a running gateway sees it within its refresh interval."""
    try:
        settings = settings_from(config)
        if target.lstrip("#").isdigit():
            entry_id = int(target.lstrip("#"))

            async def by_id(store: SqlStore) -> int:
                return await store.whitelist_remove_id(entry_id)

            removed = with_store(settings, by_id)
        else:
            kind, value = parse_target(target)

            async def by_value(store: SqlStore) -> int:
                return await store.whitelist_remove(kind, value)

            removed = with_store(settings, by_value)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    if not removed:
        raise usage_error(f"{target} is not on the whitelist")
    typer.echo(f"removed {target}")


def decisions(
    ip: Annotated[str | None, typer.Option(help="Client IP address.")] = None,
    sender: Annotated[str | None, typer.Option(help="Sender address or part of it.")] = None,
    helo: Annotated[str | None, typer.Option(help="HELO name or part of it.")] = None,
    since: Annotated[str | None, typer.Option(help="2h, 30m, 7d ago, or an ISO time.")] = "24h",
    until: Annotated[str | None, typer.Option(help="An ISO time.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Why was my mail refused? Search the decision log."""
    try:
        settings = settings_from(config)
        terms = search_terms(ip, sender, helo, since, until, datetime.now(UTC))

        async def work(store: SqlStore) -> list[Any]:
            return await store.decisions_find(**terms, limit=limit)

        found = with_store(settings, work)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    if as_json:
        for record in found:
            typer.echo(json.dumps(record_dict(record), separators=(",", ":")))
        return
    console = Console(highlight=False)
    if not found:
        console.print("no decisions match")
        return
    for record in found:
        console.print(_explain(record))


def _explain(record: Any) -> str:
    """One decision in words."""
    words = explain(record)
    colour = "green" if words.outcome == "accepted" else "red"
    why = "".join(f"\n    {escape(line)}" for line in words.why)
    head = f"[bold]{record.at:%Y-%m-%d %H:%M:%S}[/] {escape(words.who)}"
    return (
        f"{head} session {record.session} {escape(f'[{record.profile}]')}\n  {escape(words.what)}\n"
        f"  [{colour}]{escape(words.verdict)}[/]{why}"
    )


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective settings (defaults, file, environment) as TOML."""
    try:
        typer.echo(describe(settings_from(config)))
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None


@fleet_app.command("add")
def fleet_add(
    ip: Annotated[str, typer.Argument(help="The sending server's IP address.")],
    helo: Annotated[str | None, typer.Option(help="The HELO name it announces.")] = None,
    label: Annotated[str, typer.Option(help="A name for people, e.g. eu-1.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Watch a sending server (adding it again updates its HELO name and label)."""
    from rdnsgate.checks.names import parse_ip
    from rdnsgate.model import FleetEntry

    try:
        try:
            address = str(parse_ip(ip))
        except ValueError:
            raise UsageError(f"{ip!r} is not an IP address") from None
        settings = settings_from(config)

        async def work(store: SqlStore) -> tuple[FleetEntry, bool]:
            return await store.fleet_add(FleetEntry(address, helo, label))

        entry, created = with_store(settings, work)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    typer.echo(
        f"{'watching' if created else 'updated'} {entry.ip} ({entry.label or 'no label'}), HELO {entry.helo or '-'}"
    )


@fleet_app.command("list")
def fleet_list(config: ConfigOpt = None) -> None:
    """The watched servers and their last known state."""
    try:
        settings = settings_from(config)

        async def work(store: SqlStore) -> list[Any]:
            return await store.fleet_list()

        entries = with_store(settings, work)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    _fleet_table(entries)


@fleet_app.command("remove")
def fleet_remove(
    ip: Annotated[str, typer.Argument(help="The IP address as added.")],
    config: ConfigOpt = None,
) -> None:
    """Stop watching a server (its history goes too)."""
    try:
        settings = settings_from(config)

        async def work(store: SqlStore) -> int:
            return await store.fleet_remove(ip)

        removed = with_store(settings, work)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    if not removed:
        raise usage_error(f"{ip} is not watched")
    typer.echo(f"stopped watching {ip}")


@fleet_app.command("accept")
def fleet_accept(
    ip: Annotated[str, typer.Argument(help="The IP address as added.")],
    config: ConfigOpt = None,
) -> None:
    """Accept a drifted server's current chain (a planned PTR rename, say) as its good one: it is ok again."""
    from rdnsgate.monitor.fleet import accept_server

    try:
        settings = settings_from(config)

        async def work(store: SqlStore) -> Any:
            return await accept_server(store, ip, datetime.now(UTC))

        accepted = with_store(settings, work)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    except (LookupError, ValueError) as exc:
        raise usage_error(str(exc.args[0])) from None
    names = ", ".join((accepted.last_good or {}).get("ptr_names") or []) or "no PTR name"
    typer.echo(f"{ip}: accepted {names} as the good chain; state {accepted.state}")


@fleet_app.command("status")
def fleet_status(config: ConfigOpt = None) -> None:
    """Check every watched server now, store the results, and show them (a change needs
    monitor.confirmations checks in a row; with monitor.authoritative, failures are asked at the source)."""
    from rdnsgate.lookups import build_resolver
    from rdnsgate.lookups.authority import AuthorityLookups
    from rdnsgate.monitor.fleet import check_entry
    from rdnsgate.policy.evaluate import Engine

    try:
        settings = settings_from(config)
        ms = settings.monitor

        async def work(store: SqlStore) -> list[Any]:
            resolver = build_resolver(settings.dns)
            engine = Engine(resolver, settings.checks)
            source = AuthorityLookups(resolver, port=ms.authoritative_port) if ms.authoritative else None
            try:
                results = []
                for entry in await store.fleet_list():
                    updated, _report, alert = await check_entry(engine, store, entry, ms.confirmations, source)
                    results.append(updated)
                    if alert is not None:
                        typer.echo(f"{entry.ip}: {alert.before} -> {alert.after}: {alert.detail}")
                return results
            finally:
                if source is not None:
                    await source.close()
                await resolver.close()

        entries = with_store(settings, work)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    _fleet_table(entries)


def _fleet_table(entries: list[Any]) -> None:
    if not entries:
        Console().print("no servers are watched: rdnsgate fleet add IP --helo NAME --label LABEL")
        return
    table = Table(show_edge=False)
    for column in ("ip", "label", "state", "since", "PTR", "HELO", "last checked"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        chain = entry.last_chain or {}
        ptr = chain.get("confirmed_name") or ", ".join(chain.get("ptr_names") or []) or "-"
        table.add_row(
            escape(entry.ip),
            escape(entry.label),
            entry.state + (f" (next: {entry.candidate})" if entry.candidate else ""),
            f"{entry.since:%Y-%m-%d %H:%M}" if entry.since else "",
            escape(ptr),
            escape(entry.helo or "-"),
            f"{entry.last_checked:%Y-%m-%d %H:%M:%S}" if entry.last_checked else "never",
        )
    Console().print(table)
