"""One run of one benchmark workload on one implementation; prints one JSON line.

Usage: python compare_worker.py <impl> <workload> <params-json> <workdir>

``impl`` is ``icechunk`` (whichever icechunk the interpreter imports: this package when
``benchmarks/compare.py`` puts it on ``PYTHONPATH``, the reference in its own virtualenv) or
``zarr`` (plain ``zarr.storage.LocalStore``, no versioning).  The same code drives both
icechunks, since they share the public API; the few places where they may differ are handled
with a note in the output.  Only the phases are timed (``time.perf_counter``), never the
interpreter start, a small untimed warm-up (imports, first use) or the data generation.

Output: ``{"phases": {name: seconds}, "cpu": {name: seconds}, "extra": {...}, "notes": [...]}``
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zarr

BULK_CHUNK = 131_072  # float64 elements in 1 MiB
PHASE_REPEATS = 3  # runs per repetition of a repeatable phase (their median is reported)


class Result:
    """Phase timings (wall and CPU of this process and its children) plus extras."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.extra: dict[str, Any] = {}
        self.notes: list[str] = []

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        c0 = _cpu()
        t0 = time.perf_counter()
        out = fn()
        self.phases[name] = time.perf_counter() - t0
        self.cpu[name] = _cpu() - c0
        return out

    def timed_median(self, name: str, fn: Callable[[], Any], repeats: int = PHASE_REPEATS) -> Any:
        """:meth:`timed` ``repeats`` times back to back; the phase is the median run.

        For the read phases (each run opens the store afresh) and the bulk write (each run
        writes a fresh target): on a shared VM one run can take 2-3x another for no reason
        of its own (page faults on fresh buffers are what swings), so one run per
        repetition is mostly noise.
        """
        runs = []
        out = None
        for _ in range(repeats):
            out = self.timed(name, fn)
            runs.append((self.phases[name], self.cpu[name]))
        runs.sort()
        self.phases[name], self.cpu[name] = runs[len(runs) // 2]
        return out

    def to_json(self) -> str:
        return json.dumps({"phases": self.phases, "cpu": self.cpu, "extra": self.extra, "notes": self.notes})


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---- targets ---------------------------------------------------------------------------------


class Target:
    """Where a workload writes: an icechunk repository or a plain zarr LocalStore."""

    versioned = True

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self, config: Any = None, auth: Any = None) -> None: ...

    def write_store(self, branch: str = "main") -> Any:
        raise NotImplementedError

    def commit(self, message: str) -> Any:
        return None

    def read_store(self) -> Any:
        raise NotImplementedError


class Plain(Target):
    versioned = False

    def write_store(self, branch: str = "main") -> Any:
        from zarr.storage import LocalStore

        return LocalStore(self.path)

    def read_store(self) -> Any:
        from zarr.storage import LocalStore

        return LocalStore(self.path, read_only=True)


class Ice(Target):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        import icechunk as ic

        self.ic = ic
        self.auth: Any = None

    def storage(self) -> Any:
        return self.ic.local_filesystem_storage(self.path)

    def create(self, config: Any = None, auth: Any = None) -> None:
        self.auth = auth
        kwargs = {} if auth is None else {"authorize_virtual_chunk_access": auth}
        self.repo = self.ic.Repository.create(self.storage(), config=config, **kwargs)

    def open(self) -> Any:
        kwargs = {} if self.auth is None else {"authorize_virtual_chunk_access": self.auth}
        return self.ic.Repository.open(self.storage(), **kwargs)

    def write_store(self, branch: str = "main") -> Any:
        self.session = self.repo.writable_session(branch)
        return self.session.store

    def commit(self, message: str) -> Any:
        return self.session.commit(message)

    def read_store(self) -> Any:
        return self.open().readonly_session("main").store


def make_target(impl: str, path: str) -> Target:
    return Plain(path) if impl == "zarr" else Ice(path)


def warm_up(impl: str, path: str) -> None:
    """A tiny write, commit and read in a scratch location (untimed): imports and first-use
    set-up of every layer happen here, for each implementation alike."""
    t = make_target(impl, path)
    t.create()
    arr = zarr.create_array(t.write_store(), name="w", shape=(8,), chunks=(2,), dtype="f8", fill_value=0)
    arr[:] = np.arange(8.0)
    t.commit("warm-up")
    zarr.open_array(t.read_store(), path="w", mode="r")[:]


# ---- workloads --------------------------------------------------------------------------------


