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
from dataclasses import dataclass, field
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
    "CrashTrial",
    "crash_child",
    "fork_worker",
    "kill_at_write",
    "WritersReport",
    "make_contention_repo",
    "make_crash_repo",
    "run_crash_trial",
    "run_writers",
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
            number = counter["puts"]  # puts run concurrently (snapshot + tx log): remember ours
            if number == n and not after:
                os.kill(os.getpid(), signal.SIGKILL)
            result = await self._inner.put(key, data, mode, **kwargs)
            if number == n and after:
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
        "data", shape=(writers * commits * ELEMENTS,), chunks=(ELEMENTS,), dtype="i8", fill_value=-1, compressors=None
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

    ``solver_name`` is ``"detector"`` or ``"basic"`` (``commit(rebase_with=...)``), or
    ``"naive"``: commit without a solver and rebase by hand after each ConflictError, at once.

    Puts ``(writer, [(snapshot_id, rebase_attempts), ...], seconds, error)`` on ``results``.
    """
    import zarr

    from icechunk._errors import ConflictError
    from icechunk.conflicts import BasicConflictSolver, ConflictDetector
    from icechunk.repository import Repository

    naive = solver_name == "naive"
    out: list[tuple[str, int]] = []
    error = None
    started = time.perf_counter()
    try:
        repo = Repository.open(storage)
        solver = BasicConflictSolver() if solver_name == "basic" else ConflictDetector()
        if barrier is not None:
            barrier.wait()
        started = time.perf_counter()
        for i in range(commits):
            session = repo.writable_session("main")
            array = zarr.open_array(session.store, path="data", mode="a")
            start = (writer * commits + i) * ELEMENTS
            array[start : start + ELEMENTS] = chunk_value(writer, i)
            message = f"writer {writer} commit {i}"
            if naive:
                # the reference's loop: try, and on a conflict rebase and retry at once (no
                # pre-check of the tip, no backoff)
                attempts = 0
                while True:
                    try:
                        sid = session.commit(message)
                        break
                    except ConflictError:
                        attempts += 1
                        session.rebase(solver)
                out.append((sid, attempts))
                continue
            sid = session.commit(message, rebase_with=solver)
            props = repo.lookup_snapshot(sid).metadata
            out.append((sid, int(props.get("__icechunk", {}).get("rebase_attempts", 0))))
    except BaseException as exc:  # report, the parent asserts
        error = f"{type(exc).__name__}: {exc}"
    results.put((writer, out, time.perf_counter() - started, error))


@dataclass
class WritersReport:
    """Outcome of :func:`run_writers`."""

    writers: int
    commits: int
    seconds: float
    reported: list[tuple[int, str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    wrong_chunks: list[int] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Successful commits per second (all writers together)."""
        return len(self.reported) / self.seconds if self.seconds else 0.0

    @property
    def rebases(self) -> list[int]:
        return [attempts for _, _, attempts in self.reported]

    def summary(self) -> str:
        rebases = self.rebases or [0]
        return (
            f"{self.writers} writers x {self.commits} commits: {len(self.reported)} committed in "
            f"{self.seconds:.1f}s ({self.throughput:.1f} commits/s), lost {len(self.lost)}, wrong chunks "
            f"{len(self.wrong_chunks)}, errors {len(self.errors)}; rebases per commit: mean "
            f"{sum(rebases) / len(rebases):.2f}, max {max(rebases)}"
        )


