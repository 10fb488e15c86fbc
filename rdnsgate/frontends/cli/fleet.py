"""``rdnsgate fleet``: your sending servers, watched for broken or drifting DNS."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rdnsgate.errors import RdnsgateError
from rdnsgate.frontends.cli.options import ConfigOpt, settings_from, with_store
from rdnsgate.frontends.cli.runtime import new_app, usage_error
from rdnsgate.model import FleetEntry

if TYPE_CHECKING:
    from rdnsgate.storage import SqlStore

fleet_app = new_app("Your sending servers, watched for broken or drifting DNS.")


@fleet_app.command("add")
def fleet_add(
    ip: Annotated[str, typer.Argument(help="The sending server's IP address.")],
    helo: Annotated[str | None, typer.Option(help="The HELO name it announces.")] = None,
    label: Annotated[str, typer.Option(help="A name for people, e.g. eu-1.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Watch a sending server (adding it again updates its HELO name and label)."""
    from rdnsgate.access import cli_actor
    from rdnsgate.monitor.fleet_csv import fleet_entry

    try:
        wanted = fleet_entry(ip, helo, label)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    entry, created = with_store(config, lambda store: store.fleet_add(wanted, cli_actor()))
    typer.echo(
        f"{'watching' if created else 'updated'} {entry.ip} ({entry.label or 'no label'}), HELO {entry.helo or '-'}"
    )


@fleet_app.command("list")
def fleet_list(config: ConfigOpt = None) -> None:
    """The watched servers and their last known state."""
    _fleet_table(with_store(config, lambda store: store.fleet_list()))


@fleet_app.command("remove")
def fleet_remove(
    ip: Annotated[str, typer.Argument(help="The IP address as added.")],
    config: ConfigOpt = None,
) -> None:
    """Stop watching a server (its history goes too)."""
    from rdnsgate.access import cli_actor

    if not with_store(config, lambda store: store.fleet_remove(ip, cli_actor())):
        raise usage_error(f"{ip} is not watched")
    typer.echo(f"stopped watching {ip}")


@fleet_app.command("import")
def fleet_import(
    file: Annotated[
        str, typer.Argument(help="CSV with the columns ip,helo,label (a header row optional); - for stdin.")
    ],
    config: ConfigOpt = None,
) -> None:
    """Watch every server of a CSV file (ip,helo,label), in one transaction: all rows are checked first,
    a bad one is named by its line and nothing is stored; servers watched already get the file's HELO and label."""
    import sys

    from rdnsgate.access import cli_actor
    from rdnsgate.monitor.fleet_csv import parse_fleet_csv

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise usage_error(f"{file}: {exc}") from None
    try:
        entries = parse_fleet_csv(text)
    except RdnsgateError as exc:
        raise usage_error(f"{file}: {exc}") from None
    done = with_store(config, lambda store: store.fleet_add_many(entries, cli_actor()))
    added = sum(created for _entry, created in done)
    typer.echo(f"{file}: {len(done)} servers, {added} newly watched, {len(done) - added} already watched")


@fleet_app.command("export")
def fleet_export(config: ConfigOpt = None) -> None:
    """Every watched server as CSV (ip,helo,label) on stdout: what `fleet import` reads."""
    from rdnsgate.monitor.fleet_csv import fleet_csv

    typer.echo(fleet_csv(with_store(config, lambda store: store.fleet_list())), nl=False)


@fleet_app.command("accept")
def fleet_accept(
    ip: Annotated[str, typer.Argument(help="The IP address as added.")],
    config: ConfigOpt = None,
) -> None:
    """Accept a drifted server's current chain (a planned PTR rename, say) as its good one: it is ok again."""
    from rdnsgate.monitor.fleet import accept_server

    try:
        accepted = with_store(config, lambda store: accept_server(store, ip, datetime.now(UTC)))
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
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    ms = settings.monitor

    async def work(store: SqlStore) -> list[FleetEntry]:
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

    _fleet_table(with_store(config, work))


def _fleet_table(entries: list[FleetEntry]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if not entries:
        Console().print("no servers are watched: rdnsgate fleet add IP --helo NAME --label LABEL")
        return
    table = Table(show_edge=False)
    for column in ("ip", "label", "state", "since", "PTR", "HELO", "last checked", "changed by"):
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
            escape(entry.changed_by or "-"),
        )
    Console().print(table)