def bulk(t: Target, p: dict[str, Any], r: Result) -> None:
    """``n`` chunks of 1 MiB (random float64): write + commit, then cold open + full read
    (each phase 3 times, its median reported)."""
    data = np.random.default_rng(0).random(p["n"] * BULK_CHUNK)
    # the write is repeated like the reads (into fresh targets, the last one being ``t``)
    kind = "icechunk" if t.versioned else "zarr"
    targets = [make_target(kind, f"{t.path}-write-{k}") for k in range(PHASE_REPEATS - 1)] + [t]
    for target in targets:
        target.create()
    pending = iter(targets)

    def write() -> None:
        target = next(pending)
        arr = zarr.create_array(target.write_store(), name="bulk", shape=data.shape, chunks=(BULK_CHUNK,), dtype="f8")
        arr[:] = data
        target.commit("bulk")

    r.timed_median("write+commit", write)
    got = r.timed_median("read", lambda: zarr.open_array(t.read_store(), path="bulk", mode="r")[:])
    assert np.array_equal(got, data)


def small(t: Target, p: dict[str, Any], r: Result) -> None:
    """``n`` chunks of 25 int32: write + commit, cold open + full read, cold open + point reads."""
    rng = np.random.default_rng(0)
    chunk = 25
    data = rng.integers(0, 1000, p["n"] * chunk).astype("int32")
    points = rng.integers(0, data.size, p["points"])
    t.create()

    def write() -> None:
        arr = zarr.create_array(t.write_store(), name="small", shape=data.shape, chunks=(chunk,), dtype="int32")
        arr[:] = data
        t.commit("small")

    r.timed("write+commit", write)
    got = r.timed("read", lambda: zarr.open_array(t.read_store(), path="small", mode="r")[:])
    assert np.array_equal(got, data)

    def point_reads() -> list[int]:
        arr = zarr.open_array(t.read_store(), path="small", mode="r")
        return [int(arr[int(i)]) for i in points]

    got_points = r.timed_median(f"open+{len(points)} point reads", point_reads)
    assert got_points == data[points].tolist()


