"""Where blocking calls run: in the calling thread, on a loop that thread owns."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import zarr

import icechunk as ic
from icechunk._sync import BatchedIterator, run
from tests.forking import in_forked_child


async def _where() -> tuple[int, asyncio.AbstractEventLoop]:
    return threading.get_ident(), asyncio.get_running_loop()


def test_a_blocking_call_runs_in_the_calling_thread_on_a_loop_of_its_own() -> None:
    from zarr.core.sync import _get_loop

    thread, loop = run(_where())
    assert thread == threading.get_ident()
    assert loop is not _get_loop()
    assert run(_where())[1] is loop  # the thread keeps its loop from call to call


def test_a_blocking_call_from_async_code_goes_to_zarrs_loop() -> None:
    from zarr.core.sync import _get_loop

    async def nested() -> tuple[int, asyncio.AbstractEventLoop]:
        return run(_where())

    thread, loop = asyncio.run(nested())
    assert thread != threading.get_ident()
    assert loop is _get_loop()


def test_each_thread_gets_a_loop_closed_when_the_thread_ends() -> None:
    seen: list[asyncio.AbstractEventLoop] = []
    finished: list[str] = []

    async def unfinished() -> AsyncIterator[list[int]]:
        try:
            for i in range(10):
                yield [i]
        finally:
            finished.append("generator")

    def work() -> None:
        seen.append(run(_where())[1])
        items = iter(BatchedIterator(unfinished(), batch=2))
        assert [next(items), next(items)] == [0, 1]  # left half-read

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert len({id(loop) for loop in seen}) == 2
    assert all(loop.is_closed() for loop in seen)
    assert finished == ["generator", "generator"]  # the half-read generators were closed


def test_threads_committing_to_one_repository_at_once_lose_nothing(tmp_path: Path) -> None:
    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="x", shape=(40,), chunks=(1,), dtype="i4", fill_value=-1)
    session.commit("array")
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(k: int) -> None:
        try:
            start.wait()
            for i in range(10):
                s = repo.writable_session("main")
                zarr.open_array(s.store, path="x", mode="a")[k * 10 + i] = k * 10 + i
                s.commit(f"{k}-{i}", rebase_with=ic.ConflictDetector())
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    messages = [s.message for s in repo.ancestry(branch="main")]
    assert sorted(messages[:40]) == sorted(f"{k}-{i}" for k in range(4) for i in range(10))
    values = zarr.open_array(repo.readonly_session("main").store, path="x", mode="r")[:]
    assert np.array_equal(values, np.arange(40))


def _alarm(seconds: int) -> None:
    """Fail with TimeoutError (instead of hanging) if the main thread is still blocked then."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("the caller's loop never woke up")

    signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)


def test_a_forked_child_gets_its_own_loop_and_leaves_the_parents_alone(tmp_path: Path) -> None:
    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")))
    parent_loop = run(_where())[1]

    def child() -> bytes:
        loop = run(_where())[1]
        session = repo.writable_session("main")
        zarr.create_array(session.store, name="c", shape=(2,), chunks=(1,), dtype="i1")
        session.commit("from the child")
        gc.collect()
        return b"ok" if loop is not parent_loop else b"shared"

    assert in_forked_child(child) == b"ok"
    assert run(_where())[1] is parent_loop and not parent_loop.is_closed()
    assert [s.message for s in repo.ancestry(branch="main")][0] == "from the child"
    # the parent's loop still wakes for work done in other threads (its selector is intact)
    previous = signal.getsignal(signal.SIGALRM)
    try:
        _alarm(60)
        other = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "other")))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [s.message for s in other.ancestry(branch="main")] == ["Repository initialized"]
