"""The one async -> sync bridge.

Every operation is written once as ``async def x_async(...)``; its blocking twin is built with
:func:`blocking` and runs the coroutine on zarr's I/O event loop, so icechunk's sync API,
zarr's sync ``Array`` API and ``IcechunkStore`` coroutines share one loop thread.  Only this
module touches ``zarr.core.sync`` (undocumented in zarr).  Core code never calls it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

__all__ = ["blocking", "blocking_iter", "iterate", "run"]

P = ParamSpec("P")
S = TypeVar("S")
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on zarr's I/O loop and return its result."""
    from zarr.core.sync import sync

    return sync(coro)


def blocking(
    fn: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], T]:
    """Build the blocking twin of an ``async def name_async(self, ...)`` method."""

    @functools.wraps(fn)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run(fn(self, *args, **kwargs))

    wrapper.__name__ = fn.__name__.removesuffix("_async")
    wrapper.__qualname__ = fn.__qualname__.removesuffix("_async")
    return wrapper


def blocking_function(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Build the blocking twin of a plain (module-level or static) coroutine function."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return run(fn(*args, **kwargs))

    wrapper.__name__ = fn.__name__.removesuffix("_async")
    wrapper.__qualname__ = fn.__qualname__.removesuffix("_async")
    return wrapper


def iterate(aiter: AsyncIterator[T], batch: int = 256) -> Iterator[T]:
    """Iterate an async iterator from sync code, pulling ``batch`` items per loop hop."""

    async def pull() -> tuple[list[T], bool]:
        items: list[T] = []
        try:
            while len(items) < batch:
                items.append(await aiter.__anext__())
        except StopAsyncIteration:
            return items, True
        return items, False

    while True:
        items, done = run(pull())
        yield from items
        if done:
            return


def blocking_iter(
    fn: Callable[Concatenate[S, P], AsyncIterator[T]],
) -> Callable[Concatenate[S, P], Iterator[T]]:
    """Build a sync iterator method from an async-generator method."""

    @functools.wraps(fn)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return iterate(fn(self, *args, **kwargs))

    return wrapper
