"""xarray write/read: ``to_icechunk`` + commit and ``open_zarr`` + mean, next to plain zarr.

    python benchmarks/bench_xarray.py [--repeat N] [--shape T,Y,X] [--chunks T,Y,X] [--quick]

Three float32 variables of shape (200, 500, 500) chunked (10, 250, 250) by default (240 chunks
of 2.5 MB, 600 MB in total), with the same codecs everywhere (bytes + zstd level 1).  Each
case runs ``--repeat`` times on a fresh directory; the table shows the best and median wall
time.  Cases:

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


def timed(fn: Callable[[Path], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        tmp = Path(tempfile.mkdtemp(prefix="bench-xr-"))
        try:
            start = time.perf_counter()
            fn(tmp)
            out.append(time.perf_counter() - start)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


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

    rows: list[tuple[str, list[float]]] = []
    for label, fn in [
        ("write+commit  icechunk  numpy", ic_write("numpy")),
        ("write         zarr      numpy", zarr_write("numpy")),
        ("write+commit  icechunk  dask ", ic_write("dask")),
        ("write         zarr      dask ", zarr_write("dask")),
    ]:
        rows.append((label, timed(fn, args.repeat)))

    # reads: write each store once, then time open_zarr + mean of every variable
    tmp = Path(tempfile.mkdtemp(prefix="bench-xr-read-"))
    try:
        ic_write("numpy")(tmp)
        zarr_write("numpy")(tmp)
        repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(tmp / "repo")))

        def read_icechunk() -> dict[str, float]:
            session = repo.readonly_session(branch="main")
            ds = xr.open_zarr(session.store, consolidated=False)
            return {name: float(ds[name].mean()) for name in NAMES}

        def read_zarr() -> dict[str, float]:
            ds = xr.open_zarr(zarr.storage.LocalStore(str(tmp / "plain.zarr"), read_only=True), consolidated=False)
            return {name: float(ds[name].mean()) for name in NAMES}

        for label, fn in [("open+mean     icechunk", read_icechunk), ("open+mean     zarr     ", read_zarr)]:
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                means = fn()
                times.append(time.perf_counter() - start)
                for name in NAMES:
                    assert abs(means[name] - expected_means[name]) < 1e-3 * max(1.0, abs(expected_means[name]))
            rows.append((label, times))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n3 x float32 {shape} chunked {chunks}: {nbytes / 1e6:.0f} MB, "
          f"{3 * int(np.prod([-(-s // c) for s, c in zip(shape, chunks, strict=True)]))} chunks, "
          f"repeat {args.repeat}, zstd level 1, dask threads\n")
    print(f"{'case':<32} {'best s':>8} {'median s':>9} {'MB/s (best)':>12}")
    for label, times in rows:
        best = min(times)
        print(f"{label:<32} {best:>8.2f} {statistics.median(times):>9.2f} {nbytes / 1e6 / best:>12.0f}")


if __name__ == "__main__":
    main()
