"""Local writes into unnamed files made ahead of time (``icechunk.storage._inodes``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

from icechunk.storage import _inodes, local_filesystem_storage
from tests.forking import in_forked_child

pytestmark = pytest.mark.skipif(
    _inodes._LINKAT is None, reason="needs Linux O_TMPFILE and /proc/self/fd"
)


def _ready(directory: Path, count: int = 1, timeout: float = 5.0) -> int:
    """Wait until the pool holds ``count`` unnamed files for ``directory``; how many it holds."""
    deadline = time.monotonic() + timeout
    while True:
        with _inodes._POOL.changed:
            held = len(_inodes._POOL.spare.get(str(directory), []))
        if held >= count or time.monotonic() > deadline:
            return held
        time.sleep(0.005)


def _put_fresh(storage, key: str, data: bytes) -> None:
    asyncio.run(storage.put_fresh(key, data))


def test_writes_take_unnamed_files_and_leave_nothing_else(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    _put_fresh(storage, "manifests/A", b"first")  # the directory is served from now on
    directory = tmp_path / "manifests"
    assert _ready(directory, _inodes.PER_DIRECTORY) == _inodes.PER_DIRECTORY
    _put_fresh(storage, "manifests/B", b"second" * 1000)
    with _inodes._POOL.changed:  # B took one (the refill may already be under way)
        assert len(_inodes._POOL.spare[str(directory)]) <= _inodes.PER_DIRECTORY
    assert (directory / "B").read_bytes() == b"second" * 1000
    assert sorted(os.listdir(directory)) == ["A", "B"]  # unnamed files are not listed
    created = (directory / "A").stat().st_mode
    assert stat.S_IMODE((directory / "B").stat().st_mode) == stat.S_IMODE(created)
    # the repo object's compare-and-swap goes through a temp file made the same way
    assert asyncio.run(storage.put("repo", b"v1", mode="create")).ok
    assert _ready(tmp_path, _inodes.PER_DIRECTORY) == _inodes.PER_DIRECTORY
    assert asyncio.run(storage.put("repo", b"v2", mode="overwrite")).ok
    assert (tmp_path / "repo").read_bytes() == b"v2"
    assert sorted(os.listdir(tmp_path)) == ["manifests", "repo"]
    shutil.rmtree(tmp_path / "manifests")  # files held ready never block removing a directory


def test_used_files_are_replaced_when_served_again_or_when_none_is_left(tmp_path: Path) -> None:
    """A write does not refill the pool while a commit may still be writing (it would compete
    with it); the next session's ``expect_writes`` does, and so does taking the last file."""
    storage = local_filesystem_storage(tmp_path)
    _put_fresh(storage, "snapshots/A", b"x")
    directory = tmp_path / "snapshots"
    assert _ready(directory, _inodes.PER_DIRECTORY) == _inodes.PER_DIRECTORY

    def held_inodes() -> set[int]:
        with _inodes._POOL.changed:
            return {os.fstat(fd).st_ino for fd in _inodes._POOL.spare[str(directory)]}

    before = held_inodes()
    _put_fresh(storage, "snapshots/B", b"y")
    used = (directory / "B").stat().st_ino
    assert used in before  # B is one of the files that were ready
    time.sleep(0.05)
    assert len(held_inodes()) == _inodes.PER_DIRECTORY - 1  # not replaced yet
    storage.expect_writes(["snapshots"])  # a new session: now it is
    assert _ready(directory, _inodes.PER_DIRECTORY) == _inodes.PER_DIRECTORY
    after = held_inodes()
    assert used not in after and len(after) == _inodes.PER_DIRECTORY
    for k in range(_inodes.PER_DIRECTORY):  # taking the last one refills at once
        _put_fresh(storage, f"snapshots/C{k}", b"z")
    assert _ready(directory, _inodes.PER_DIRECTORY) == _inodes.PER_DIRECTORY
    assert not held_inodes() & after


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="needs SCHED_IDLE")
def test_the_refill_thread_runs_only_on_otherwise_idle_cpus(tmp_path: Path) -> None:
    _put_fresh(local_filesystem_storage(tmp_path), "manifests/A", b"x")
    assert _ready(tmp_path / "manifests", 1)
    thread = _inodes._POOL.thread
    assert thread is not None and thread.native_id is not None
    assert os.sched_getscheduler(thread.native_id) == os.SCHED_IDLE
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the caller's own thread is untouched


