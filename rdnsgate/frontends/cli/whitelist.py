"""``rdnsgate whitelist``: senders that skip the checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from rdnsgate.errors import RdnsgateError, UsageError
from rdnsgate.frontends.cli.options import ConfigOpt, with_store
from rdnsgate.frontends.cli.runtime import new_app, usage_error
from rdnsgate.model import WhitelistEntry

whitelist_app = new_app("Senders that skip the checks: IPs, networks, sender domains.")


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
    from rdnsgate.access import cli_actor
    from rdnsgate.policy.whitelist import parse_expiry, parse_target

    try:
        if not reason.strip():
            raise UsageError("--reason must say why")
        kind, value = parse_target(target)
        now = datetime.now(UTC)
        entry = WhitelistEntry(kind, value, reason.strip(), ticket, now, parse_expiry(expires, now))
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    saved, created = with_store(config, lambda store: store.whitelist_add(entry, cli_actor()))
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
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from rdnsgate.policy.whitelist import entry_dict

    now = datetime.now(UTC)
    entries = with_store(config, lambda store: store.whitelist_list(None if show_all else now))
    if as_json:
        typer.echo(json.dumps([entry_dict(item) for item in entries], indent=2))
        return
    table = Table(show_edge=False)
    for column in ("id", "value", "reason", "ticket", "added", "expires", "changed by"):
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
            escape(item.changed_by or "-") + (f" {item.changed_at:%Y-%m-%d %H:%M}" if item.changed_at else ""),
        )
    Console().print(table if entries else "the whitelist is empty")


@whitelist_app.command("remove")
def whitelist_remove(
    target: Annotated[str, typer.Argument(help="The IP, network or domain as added, or #ID.")],
    config: ConfigOpt = None,
) -> None:
    """Remove an entry; a running gateway sees it within its refresh interval."""
    from rdnsgate.access import cli_actor
    from rdnsgate.policy.whitelist import parse_target

    if target.lstrip("#").isdigit():
        entry_id = int(target.lstrip("#"))
        removed = with_store(config, lambda store: store.whitelist_remove_id(entry_id, cli_actor()))
    else:
        try:
            kind, value = parse_target(target)
        except RdnsgateError as exc:
            raise usage_error(str(exc)) from None
        removed = with_store(config, lambda store: store.whitelist_remove(kind, value, cli_actor()))
    if not removed:
        raise usage_error(f"{target} is not on the whitelist")
    typer.echo(f"removed {target}")
