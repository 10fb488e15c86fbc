"""``rdnsgate admin``: web logins and API tokens, each with a role (admin or helpdesk)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rdnsgate.frontends.cli.options import ConfigOpt, with_store
from rdnsgate.frontends.cli.runtime import new_app, usage_error

if TYPE_CHECKING:
    from rdnsgate.access import Role

admin_app = new_app("Web logins and API tokens, with their roles (admin: everything; helpdesk: whitelist, decisions).")
token_app = new_app("API tokens (Authorization: Bearer) for helpdesk and provisioning systems.")
admin_app.add_typer(token_app, name="token")

RoleOpt = Annotated[str | None, typer.Option(help="admin (everything) or helpdesk (whitelist and decisions).")]


def _role(value: str | None) -> Role | None:
    from rdnsgate.access import parse_role

    try:
        return None if value is None else parse_role(value)
    except ValueError as exc:
        raise usage_error(f"--role: {exc}") from None


def _name(value: str, what: str) -> str:
    from rdnsgate.access import check_name

    try:
        return check_name(value, what)
    except ValueError as exc:
        raise usage_error(str(exc)) from None


@admin_app.command("set-password")
def admin_set_password(
    user: Annotated[str, typer.Option(help="The user's name.")] = "admin",
    role: RoleOpt = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Make a web user or set a new password (and, with --role, a new role; a new user without one is an
    admin); sessions made with the old password end."""
    from rdnsgate.passwords import hash_password

    user = _name(user, "--user")
    wanted = _role(role)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    created = with_store(config, lambda store: store.admin_set_password(user, hashed, wanted))
    shown = f" ({wanted})" if wanted else ""
    typer.echo(f"{'created' if created else 'changed'} the password of {user}{shown}")


@admin_app.command("list")
def admin_list(config: ConfigOpt = None) -> None:
    """Every web user and API token, with its role."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    async def work(store: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await store.admin_list(), await store.token_list()

    users, tokens = with_store(config, work)
    table = Table(show_edge=False)
    for column in ("kind", "name", "role", "since", "last used"):
        table.add_column(column, overflow="fold")
    for item in users:
        table.add_row("user", escape(item["username"]), item["role"], f"{item['updated_at']:%Y-%m-%d %H:%M}", "")
    for item in tokens:
        used = f"{item['last_used_at']:%Y-%m-%d %H:%M}" if item["last_used_at"] else "never"
        table.add_row("token", escape(item["name"]), item["role"], f"{item['created_at']:%Y-%m-%d %H:%M}", used)
    Console().print(table if users or tokens else "no web users and no API tokens: rdnsgate admin set-password")


@admin_app.command("remove")
def admin_remove(
    user: Annotated[str, typer.Argument(help="The web user's name.")],
    config: ConfigOpt = None,
) -> None:
    """Remove a web user: their sessions end at their next request."""
    if not with_store(config, lambda store: store.admin_remove(user)):
        raise usage_error(f"there is no web user {user!r}")
    typer.echo(f"removed {user}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for, e.g. helpdesk-tickets.")],
    role: Annotated[str, typer.Option(help="admin (everything) or helpdesk (whitelist and decisions).")],
    config: ConfigOpt = None,
) -> None:
    """Make an API token and print it, once: only its hash is stored."""
    from rdnsgate.access import cli_actor, new_token

    name = _name(name, "--name")
    wanted = _role(role)
    assert wanted is not None
    token, hashed = new_token()
    if not with_store(config, lambda store: store.token_add(name, wanted, hashed, cli_actor())):
        raise usage_error(f"a token named {name!r} exists already (revoke it first)")
    typer.echo(token)
    typer.echo(
        f"token {name} ({wanted}) made; it is shown only now: keep it where the system that uses it can read it",
        err=True,
    )


@token_app.command("list")
def token_list(config: ConfigOpt = None) -> None:
    """The API tokens (names, roles, when made and last used; never the tokens)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    tokens = with_store(config, lambda store: store.token_list())
    table = Table(show_edge=False)
    for column in ("name", "role", "made", "by", "last used"):
        table.add_column(column, overflow="fold")
    for item in tokens:
        used = f"{item['last_used_at']:%Y-%m-%d %H:%M}" if item["last_used_at"] else "never"
        table.add_row(
            escape(item["name"]), item["role"], f"{item['created_at']:%Y-%m-%d %H:%M}", escape(item["created_by"]), used
        )
    Console().print(table if tokens else "no API tokens: rdnsgate admin token create --name NAME --role helpdesk")


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a token: the next request with it gets 401."""
    if not with_store(config, lambda store: store.token_remove(name)):
        raise usage_error(f"there is no token named {name!r}")
    typer.echo(f"revoked {name}")
