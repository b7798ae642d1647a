"""Helpers for the concurrency tests and soak scripts (not part of the public API).

The worker functions live in the package (not in test modules) so that processes started
with the ``spawn`` method can import them.  Everything here uses the public API only.

- :class:`HookStorage` runs a coroutine before every write: tests use it to let another
  writer commit at a precise point of a commit (a real interleaving, not a mock), or to
  ``SIGKILL`` the process at the n-th write.
- :func:`commit_writer` is one writer of the "no lost commits" test: ``commits`` commits to
  one branch, each writing its own chunk, rebasing on conflicts.
- :func:`crash_child` commits in a loop until it is killed.
- :func:`fork_worker` writes a region of an array through an unpickled fork.
- :func:`verify_repository` checks that every branch and tag points to a complete snapshot
  with a readable history.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from icechunk.config import StorageSettings
from icechunk.storage import Storage
from icechunk.storage._abc import PutMode, PutResult
from icechunk.testing._wrappers import _Wrapper

__all__ = [
    "ELEMENTS",
    "HookStorage",
    "chunk_value",
    "commit_writer",
    "crash_child",
    "fork_worker",
    "kill_at_write",
    "make_contention_repo",
    "verify_repository",
]

class HookStorage(_Wrapper):
    """Wraps a storage and awaits ``hook(key)`` before every ``put``.

    Parameters
    ----------
    inner
        The storage to wrap.
    hook
        Coroutine function called with the key about to be written.
    """

    def __init__(self, inner: Storage, hook: Callable[[str], Awaitable[None]]) -> None:
        super().__init__(inner)
        self.hook = hook

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        mode: PutMode = "overwrite",
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        await self.hook(key)
        return await self._inner.put(key, data, mode, content_type=content_type, metadata=metadata)

    def with_settings(self, settings: StorageSettings | None) -> HookStorage:
        return HookStorage(self._inner.with_settings(settings), self.hook)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HookStorage) and other._inner == self._inner and other.hook == self.hook

    def __hash__(self) -> int:
        return hash((HookStorage, self._inner))

    def __repr__(self) -> str:
        return f"HookStorage({self._inner!r})"


def kill_at_write(inner: Storage, n: int, *, after: bool = False) -> Storage:
    """A storage that SIGKILLs the process at its ``n``-th ``put`` (1-based).

    With ``after=False`` the process dies before the write reaches ``inner``; with
    ``after=True`` the write completes and the process dies right after it.
    """
    counter = {"puts": 0}

    class _Killer(HookStorage):
        async def put(self, key: str, data: Any, mode: PutMode = "overwrite", **kwargs: Any) -> PutResult:
            counter["puts"] += 1
            if counter["puts"] == n and not after:
                os.kill(os.getpid(), signal.SIGKILL)
            result = await self._inner.put(key, data, mode, **kwargs)
            if counter["puts"] == n and after:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        def with_settings(self, settings: StorageSettings | None) -> HookStorage:
            return _Killer(self._inner.with_settings(settings), self.hook)

    async def _nothing(key: str) -> None:
        return None

    return _Killer(inner, _nothing)


# ---- the contention array -------------------------------------------------------------------

ELEMENTS = 80
"""int64 elements per chunk: 640 bytes, above the default inline threshold (512), so every
chunk is a real chunk object."""


def chunk_value(writer: int, commit: int) -> int:
    """The value writer ``writer`` stores in its ``commit``-th chunk."""
    return (writer + 1) * 1_000_000 + commit


def make_contention_repo(storage: Storage, writers: int, commits: int) -> None:
    """Create a repository with ``/data``: one chunk per (writer, commit), all fill value."""
    import zarr

    from icechunk.repository import Repository

    repo = Repository.create(storage)
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="w")
    root.create_array(
        "data", shape=(writers * commits * ELEMENTS,), chunks=(ELEMENTS,), dtype="i8", fill_value=-1
    )
    session.commit("create /data")


def commit_writer(
    storage: Storage,
    writer: int,
    commits: int,
    solver_name: str,
    barrier: Any,
    results: Any,
) -> None:
    """One writer: ``commits`` commits to main, each writing its own chunk of ``/data``.

    Puts ``(writer, [(snapshot_id, rebase_attempts), ...], seconds, error)`` on ``results``.
    """
    import zarr

    from icechunk.conflicts import BasicConflictSolver, ConflictDetector
    from icechunk.repository import Repository

    out: list[tuple[str, int]] = []
    error = None
    started = time.perf_counter()
    try:
        repo = Repository.open(storage)
        solver = ConflictDetector() if solver_name == "detector" else BasicConflictSolver()
        if barrier is not None:
            barrier.wait()
        started = time.perf_counter()
        for i in range(commits):
            session = repo.writable_session("main")
            array = zarr.open_array(session.store, path="data", mode="a")
            start = (writer * commits + i) * ELEMENTS
            array[start : start + ELEMENTS] = chunk_value(writer, i)
            sid = session.commit(f"writer {writer} commit {i}", rebase_with=solver)
            props = repo.lookup_snapshot(sid).metadata
            out.append((sid, int(props.get("__icechunk", {}).get("rebase_attempts", 0))))
    except BaseException as exc:  # report, the parent asserts
        error = f"{type(exc).__name__}: {exc}"
    results.put((writer, out, time.perf_counter() - started, error))


# ---- crash safety ---------------------------------------------------------------------------


def crash_child(storage: Storage, first_index: int, ready: Any, committed: Any, kill_at: int) -> None:
    """Commit chunk after chunk of ``/data`` (starting at ``first_index``) until killed.

    Sets ``ready`` once the repository is open (imports done), then reports each committed
    ``(index, snapshot_id)`` on ``committed``.  With ``kill_at > 0`` the process kills itself
    at its ``kill_at``-th storage write (odd numbers: before it, even: right after it).
    """
    import zarr

    from icechunk.conflicts import BasicConflictSolver
    from icechunk.repository import Repository

    if kill_at > 0:
        storage = kill_at_write(storage, (kill_at + 1) // 2, after=kill_at % 2 == 0)
    repo = Repository.open(storage)
    ready.set()
    index = first_index
    while True:
        session = repo.writable_session("main")
        array = zarr.open_array(session.store, path="data", mode="a")
        array[index * ELEMENTS : (index + 1) * ELEMENTS] = index
        zarr.open_group(session.store, mode="a").attrs["last"] = index
        sid = session.commit(f"crash child {index}", rebase_with=BasicConflictSolver())
        committed.put((index, sid))
        index += 1


# ---- forks ----------------------------------------------------------------------------------


def fork_worker(pickled_fork: bytes, path: str, rows: tuple[int, int], value: int) -> bytes:
    """Unpickle a fork (or a fork's store), write ``value`` into ``rows`` of ``path``, return it pickled."""
    import zarr

    from icechunk.session import ForkSession
    from icechunk.store import IcechunkStore

    obj = pickle.loads(pickled_fork)
    fork = obj.session if isinstance(obj, IcechunkStore) else obj
    assert isinstance(fork, ForkSession), type(fork)
    array = zarr.open_array(fork.store, path=path, mode="a")
    array[rows[0] : rows[1]] = value
    return pickle.dumps(obj)


# ---- verification ---------------------------------------------------------------------------


def verify_repository(storage: Storage) -> dict[str, list[str]]:
    """Open the repository and check that every branch and tag is complete and has a history.

    For each ref: its snapshot, every manifest it references and every snapshot's transaction
    log are readable, every chunk of every array can be read, and the ancestry reaches the
    root snapshot.  Returns ``{branch: [snapshot ids, newest first]}``.
    """
    import zarr

    from icechunk.repository import Repository

    repo = Repository.open(storage)
    histories: dict[str, list[str]] = {}
    refs = [("branch", b) for b in sorted(repo.list_branches())] + [("tag", t) for t in sorted(repo.list_tags())]
    for kind, name in refs:
        history = [s.id for s in repo.ancestry(**{kind: name})]
        assert history[-1] == "1CECHNKREP0F1RSTCMT0", f"{kind} {name}: history does not reach the root"
        for sid in history:
            repo.inspect_transaction_log(sid)
            for info in repo.list_manifest_files(sid):
                repo.inspect_manifest(info.id)
        session = repo.readonly_session(**{kind: name})
        root = zarr.open_group(session.store, mode="r")
        for _, array in root.arrays():
            np.asarray(array[...])  # every chunk is readable
        if kind == "branch":
            histories[name] = history
    return histories
