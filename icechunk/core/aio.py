"""Small asyncio helpers for the core."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

__all__ = ["gather"]

T = TypeVar("T")


async def gather(*aws: Awaitable[T]) -> list[T]:
    """``asyncio.gather`` without the loop turns when the work does not suspend.

    Gathering wraps every awaitable in a task, which costs at least two turns of the event
    loop even when the work finishes at once (a small local-disk write, a cached manifest):
    about 0.1 ms per gather on a loaded 2-core machine, paid several times per commit.  So a
    lone awaitable is awaited directly, and on Python 3.12+ coroutines start eagerly: each
    runs inline up to its first real suspension, and only those that suspend are left for
    the loop to overlap (object-store requests still run concurrently).  The first exception
    raised propagates, as with ``asyncio.gather``.
    """
    if len(aws) == 1:
        return [await aws[0]]
    coros = [a for a in aws if asyncio.iscoroutine(a)]
    if sys.version_info >= (3, 12) and len(coros) == len(aws):
        return await _gather_eager(coros)
    return list(await asyncio.gather(*aws))


if sys.version_info >= (3, 12):

    async def _gather_eager(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
        loop = asyncio.get_running_loop()
        tasks = [asyncio.Task(c, loop=loop, eager_start=True) for c in coros]
        if not all(t.done() for t in tasks):
            return list(await asyncio.gather(*tasks))
        failed = [e for t in tasks if not t.cancelled() and (e := t.exception()) is not None]
        if failed:  # every exception is retrieved (no "never retrieved" warnings), the first raised
            raise failed[0]
        return [t.result() for t in tasks]  # a cancelled task raises CancelledError here