def virtual(t: Target, p: dict[str, Any], r: Result) -> None:
    """``n`` virtual refs (8 bytes each, over 100 local files): set + commit; cold open + reads."""
    assert isinstance(t, Ice)
    ic = t.ic
    n, nfiles = p["n"], 100
    per = n // nfiles
    data_dir = os.path.join(os.path.dirname(t.path), "virtual-data")
    os.makedirs(data_dir, exist_ok=True)
    values = np.arange(n, dtype="<i8")
    for j in range(nfiles):
        values[j * per : (j + 1) * per].tofile(os.path.join(data_dir, f"f{j}.bin"))
    prefix = f"file://{data_dir}/"
    names = [f"{prefix}f{j}.bin" for j in range(nfiles)]
    locations = [names[i // per] for i in range(n)]
    offsets = (np.arange(n, dtype="u8") % per) * 8
    lengths = np.full(n, 8, dtype="u8")
    config = ic.RepositoryConfig.default()
    config.set_virtual_chunk_container(ic.VirtualChunkContainer(prefix, ic.local_filesystem_store(data_dir)))
    t.create(config=config, auth=ic.containers_credentials({prefix: ic.Credentials.LocalFileSystemAccess()}))
    store = t.write_store()
    zarr.create_array(store, name="x", shape=(n,), chunks=(1,), dtype="<i8", compressors=None, fill_value=-1)
    r.extra["rss_before_mb"] = round(_rss_mb(), 1)

    def set_and_commit() -> None:
        failed = store.set_virtual_refs_arr("x", (n,), locations, offsets, lengths)
        assert not failed
        t.commit("virtual refs")

    r.timed("set+commit", set_and_commit)
    r.extra["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    points = np.random.default_rng(1).integers(0, n, p["points"])

    def reads() -> list[int]:
        arr = zarr.open_array(t.read_store(), path="x", mode="r")
        return [int(arr[int(i)]) for i in points]

    got = r.timed_median(f"open+{len(points)} reads", reads)
    assert got == points.tolist()


def commits(t: Target, p: dict[str, Any], r: Result) -> None:
    """``n`` sequential tiny commits (one chunk each), then a cold full ancestry walk."""
    assert isinstance(t, Ice)
    n = p["n"]
    t.create()
    zarr.create_array(t.write_store(), name="x", shape=(n,), chunks=(1,), dtype="int32", fill_value=0)
    t.commit("array")

    def run() -> None:
        for i in range(n):
            s = t.repo.writable_session("main")
            zarr.open_array(s.store, path="x", mode="a")[i] = i + 1
            s.commit(f"commit {i}")

    r.timed(f"{n} commits", run)
    walked = r.timed_median("ancestry walk", lambda: [s.message for s in t.open().ancestry(branch="main")])
    assert len(walked) == n + 2
    assert walked[0] == f"commit {n - 1}"


def xarray_workload(t: Target, p: dict[str, Any], r: Result) -> None:
    """An xarray Dataset of ``mb`` MB (two dask-backed float64 variables): write, then read back.

    A tiny dataset goes through the same path first (untimed), so one-time costs -- imports
    (dask loads ``distributed`` whenever it is installed), codec and backend set-up -- are
    left out for every implementation alike.
    """
    import dask
    import dask.array as da
    import xarray as xr

    def dataset(nt: int, ny: int, nx: int, tchunk: int) -> tuple[xr.Dataset, np.ndarray]:
        base = np.random.default_rng(0).random((tchunk, ny, nx))
        a = np.concatenate([base + i for i in range(nt // tchunk)])
        ds = xr.Dataset(
            {
                "a": (("time", "y", "x"), da.from_array(a, chunks=(tchunk, ny, nx))),
                "b": (("time", "y", "x"), da.from_array(a * 2, chunks=(tchunk, ny, nx))),
            },
            coords={"time": np.arange(nt)},
        )
        return ds, a

    def write(target: Target, ds: xr.Dataset) -> None:
        if not target.versioned:
            ds.to_zarr(target.write_store(), zarr_format=3, consolidated=False)
            return
        assert isinstance(target, Ice)
        target.write_store()
        try:
            from icechunk.xarray import to_icechunk

            to_icechunk(ds, target.session)
        except TypeError as exc:  # reported for the reference on recent xarray
            note = f"to_icechunk raised TypeError ({exc}); wrote with ds.to_zarr(session.store)"
            if note not in r.notes:
                r.notes.append(note)
            target.write_store()
            ds.to_zarr(target.session.store, zarr_format=3, consolidated=False)
        target.commit("xarray")

    def read(target: Target) -> Any:
        return xr.open_zarr(target.read_store(), consolidated=False, zarr_format=3).load()

    dask.config.set(scheduler="threads")
    warm = make_target("zarr" if not t.versioned else "icechunk", t.path + "-warm-up")
    warm.create()
    tiny, _ = dataset(4, 3, 5, 2)
    write(warm, tiny)
    read(warm)

    ny, nx, tchunk = 250, 500, 10
    nt = max(tchunk, p["mb"] * 10**6 // (2 * 8 * ny * nx) // tchunk * tchunk)
    ds, a = dataset(nt, ny, nx, tchunk)
    r.extra["mb"] = round(ds.nbytes / 1e6)
    t.create()
    r.timed("write+commit", lambda: write(t, ds))
    back = r.timed_median("read back", lambda: read(t), p.get("read_repeats", PHASE_REPEATS))
    assert float(back.b[nt - 1, 7, 9]) == 2 * a[nt - 1, 7, 9]


def _contended_child(path: str, proc: int, n: int, barrier: Any, queue: Any) -> None:
    import icechunk as ic

    warm_up("icechunk", f"{path}-warm-up-{proc}")
    repo = ic.Repository.open(ic.local_filesystem_storage(path))
    barrier.wait()
    c0 = _cpu()
    ok, errors = [], []
    for i in range(n):
        try:
            s = repo.writable_session("main")
            zarr.open_array(s.store, path="x", mode="a")[proc * n + i] = proc * 1000 + i
            ok.append(s.commit(f"p{proc}-{i}", rebase_with=ic.ConflictDetector(), rebase_tries=1000))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
    queue.put({"proc": proc, "ok": ok, "errors": errors, "cpu": _cpu() - c0})


def contended(t: Target, p: dict[str, Any], r: Result) -> None:
    """``procs`` processes each make ``n`` commits (disjoint chunks, rebase on conflict) on main."""
    import multiprocessing

    assert isinstance(t, Ice)
    procs, n = p["procs"], p["n"]
    t.create()
    zarr.create_array(t.write_store(), name="x", shape=(procs * n,), chunks=(1,), dtype="int32", fill_value=-1)
    t.commit("array")
    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs a tokio runtime
    barrier, queue = ctx.Barrier(procs + 1), ctx.Queue()
    children = [ctx.Process(target=_contended_child, args=(t.path, k, n, barrier, queue)) for k in range(procs)]
    for c in children:
        c.start()
    barrier.wait()  # every child has imported and opened the repository
    out = r.timed(f"{procs}x{n} commits", lambda: [queue.get(timeout=600) for _ in children])
    for c in children:
        c.join()
    r.cpu[f"{procs}x{n} commits"] += sum(o["cpu"] for o in out)
    reported = {sid for o in out for sid in o["ok"]}
    history = {s.id for s in t.open().ancestry(branch="main")}
    arr = zarr.open_array(t.read_store(), path="x", mode="r")[:]
    expected = [k * 1000 + i for k in range(procs) for i in range(n)]
    r.extra.update(
        reported=len(reported),
        present=len(reported & history),
        lost=len(reported - history),
        failed=sum(len(o["errors"]) for o in out),
        values_missing=int(sum(a != e for a, e in zip(arr.tolist(), expected))),
    )
    errors = [e for o in out for e in o["errors"]]
    if errors:
        r.notes.append(f"{len(errors)} commits raised, e.g. {errors[0]}")


def _warm(impl: str, path: str) -> None:
    """Pool initializer: the same untimed warm-up as the parent, in a scratch directory."""
    import tempfile

    warm_up(impl, tempfile.mkdtemp(prefix="warm-up-", dir=path))


def _fork_child(target: Any, proc: int, nchunks: int) -> tuple[Any, float]:
    """Write this process's region into a fork (or straight into a LocalStore path)."""
    c0 = _cpu()
    data = np.random.default_rng(proc).random(nchunks * BULK_CHUNK)
    region = slice(proc * data.size, (proc + 1) * data.size)
    if isinstance(target, str):
        from zarr.storage import LocalStore

        zarr.open_array(LocalStore(target), path="x", mode="a")[region] = data
        return None, _cpu() - c0
    zarr.open_array(target.store, path="x", mode="a")[region] = data
    return target, _cpu() - c0


def forkmerge(t: Target, p: dict[str, Any], r: Result) -> None:
    """A session forks to ``procs`` processes, each writes ``nchunks`` 1 MiB chunks; merge, commit.

    Run 3 times per repetition (into fresh targets, the last one being ``t``), the median
    reported, like the bulk write: one run swings 0.7-1.1 s for all three implementations.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    procs, nchunks = p["procs"], p["nchunks"]
    shape = (procs * nchunks * BULK_CHUNK,)
    kind = "icechunk" if t.versioned else "zarr"
    targets = [make_target(kind, f"{t.path}-fork-{k}") for k in range(PHASE_REPEATS - 1)] + [t]
    for target in targets:
        target.create()
        zarr.create_array(target.write_store(), name="x", shape=shape, chunks=(BULK_CHUNK,), dtype="f8", fill_value=0)
        target.commit("array")
    ctx = multiprocessing.get_context("spawn")
    scratch = os.path.dirname(t.path)
    name, sub = f"{procs} procs write+merge+commit", "  of which merge+commit"
    runs: list[tuple[float, float]] = []
    merges: list[float] = []
    with ProcessPoolExecutor(procs, mp_context=ctx, initializer=_warm, initargs=(kind, scratch)) as pool:
        list(pool.map(time.sleep, [0.3] * procs))  # all workers up before the clock starts

        def run(target: Target) -> float:
            if not target.versioned:
                done = list(pool.map(_fork_child, [target.path] * procs, range(procs), [nchunks] * procs))
                return sum(c for _, c in done)
            assert isinstance(target, Ice)
            session = target.repo.writable_session("main")
            forks = [session.fork() for _ in range(procs)]
            done = list(pool.map(_fork_child, forks, range(procs), [nchunks] * procs))
            t0 = time.perf_counter()
            session.merge(*(f for f, _ in done))
            session.commit("forked writes")
            merges.append(time.perf_counter() - t0)
            return sum(c for _, c in done)

        for target in targets:
            child_cpu = r.timed(name, lambda target=target: run(target))
            runs.append((r.phases[name], r.cpu[name] + child_cpu))
    runs.sort()
    r.phases[name], r.cpu[name] = runs[len(runs) // 2]
    if merges:  # listed after the whole
        r.phases[sub] = sorted(merges)[len(merges) // 2]
    got = zarr.open_array(t.read_store(), path="x", mode="r")[:]
    assert np.array_equal(got[: nchunks * BULK_CHUNK], np.random.default_rng(0).random(nchunks * BULK_CHUNK))


WORKLOADS: dict[str, Callable[[Target, dict[str, Any], Result], None]] = {
    "bulk": bulk,
    "small": small,
    "virtual": virtual,
    "commits": commits,
    "xarray": xarray_workload,
    "contended": contended,
    "forkmerge": forkmerge,
}


def main() -> None:
    impl, workload, params, workdir = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    r = Result()
    warm_up(impl, os.path.join(workdir, "warm-up"))
    target = make_target(impl, os.path.join(workdir, "repo"))
    WORKLOADS[workload](target, params, r)
    print(r.to_json(), flush=True)


if __name__ == "__main__":
    main()
