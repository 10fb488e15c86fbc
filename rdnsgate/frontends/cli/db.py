"""``rdnsgate db``: the store's schema and the nodes that share it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from rdnsgate.frontends.cli.options import ConfigOpt, with_store
from rdnsgate.frontends.cli.runtime import new_app

if TYPE_CHECKING:
    from rdnsgate.storage import SqlStore
    from rdnsgate.storage.nodes import Node

db_app = new_app("The store: schema migrations, and the nodes that share it.")

AWAY_SECONDS = 60.0  # a node not seen for this long is shown as away (they say they are alive every 15 s)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Bring the store's schema up to date (Alembic). Safe to run on every node, at the same time:
    one of them migrates, the others find it done."""

    async def work(store: SqlStore) -> tuple[str | None, str | None]:
        before = await store.schema_version()
        await store.migrate()
        return before, await store.schema_version()

    before, after = with_store(config, work, migrate=False)
    if before == after:
        typer.echo(f"schema already at {after} (the newest)")
    else:
        typer.echo(f"schema upgraded: {before or 'empty'} -> {after}")


@db_app.command("status")
def db_status(config: ConfigOpt = None) -> None:
    """The schema version, and every node seen on this store: its services, when it was last seen,
    the decisions it has waiting to be written and those it dropped."""
    from rdnsgate.storage.base import newest_revision

    newest = newest_revision()

    async def work(store: SqlStore) -> tuple[str | None, list[Node], int | None]:
        version = await store.schema_version()
        if version != newest:  # an empty or older schema has no node list (and perhaps no decisions)
            return version, [], None
        return version, await store.nodes_list(), await store.decisions_count()

    version, nodes, stored = with_store(config, work, migrate=False)
    note = "the newest" if version == newest else f"run `rdnsgate db upgrade`: the newest is {newest}"
    typer.echo(f"schema: {version or 'empty'} ({note})")
    if stored is None:
        return
    typer.echo(f"decisions stored: {stored}")
    if not nodes:
        typer.echo("nodes: none seen yet (a node says it is alive while `rdnsgate serve` runs)")
        return
    now = datetime.now(UTC)
    typer.echo(f"{'node':<28} {'services':<28} {'version':<9} {'last seen':<12} {'backlog':>8} {'dropped':>8}")
    for node in nodes:
        age = (now - node.last_seen).total_seconds()
        seen = f"{age:.0f} s ago" if age < AWAY_SECONDS else f"away {_span(age)}"
        typer.echo(
            f"{node.name:<28} {node.roles or '-':<28} {node.version:<9} {seen:<12} {node.backlog:>8} {node.dropped:>8}"
        )


def _span(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
