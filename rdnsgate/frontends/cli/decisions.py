"""``rdnsgate decisions``: why was my mail refused?"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from rdnsgate.errors import RdnsgateError
from rdnsgate.frontends.cli.options import ConfigOpt, with_store
from rdnsgate.frontends.cli.runtime import usage_error
from rdnsgate.model import DecisionRecord


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
    from rich.console import Console

    from rdnsgate.policy.decision_log import record_dict, search_terms

    try:
        terms = search_terms(ip, sender, helo, since, until, datetime.now(UTC))
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
    found = with_store(config, lambda store: store.decisions_find(**terms, limit=limit))
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


def _explain(record: DecisionRecord) -> str:
    """One decision in words."""
    from rich.markup import escape

    from rdnsgate.policy.decision_log import explain

    words = explain(record)
    colour = "green" if words.outcome == "accepted" else "red"
    why = "".join(f"\n    {escape(line)}" for line in words.why)
    head = f"[bold]{record.at:%Y-%m-%d %H:%M:%S}[/] {escape(words.who)}"
    node = f" on {escape(record.node)}" if record.node else ""
    return (
        f"{head} session {record.session}{node} {escape(f'[{record.profile}]')}\n  {escape(words.what)}\n"
        f"  [{colour}]{escape(words.verdict)}[/]{why}"
    )
