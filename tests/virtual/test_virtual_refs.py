"""Setting and reading virtual refs into local files (and fsspec's memory filesystem)."""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype

import icechunk as ic
from icechunk import (
    ChunkType,
    ErrorKind,
    InvalidInputError,
    ReadOnlyError,
    RepositoryConfig,
    StorageError,
    VirtualChunkContainer,
    VirtualChunkSpec,
)
from icechunk.credentials import LocalFileSystemAccess
from icechunk.storage import local_filesystem_store
from icechunk.storage._virtual import local_etag

VALUES = np.arange(100, dtype="<i4")
RAW = VALUES.tobytes()  # 400 bytes = 10 chunks of 10 int32


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "f.bin").write_bytes(b"HEADER!!" + RAW)
    return d


def _repo(tmp_path: Path, *prefixes: str, authorize: tuple[str, ...] | None = None, names: dict[str, str] | None = None) -> ic.Repository:
    config = RepositoryConfig.default()
    for p in prefixes:
        config.set_virtual_chunk_container(
            VirtualChunkContainer(p, local_filesystem_store(p[len("file://"):]), name=(names or {}).get(p))
        )
    auth = {p: LocalFileSystemAccess for p in (prefixes if authorize is None else authorize)}
    return ic.Repository.create(
        ic.local_filesystem_storage(str(tmp_path / "repo")), config, authorize_virtual_chunk_access=auth
    )


def _array(session: ic.Session, name: str = "a", n: int = 100, chunk: int = 10) -> zarr.Array:
    return zarr.create_array(
        session.store, name=name, shape=(n,), chunks=(chunk,), dtype="<i4", compressors=None, fill_value=-1
    )


def _url(path: Path) -> str:
    return f"file://{path}"


