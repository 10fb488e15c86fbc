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


def usage_error(message: str) -> typer.Exit:
    """Print "error: MESSAGE" on stderr; the Exit to raise carries status 2."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(Exit.USAGE)