def run_writers(
    storage: Storage, writers: int, commits: int, *, solver: str = "detector", timeout: float = 900
) -> WritersReport:
    """Create a repository and let ``writers`` spawned processes commit ``commits`` times each.

    Returns what they reported and what the repository holds afterwards (``lost`` lists
    reported snapshot ids missing from main's ancestry; ``wrong_chunks`` the chunk indices
    whose value is not the one their writer wrote).
    """
    import multiprocessing
    import queue

    import zarr

    from icechunk.repository import Repository

    make_contention_repo(storage, writers, commits)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=commit_writer, args=(storage, w, commits, solver, barrier, results), daemon=True)
        for w in range(writers)
    ]
    for proc in procs:
        proc.start()
    report = WritersReport(writers, commits, 0.0)
    deadline = time.monotonic() + timeout
    try:
        for _ in procs:
            writer, out, seconds, error = results.get(timeout=max(deadline - time.monotonic(), 1))
            report.seconds = max(report.seconds, seconds)
            report.reported.extend((writer, sid, attempts) for sid, attempts in out)
            if error is not None:
                report.errors.append(f"writer {writer}: {error}")
    except queue.Empty:
        report.errors.append("timed out waiting for the writers")
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    repo = Repository.open(storage)
    report.history = [s.id for s in repo.ancestry(branch="main")]
    in_history = set(report.history)
    report.lost = [sid for _, sid, _ in report.reported if sid not in in_history]
    data = np.asarray(zarr.open_array(repo.readonly_session("main").store, path="data", mode="r")[:])
    per_chunk = data.reshape(writers * commits, ELEMENTS)
    for w in range(writers):
        for i in range(commits):
            index = w * commits + i
            if not (per_chunk[index] == chunk_value(w, i)).all():
                report.wrong_chunks.append(index)
    return report


# ---- crash safety ---------------------------------------------------------------------------


SLOTS_PER_TRIAL = 64
"""Chunks reserved for one crash trial (a child stops after this many commits)."""


def crash_child(storage: Storage, first_index: int, ready: Any, log_path: str, kill_at: int) -> None:
    """Commit chunk after chunk of ``/data`` (from ``first_index``) until killed.

    Sets ``ready`` once the repository is open (imports done), then appends
    ``"<index> <snapshot id>\n"`` to ``log_path`` after each commit returns (one small
    ``O_APPEND`` write, so a kill never leaves half a line that parses).  With ``kill_at > 0``
    the process kills itself at its ``(kill_at + 1) // 2``-th storage write: before it for odd
    numbers, right after it for even numbers.
    """
    import zarr

    from icechunk.conflicts import BasicConflictSolver
    from icechunk.repository import Repository

    if kill_at > 0:
        storage = kill_at_write(storage, (kill_at + 1) // 2, after=kill_at % 2 == 0)
    repo = Repository.open(storage)
    ready.set()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for index in range(first_index, first_index + SLOTS_PER_TRIAL):
        session = repo.writable_session("main")
        array = zarr.open_array(session.store, path="data", mode="a")
        array[index * ELEMENTS : (index + 1) * ELEMENTS] = index
        zarr.open_group(session.store, mode="a").attrs["last"] = index
        sid = session.commit(f"crash child {index}", rebase_with=BasicConflictSolver())
        os.write(fd, f"{index} {sid}\n".encode())
    os.close(fd)


def make_crash_repo(storage: Storage, trials: int) -> None:
    """A repository with ``/data`` holding :data:`SLOTS_PER_TRIAL` chunks per trial."""
    import zarr

    from icechunk.repository import Repository

    repo = Repository.create(storage)
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="w")
    root.create_array(
        "data", shape=(trials * SLOTS_PER_TRIAL * ELEMENTS,), chunks=(ELEMENTS,), dtype="i8", fill_value=-1, compressors=None
    )
    session.commit("create /data")


@dataclass
class CrashTrial:
    """What one killed commit loop left behind."""

    trial: int
    mode: str
    kill_at: float
    reported: list[tuple[int, str]]
    history_length: int
    unreported_commits: int
    exit_code: int | None


