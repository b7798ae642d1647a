"""The one async -> sync bridge.

Every operation is written once as ``async def x_async(...)``; its blocking twin is built with
:func:`blocking` and runs the coroutine on zarr's I/O event loop, so icechunk's sync API,
zarr's sync ``Array`` API and ``IcechunkStore`` coroutines share one loop thread.  Only this
module touches ``zarr.core.sync`` (undocumented in zarr).  Core code never calls it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

__all__ = ["AsyncCloseableIterator", "blocking", "blocking_function", "blocking_iter", "iterate", "run"]

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
    """Build the blocking twin of an ``async def name_async(self, ...)`` method.

    The twin looks the coroutine method up on the instance, so a subclass that overrides
    ``name_async`` changes ``name`` too.
    """
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        method: Callable[P, Coroutine[Any, Any, T]] = getattr(self, name)
        return run(method(*args, **kwargs))

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


class AsyncCloseableIterator(Generic[T]):
    """An async iterator that can also be consumed with a plain ``for`` loop."""

    def __init__(self, aiter: AsyncIterator[T]) -> None:
        self._aiter = aiter
        self._sync: Iterator[T] | None = None

    def __aiter__(self) -> AsyncCloseableIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._aiter.__anext__()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._sync is None:
            self._sync = iterate(self._aiter)
        return next(self._sync)

    async def aclose(self) -> None:
        close = getattr(self._aiter, "aclose", None)
        if close is not None:
            await close()
