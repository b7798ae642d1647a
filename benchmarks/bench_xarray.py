"""xarray write/read: ``to_icechunk`` + commit and ``open_zarr`` + mean, next to plain zarr.

    python benchmarks/bench_xarray.py [--repeat N] [--shape T,Y,X] [--chunks T,Y,X] [--quick]

Three float32 variables of shape (200, 500, 500) chunked (10, 250, 250) by default (240 chunks
of 2.5 MB, 600 MB in total), with the same codecs everywhere (bytes + zstd level 1).  The cases
run interleaved ``--repeat`` times (writes on a fresh directory each time); the table shows
the best and median wall time and the best CPU time (all threads).  Cases:

- icechunk numpy:  ``to_icechunk(ds, session)`` + ``session.commit``, numpy-backed variables
- icechunk dask:   same, dask-backed (one dask chunk per zarr chunk; threaded scheduler)
- zarr numpy/dask: ``ds.to_zarr(zarr.storage.LocalStore(path), zarr_format=3, consolidated=False)``
- reads:           ``xr.open_zarr(store, consolidated=False)`` then the mean of every variable
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

import icechunk
from icechunk.xarray import to_icechunk

NAMES = ("a", "b", "c")


def build(shape: tuple[int, int, int], chunks: tuple[int, int, int], *, use_dask: bool) -> xr.Dataset:
    rng = np.random.default_rng(0)
    t, y, x = shape
    # smooth field + noise: compresses a little, like real data
    base = (np.sin(np.linspace(0, 6, y))[:, None] * np.cos(np.linspace(0, 6, x))[None, :]).astype("f4")
    variables = {}
    for i, name in enumerate(NAMES):
        values = np.empty(shape, dtype="f4")
        for k in range(t):
            values[k] = base * (i + 1) + rng.standard_normal((y, x), dtype="f4") * 0.01 + k
        data = da.from_array(values, chunks=chunks) if use_dask else values
        variables[name] = (("time", "y", "x"), data, {"units": "1"})
    return xr.Dataset(variables, coords={"time": np.arange(t)})


def encoding(chunks: tuple[int, int, int]) -> dict[str, dict[str, object]]:
    return {name: {"chunks": chunks, "compressors": [ZstdCodec(level=1)]} for name in NAMES}


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, cpu) seconds of one call; cpu counts every thread of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def in_fresh_dir(fn: Callable[[Path], object]) -> Callable[[], object]:
    def run() -> object:
        tmp = Path(tempfile.mkdtemp(prefix="bench-xr-"))
        try:
            return fn(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shape", default="200,500,500")
    parser.add_argument("--chunks", default="10,250,250")
    parser.add_argument("--quick", action="store_true", help="small shape, one repeat (smoke test)")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    chunks = tuple(int(v) for v in args.chunks.split(","))
    if args.quick:
        shape, chunks, args.repeat = (20, 100, 100), (5, 50, 50), 1
    if len(shape) != 3 or len(chunks) != 3:
        parser.error("--shape and --chunks take three integers")
    dask.config.set(scheduler="threads")
    enc = encoding(chunks)  # type: ignore[arg-type]
    datasets = {kind: build(shape, chunks, use_dask=kind == "dask") for kind in ("numpy", "dask")}  # type: ignore[arg-type]
    nbytes = datasets["numpy"].nbytes
    expected_means = {name: float(datasets["numpy"][name].mean()) for name in NAMES}

    def ic_write(kind: str) -> Callable[[Path], object]:
        def run(tmp: Path) -> object:
            repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp / "repo")))
            session = repo.writable_session("main")
            to_icechunk(datasets[kind], session, encoding=enc)
            return session.commit("write")

        return run

    def zarr_write(kind: str) -> Callable[[Path], object]:
        def run(tmp: Path) -> object:
            store = zarr.storage.LocalStore(str(tmp / "plain.zarr"))
            return datasets[kind].to_zarr(store, zarr_format=3, consolidated=False, encoding=enc)

        return run

    # reads: each store is written once; open_zarr + the mean of every variable is timed
    read_dir = Path(tempfile.mkdtemp(prefix="bench-xr-read-"))
    ic_write("numpy")(read_dir)
    zarr_write("numpy")(read_dir)
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(read_dir / "repo")))

    def check(ds: xr.Dataset) -> None:
        for name in NAMES:
            mean = float(ds[name].mean())
            assert abs(mean - expected_means[name]) < 1e-3 * max(1.0, abs(expected_means[name]))

    def read_icechunk() -> None:
        check(xr.open_zarr(repo.readonly_session(branch="main").store, consolidated=False))

    def read_zarr() -> None:
        store = zarr.storage.LocalStore(str(read_dir / "plain.zarr"), read_only=True)
        check(xr.open_zarr(store, consolidated=False))

    cases: list[tuple[str, Callable[[], object]]] = [
        ("write+commit  icechunk  numpy", in_fresh_dir(ic_write("numpy"))),
        ("write         zarr      numpy", in_fresh_dir(zarr_write("numpy"))),
        ("write+commit  icechunk  dask", in_fresh_dir(ic_write("dask"))),
        ("write         zarr      dask", in_fresh_dir(zarr_write("dask"))),
        ("open+mean     icechunk", read_icechunk),
        ("open+mean     zarr", read_zarr),
    ]
    results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in cases}
    try:
        for _ in range(args.repeat):  # interleaved, so load changes hit every case alike
            for label, fn in cases:
                results[label].append(timed(fn))
    finally:
        shutil.rmtree(read_dir, ignore_errors=True)

    print(f"\n3 x float32 {shape} chunked {chunks}: {nbytes / 1e6:.0f} MB, "
          f"{3 * int(np.prod([-(-s // c) for s, c in zip(shape, chunks, strict=True)]))} chunks, "
          f"repeat {args.repeat}, zstd level 1, dask threads\n")
    print(f"{'case':<32} {'best s':>7} {'median s':>9} {'cpu s (best)':>13} {'MB/s (best)':>12}")
    for label, runs in results.items():
        walls = [w for w, _ in runs]
        best = min(walls)
        cpu = min(c for _, c in runs)
        print(f"{label:<32} {best:>7.2f} {statistics.median(walls):>9.2f} {cpu:>13.2f} {nbytes / 1e6 / best:>12.0f}")

if __name__ == "__main__":
    main()
