"""What the CLI's commands share: option types, the settings file, and one helper that runs work on the store."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from rdnsgate.config import Settings, load_settings
from rdnsgate.errors import RdnsgateError, StoreUnavailable
from rdnsgate.frontends.cli.exits import Exit
from rdnsgate.frontends.cli.runtime import error_exit, run_loop, usage_error

if TYPE_CHECKING:
    from rdnsgate.storage import SqlStore

T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Settings file (default: $RDNSGATE_CONFIG, else ./rdnsgate.toml when it exists).",
        dir_okay=False,
    ),
]
NameserverOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--nameserver",
        "-n",
        metavar="HOST[:PORT]",
        help="Resolver to ask (repeatable); default: the system's (resolv.conf).",
    ),
]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for the first try of each DNS question.", min=0.05)]
TriesOpt = Annotated[int, typer.Option(help="Tries per DNS question, rotating over the nameservers.", min=1, max=10)]


class Format(StrEnum):
    """Output format of the audit: one row per address."""

    CSV = "csv"
    JSONL = "jsonl"


def settings_path(config: Path | None) -> Path | None:
    """The settings file: --config, else $RDNSGATE_CONFIG, else ./rdnsgate.toml when it exists, else none."""
    if config is None and os.environ.get("RDNSGATE_CONFIG"):
        return Path(os.environ["RDNSGATE_CONFIG"])
    if config is None and Path("rdnsgate.toml").is_file():
        return Path("rdnsgate.toml")
    return config


def settings_from(config: Path | None, overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    return load_settings(settings_path(config), overrides=overrides)


def with_store(config: Path | None, work: Callable[[SqlStore], Awaitable[T]], *, migrate: bool = True) -> T:
    """Load the settings, open the store (migrating it unless told not to), run `work(store)`, close the store.

    A store that cannot be reached becomes "error: ..." on stderr and exit
    status 3 (try again later); any other RdnsgateError (a settings mistake,
    bad input found by `work`) exit status 2.
    """
    import sqlalchemy as sa  # only the commands that need the store load SQLAlchemy

    from rdnsgate.storage import open_store
    from rdnsgate.storage.base import shown_url
    from rdnsgate.storage.sql import unavailable

    async def go() -> T:
        storage = settings_from(config).storage
        store = await open_store(storage, migrate=migrate)
        try:
            return await work(store)
        except (OSError, TimeoutError, sa.exc.DBAPIError) as exc:
            raise StoreUnavailable(f"the store {shown_url(storage.url)} failed: {unavailable(exc)}") from exc
        finally:
            await store.close()

    try:
        return run_loop(go())
    except StoreUnavailable as exc:
        raise error_exit(str(exc), Exit.TEMPORARY) from None
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None
