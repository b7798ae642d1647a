"""``icechunk.core.aio.gather``: asyncio.gather's results and errors, fewer loop turns."""

from __future__ import annotations

import asyncio
import sys

import pytest

from icechunk.core.aio import gather


async def _value(x: int) -> int:
    return x


async def _suspending(x: int, delay: float = 0.0) -> int:
    await asyncio.sleep(delay)
    return x


async def _failing(msg: str) -> int:
    raise ValueError(msg)


async def _failing_later(msg: str) -> int:
    await asyncio.sleep(0)
    raise ValueError(msg)


def _loop_turns(coro_factory) -> tuple[object, int]:
    """Run a coroutine on a fresh loop and count the loop's scheduled callbacks."""
    loop = asyncio.new_event_loop()
    calls = 0
    original = loop.call_soon

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    loop.call_soon = counting  # type: ignore[method-assign]
    try:
        return loop.run_until_complete(coro_factory()), calls
    finally:
        loop.close()


def test_results_in_order_whatever_suspends() -> None:
    async def main() -> list[int]:
        return await gather(_suspending(1, 0.01), _value(2), _suspending(3), _value(4))

    assert asyncio.run(main()) == [1, 2, 3, 4]
    assert asyncio.run(gather()) == []

    async def lone() -> list[int]:
        return await gather(_suspending(7))

    assert asyncio.run(lone()) == [7]


def test_first_exception_propagates_and_none_is_left_unretrieved(recwarn: pytest.WarningsRecorder) -> None:
    async def immediate() -> list[int]:
        return await gather(_value(1), _failing("first"), _failing("second"))

    with pytest.raises(ValueError, match="first"):
        asyncio.run(immediate())

    async def mixed() -> list[int]:
        return await gather(_suspending(1), _failing_later("later"))

    with pytest.raises(ValueError, match="later"):
        asyncio.run(mixed())
    import gc

    gc.collect()
    assert not [w for w in recwarn if "never retrieved" in str(w.message)]


def test_work_that_does_not_suspend_costs_no_extra_loop_turns() -> None:
    """One awaitable (any Python) or coroutines that finish at once (3.12+, eager start)
    schedule nothing beyond running the outer coroutine; asyncio.gather schedules a task
    step per coroutine and the wake-ups."""

    async def ours_lone() -> list[int]:
        return await gather(_value(1))

    async def ours_many() -> list[int]:
        return await gather(_value(1), _value(2), _value(3))

    async def stock_many() -> list[int]:
        return list(await asyncio.gather(_value(1), _value(2), _value(3)))

    (_, lone_turns), (_, many_turns), (_, stock_turns) = map(_loop_turns, (ours_lone, ours_many, stock_many))
    assert lone_turns < stock_turns
    if sys.version_info >= (3, 12):
        assert many_turns == lone_turns
    else:
        assert many_turns == stock_turns


def test_start_detached_outside_a_loop_raises_and_closes_the_coroutine() -> None:
    import warnings

    from icechunk.core.aio import start_detached

    async def work() -> int:
        return 1

    coro = work()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "never awaited" RuntimeWarning would fail here
        with pytest.raises(RuntimeError):
            start_detached(coro)
    assert coro.cr_frame is None  # closed


def test_start_detached_runs_on_the_loop_unless_it_is_transient() -> None:
    import concurrent.futures
    import threading

    from icechunk.core.aio import mark_transient, start_detached

    async def where() -> int:
        return threading.get_ident()

    async def on_a_plain_loop() -> int:
        job = start_detached(where())
        assert isinstance(job, asyncio.Task)
        return await job

    assert asyncio.run(on_a_plain_loop()) == threading.get_ident()

    background = asyncio.new_event_loop()
    runner = threading.Thread(target=background.run_forever, daemon=True)
    runner.start()
    transient = asyncio.new_event_loop()
    try:
        mark_transient(transient, lambda: background)

        async def on_a_transient_loop() -> concurrent.futures.Future[int]:
            job = start_detached(where())
            assert isinstance(job, concurrent.futures.Future)
            return job

        job = transient.run_until_complete(on_a_transient_loop())
        assert job.result(timeout=10) == runner.ident  # ran after the call returned
    finally:
        transient.close()
        background.call_soon_threadsafe(background.stop)
        runner.join(10)
        background.close()
