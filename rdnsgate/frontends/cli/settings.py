"""``rdnsgate config``: the effective settings."""

from __future__ import annotations

import typer

from rdnsgate.config import describe
from rdnsgate.errors import RdnsgateError
from rdnsgate.frontends.cli.options import ConfigOpt, settings_from
from rdnsgate.frontends.cli.runtime import new_app, usage_error

config_app = new_app("The effective settings.")


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective settings (defaults, file, environment) as TOML."""
    try:
        typer.echo(describe(settings_from(config)), nl=False)
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
