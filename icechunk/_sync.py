"""The one async -> sync bridge.

Every operation is written once as ``async def x_async(...)``; its blocking twin is built with
:func:`blocking`.  A blocking call runs its coroutine to completion in the calling thread, on
an event loop that thread owns and turns only while it waits on a call.  Handing the
coroutine to zarr's I/O loop thread instead costs two thread wake-ups per call: 0.1-0.5 ms
on a busy 2-core VM, whose idle virtual CPUs are slow to wake, and a third of a cold
``Repository.open`` plus ancestry walk (the reference runs its calls in the calling thread
too).  The core is safe to run on several loops at once (its caches are thread-safe, and
shared fetches are per loop); zarr's sync ``Array`` API and ``IcechunkStore`` keep running
on zarr's loop.  Work that must outlive a call (manifest preloads) is handed to zarr's loop
(:func:`icechunk.core.aio.start_detached`).  Called where a loop already runs (from async
code, or on zarr's loop thread), a blocking call goes through zarr's ``sync`` as before,
which refuses to block its own loop.  Only this module touches ``zarr.core.sync``
(undocumented in zarr).  Core code never calls it.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from icechunk.core.aio import mark_transient

__all__ = ["AsyncCloseableIterator", "BatchedIterator", "blocking", "iterate", "run"]

P = ParamSpec("P")
S = TypeVar("S")
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result (see the module docstring)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _CallerLoop.of_this_thread().run_until_complete(coro)
    from zarr.core.sync import sync

    return sync(coro)


def _zarr_loop() -> asyncio.AbstractEventLoop:
    from zarr.core.sync import _get_loop

    return _get_loop()


class _CallerLoop(asyncio.SelectorEventLoop):
    """The event loop of one thread, closed when the thread ends (or at exit).

    A forked child inherits its parent's loops, whose selector (an epoll instance) it shares
    with the parent: closing one there would unregister the parent's descriptors.  So a loop
    only ever closes in the process that made it; a child makes its own.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pid = os.getpid()
        mark_transient(self, _zarr_loop)
        _open_loops.add(self)

    @classmethod
    def of_this_thread(cls) -> _CallerLoop:
        owner: _ThreadOwner | None = getattr(_this_thread, "owner", None)
        if owner is None or owner.loop.pid != os.getpid():  # none yet, or inherited over fork
            owner = _this_thread.owner = _ThreadOwner(cls())
        return owner.loop

    def finish(self) -> None:
        """Finish the async generators begun on the loop, then close it."""
        if self.pid != os.getpid() or self.is_closed() or self.is_running():
            return
        try:
            self.run_until_complete(self.shutdown_asyncgens())
        except RuntimeError:  # collected where another loop runs: just close
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self.pid == os.getpid():
            super().close()

    def __del__(self) -> None:
        self.finish()


class _ThreadOwner:
    """Held only by its thread's locals: collected when the thread ends, and so finishes
    the loop then."""

    __slots__ = ("loop",)

    def __init__(self, loop: _CallerLoop) -> None:
        self.loop = loop

    def __del__(self) -> None:
        self.loop.finish()


_this_thread = threading.local()
_open_loops: weakref.WeakSet[_CallerLoop] = weakref.WeakSet()


@atexit.register
def _finish_caller_loops() -> None:
    for loop in list(_open_loops):
        loop.finish()


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
    """Iterate an async iterator from sync code, pulling ``batch`` items per blocking call."""

    async def pull() -> tuple[list[T], bool]:
        items: list[T] = []
        try:
            while len(items) < batch:
                items.append(await aiter.__anext__())
        except StopAsyncIteration:
            return items, True
        return items, False

    return _call_by_call(pull)


def _call_by_call(pull: Callable[[], Coroutine[Any, Any, tuple[list[T], bool]]]) -> Iterator[T]:
    """The items of ``pull()`` coroutines, each run by one blocking call, until one
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
    From sync code, lists are gathered ``batch`` items at a time per blocking call, as
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

        return _call_by_call(pull)
