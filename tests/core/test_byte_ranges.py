"""Byte-range reads of chunks behave the same for inline, native and virtual chunks."""

from __future__ import annotations

import pytest
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

import icechunk as ic
from tests.test_store import _buf, array_meta


@pytest.fixture
def store(tmp_path) -> ic.IcechunkStore:
    data_file = tmp_path / "data.bin"
    data_file.write_bytes(bytes(range(256)) * 4)
    config = ic.RepositoryConfig(inline_chunk_threshold_bytes=16)
    config.set_virtual_chunk_container(
        ic.VirtualChunkContainer(f"file://{tmp_path}/", ic.local_filesystem_store(str(tmp_path)))
    )
    repo = ic.Repository.create(
        ic.local_filesystem_storage(str(tmp_path / "repo")),
        config=config,
        authorize_virtual_chunk_access={f"file://{tmp_path}/": ic.Credentials.LocalFileSystemAccess()},
    )
    store = repo.writable_session("main").store
    sync(store.set("zarr.json", _buf(array_meta(1))))
    sync(store.set("c/0", _buf(bytes(range(10)))))  # inline
    sync(store.set("c/1", _buf(bytes(range(100)))))  # native
    store.set_virtual_ref("c/2", f"file://{data_file}", offset=5, length=100)
    return store


@pytest.mark.parametrize(("key", "size"), [("c/0", 10), ("c/1", 100), ("c/2", 100)])
def test_ranges_are_uniform_across_chunk_kinds(store: ic.IcechunkStore, key: str, size: int) -> None:
    proto = default_buffer_prototype()
    full = sync(store.get(key, proto)).to_bytes()
    assert len(full) == size
    assert sync(store.get(key, proto, RangeByteRequest(2, 6))).to_bytes() == full[2:6]
    assert sync(store.get(key, proto, RangeByteRequest(3, size + 50))).to_bytes() == full[3:]
    assert sync(store.get(key, proto, OffsetByteRequest(size))).to_bytes() == b""
    assert sync(store.get(key, proto, SuffixByteRequest(4))).to_bytes() == full[-4:]
    assert sync(store.get(key, proto, SuffixByteRequest(size + 9))).to_bytes() == full
    with pytest.raises(ic.InvalidInputError) as info:
        sync(store.get(key, proto, OffsetByteRequest(size + 1)))
    assert info.value.kind == "invalid-byte-range"
