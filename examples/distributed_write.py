"""Distributed write: a dask-backed dataset written by worker processes, committed once.

    python examples/distributed_write.py [REPO_DIR]

Starts a ``dask.distributed.LocalCluster`` with two worker processes.  ``to_icechunk`` writes
the metadata in the coordinator's session, forks it, lets every task write its blocks into
its own copy of the fork, tree-merges the forks and merges the result back, so one commit
holds everything.  (``Dataset.to_zarr(session.store)`` cannot do this: a writable session
refuses to be pickled to workers, because their writes would be lost.)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from dask.distributed import Client, LocalCluster

import icechunk
from icechunk.xarray import to_icechunk


def build_dataset() -> xr.Dataset:
    """Three dask-backed variables, 2 x 4 x 4 = 32 chunks each, computed on the workers."""
    shape, chunks = (64, 128, 128), (32, 32, 32)
    coords = {"time": np.arange(shape[0]), "y": np.arange(shape[1]), "x": np.arange(shape[2])}
    t, y, x = (da.from_array(coords[name], chunks=c) for name, c in zip(("time", "y", "x"), chunks, strict=True))
    return xr.Dataset(
        {
            "u": (("time", "y", "x"), (t[:, None, None] * 1.0 + y[None, :, None] + x[None, None, :]).astype("f4")),
            "v": (("time", "y", "x"), da.random.default_rng(42).standard_normal(shape, chunks=chunks, dtype="f4")),
            "w": (("time", "y", "x"), da.ones(shape, chunks=chunks, dtype="f4") * 3),
        },
        coords=coords,
        attrs={"title": "distributed write example"},
    )


def main(repo_dir: Path) -> None:
    print(f"repository: {repo_dir}")
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(repo_dir)))
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        print(f"cluster: {len(client.scheduler_info()['workers'])} worker processes")
        ds = build_dataset()
        n_chunks = sum(v.data.npartitions for v in ds.data_vars.values())

        session = repo.writable_session("main")
        start = time.perf_counter()
        to_icechunk(ds, session, split_every=8)
        written = time.perf_counter() - start
        snapshot = session.commit("written by the cluster")
        print(f"wrote {n_chunks} dask chunks in {written:.2f} s; one commit: {snapshot}")

        # read back on the cluster (read-only sessions pickle fine) and check the values
        back = xr.open_zarr(repo.readonly_session(branch="main").store, consolidated=False)
        expected = ds.compute()
        for name in ("u", "v", "w"):
            assert np.array_equal(back[name].values, expected[name].values), name
        print(f"mean of u computed on the workers: {float(back['u'].mean().compute()):.3f}")

    history = [info.message for info in repo.ancestry(branch="main")]
    print("history of main:", history)
    assert history == ["written by the cluster", "Repository initialized"]


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="icechunk-dist-")) / "repo"
    main(target)
