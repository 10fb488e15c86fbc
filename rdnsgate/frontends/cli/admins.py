"""``rdnsgate admin``: the web app's admin logins."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rdnsgate.frontends.cli.options import ConfigOpt, with_store
from rdnsgate.frontends.cli.runtime import new_app, usage_error

admin_app = new_app("Admin logins of the web app.")


@admin_app.command("set-password")
def admin_set_password(
    user: Annotated[str, typer.Option(help="The admin's user name.")] = "admin",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Set (or change) an admin's web password; sessions made with the old one end."""
    from rdnsgate.passwords import hash_password

    if not user.strip() or len(user) > 64 or any(ch.isspace() for ch in user):
        raise usage_error("--user: 1 to 64 characters, no spaces")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    created = with_store(config, lambda store: store.admin_set_password(user, hashed))
    typer.echo(f"{'created' if created else 'changed'} the password of {user}")
