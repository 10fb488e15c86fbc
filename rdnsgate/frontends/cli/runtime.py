"""How the CLI runs its async work and reports bad usage: event loop, garbage collector, errors.

asyncio and Rich are imported when first needed, so that ``--help`` and
commands that never wait on I/O do not pay for them.
"""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer

from rdnsgate.frontends.cli.exits import Exit

T = TypeVar("T")


def new_app(help: str, **options: Any) -> typer.Typer:
    """A command group: plain-text help, no completion install."""
    options.setdefault("no_args_is_help", True)
    return typer.Typer(rich_markup_mode=None, add_completion=False, help=help, **options)


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when it is installed, else on asyncio's loop."""
    import asyncio

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def tune_gc() -> None:
    """A bulk run allocates many short-lived objects and keeps few: collect young ones less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def error_exit(message: str, status: Exit) -> typer.Exit:
    """Print "error: MESSAGE" on stderr, on one line; the Exit to raise carries `status`.

    Plain when rich cannot be imported: after a switch to `service.user`, the user may be unable to
    read the installed packages, and that very error must still reach the admin.
    """
    try:
        from rich.console import Console
        from rich.markup import escape
    except ImportError:
        typer.echo(f"error: {message}", err=True)
        return typer.Exit(status)
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(status)


def usage_error(message: str) -> typer.Exit:
    """Print "error: MESSAGE" on stderr; the Exit to raise carries status 2."""
    return error_exit(message, Exit.USAGE)