def test_set_virtual_ref_reads_commits_and_reopens(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    arr = _array(session)
    for i in range(10):
        session.store.set_virtual_ref(f"a/c/{i}", _url(data_dir / "f.bin"), offset=8 + 40 * i, length=40)
    np.testing.assert_array_equal(arr[:], VALUES)
    assert session.chunk_type("/a", [3]) == ChunkType.virtual
    assert session.all_virtual_chunk_locations() == [_url(data_dir / "f.bin")] * 10  # one per ref
    session.commit("virtual")

    fresh = ic.Repository.open(
        repo.storage, authorize_virtual_chunk_access={f"file://{data_dir}/": LocalFileSystemAccess}
    )
    ro = fresh.readonly_session("main")
    np.testing.assert_array_equal(zarr.open_array(ro.store, path="a")[:], VALUES)
    assert ro.all_virtual_chunk_locations() == [_url(data_dir / "f.bin")] * 10


def test_set_virtual_ref_errors(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    _array(session)
    store = session.store
    with pytest.raises(InvalidInputError, match="metadata key"):
        store.set_virtual_ref("a/zarr.json", _url(data_dir / "f.bin"), offset=0, length=4)
    with pytest.raises(InvalidInputError) as err:
        store.set_virtual_ref("a/c/10", _url(data_dir / "f.bin"), offset=0, length=4)
    assert err.value.kind == ErrorKind.INVALID_CHUNK_INDEX
    with pytest.raises(InvalidInputError) as err:
        store.set_virtual_ref("a/c/0", "file:///elsewhere/f.bin", offset=0, length=4)
    assert err.value.kind == ErrorKind.NO_CONTAINER_FOR_VIRTUAL_CHUNK
    with pytest.raises(InvalidInputError) as err:
        store.set_virtual_ref("a/c/0", "relative/path.bin", offset=0, length=4, validate_container=False)
    assert err.value.kind == ErrorKind.INVALID_VIRTUAL_REF
    with pytest.raises(ic.NodeNotFoundError):
        store.set_virtual_ref("missing/c/0", _url(data_dir / "f.bin"), offset=0, length=4)
    # without validation the ref is stored, and reading it says there is no container
    store.set_virtual_ref("a/c/0", "file:///elsewhere/f.bin", offset=0, length=40, validate_container=False)
    with pytest.raises(InvalidInputError) as err:
        zarr.open_array(store, path="a")[:10]
    assert err.value.kind == ErrorKind.NO_CONTAINER_FOR_VIRTUAL_CHUNK
    session.commit("x")
    ro = repo.readonly_session("main").store
    with pytest.raises(ReadOnlyError):
        ro.set_virtual_ref("a/c/1", _url(data_dir / "f.bin"), offset=0, length=4)
    with pytest.raises(ReadOnlyError):
        ro.set_virtual_refs_arr("a", (1,), [_url(data_dir / "f.bin")], np.zeros(1, np.uint64), np.ones(1, np.uint64))


def test_set_virtual_refs_returns_skipped_indices(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    arr = _array(session)
    good = _url(data_dir / "f.bin")
    specs = [VirtualChunkSpec([i], good, 8 + 40 * i, 40) for i in range(10)]
    specs[3] = VirtualChunkSpec([3], "file:///nowhere/x.bin", 0, 40)
    specs[7] = VirtualChunkSpec([7], "s3://other/x.bin", 0, 40)
    assert session.store.set_virtual_refs("a", specs) == [(3,), (7,)]
    expected = VALUES.copy()
    expected[30:40] = -1
    expected[70:80] = -1
    np.testing.assert_array_equal(arr[:], expected)
    assert session.store.set_virtual_refs("/a", specs[:3]) is None
    # without validation nothing is skipped
    assert session.store.set_virtual_refs("a", specs, validate_containers=False) is None
    assert session.chunk_type("a", [3]) == ChunkType.virtual
    with pytest.raises(InvalidInputError):
        session.store.set_virtual_refs("a", [VirtualChunkSpec([0, 0], good, 0, 4)])
    with pytest.raises(InvalidInputError):
        session.store.set_virtual_refs("a", [VirtualChunkSpec([11], good, 0, 4)])


def test_set_virtual_refs_arr(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    arr = zarr.create_array(
        session.store, name="m", shape=(4, 10), chunks=(2, 5), dtype="<i4", compressors=None, fill_value=-1
    )
    url = _url(data_dir / "f.bin")
    # the lower half of the grid (chunk rows 1), with one hole and one bad location
    locations = [url, url, url, ""]
    offsets = np.array([8, 48, 88, 0], dtype=np.uint64)
    lengths = np.full(4, 40, dtype=np.uint64)
    locations[1] = "file:///nowhere/x.bin"
    failed = session.store.set_virtual_refs_arr(
        "m", (2, 2), locations, offsets, lengths, arr_offset=(0, 0), checksum=datetime.now(UTC) + timedelta(seconds=5)
    )
    assert failed == [(0, 1)]
    got = arr[:]
    np.testing.assert_array_equal(got[0:2, 0:5].ravel(), VALUES[0:10])
    np.testing.assert_array_equal(got[0:2, 5:10], -1)
    np.testing.assert_array_equal(got[2:4, 0:5].ravel(), VALUES[20:30])
    np.testing.assert_array_equal(got[2:4, 5:10], -1)  # "" = no chunk
    # arr_offset shifts the block: one row of chunks at chunk row 1 (locations as a numpy array)
    assert session.store.set_virtual_refs_arr(
        "m", (1, 2), np.array([url, url]), np.array([128, 168]), np.array([40, 40]), arr_offset=(1, 0)
    ) is None
    np.testing.assert_array_equal(arr[2:4, 0:5].ravel(), VALUES[30:40])
    np.testing.assert_array_equal(arr[2:4, 5:10].ravel(), VALUES[40:50])
    with pytest.raises(InvalidInputError):  # shape product != number of locations
        session.store.set_virtual_refs_arr("m", (2, 2), [url], np.zeros(1), np.ones(1))
    with pytest.raises(InvalidInputError):  # outside the grid
        session.store.set_virtual_refs_arr("m", (1, 1), [url], np.zeros(1), np.ones(1), arr_offset=(2, 0))
    with pytest.raises(InvalidInputError):
        session.store.set_virtual_refs_arr("m", (1, 1), [url], np.array([-1]), np.ones(1))
    session.commit("arr")
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session("main").store, path="m")[2:4, 5:10].ravel(), VALUES[40:50])


async def test_async_setters(tmp_path: Path, data_dir: Path) -> None:
    repo = await ic.Repository.open_async(
        _repo(tmp_path, f"file://{data_dir}/").storage,
        authorize_virtual_chunk_access={f"file://{data_dir}/": LocalFileSystemAccess},
    )
    session = await repo.writable_session_async("main")
    arr = await zarr.api.asynchronous.create_array(
        session.store, name="a", shape=(100,), chunks=(10,), dtype="<i4", compressors=None, fill_value=-1
    )
    url = _url(data_dir / "f.bin")
    await session.store.set_virtual_ref_async("a/c/0", url, offset=8, length=40)
    assert await session.store.set_virtual_refs_async("a", [VirtualChunkSpec([1], url, 48, 40)]) is None
    assert await session.store.set_virtual_refs_arr_async(
        "a", (2,), [url, url], np.array([88, 128]), np.array([40, 40]), arr_offset=(2,)
    ) is None
    np.testing.assert_array_equal(await arr.getitem(slice(0, 40)), VALUES[:40])


def test_vcc_locations_resolve_by_container_name(tmp_path: Path, data_dir: Path) -> None:
    prefix = f"file://{data_dir}/"
    repo = _repo(tmp_path, prefix, names={prefix: "mydata"})
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_ref("a/c/0", "vcc://mydata/f.bin", offset=8, length=40)
    with pytest.raises(InvalidInputError):
        session.store.set_virtual_ref("a/c/1", "vcc://unknown/f.bin", offset=8, length=40)
    np.testing.assert_array_equal(arr[:10], VALUES[:10])
    batches = list(session.store.array_chunk_iterator("a"))
    assert batches[0][2] == [f"{prefix}f.bin"]  # resolved
    assert session.all_virtual_chunk_locations() == ["vcc://mydata/f.bin"]  # as stored
    session.commit("vcc")

    # relocating the data only needs a new prefix for the same container name
    moved = tmp_path / "moved"
    data_dir.rename(moved)
    config = RepositoryConfig.default()
    config.set_virtual_chunk_container(
        VirtualChunkContainer(f"file://{moved}/", local_filesystem_store(str(moved)), name="mydata")
    )
    relocated = ic.Repository.open(
        repo.storage, config=config, authorize_virtual_chunk_access={f"file://{moved}/": LocalFileSystemAccess}
    )
    np.testing.assert_array_equal(zarr.open_array(relocated.readonly_session("main").store, path="a")[:10], VALUES[:10])


@pytest.mark.parametrize("name", ["what?.bin", "hash#tag.bin", "100%.bin", "with space.bin"])
def test_reserved_characters_are_percent_encoded(tmp_path: Path, data_dir: Path, name: str) -> None:
    (data_dir / name).write_bytes(RAW)
    encoded = name.replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_ref("a/c/0", f"file://{data_dir}/{encoded}", offset=0, length=40)
    np.testing.assert_array_equal(arr[:10], VALUES[:10])


def test_dot_segments_are_kept_as_written(tmp_path: Path, data_dir: Path) -> None:
    (data_dir / "sub").mkdir()
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_ref("a/c/0", f"file://{data_dir}/sub/../f.bin", offset=8, length=40)
    session.store.set_virtual_ref("a/c/1", f"file://{data_dir}//./f.bin", offset=48, length=40)
    np.testing.assert_array_equal(arr[:20], VALUES[:20])
    assert sorted(session.all_virtual_chunk_locations()) == [
        f"file://{data_dir}//./f.bin", f"file://{data_dir}/sub/../f.bin"
    ]


def test_longest_matching_container_decides_authorization(tmp_path: Path, data_dir: Path) -> None:
    inner = data_dir / "inner"
    inner.mkdir()
    (inner / "g.bin").write_bytes(RAW)
    outer_prefix, inner_prefix = f"file://{data_dir}/", f"file://{inner}/"
    # only the inner container is authorized
    repo = _repo(tmp_path, outer_prefix, inner_prefix, authorize=(inner_prefix,))
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_ref("a/c/0", _url(inner / "g.bin"), offset=0, length=40)
    session.store.set_virtual_ref("a/c/1", _url(data_dir / "f.bin"), offset=48, length=40)
    np.testing.assert_array_equal(arr[:10], VALUES[:10])
    with pytest.raises(InvalidInputError) as err:
        arr[10:20]
    assert err.value.kind == ErrorKind.UNAUTHORIZED_VIRTUAL_CHUNK_CONTAINER
    session.commit("two containers")
    # only the outer one: the inner file's longest match is the inner container, refused
    outer_only = repo.reopen(authorize_virtual_chunk_access={outer_prefix: LocalFileSystemAccess})
    ro = zarr.open_array(outer_only.readonly_session("main").store, path="a")
    np.testing.assert_array_equal(ro[10:20], VALUES[10:20])
    with pytest.raises(InvalidInputError) as err:
        ro[:10]
    assert err.value.kind == ErrorKind.UNAUTHORIZED_VIRTUAL_CHUNK_CONTAINER
    # nothing authorized at all
    nothing = repo.reopen(authorize_virtual_chunk_access={})
    with pytest.raises(InvalidInputError, match="not authorized"):
        zarr.open_array(nothing.readonly_session("main").store, path="a")[:]


def test_last_modified_checksum_detects_changed_file(tmp_path: Path, data_dir: Path) -> None:
    target = data_dir / "f.bin"
    written_at = datetime.fromtimestamp(int(os.stat(target).st_mtime), UTC)
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_ref("a/c/0", _url(target), offset=8, length=40, checksum=written_at)
    session.store.set_virtual_ref("a/c/1", _url(target), offset=48, length=40)  # no checksum
    np.testing.assert_array_equal(arr[:20], VALUES[:20])
    session.commit("checksummed")
    # rewrite the file with other content, modified one minute later
    target.write_bytes(b"HEADER!!" + RAW[::-1])
    later = written_at.timestamp() + 60
    os.utime(target, (later, later))
    ro = zarr.open_array(repo.readonly_session("main").store, path="a")
    with pytest.raises(StorageError) as err:
        ro[:10]
    assert err.value.kind == ErrorKind.VIRTUAL_CHUNK_MODIFIED
    assert not np.array_equal(ro[10:20], VALUES[10:20])  # unchecked: new bytes


def test_etag_checksum_detects_changed_file(tmp_path: Path, data_dir: Path) -> None:
    target = data_dir / "f.bin"
    etag = local_etag(os.stat(target))
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_ref("a/c/0", _url(target), offset=8, length=40, checksum=etag)
    np.testing.assert_array_equal(arr[:10], VALUES[:10])
    target.write_bytes(b"HEADER!!" + RAW)  # same bytes, new mtime/inode: a new version
    os.utime(target, ns=(os.stat(target).st_mtime_ns + 5_000_000, os.stat(target).st_mtime_ns + 5_000_000))
    with pytest.raises(StorageError) as err:
        arr[:10]
    assert err.value.kind == ErrorKind.VIRTUAL_CHUNK_MODIFIED


def test_local_etag_matches_obstore(tmp_path: Path, data_dir: Path) -> None:
    obstore = pytest.importorskip("obstore")
    from obstore.store import LocalStore

    meta = obstore.head(LocalStore(str(data_dir)), "f.bin")
    assert meta["e_tag"] == local_etag(os.stat(data_dir / "f.bin"))


def test_unreadable_sources_raise_fetch_errors(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_ref("a/c/0", _url(data_dir / "missing.bin"), offset=0, length=40)
    session.store.set_virtual_ref("a/c/1", _url(data_dir / "f.bin"), offset=400, length=40)  # past the end
    for sl in (slice(0, 10), slice(10, 20)):
        with pytest.raises(StorageError) as err:
            arr[sl]
        assert err.value.kind == ErrorKind.VIRTUAL_CHUNK_FETCH


async def test_byte_ranges_and_partial_values(tmp_path: Path, data_dir: Path) -> None:
    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest

    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    _array(session)
    url = _url(data_dir / "f.bin")
    for i in range(10):
        session.store.set_virtual_ref(f"a/c/{i}", url, offset=8 + 40 * i, length=40)
    store = session.store
    proto = default_buffer_prototype()
    chunk3 = RAW[120:160]
    assert (await store.get("a/c/3", proto, RangeByteRequest(4, 12))).to_bytes() == chunk3[4:12]
    assert (await store.get("a/c/3", proto, OffsetByteRequest(30))).to_bytes() == chunk3[30:]
    assert (await store.get("a/c/3", proto, SuffixByteRequest(6))).to_bytes() == chunk3[-6:]
    assert await store.getsize("a/c/3") == 40
    keys = [(f"a/c/{i}", None) for i in range(10)] * 3
    values = await store.get_partial_values(proto, keys)
    assert [v.to_bytes() for v in values] == [RAW[40 * i : 40 * i + 40] for i in range(10)] * 3


def test_array_chunk_iterator_mixed_kinds(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    arr = zarr.create_array(session.store, name="a", shape=(300,), chunks=(100,), dtype="<i4", compressors=None, fill_value=0)
    arr[0:100] = 7  # native (400 bytes <= 512? inline)
    session.store.set_virtual_ref("a/c/1", _url(data_dir / "f.bin"), offset=8, length=400)
    batches = list(session.store.array_chunk_iterator("a", batch_size=1))
    assert len(batches) == 2
    coords = np.concatenate([b[0] for b in batches])
    kinds = np.concatenate([b[1] for b in batches])
    assert coords.tolist() == [[0], [1]]
    assert kinds.tolist() == [ChunkType.inline.value, ChunkType.virtual.value]
    assert batches[0][2] == [""] and 0 in batches[0][5]
    assert batches[1][2] == [_url(data_dir / "f.bin")]
    assert batches[1][3].tolist() == [8] and batches[1][4].tolist() == [400]


def test_virtual_refs_survive_fork_and_merge(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    _array(session)
    session.commit("array")
    session = repo.writable_session("main")
    fork = pickle.loads(pickle.dumps(session.fork()))
    url = _url(data_dir / "f.bin")
    assert fork.store.set_virtual_refs_arr(
        "a", (10,), [url] * 10, 8 + 40 * np.arange(10), np.full(10, 40), checksum="W/\"unused\""
    ) is None
    session.merge(pickle.loads(pickle.dumps(fork)))
    session.commit("merged")
    batches = list(repo.readonly_session("main").store.array_chunk_iterator("a"))
    assert batches[0][1].tolist() == [ChunkType.virtual.value] * 10


def test_in_memory_container_reads_through_fsspec(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe("/vtest/bucket/f.bin", RAW)
    config = RepositoryConfig.default()
    config.set_virtual_chunk_container(VirtualChunkContainer("memory://vtest/", ic.ObjectStoreConfig.InMemory()))
    repo = ic.Repository.create(
        ic.in_memory_storage(), config, authorize_virtual_chunk_access={"memory://vtest/": LocalFileSystemAccess}
    )
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_ref("a/c/0", "memory://vtest/bucket/f.bin", offset=40, length=40)
    np.testing.assert_array_equal(arr[:10], VALUES[10:20])
    session.store.set_virtual_ref(
        "a/c/1", "memory://vtest/bucket/f.bin", offset=0, length=40, checksum=datetime(2000, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(StorageError) as err:
        arr[10:20]
    assert err.value.kind == ErrorKind.VIRTUAL_CHUNK_MODIFIED
    fs.rm("/vtest/bucket/f.bin")


def test_pickled_sessions_and_repositories_keep_virtual_access(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path, f"file://{data_dir}/")
    session = repo.writable_session("main")
    _array(session)
    session.store.set_virtual_refs_arr(
        "a", (10,), [_url(data_dir / "f.bin")] * 10, 8 + 40 * np.arange(10), np.full(10, 40)
    )
    session.commit("refs")
    ro = pickle.loads(pickle.dumps(repo.readonly_session("main")))  # e.g. sent to a dask worker
    np.testing.assert_array_equal(zarr.open_array(ro.store, path="a")[:], VALUES)
    again = pickle.loads(pickle.dumps(repo))
    assert again.authorized_virtual_container_prefixes == {f"file://{data_dir}/"}
    np.testing.assert_array_equal(zarr.open_array(again.readonly_session("main").store, path="a")[:], VALUES)


def test_one_reader_per_container_and_host(tmp_path: Path, data_dir: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "g.bin").write_bytes(RAW)
    repo = _repo(tmp_path, f"file://{data_dir}/", f"file://{other}/")
    session = repo.writable_session("main")
    arr = _array(session)
    for i in range(10):
        target = data_dir / "f.bin" if i % 2 else other / "g.bin"
        session.store.set_virtual_ref(f"a/c/{i}", _url(target), offset=(8 if i % 2 else 0) + 40 * i, length=40)
    np.testing.assert_array_equal(arr[:], VALUES)
    np.testing.assert_array_equal(arr[:], VALUES)
    assert len(repo._engine.virtual._readers) == 2  # reused across chunks and reads
