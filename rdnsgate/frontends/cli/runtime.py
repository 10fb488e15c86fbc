"""How the CLI runs its async work and reports bad usage: event loop, garbage collector, errors."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

T = TypeVar("T")


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when it is installed, else on asyncio's loop."""
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
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(2)
