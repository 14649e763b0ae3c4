"""The event loop the bot runs on: uvloop where it is installed (Linux and macOS, a
dependency of the project there), else asyncio's own.

uvloop's loop takes less CPU per hand-off than asyncio's (aiohttp's sockets, aiosqlite's
thread handing results back): about a tenth less CPU per card press through the dispatcher
(docs/performance.md). The tests run on the same loop (tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # Windows: no uvloop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the bot's loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
