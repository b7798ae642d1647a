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

__all__ = ["AsyncCloseableIterator", "BatchedIterator", "blocking", "iterate", "run"]

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

    return _hop_by_hop(pull)


def _hop_by_hop(pull: Callable[[], Coroutine[Any, Any, tuple[list[T], bool]]]) -> Iterator[T]:
    """The items of ``pull()`` coroutines, each run in one hop to the loop, until one
    reports the end (with its last items)."""
    while True:
        items, done = run(pull())
        yield from items
        if done:
            return


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


class BatchedIterator(AsyncCloseableIterator[T]):
    """The items of an async iterator of lists, one by one, with ``for`` or ``async for``.

    Each list costs one ``await`` and each item a list index, where an async generator
    yielding items costs a generator step per item (~1.5 µs, a quarter of an ancestry walk).
    From sync code, lists are gathered ``batch`` items at a time per hop to the loop, as
    :func:`iterate` does with items.
    """

    def __init__(self, batches: AsyncIterator[list[T]], batch: int = 256) -> None:
        super().__init__(batches)  # type: ignore[arg-type]  # only aclose() uses it as such
        self._batches = batches
        self._batch: list[T] = []
        self._pos = 0
        self._sync = self._sync_items(batch)

    async def __anext__(self) -> T:
        while self._pos >= len(self._batch):
            self._batch = await self._batches.__anext__()
            self._pos = 0
        self._pos += 1
        return self._batch[self._pos - 1]

    def _sync_items(self, batch: int) -> Iterator[T]:
        async def pull() -> tuple[list[T], bool]:
            items = self._batch[self._pos :]  # left over by async iteration, if any
            self._batch, self._pos = [], 0
            try:
                while len(items) < batch:
                    items.extend(await self._batches.__anext__())
            except StopAsyncIteration:
                return items, True
            return items, False

        return _hop_by_hop(pull)
