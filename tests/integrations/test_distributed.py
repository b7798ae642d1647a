"""Writes from dask.distributed worker processes: to_icechunk, store_dask, and plain to_zarr advice.

One LocalCluster (2 spawned worker processes, 1 thread each) serves the whole module.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from icechunk import Repository  # noqa: E402
from icechunk.dask import store_dask  # noqa: E402
from icechunk.xarray import to_icechunk  # noqa: E402


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _block_workers(task_stream: list[dict]) -> set[str]:
    """Workers that ran per-block tasks (store + extract, possibly fused), not merge steps."""
    merge_steps = ("partial", "aggregate", "finalize")
    return {t["worker"] for t in task_stream if not any(m in str(t["key"]) for m in merge_steps)}


def test_to_icechunk_on_worker_processes(client: distributed.Client, repo: Repository, chunk_coords) -> None:
    big = np.arange(64 * 32 * 16, dtype="f4").reshape(64, 32, 16)
    small = np.arange(64 * 4, dtype="i4").reshape(64, 4)
    ds = xr.Dataset(
        {
            "big": (("t", "y", "x"), da.from_array(big, chunks=(4, 8, 16))),  # 16 x 4 = 64 chunks
            "small": (("t", "c"), da.from_array(small, chunks=(8, 4))),  # 8 chunks
            "memory": (("c",), np.arange(4.0)),  # written directly, not by workers
        },
        coords={"t": np.arange(64)},
        attrs={"source": "distributed"},
    )
    session = repo.writable_session("main")
    with pytest.raises(ValueError, match="to_icechunk"):
        pickle.dumps(session)  # what a worker would hit if a plain session reached it
    with distributed.get_task_stream(client) as stream:
        to_icechunk(ds, session, split_every=4)
    # the blocks were written on both worker processes, through forks (a plain session
    # cannot be pickled, so any attempt to ship one would have failed the write)
    assert len(_block_workers(stream.data)) == 2
    sid = session.commit("one commit from the cluster")
    assert [s.message for s in repo.ancestry(branch="main")] == [
        "one commit from the cluster",
        "Repository initialized",
    ]

    readonly = repo.readonly_session(snapshot_id=sid)
    back = xr.open_zarr(readonly.store, consolidated=False).load()
    np.testing.assert_array_equal(back["big"].values, big)
    np.testing.assert_array_equal(back["small"].values, small)
    xr.testing.assert_identical(back, ds.load())
    assert chunk_coords(readonly, "/big") == {(t, y, 0) for t in range(16) for y in range(4)}
    assert chunk_coords(readonly, "/small") == {(t, 0) for t in range(8)}
    # the snapshot's manifests hold every chunk ref (+ coordinate and in-memory variable chunks)
    info = repo.inspect_snapshot(sid)
    assert sum(m["num_chunk_refs"] for m in info["manifests"]) == 64 + 8 + 1 + 1
    big_node = next(n for n in info["nodes"] if n["path"] == "/big")
    assert [(d["array_length"], d["num_chunks"]) for d in big_node["shape"]] == [(64, 16), (32, 4), (16, 1)]


def test_append_on_worker_processes(client: distributed.Client, repo: Repository) -> None:
    def part(start: int) -> xr.Dataset:
        values = np.arange(start * 10, (start + 8) * 10, dtype="i8").reshape(8, 10)
        return xr.Dataset({"v": (("t", "x"), da.from_array(values, chunks=(2, 5)))}, coords={"t": np.arange(start, start + 8)})

    session = repo.writable_session("main")
    to_icechunk(part(0), session)
    to_icechunk(part(8), session, append_dim="t")
    to_icechunk(part(16), session, append_dim="t")
    session.commit("three writes, one commit")
    back = xr.open_zarr(repo.readonly_session(branch="main").store, consolidated=False)
    np.testing.assert_array_equal(back["v"].values, np.arange(240).reshape(24, 10))
    # reading is distributed too: a read-only session pickles to the workers
    assert int(back["v"].sum().compute()) == sum(range(240))


def test_store_dask_on_worker_processes(client: distributed.Client, repo: Repository) -> None:
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_array("a", shape=(40,), chunks=(4,), dtype="i8")
    fork = session.fork()
    target = zarr.open_array(fork.store, path="a", mode="a")
    with distributed.get_task_stream(client) as stream:
        merged = store_dask(sources=[da.arange(40, chunks=4)], targets=[target], split_every=3)
    assert len(_block_workers(stream.data)) == 2
    # every write happened in unpickled copies of the fork, none in the coordinator's
    assert merged is not fork
    assert not fork.has_uncommitted_changes
    assert merged.has_uncommitted_changes
    session.merge(merged)
    session.commit("store_dask")
    np.testing.assert_array_equal(
        zarr.open_array(repo.readonly_session(branch="main").store, path="a", mode="r")[:], np.arange(40)
    )


def test_plain_to_zarr_with_a_writable_session_gives_the_advice(client: distributed.Client, repo: Repository) -> None:
    ds = xr.Dataset({"v": (("t",), da.arange(16, chunks=4))})
    session = repo.writable_session("main")
    with pytest.raises(Exception) as info:  # noqa: B017, PT011 - distributed wraps the pickling error
        ds.to_zarr(session.store, consolidated=False, zarr_format=3)
    chain = []
    err: BaseException | None = info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    advice = [e for e in chain if isinstance(e, ValueError) and "to_icechunk" in str(e) and "fork" in str(e)]
    assert advice, f"no pickling advice in {chain!r}"
