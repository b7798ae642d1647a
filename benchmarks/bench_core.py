"""Core engine vs plain zarr LocalStore, side by side in one run (issue 4 targets).

Workloads (medians over interleaved repetitions):
  bulk      write+commit and full read of 256 x 1 MiB chunks
  small     write+commit and full read of 10,000 small chunks
  points    cold open + 1,000 random single-element reads (on the small-chunk array)

Usage: python benchmarks/bench_core.py [--reps N] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

import icechunk as ic

BULK_CHUNK = 131_072  # float64 elements per 1 MiB chunk


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Target:
    """One implementation: how to get a writable store, commit, and a fresh read store."""

    name = ""

    def __init__(self, root: Path) -> None:
        self.root = root

    def fresh(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def write_store(self) -> object:
        raise NotImplementedError

    def commit(self) -> None:
        pass

    def read_store(self) -> object:
        raise NotImplementedError


class ZarrLocal(Target):
    name = "zarr LocalStore"

    def write_store(self) -> object:
        return LocalStore(str(self.root))

    def read_store(self) -> object:
        return LocalStore(str(self.root), read_only=True)


class Ours(Target):
    name = "icechunk (this)"

    def fresh(self) -> None:
        super().fresh()
        self.repo = ic.Repository.create(ic.local_filesystem_storage(str(self.root)))

    def write_store(self) -> object:
        self.session = self.repo.writable_session("main")
        return self.session.store

    def commit(self) -> None:
        self.session.commit("bench")

    def read_store(self) -> object:
        repo = ic.Repository.open(ic.local_filesystem_storage(str(self.root)))
        return repo.readonly_session("main").store


def bulk_write(t: Target, data: np.ndarray) -> float:
    t.fresh()

    def run() -> None:
        store = t.write_store()
        arr = zarr.create_array(store, name="bulk", shape=data.shape, chunks=(BULK_CHUNK,), dtype=data.dtype)
        arr[:] = data
        t.commit()

    return _timed(run)


def bulk_read(t: Target, data: np.ndarray) -> float:
    def run() -> None:
        got = zarr.open_array(t.read_store(), path="bulk", mode="r")[:]
        assert got[-1] == data[-1]

    return _timed(run)


def small_write(t: Target, data: np.ndarray, chunk: int) -> float:
    t.fresh()

    def run() -> None:
        store = t.write_store()
        arr = zarr.create_array(store, name="small", shape=data.shape, chunks=(chunk,), dtype=data.dtype)
        arr[:] = data
        t.commit()

    return _timed(run)


def small_read(t: Target, data: np.ndarray) -> float:
    def run() -> None:
        got = zarr.open_array(t.read_store(), path="small", mode="r")[:]
        assert got[-1] == data[-1]

    return _timed(run)


def point_reads(t: Target, data: np.ndarray, idx: np.ndarray) -> float:
    def run() -> None:
        arr = zarr.open_array(t.read_store(), path="small", mode="r")
        for i in idx:
            assert arr[int(i)] == data[int(i)]

    return _timed(run)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and points")
    args = parser.parse_args()
    reps = 2 if args.quick else args.reps
    rng = np.random.default_rng(0)
    bulk = rng.random(256 * BULK_CHUNK)
    small_chunk = 25
    small = rng.integers(0, 1000, 10_000 * small_chunk).astype("int32")
    points = rng.integers(0, small.size, 200 if args.quick else 1000)
    base = Path(tempfile.mkdtemp(prefix="bench-core-"))
    targets = [ZarrLocal(base / "zarr"), Ours(base / "ours")]
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(reps):
            for t in targets:  # interleaved so machine noise hits both alike
                results.setdefault((t.name, "bulk write+commit"), []).append(bulk_write(t, bulk))
                results.setdefault((t.name, "bulk read"), []).append(bulk_read(t, bulk))
                results.setdefault((t.name, "small write+commit"), []).append(small_write(t, small, small_chunk))
                results.setdefault((t.name, "small read"), []).append(small_read(t, small))
                results.setdefault((t.name, f"cold open + {len(points)} point reads"), []).append(
                    point_reads(t, small, points)
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    workloads = list(dict.fromkeys(w for _, w in results))
    print(f"{'workload':38s} {'zarr LocalStore':>16s} {'icechunk (this)':>16s} {'ratio':>7s}")
    for w in workloads:
        z = statistics.median(results[("zarr LocalStore", w)])
        o = statistics.median(results[("icechunk (this)", w)])
        print(f"{w:38s} {z:15.3f}s {o:15.3f}s {o / z:6.2f}x")


if __name__ == "__main__":
    main()