def run_crash_trial(
    storage: Storage, trial: int, mode: str, rng: Any, workdir: str, *, max_delay: float = 0.3
) -> CrashTrial:
    """Start a committing child, SIGKILL it, then check the repository (raises AssertionError).

    ``mode="timer"``: the parent kills the child after a random delay once it is ready.
    ``mode="write"``: the child kills itself before or after a random storage write among
    the first three commits (every write of a commit is a possible crash point).
    Afterwards the repository must open, every ref must be complete with a history reaching
    the root, every commit the child reported must be on main with its chunk intact, at
    most one commit (killed after its ref update, before reporting) may be unreported, and
    a new commit must succeed.
    """
    import multiprocessing

    import zarr

    from icechunk.repository import Repository

    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    log_path = os.path.join(workdir, f"crash-{trial}.log")
    first = trial * SLOTS_PER_TRIAL
    kill_at: float = 0
    if mode == "write":
        kill_at = int(rng.integers(1, 2 * 6 * 3 + 1))  # 6 writes per commit, before/after each
    before_history = [s.id for s in Repository.open(storage).ancestry(branch="main")]
    before = set(before_history)
    proc = ctx.Process(target=crash_child, args=(storage, first, ready, log_path, int(kill_at)), daemon=True)
    proc.start()
    if not ready.wait(timeout=120):
        proc.kill()
        raise AssertionError("the crash child never became ready")
    if mode == "timer":
        kill_at = float(rng.uniform(0, max_delay))
        time.sleep(kill_at)
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=120)
    if proc.is_alive():
        proc.kill()
        raise AssertionError("the crash child did not die")
    reported: list[tuple[int, str]] = []
    if os.path.exists(log_path):
        with open(log_path) as fh:
            for line in fh:
                parts = line.split()
                if line.endswith("\n") and len(parts) == 2:
                    reported.append((int(parts[0]), parts[1]))

    # everything below the current tip was verified by the previous trial
    histories = verify_repository(storage, checked=set(before_history[1:]))
    history = histories["main"]
    assert set(history) >= before, "commits made before the crash disappeared"
    for _, sid in reported:
        assert sid in history, f"reported commit {sid} is not on main"
    new = [sid for sid in history if sid not in before]
    unreported = len(new) - len(reported)
    assert 0 <= unreported <= 1, f"{unreported} commits on main that the child never reported"
    repo = Repository.open(storage)
    data = zarr.open_array(repo.readonly_session("main").store, path="data", mode="r")
    for index, _ in reported:
        chunk = np.asarray(data[index * ELEMENTS : (index + 1) * ELEMENTS])
        assert (chunk == index).all(), f"chunk {index} lost its value"
    # the repository still takes commits
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").attrs["after_crash"] = trial
    session.commit(f"after crash {trial}")
    return CrashTrial(trial, mode, kill_at, reported, len(history), unreported, proc.exitcode)


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


def verify_repository(storage: Storage, *, checked: set[str] | None = None) -> dict[str, list[str]]:
    """Open the repository and check that every branch and tag is complete and has a history.

    For each ref: its snapshot, every manifest it references and every snapshot's transaction
    log are readable, every chunk of every array can be read, and the ancestry reaches the
    root snapshot.  Snapshots in ``checked`` (verified before) skip the per-snapshot reads;
    newly verified ones are added to it.  Returns ``{branch: [snapshot ids, newest first]}``.
    """
    import zarr

    from icechunk.repository import Repository

    repo = Repository.open(storage)
    histories: dict[str, list[str]] = {}
    refs = [("branch", b) for b in sorted(repo.list_branches())] + [("tag", t) for t in sorted(repo.list_tags())]
    for kind, name in refs:
        ancestry = repo.ancestry(branch=name) if kind == "branch" else repo.ancestry(tag=name)
        history = [s.id for s in ancestry]
        assert history[-1] == "1CECHNKREP0F1RSTCMT0", f"{kind} {name}: history does not reach the root"
        for sid in history:
            if checked is not None:
                if sid in checked:
                    continue
                checked.add(sid)
            repo.inspect_transaction_log(sid)
            for info in repo.list_manifest_files(sid):
                repo.inspect_manifest(info.id)
        session = repo.readonly_session(name) if kind == "branch" else repo.readonly_session(tag=name)
        root = zarr.open_group(session.store, mode="r")
        for _, array in root.arrays():
            np.asarray(array[...])  # every chunk is readable
        if kind == "branch":
            histories[name] = history
    return histories