def test_an_existing_key_is_overwritten_and_a_vanished_directory_recreated(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    _put_fresh(storage, "chunks/A", b"old")
    assert _ready(tmp_path / "chunks", 1)
    _put_fresh(storage, "chunks/A", b"new")  # a retried write of the same object
    assert (tmp_path / "chunks" / "A").read_bytes() == b"new"
    shutil.rmtree(tmp_path / "chunks")  # the pool still holds files for it
    _put_fresh(storage, "chunks/B", b"again")
    assert (tmp_path / "chunks" / "B").read_bytes() == b"again"
    assert os.listdir(tmp_path / "chunks") == ["B"]


def test_files_that_cannot_be_linked_are_created_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = local_filesystem_storage(tmp_path, fsync=True)
    _put_fresh(storage, "transactions/A", b"x")
    assert _ready(tmp_path / "transactions", 1)

    def refuse(fd: int, path: str) -> None:
        raise _inodes.CannotLink("another filesystem")

    monkeypatch.setattr(_inodes, "link", refuse)
    _put_fresh(storage, "transactions/B", b"created")
    assert (tmp_path / "transactions" / "B").read_bytes() == b"created"
    monkeypatch.setattr(_inodes, "_LINKAT", None)  # a system without O_TMPFILE or /proc
    assert _inodes.take(str(tmp_path / "transactions")) is None
    _put_fresh(storage, "transactions/C", b"plain")
    assert (tmp_path / "transactions" / "C").read_bytes() == b"plain"


def test_the_pool_serves_a_bounded_number_of_directories(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    for k in range(_inodes.MAX_DIRECTORIES + 10):
        _put_fresh(storage, f"d{k}/x", b"x")
    _ready(tmp_path / f"d{_inodes.MAX_DIRECTORIES + 9}", _inodes.PER_DIRECTORY)
    with _inodes._POOL.changed:
        served = list(_inodes._POOL.spare)
        held = sum(len(fds) for fds in _inodes._POOL.spare.values())
    assert len(served) <= _inodes.MAX_DIRECTORIES
    assert str(tmp_path / "d0") not in served  # the least recently written to went first
    assert held <= _inodes.MAX_DIRECTORIES * _inodes.PER_DIRECTORY


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_writes_into_the_parents_files(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    _put_fresh(storage, "manifests/parent-0", b"p")
    assert _ready(tmp_path / "manifests", _inodes.PER_DIRECTORY)
    with _inodes._POOL.changed:
        parents = set(_inodes._POOL.spare[str(tmp_path / "manifests")])

    def child() -> bytes:
        fresh = not _inodes._POOL.spare
        _put_fresh(storage, "manifests/child", b"from the child")
        return b"ok" if fresh else b"inherited"

    assert in_forked_child(child) == b"ok"
    for k in range(1, len(parents) + 1):  # the parent's files are still its own, and intact
        _put_fresh(storage, f"manifests/parent-{k}", b"p%d" % k)
    assert (tmp_path / "manifests" / "child").read_bytes() == b"from the child"
    for k in range(1, len(parents) + 1):
        assert (tmp_path / "manifests" / f"parent-{k}").read_bytes() == b"p%d" % k


def test_commits_write_every_object_through_linked_files(tmp_path: Path) -> None:
    """End to end: a repository written with the pool reads back, and holds no stray files."""
    import numpy as np
    import zarr

    import icechunk as ic

    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")))
    for i in range(5):
        session = repo.writable_session("main")
        if i == 0:
            zarr.create_array(session.store, name="x", shape=(5,), chunks=(1,), dtype="i4", fill_value=0)
        else:
            zarr.open_array(session.store, path="x", mode="a")[i] = i
        session.commit(f"c{i}")
    reopened = ic.Repository.open(ic.local_filesystem_storage(str(tmp_path / "repo")))
    values = zarr.open_array(reopened.readonly_session("main").store, path="x", mode="r")[:]
    assert np.array_equal(values, [0, 1, 2, 3, 4])
    assert len(list(reopened.ancestry(branch="main"))) == 6
    for directory in ("manifests", "snapshots", "transactions"):
        names = os.listdir(tmp_path / "repo" / directory)
        assert names and not [n for n in names if n.startswith(".")]
    assert sys.platform.startswith("linux")


def test_big_writes_create_their_files(tmp_path: Path) -> None:
    """Chunk-sized writes run side by side in worker threads: a refill thread would only add
    contention there, so their directories are not served."""
    from icechunk.storage._local import INLINE_LIMIT

    storage = local_filesystem_storage(tmp_path)
    _put_fresh(storage, "chunks/big", b"\1" * (INLINE_LIMIT + 1))
    assert (tmp_path / "chunks" / "big").stat().st_size == INLINE_LIMIT + 1
    time.sleep(0.05)
    with _inodes._POOL.changed:
        assert str(tmp_path / "chunks") not in _inodes._POOL.spare
    _put_fresh(storage, "chunks/small", b"\2" * 100)
    assert _ready(tmp_path / "chunks", 1) >= 1


def test_a_writable_session_gets_the_commit_directories_ready(tmp_path: Path) -> None:
    """Even the first commit of a process finds files made ahead for every object it writes,
    including the first manifest of a new repository (manifests/ is made for it)."""
    import icechunk as ic

    root = tmp_path / "repo"
    ic.Repository.create(ic.local_filesystem_storage(str(root)))
    assert not (root / "manifests").exists()  # a new repository has no manifest yet
    with _inodes._POOL.changed:  # as in a process that never wrote to this repository
        for directory in [d for d in _inodes._POOL.spare if d.startswith(str(root))]:
            _inodes._close_all(_inodes._POOL.spare.pop(directory))
    repo = ic.Repository.open(ic.local_filesystem_storage(str(root)))
    repo.writable_session("main")
    assert (root / "manifests").is_dir() and not os.listdir(root / "manifests")
    for directory in (root / "manifests", root / "snapshots", root / "transactions", root):
        assert _ready(directory, _inodes.PER_DIRECTORY) == _inodes.PER_DIRECTORY
