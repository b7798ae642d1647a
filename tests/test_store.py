"""zarr's own ``StoreTests`` against IcechunkStore.

zarr's suite treats a store as a free key/value map (``"foo"`` -> arbitrary bytes).  An
Icechunk store only holds zarr v3 metadata documents and chunk keys of existing arrays, so the
tests that write free-form keys are overridden below with the same checks on valid keys; every
override says what it keeps.  The ``set``/``get`` hooks bypass the store and write straight
into the session's change set.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, cpu, default_buffer_prototype
from zarr.core.sync import _collect_aiterator
from zarr.testing.store import StoreTests
from zarr.testing.utils import assert_bytes_equal

import icechunk as ic
from icechunk.core.paths import ChunkKey, MetadataKey, parse_key
from icechunk.format.manifest import ChunkRef, RefKind

GROUP = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}).encode()


def array_meta(ndim: int, size: int = 1000) -> bytes:
    return json.dumps(
        {
            "zarr_format": 3,
            "node_type": "array",
            "shape": [size] * ndim,
            "data_type": "uint8",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1] * ndim}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": [{"name": "bytes"}],
            "attributes": {},
        }
    ).encode()


def _buf(data: bytes) -> Buffer:
    return cpu.Buffer.from_bytes(data)


async def _put(store: ic.IcechunkStore, key: str, value: bytes) -> None:
    """Write through the store, creating the array a chunk key needs first."""
    parsed = parse_key(key)
    if isinstance(parsed, ChunkKey) and store._engine.node(parsed.path) is None:
        await store.set(_meta_key(parsed.path), _buf(array_meta(len(parsed.coords))))
    await store.set(key, _buf(value))


def _meta_key(path: str) -> str:
    return "zarr.json" if path == "/" else path[1:] + "/zarr.json"


class TestIcechunkStore(StoreTests[ic.IcechunkStore, cpu.Buffer]):
    store_cls = ic.IcechunkStore
    buffer_cls = cpu.Buffer

    @pytest.fixture
    def store_kwargs(self, tmp_path) -> dict[str, Any]:
        repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")))
        return {"session": repo.writable_session("main"), "read_only": False}

    # ---- hooks: bypass the store, write into the change set --------------------------------

    async def set(self, store: ic.IcechunkStore, key: str, value: Buffer) -> None:
        engine = store._engine
        parsed = parse_key(key)
        if isinstance(parsed, MetadataKey):
            from icechunk.format.ids import NodeId

            engine.changes.new_groups[parsed.path] = (NodeId.random(), value.to_bytes())
            return
        node = engine.node(parsed.path)
        if node is None:
            engine.set_metadata(parsed.path, array_meta(len(parsed.coords)))
            node = engine.node(parsed.path)
        assert node is not None
        engine.set_chunk_ref(node, parsed.coords, ChunkRef(RefKind.INLINE, inline=value.to_bytes()))

    async def get(self, store: ic.IcechunkStore, key: str) -> Buffer:
        engine = store._engine
        parsed = parse_key(key)
        if isinstance(parsed, MetadataKey):
            node = engine.node(parsed.path)
            assert node is not None
            return _buf(node.user_data)
        data = await engine.get_chunk(parsed.path, parsed.coords)
        assert data is not None
        return _buf(data)

    # ---- required by the suite --------------------------------------------------------------

    def test_store_repr(self, store: ic.IcechunkStore) -> None:
        text = repr(store)
        assert text.startswith("icechunk.IcechunkStore(") and "branch='main'" in text

    def test_store_supports_writes(self, store: ic.IcechunkStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: ic.IcechunkStore) -> None:
        assert store.supports_listing

    # ---- overrides on valid keys -------------------------------------------------------------

    @pytest.mark.parametrize("key", ["c/0", "foo/c/0/0", "foo/bar/c/3"])
    @pytest.mark.parametrize(
        ("data", "byte_range"),
        [
            (b"\x01\x02\x03\x04", None),
            (b"\x01\x02\x03\x04", RangeByteRequest(1, 4)),
            (b"\x01\x02\x03\x04", RangeByteRequest(1, 100)),
            (b"\x01\x02\x03\x04", OffsetByteRequest(1)),
            (b"\x01\x02\x03\x04", SuffixByteRequest(1)),
        ],
    )
    async def test_get(self, store: ic.IcechunkStore, key: str, data: bytes, byte_range: Any) -> None:
        """As zarr's test_get, on valid chunk keys (zero-length chunks are refused)."""
        await self.set(store, key, _buf(data))
        observed = await store.get(key, prototype=default_buffer_prototype(), byte_range=byte_range)
        from icechunk.core.session import slice_range
        from icechunk.store import _byte_range

        assert_bytes_equal(observed, _buf(slice_range(data, _byte_range(byte_range))))

    async def test_get_many(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_get_many, with chunk keys of one array."""
        keys = tuple(f"c/{i}" for i in range(10))
        values = tuple(f"{k}".encode() for k in keys)
        for k, v in zip(keys, values, strict=True):
            await self.set(store, k, _buf(v))
        observed = await _collect_aiterator(
            store._get_many(zip(keys, (default_buffer_prototype(),) * 10, (None,) * 10, strict=True))
        )
        assert sorted((k, b.to_bytes()) for k, b in observed) == sorted(zip(keys, values, strict=True))

    @pytest.mark.parametrize("key", ["c/0", "foo/c/0/0", "foo/bar/c/3"])
    async def test_getsize(self, store: ic.IcechunkStore, key: str) -> None:
        """As zarr's test_getsize, on valid chunk keys."""
        await self.set(store, key, _buf(b"\x01\x02\x03\x04"))
        assert await store.getsize(key) == 4

    async def test_getsize_prefix(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_getsize_prefix, after creating the 2-D array the keys belong to."""
        await store.set("zarr.json", _buf(array_meta(2)))
        keys = ["c/0/0", "c/0/1", "c/1/0", "c/1/1"]
        await store._set_many([(k, _buf(b"\x01\x02\x03\x04")) for k in keys])
        assert await store.getsize_prefix("c") == 16

    @pytest.mark.parametrize("key", ["zarr.json", "c/0", "foo/c/0/0", "foo/bar/c/3"])
    async def test_set(self, store: ic.IcechunkStore, key: str) -> None:
        """As zarr's test_set: metadata must be zarr JSON, chunks need their array."""
        value = GROUP if key.endswith("zarr.json") else b"\x01\x02\x03\x04"
        await _put(store, key, value)
        assert_bytes_equal(await self.get(store, key), _buf(value))

    async def test_set_not_open(self, store_not_open: ic.IcechunkStore) -> None:
        """As zarr's test_set_not_open, after creating the array the chunk key needs."""
        assert not store_not_open._is_open
        await _put(store_not_open, "c/0", b"\x01\x02\x03\x04")
        assert_bytes_equal(await self.get(store_not_open, "c/0"), _buf(b"\x01\x02\x03\x04"))

    async def test_set_many(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_set_many, with a group document and chunks of a 1-D root array."""
        await store.set("zarr.json", _buf(array_meta(1)))
        values = {"zarr.json": array_meta(1), "c/0": b"a", "c/1": b"bb", "c/7": b"ccc"}
        await store._set_many([(k, _buf(v)) for k, v in values.items()])
        for key, value in values.items():
            assert_bytes_equal(await self.get(store, key), _buf(value))

    async def test_set_invalid_content(self, store: ic.IcechunkStore) -> None:
        """Metadata keys hold zarr v3 documents only; bad keys are refused."""
        with pytest.raises(ic.InvalidInputError) as info:
            await store.set("zarr.json", _buf(b"\x01\x02"))
        assert info.value.kind == "bad-metadata"
        with pytest.raises(ic.InvalidInputError):
            await store.set("foo/c/0.0", _buf(b"x"))
        with pytest.raises(ic.InvalidInputError):
            await store.set(".zarray", _buf(b"{}"))
        with pytest.raises(TypeError):
            await store.set("zarr.json", b"not a buffer")  # type: ignore[arg-type]

    async def test_get_partial_values(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_get_partial_values (one key may repeat; order kept)."""
        await store.set("zarr.json", _buf(array_meta(2)))
        for key in ("c/0/0", "c/0/1", "c/0/2"):
            await self.set(store, key, _buf(key.encode()))
        key_ranges = [
            ("c/0/0", RangeByteRequest(0, 2)),
            ("c/0/1", SuffixByteRequest(2)),
            ("c/0/2", OffsetByteRequest(2)),
            ("c/0/0", None),
            ("zarr.json", RangeByteRequest(0, 5)),
            ("c/9/9", None),
        ]
        observed = await store.get_partial_values(default_buffer_prototype(), key_ranges)
        assert [None if b is None else b.to_bytes() for b in observed] == [
            b"c/", b"/1", b"0/2", b"c/0/0", array_meta(2)[:5], None,
        ]

    async def test_exists(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_exists, with a group document."""
        assert not await store.exists("foo/zarr.json")
        await store.set("foo/zarr.json", _buf(GROUP))
        assert await store.exists("foo/zarr.json")
        assert not await store.exists("foo")

    async def test_delete(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_delete, with a group document."""
        await store.set("foo/zarr.json", _buf(GROUP))
        await store.delete("foo/zarr.json")
        assert not await store.exists("foo/zarr.json")

    async def test_delete_dir(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_delete_dir, with valid documents."""
        await store.set("zarr.json", _buf(GROUP))
        await store.set("foo-bar/zarr.json", _buf(GROUP))
        await store.set("foo/zarr.json", _buf(array_meta(1)))
        await store.set("foo/c/0", _buf(b"chunk"))
        await store.delete_dir("foo")
        assert await store.exists("zarr.json")
        assert await store.exists("foo-bar/zarr.json")
        assert not await store.exists("foo/zarr.json")
        assert not await store.exists("foo/c/0")

    async def test_delete_dir_inside_chunk_tree(self, store: ic.IcechunkStore) -> None:
        await store.set("a/zarr.json", _buf(array_meta(2)))
        for key in ("a/c/0/0", "a/c/0/1", "a/c/1/0"):
            await store.set(key, _buf(b"x"))
        await store.delete_dir("a/c/0")
        assert sorted(await _collect_aiterator(store.list_prefix("a/c"))) == ["a/c/1/0"]

    async def test_is_empty(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_is_empty, with a group at foo/bar."""
        assert await store.is_empty("")
        await store.set("foo/bar/zarr.json", _buf(GROUP))
        assert not await store.is_empty("")
        assert await store.is_empty("fo")
        assert not await store.is_empty("foo/")
        assert not await store.is_empty("foo")
        assert await store.is_empty("spam/")

    async def test_clear(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_clear, with a group document."""
        await store.set("key/zarr.json", _buf(GROUP))
        await store.clear()
        assert await store.is_empty("")

    async def test_list(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_list, with an array document and its chunks."""
        assert await _collect_aiterator(store.list()) == ()
        store_dict = {"foo/zarr.json": array_meta(1), **{f"foo/c/{i}": b"x" for i in range(10)}}
        await store._set_many([(k, _buf(v)) for k, v in store_dict.items()])
        assert sorted(await _collect_aiterator(store.list())) == sorted(store_dict)

    async def test_list_prefix(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_list_prefix, with group documents."""
        prefixes = ("", "a/", "a/b/", "a/b/c/")
        keys = [p + "zarr.json" for p in prefixes]
        await store._set_many([(k, _buf(GROUP)) for k in keys])
        for prefix in prefixes:
            observed = sorted(await _collect_aiterator(store.list_prefix(prefix)))
            assert observed == sorted(k for k in keys if k.startswith(prefix))

    async def test_list_empty_path(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_list_empty_path, with the arrays the chunk keys need."""
        await store.set("foo/bar/zarr.json", _buf(array_meta(1)))
        await store.set("foo/baz/zarr.json", _buf(array_meta(1)))
        await store.set("foo/bar/c/1", _buf(b"x"))
        await store.set("foo/baz/c/0", _buf(b"x"))
        expected = ["foo/bar/c/1", "foo/bar/zarr.json", "foo/baz/c/0", "foo/baz/zarr.json"]
        assert sorted(await _collect_aiterator(store.list())) == expected
        assert sorted(await _collect_aiterator(store.list_prefix(""))) == expected
        assert sorted(await _collect_aiterator(store.list_prefix("foo/bar/"))) == expected[:2]

    async def test_list_dir(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_list_dir: groups list children, arrays list zarr.json and c."""
        assert await _collect_aiterator(store.list_dir("")) == ()
        await store.set("foo/zarr.json", _buf(GROUP))
        await store.set("foo/bar/zarr.json", _buf(GROUP))
        await store.set("foo/arr/zarr.json", _buf(array_meta(2)))
        await store.set("foo/arr/c/1/2", _buf(b"x"))
        await store.set("foo/arr/c/1/3", _buf(b"x"))
        await store.set("foo/arr/c/4/0", _buf(b"x"))
        for prefix in ("foo", "foo/"):
            assert sorted(await _collect_aiterator(store.list_dir(prefix))) == ["arr", "bar", "zarr.json"]
        assert sorted(await _collect_aiterator(store.list_dir("foo/arr"))) == ["c", "zarr.json"]
        assert sorted(await _collect_aiterator(store.list_dir("foo/arr/c"))) == ["1", "4"]
        assert sorted(await _collect_aiterator(store.list_dir("foo/arr/c/1"))) == ["2", "3"]
        assert await _collect_aiterator(store.list_dir("nope")) == ()

    async def test_set_if_not_exists(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_set_if_not_exists, with chunk keys."""
        await self.set(store, "c/0", _buf(b"0000"))
        await store.set_if_not_exists("c/0", _buf(b"1111"))
        assert (await store.get("c/0", default_buffer_prototype())).to_bytes() == b"0000"
        await store.set_if_not_exists("c/1", _buf(b"1111"))
        assert (await store.get("c/1", default_buffer_prototype())).to_bytes() == b"1111"

    async def test_serializable_store(self, store: ic.IcechunkStore) -> None:
        """Writable stores refuse to pickle (with advice); fork and read-only stores pickle."""
        with pytest.raises(ValueError, match="fork"):
            pickle.dumps(store)
        await store.set("zarr.json", _buf(array_meta(1)))
        await store.set("c/0", _buf(b"\x01\x02\x03\x04"))
        fork = store.session.fork()
        new_store = pickle.loads(pickle.dumps(fork.store))
        assert new_store.read_only == fork.store.read_only
        observed = await new_store.get("c/0", prototype=default_buffer_prototype())
        assert_bytes_equal(observed, _buf(b"\x01\x02\x03\x04"))
        await new_store.set("c/1", _buf(b"\x05"))
        assert (await new_store.get("c/1", prototype=default_buffer_prototype())).to_bytes() == b"\x05"

    async def test_with_read_only_store(self, open_kwargs: dict[str, Any]) -> None:
        """As zarr's test_with_read_only_store, with a group document."""
        store = await self.store_cls.open(**{**open_kwargs, "read_only": True})
        msg = "store was opened in read-only mode and does not support writing"
        with pytest.raises(ValueError, match=msg):
            await store.set("foo/zarr.json", _buf(GROUP))
        writer = store.with_read_only(read_only=False)
        assert not writer._is_open and not writer.read_only
        await writer.set("foo/zarr.json", _buf(GROUP))
        await writer.delete("foo/zarr.json")
        with pytest.raises(ic.ReadOnlyError, match=msg):
            await store.delete("foo/zarr.json")
        reader = store.with_read_only(read_only=True)
        with pytest.raises(ValueError, match=msg):
            await reader.set("foo/zarr.json", _buf(GROUP))

    async def test_get_bytes(self, store: ic.IcechunkStore) -> None:
        """As zarr's test_get_bytes, with a valid document."""
        await self.set(store, "zarr.json", _buf(GROUP))
        assert await store._get_bytes("zarr.json", prototype=default_buffer_prototype()) == GROUP
        with pytest.raises(FileNotFoundError):
            await store._get_bytes("nonexistent/zarr.json", prototype=default_buffer_prototype())

    async def test_read_only_session_store(self, tmp_path) -> None:
        repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "r2")))
        store = repo.readonly_session("main").store
        assert store.read_only
        with pytest.raises(ic.ReadOnlyError):
            await store.set("zarr.json", _buf(GROUP))
        writable = repo.readonly_session("main").store.with_read_only(False)
        with pytest.raises(ic.ReadOnlyError) as info:
            await writable.set("zarr.json", _buf(GROUP))
        assert info.value.kind == "read-only-session"
        assert pickle.loads(pickle.dumps(store)).read_only
