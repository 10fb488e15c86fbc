"""How the CLI runs its async work: the event loop and the garbage collector's pace."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

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
