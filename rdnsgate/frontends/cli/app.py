"""The ``rdnsgate`` command: check one client, audit address ranges.

Exit statuses are in exits.py.  Errors are one line on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from rdnsgate import __version__
from rdnsgate.errors import RdnsgateError
from rdnsgate.frontends.cli.admins import admin_app
from rdnsgate.frontends.cli.db import db_app
from rdnsgate.frontends.cli.decisions import decisions
from rdnsgate.frontends.cli.fleet import fleet_app
from rdnsgate.frontends.cli.options import Format, NameserverOpt, TimeoutOpt, TriesOpt
from rdnsgate.frontends.cli.runtime import new_app, run_loop, tune_gc, usage_error
from rdnsgate.frontends.cli.settings import config_app
from rdnsgate.frontends.cli.whitelist import whitelist_app

app = new_app(
    "Keep mail from hosts with broken DNS out, and tell senders exactly what to fix.",
    name="rdnsgate",
    pretty_exceptions_enable=False,
)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"rdnsgate {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """rdnsgate: forward-confirmed reverse DNS, HELO and sender-domain checks for mail."""


@app.command()
def check(
    ip: Annotated[str, typer.Argument(help="The client IP address (IPv4 or IPv6).")],
    helo: Annotated[str | None, typer.Option("--helo", help="The HELO/EHLO name the client announces.")] = None,
    sender: Annotated[
        str | None, typer.Option("--sender", help="The MAIL FROM address (use '<>' for a bounce).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (docs/check-json.md).")] = False,
    nameserver: NameserverOpt = None,
    timeout: TimeoutOpt = 2.0,
    tries: TriesOpt = 3,
    max_ptr_names: Annotated[int, typer.Option(help="PTR names examined at most.", min=1, max=100)] = 10,
    authoritative: Annotated[
        bool,
        typer.Option(
            "--authoritative",
            help="Also ask the zones' own servers for the PTR chain now, past every cache, and say when resolvers "
            "will have the new answer.",
        ),
    ] = False,
    authoritative_port: Annotated[int, typer.Option(help="The port of the zones' own servers.", min=1, max=65535)] = 53,
) -> None:
    """Check one client: its chain IP -> PTR -> A/AAAA -> HELO -> sender domain, what each profile
    would answer, and how to fix what is broken."""
    from datetime import UTC, datetime

    from rich.console import Console

    from rdnsgate.checks.names import parse_ip
    from rdnsgate.config import CheckSettings, DnsSettings
    from rdnsgate.frontends.cli.check_view import render_check
    from rdnsgate.frontends.cli.exits import for_result
    from rdnsgate.lookups import build_resolver
    from rdnsgate.lookups.authority import AuthorityLookups
    from rdnsgate.model import IprevReport, Report
    from rdnsgate.policy.decide import decide
    from rdnsgate.policy.evaluate import Engine
    from rdnsgate.policy.profiles import BUILTIN
    from rdnsgate.policy.serialize import overall, report_dict, source_dict

    try:
        address = parse_ip(ip)
    except ValueError:
        raise usage_error(f"{ip!r} is not an IP address") from None
    dns = DnsSettings(nameservers=tuple(nameserver or ()), timeout=timeout, tries=tries)

    async def go() -> tuple[Report, IprevReport | None]:
        resolver = build_resolver(dns)
        engine = Engine(resolver, CheckSettings(max_ptr_names=max_ptr_names))
        try:
            report = await engine.report(address, helo, sender)
            if not authoritative:
                return report, None
            source = AuthorityLookups(resolver, port=authoritative_port, timeout=timeout)
            try:
                return report, await engine.iprev_at_source(source, address)
            finally:
                await source.close()
        finally:
            await resolver.close()

    try:
        report, at_source = run_loop(go())
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    decisions = {name: decide(report, profile) for name, profile in BUILTIN.items()}
    now = datetime.now(UTC)
    if as_json:
        out = report_dict(report, decisions, now)
        if at_source is not None:
            out["authoritative"] = source_dict(report, at_source, now)
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        render_check(Console(highlight=False), report, decisions, now, at_source)
    raise typer.Exit(for_result(overall(report)))


@app.command()
def audit(
    targets: Annotated[
        list[str] | None, typer.Argument(help="IP addresses and networks (CIDR), e.g. 192.0.2.0/24.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Read 'IP [HELO]' lines from this file ('-' for stdin); '#' starts a comment."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Addresses checked at once.", min=1, max=10_000)] = 100,
    output_format: Annotated[Format, typer.Option("--format", help="Output format, one row per address.")] = Format.CSV,
    nameserver: NameserverOpt = None,
    timeout: TimeoutOpt = 2.0,
    tries: TriesOpt = 3,
    max_inflight: Annotated[int, typer.Option(help="DNS questions on the wire at once.", min=1, max=5000)] = 100,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: when stderr is a terminal).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes checking at once, each with --concurrency addresses (default: one per core "
            "for 4,096 addresses or more, else 1).",
            min=1,
            max=64,
        ),
    ] = None,
) -> None:
    """Check every address of ranges or a file; stream CSV or JSON lines, then a summary on stderr."""
    from rich.console import Console

    from rdnsgate.config import DnsSettings
    from rdnsgate.frontends.cli import audit as audit_mod
    from rdnsgate.lookups.nameservers import resolve_nameservers

    if not targets and file is None:
        raise usage_error("give addresses or networks, or --file")
    try:
        source = audit_mod.targets_from(targets or [], file)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    dns = DnsSettings(
        nameservers=tuple(nameserver or ()), timeout=timeout, tries=tries, max_inflight=max_inflight, cache_size=0
    )
    err = Console(stderr=True, highlight=False)
    show_progress = err.is_terminal if progress is None else progress
    if workers is None:
        small = source.total is not None and source.total < 4096
        workers = 1 if small else max(1, os.cpu_count() or 1)
    try:
        resolve_nameservers(dns.nameservers)  # a bad --nameserver is a usage error before any work starts
        # Before any worker is forked: this process's objects are frozen once, for the workers too, and are
        # not walked again at its exit (without it, ~0.2 s of collecting with two workers).
        tune_gc()
        if workers > 1:
            summary = audit_mod.run_audit_processes(
                source, dns, concurrency, workers, output_format, sys.stdout, err, show_progress
            )
        else:
            summary = run_loop(
                audit_mod.run_audit(source, dns, concurrency, output_format, sys.stdout, err, show_progress)
            )
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    audit_mod.print_summary(err, summary)
    raise typer.Exit(summary.exit_status())


app.add_typer(whitelist_app, name="whitelist")
app.add_typer(config_app, name="config")
app.add_typer(fleet_app, name="fleet")
app.add_typer(admin_app, name="admin")
app.add_typer(db_app, name="db")
app.command("decisions")(decisions)


def main() -> None:
    try:
        app()
    except RdnsgateError as exc:  # pragma: no cover - commands map their own errors
        raise SystemExit(str(usage_error(str(exc)).exit_code)) from None
