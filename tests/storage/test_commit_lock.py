"""The local backend's commit lock (``Storage.commit_lock``, ``storage/_commit_lock.py``).

Real ``flock`` on a real directory: another holder is a thread with its own event loop or a
separate process, as for writers of one repository.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import icechunk.storage._commit_lock as commit_lock
from icechunk.storage import Storage, in_memory_storage, local_filesystem_storage


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _hold_in_thread(storage: Storage, release: threading.Event, held: threading.Event) -> threading.Thread:
    """Hold ``storage.commit_lock()`` in another thread (its own event loop) until ``release``."""

    async def hold() -> None:
        async with storage.commit_lock():
            held.set()
            while not release.is_set():
                await asyncio.sleep(0.005)

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    assert held.wait(10)
    return thread


def _is_locked(directory: Path) -> bool:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def _until_unlocked(directory: Path, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while _is_locked(directory):
        assert time.monotonic() < deadline, "the lock was never released"
        await asyncio.sleep(0.01)


async def test_commit_lock_makes_writers_take_turns(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    release, held = threading.Event(), threading.Event()
    thread = _hold_in_thread(storage, release, held)
    entered: list[float] = []

    async def enter() -> None:
        async with storage.commit_lock():
            entered.append(time.monotonic())
            assert _is_locked(tmp_path / "snapshots")

    waiter = asyncio.create_task(enter())
    await asyncio.sleep(0.2)
    assert entered == []  # still waiting for the other holder
    released_at = time.monotonic()
    release.set()
    await asyncio.wait_for(waiter, 10)
    thread.join()
    assert entered[0] >= released_at
    assert not _is_locked(tmp_path / "snapshots")  # released on exit
    assert _files(tmp_path) == []  # the lock is a directory's, no file appears


async def test_commit_lock_gives_up_waiting_and_releases_a_late_grant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commit_lock, "WAIT_LIMIT_S", 0.1)
    storage = local_filesystem_storage(tmp_path)
    release, held = threading.Event(), threading.Event()
    thread = _hold_in_thread(storage, release, held)
    started = time.monotonic()
    async with storage.commit_lock():  # goes on without the lock after the limit
        assert 0.1 <= time.monotonic() - started < 5
    release.set()
    thread.join()
    # the abandoned wait is granted, then released at once by its thread
    await _until_unlocked(tmp_path / "snapshots")


async def test_cancelled_commit_lock_wait_leaves_no_lock_behind(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    release, held = threading.Event(), threading.Event()
    thread = _hold_in_thread(storage, release, held)

    async def enter() -> None:
        async with storage.commit_lock():
            raise AssertionError("entered while the lock was held")

    waiter = asyncio.create_task(enter())
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    thread.join()
    await _until_unlocked(tmp_path / "snapshots")


async def test_a_grant_that_arrives_as_the_waiter_gives_up_is_released(tmp_path: Path) -> None:
    """The grant is delivered, then the coroutine abandons (its time limit fired in the
    same loop iteration): ``abandon`` must close the descriptor itself."""
    directory = tmp_path / "snapshots"
    directory.mkdir()
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    waiter = commit_lock._Waiter(fd, asyncio.get_running_loop())
    await asyncio.wait_for(asyncio.shield(waiter.granted), 5)
    assert _is_locked(directory)
    waiter.abandon()
    assert not _is_locked(directory)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed exactly once, by abandon()


def test_a_process_whose_waiter_gave_up_exits_while_another_holds_the_lock(tmp_path: Path) -> None:
    """The waiting thread is a daemon: it must not keep the process alive."""
    directory = tmp_path / "snapshots"
    directory.mkdir()
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # this test process holds it throughout
    script = textwrap.dedent(
        f"""
        import asyncio
        import icechunk.storage._commit_lock as commit_lock
        from icechunk.storage import local_filesystem_storage
        commit_lock.WAIT_LIMIT_S = 0.2
        async def main():
            async with local_filesystem_storage({str(tmp_path)!r}).commit_lock():
                print("went on without the lock", flush=True)
        asyncio.run(main())
        """
    )
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert "went on without the lock" in done.stdout


async def test_storages_without_a_lock_enter_at_once() -> None:
    async with in_memory_storage().commit_lock() as held:
        assert held is None


async def test_a_forked_child_does_not_keep_the_lock_held(tmp_path: Path) -> None:
    """A child forked while the lock is held shares its descriptor; leaving the lock must
    still free it (an explicit unlock, not just a close)."""
    storage = local_filesystem_storage(tmp_path)
    async with storage.commit_lock():
        child = os.fork()
        if child == 0:  # pragma: no cover - the child only sleeps and leaves
            time.sleep(5)
            os._exit(0)
    try:
        assert not _is_locked(tmp_path / "snapshots")
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)


def test_the_compare_and_swap_directory_lock_is_freed_despite_a_forked_child(tmp_path: Path) -> None:
    """Same for the short directory lock around compare-and-swaps: a child forked inside it
    must not block every later update of that directory until the child exits."""
    from icechunk.storage._local import _DirLock

    with _DirLock(str(tmp_path)):
        child = os.fork()
        if child == 0:  # pragma: no cover - the child only sleeps and leaves
            time.sleep(5)
            os._exit(0)
    try:
        assert not _is_locked(tmp_path)
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
