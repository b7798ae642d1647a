"""icechunk.dask: store_dask and the session-merging reduction (threaded and synchronous dask)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

import icechunk.dask as icd  # noqa: E402
from icechunk import ForkSession, Repository  # noqa: E402
from icechunk.dask import (  # noqa: E402
    computing_meta,
    merge_sessions_array_kwargs,
    session_merge_reduction,
    store_dask,
)


def _arrays(session, shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]) -> None:
    root = zarr.open_group(session.store, mode="a")
    for name, (shape, chunks) in shapes.items():
        root.create_array(name, shape=shape, chunks=chunks, dtype="i8", fill_value=-1)


@pytest.mark.parametrize("scheduler", ["threads", "synchronous", "executor"])
def test_store_dask_writes_every_block(repo: Repository, scheduler: str, chunk_coords) -> None:
    # "executor" (a thread pool passed as the scheduler) takes the tree-reduction path; the
    # named local schedulers write straight into the targets' fork
    if scheduler == "executor":
        scheduler = ThreadPoolExecutor(2)  # type: ignore[assignment]
    session = repo.writable_session("main")
    _arrays(session, {"a": ((12, 8), (3, 4)), "b": ((10,), (2,))})
    a = da.arange(96, chunks=12).reshape(12, 8).rechunk((3, 4))
    b = da.arange(10, chunks=2) * 10
    fork = session.fork()
    targets = [zarr.open_array(fork.store, path=p, mode="a") for p in ("a", "b")]
    merged = store_dask(sources=[a, b], targets=targets, split_every=3, scheduler=scheduler)
    assert isinstance(merged, ForkSession)
    assert merged is fork  # in-process tasks all wrote into the very same fork
    session.merge(merged)
    session.commit("store_dask")
    readonly = repo.readonly_session(branch="main")
    root = zarr.open_group(readonly.store, mode="r")
    np.testing.assert_array_equal(root["a"][:], np.arange(96).reshape(12, 8))
    np.testing.assert_array_equal(root["b"][:], np.arange(10) * 10)
    assert len(chunk_coords(readonly, "/a")) == 8
    assert len(chunk_coords(readonly, "/b")) == 5


def test_store_dask_regions(repo: Repository) -> None:
    session = repo.writable_session("main")
    _arrays(session, {"a": ((8,), (2,))})
    fork = session.fork()
    target = zarr.open_array(fork.store, path="a", mode="a")
    merged = store_dask(sources=[da.ones(4, chunks=2, dtype="i8")], targets=[target], regions=[(slice(2, 6),)])
    session.merge(merged)
    np.testing.assert_array_equal(zarr.open_array(session.store, path="a")[:], [-1, -1, 1, 1, 1, 1, -1, -1])


@pytest.mark.parametrize("key", ["compute", "return_stored", "load_stored", "lock"])
def test_store_dask_reserved_kwargs(repo: Repository, key: str) -> None:
    session = repo.writable_session("main")
    _arrays(session, {"a": ((4,), (2,))})
    fork = session.fork()
    target = zarr.open_array(fork.store, path="a", mode="a")
    with pytest.raises(ValueError, match=key):
        store_dask(sources=[da.ones(4, chunks=2)], targets=[target], **{key: False})


def test_store_dask_needs_recent_dask(monkeypatch: pytest.MonkeyPatch, repo: Repository) -> None:
    monkeypatch.setattr(dask, "__version__", "2025.1.0")
    with pytest.raises(ValueError, match="2025.2.0"):
        store_dask(sources=[], targets=[])


def test_store_dask_refuses_targets_not_on_a_fork(repo: Repository) -> None:
    # the tasks' results must be forks: a plain session is refused when merging
    session = repo.writable_session("main")
    _arrays(session, {"a": ((4,), (2,))})
    target = zarr.open_array(session.store, path="a", mode="a")
    with pytest.raises(ValueError, match="fork"):
        store_dask(sources=[da.ones(4, chunks=2, dtype="i8")], targets=[target])
    assert not session.status().updated_chunks  # refused before anything was written


def test_store_dask_needs_sources() -> None:
    with pytest.raises(ValueError, match="at least one"):
        store_dask(sources=[], targets=[])


def test_computing_meta() -> None:
    calls = []

    @computing_meta
    def f(x, axis=None, keepdims=None):
        calls.append(x)
        return x + 1

    meta = f(np.empty(0), computing_meta=True)
    assert meta.dtype == object
    assert meta.shape == (1,)
    assert calls == []
    assert f(1) == 2
    assert calls == [1]


def test_merge_sessions_array_kwargs_dedupes_and_flattens(repo: Repository) -> None:
    session = repo.writable_session("main")
    _arrays(session, {"a": ((4,), (2,))})
    f1, f2 = session.fork(), session.fork()
    zarr.open_array(f1.store, path="a", mode="a")[0:2] = 5
    zarr.open_array(f2.store, path="a", mode="a")[2:4] = 6
    merged = merge_sessions_array_kwargs([[f1, f1], [f2]], f1, axis=(0,), keepdims=True)
    assert merged is f1
    session.merge(merged)
    np.testing.assert_array_equal(zarr.open_array(session.store, path="a")[:], [5, 5, 6, 6])


def test_session_merge_reduction_on_stored_arrays(repo: Repository) -> None:
    session = repo.writable_session("main")
    _arrays(session, {"a": ((16,), (2,))})
    fork = session.fork()
    target = zarr.open_array(fork.store, path="a", mode="a")
    stored = da.store(
        da.arange(16, chunks=2), target, compute=False, return_stored=True, load_stored=False, lock=False
    )
    merged = session_merge_reduction(stored, split_every=2)
    session.merge(merged)
    np.testing.assert_array_equal(zarr.open_array(session.store, path="a")[:], np.arange(16))


def test_public_names() -> None:
    assert set(icd.__all__) >= {"store_dask", "session_merge_reduction", "computing_meta",
                                "merge_sessions_array_kwargs", "SimpleGraph"}
