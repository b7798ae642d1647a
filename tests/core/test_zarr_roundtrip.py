"""zarr arrays and groups through commit, reopen and time travel."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import icechunk as ic

DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
    "datetime64[s]", "datetime64[ns]", "timedelta64[ms]", "U7", "S5",
]


@pytest.fixture
def repo(tmp_path) -> ic.Repository:
    return ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")))


def _sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    n = int(np.prod(shape))
    kind = np.dtype(dtype).kind
    if kind == "b":
        data = rng.integers(0, 2, n).astype(bool)
    elif kind in "iu":
        info = np.iinfo(dtype)
        data = rng.integers(max(info.min, -1000), min(info.max, 1000), n).astype(dtype)
    elif kind == "f":
        data = rng.normal(size=n).astype(dtype)
    elif kind == "c":
        data = (rng.normal(size=n) + 1j * rng.normal(size=n)).astype(dtype)
    elif kind in "mM":
        data = rng.integers(0, 10**9, n).astype(dtype)
    elif kind == "U":
        data = np.array([f"s{i}é" for i in range(n)], dtype=dtype)
    else:
        data = np.array([f"b{i}".encode() for i in range(n)], dtype=dtype)
    return data.reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips(repo: ic.Repository, dtype: str) -> None:
    data = _sample(dtype, (7, 5))
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="w")
    arr = root.create_array("x", shape=data.shape, chunks=(3, 2), dtype=data.dtype)
    arr[:] = data
    sid = session.commit(f"write {dtype}")
    reopened = ic.Repository.open(repo.storage)
    for session in (reopened.readonly_session("main"), reopened.readonly_session(snapshot_id=sid)):
        got = zarr.open_array(session.store, path="x", mode="r")[:]
        np.testing.assert_array_equal(got, data)


def test_groups_attributes_and_listing(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="w", attributes={"title": "t"})
    g = root.create_group("a/b", attributes={"x": 1})
    g.create_array("arr", shape=(10,), chunks=(4,), dtype="i2", fill_value=5)
    root.create_group("c")
    session.commit("tree")
    ro = repo.readonly_session("main")
    root = zarr.open_group(ro.store, mode="r")
    assert root.attrs["title"] == "t"
    assert root["a/b"].attrs["x"] == 1
    assert sorted(root.group_keys()) == ["a", "c"]
    np.testing.assert_array_equal(root["a/b/arr"][:], np.full(10, 5, dtype="i2"))


def test_delete_array_and_group(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="w")
    root.create_array("keep", shape=(2,), chunks=(1,), dtype="i4")[:] = [1, 2]
    sub = root.create_group("sub")
    sub.create_array("inner", shape=(2,), chunks=(1,), dtype="i4")[:] = [3, 4]
    first = session.commit("made")
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="a")
    del root["sub"]
    assert "sub" not in root
    session.commit("deleted sub")
    root = zarr.open_group(repo.readonly_session("main").store, mode="r")
    assert sorted(root.keys()) == ["keep"]
    old = zarr.open_group(repo.readonly_session(snapshot_id=first).store, mode="r")
    np.testing.assert_array_equal(old["sub/inner"][:], [3, 4])
    diff = repo.diff(from_snapshot_id=first, to_branch="main")
    assert diff.deleted_groups == {"/sub"} and diff.deleted_arrays == {"/sub/inner"}


def test_overwrite_metadata_and_resize(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    arr = zarr.create_array(session.store, name="r", shape=(10,), chunks=(2,), dtype="f4", fill_value=0)
    arr[:] = np.arange(10)
    session.commit("ten")
    session = repo.writable_session("main")
    arr = zarr.open_array(session.store, path="r", mode="a")
    arr.resize((4,))
    session.commit("shrunk")
    session = repo.writable_session("main")
    arr = zarr.open_array(session.store, path="r", mode="a")
    arr.resize((10,))
    session.commit("grown")
    got = zarr.open_array(repo.readonly_session("main").store, path="r", mode="r")[:]
    # chunks beyond the shrunk shape vanished: the regrown part is fill value
    np.testing.assert_array_equal(got, [0, 1, 2, 3, 0, 0, 0, 0, 0, 0])
    session = repo.writable_session("main")
    arr = zarr.open_array(session.store, path="r", mode="a")
    arr.attrs["units"] = "m"
    session.commit("attrs")
    ro = zarr.open_array(repo.readonly_session("main").store, path="r", mode="r")
    assert ro.attrs["units"] == "m"
    # replacing an array with a group at the same path
    session = repo.writable_session("main")
    zarr.open_group(session.store, path="r", mode="w")
    session.commit("array became group")
    root = zarr.open_group(repo.readonly_session("main").store, mode="r")
    assert isinstance(root["r"], zarr.Group)


def test_time_travel_by_tag_and_snapshot(repo: ic.Repository) -> None:
    ids = []
    for value in range(3):
        session = repo.writable_session("main")
        arr = zarr.open_array(
            session.store, path="v", mode="a", shape=(3,), chunks=(3,), dtype="i8", fill_value=-1
        )
        arr[:] = value
        ids.append(session.commit(f"value {value}"))
        repo.create_tag(f"t{value}", ids[-1])
    for value, sid in enumerate(ids):
        for session in (repo.readonly_session(tag=f"t{value}"), repo.readonly_session(snapshot_id=sid)):
            np.testing.assert_array_equal(zarr.open_array(session.store, path="v", mode="r")[:], [value] * 3)


def test_inline_and_native_chunks(tmp_path) -> None:
    storage = ic.local_filesystem_storage(str(tmp_path / "r"))
    repo = ic.Repository.create(storage, config=ic.RepositoryConfig(inline_chunk_threshold_bytes=100))
    session = repo.writable_session("main")
    small = zarr.create_array(session.store, name="small", shape=(4,), chunks=(2,), dtype="i1", compressors=None)
    small[:] = [1, 2, 3, 4]
    big = zarr.create_array(session.store, name="big", shape=(400,), chunks=(200,), dtype="f8", compressors=None)
    big[:] = np.arange(400.0)
    assert session.chunk_type("/small", [0]) == ic.ChunkType.inline
    assert session.chunk_type("/big", [1]) == ic.ChunkType.native
    assert session.chunk_type("/big", [5]) == ic.ChunkType.uninitialized
    session.commit("mixed")
    chunk_files = list((tmp_path / "r" / "chunks").iterdir())
    assert len(chunk_files) == 2  # only the big chunks became objects
    ro = repo.readonly_session("main")
    np.testing.assert_array_equal(zarr.open_array(ro.store, path="small")[:], [1, 2, 3, 4])
    np.testing.assert_array_equal(zarr.open_array(ro.store, path="big")[:], np.arange(400.0))


async def test_chunk_coordinates_async(repo: ic.Repository) -> None:
    session = await repo.writable_session_async("main")
    arr = await zarr.api.asynchronous.create_array(
        session.store, name="a", shape=(6, 6), chunks=(2, 3), dtype="u1", fill_value=0
    )
    await arr.setitem((slice(0, 2), slice(None)), np.ones((2, 6), dtype="u1"))
    coords = sorted([c async for c in session.chunk_coordinates("/a")])
    assert coords == [(0, 0), (0, 1)]


def test_zero_dimensional_array(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    arr = zarr.create_array(session.store, name="scalar", shape=(), dtype="f8", fill_value=0)
    arr[...] = 3.5
    session.commit("scalar")
    got = zarr.open_array(repo.readonly_session("main").store, path="scalar", mode="r")
    assert got[...] == 3.5
