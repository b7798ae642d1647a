"""The sync bridge's iterators: the same items with ``for`` and ``async for``, few loop hops."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from icechunk._sync import BatchedIterator, run


class _Lists:
    """An async iterator of lists that counts how many were asked for."""

    def __init__(self, lists: list[list[int]]) -> None:
        self.lists = lists
        self.asked = 0

    async def gen(self) -> AsyncIterator[list[int]]:
        for items in self.lists:
            self.asked += 1
            yield items


LISTS = [[0, 1, 2], [], [3], [4, 5, 6, 7, 8, 9]]


def test_sync_iteration_flattens_the_lists_in_order() -> None:
    source = _Lists(LISTS)
    assert list(BatchedIterator(source.gen())) == list(range(10))


def test_sync_iteration_gathers_lists_per_hop_and_sees_the_end_in_the_same_hop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import icechunk._sync as bridge

    hops = 0

    def counting_run(coro):  # type: ignore[no-untyped-def]
        nonlocal hops
        hops += 1
        return run(coro)

    monkeypatch.setattr(bridge, "run", counting_run)
    assert list(BatchedIterator(_Lists(LISTS).gen(), batch=5)) == list(range(10))
    assert hops == 2  # [0..3], then (still short of 5) [4..9] and the end, seen in that hop
    hops = 0
    assert list(BatchedIterator(_Lists(LISTS).gen(), batch=100)) == list(range(10))
    assert hops == 1


def test_async_iteration_awaits_one_list_at_a_time() -> None:
    source = _Lists(LISTS)

    async def first_four() -> tuple[list[int], int]:
        it = BatchedIterator(source.gen())
        got = [await it.__anext__() for _ in range(4)]
        return got, source.asked

    got, asked = run(first_four())
    assert got == [0, 1, 2, 3]
    assert asked == 3  # the empty list is skipped; the fourth list is not fetched yet


def test_sync_iteration_continues_where_async_iteration_stopped() -> None:
    it = BatchedIterator(_Lists(LISTS).gen())

    async def two() -> list[int]:
        return [await it.__anext__(), await it.__anext__()]

    assert run(two()) == [0, 1]
    assert list(it) == list(range(2, 10))


def test_an_error_in_the_source_reaches_the_sync_caller() -> None:
    async def failing() -> AsyncIterator[list[int]]:
        yield [1]
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        list(BatchedIterator(failing()))
