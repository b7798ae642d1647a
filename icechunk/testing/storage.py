"""``StorageTests``: the behaviour every :class:`icechunk.storage.Storage` backend must have.

Subclass it in a test module and provide the ``storage`` fixture (a fresh, empty, writable
storage per test).  The async tests need pytest-asyncio in ``auto`` mode (the project's
configuration).  Example::

    class TestMemoryStorage(StorageTests):
        @pytest.fixture
        def storage(self):
            return in_memory_storage()

Backend-specific knobs are class attributes (see below).
"""

from __future__ import annotations

import asyncio
import pickle
import warnings
from typing import ClassVar

import pytest

from icechunk._errors import ErrorKind, InvalidInputError, NotFoundError
from icechunk.config import StorageRetriesSettings, StorageSettings
from icechunk.storage import Storage
from icechunk.storage._abc import (
    ObjectInfo,
    OffsetRange,
    PutResult,
    RangeRequest,
    SuffixRange,
    VersionToken,
)
from icechunk.testing._wrappers import LatencyStorage

__all__ = ["StorageTests"]

DATA = b"0123456789abcdefghij"  # 20 bytes

# (range, expected slice of DATA)
GOOD_RANGES = [
    (RangeRequest(0, 5), DATA[0:5]),
    (RangeRequest(5, 20), DATA[5:20]),
    (RangeRequest(15, 100), DATA[15:]),  # end past EOF: truncated
    (RangeRequest(7, 7), b""),
    (RangeRequest(20, 25), b""),  # starts exactly at the end
    (OffsetRange(0), DATA),
    (OffsetRange(12), DATA[12:]),
    (OffsetRange(20), b""),
    (SuffixRange(4), DATA[-4:]),
    (SuffixRange(20), DATA),
    (SuffixRange(1000), DATA),  # longer than the object: whole object
    (SuffixRange(0), b""),
]
BAD_RANGES = [
    RangeRequest(-1, 5),
    RangeRequest(5, 3),
    RangeRequest(21, 30),  # starts past the end
    OffsetRange(-1),
    OffsetRange(21),
    SuffixRange(-2),
]


async def _keys(storage: Storage, prefix: str) -> list[str]:
    return sorted([info.key async for info in storage.list_prefix(prefix)])


class StorageTests:
    """The shared storage suite; subclasses override the ``storage`` fixture."""

    #: ``list_prefix`` entries carry a version token (False on local disk: it would hash files).
    listing_has_versions: ClassVar[bool] = True
    #: Whether ``a/b`` and ``a/b/c`` can both exist (not on a filesystem).
    key_can_be_a_prefix: ClassVar[bool] = True
    #: Size of the "large object" round trip (exercises threaded / split reads).
    large_object_bytes: ClassVar[int] = 3 * 1024 * 1024 + 17

    @pytest.fixture
    def storage(self) -> Storage:
        raise NotImplementedError("subclasses provide a fresh, empty, writable storage")

    # ---- missing objects --------------------------------------------------------------------

    async def test_get_missing_raises_not_found_which_is_a_key_error(self, storage: Storage) -> None:
        with pytest.raises(NotFoundError) as info:
            await storage.get("missing/key")
        assert isinstance(info.value, KeyError)
        assert info.value.kind == ErrorKind.OBJECT_NOT_FOUND
        with pytest.raises(KeyError):
            await storage.get("missing/key", RangeRequest(0, 1))
        with pytest.raises(NotFoundError):
            await storage.get_with_version("missing")

    async def test_head_missing_is_none(self, storage: Storage) -> None:
        assert await storage.head("missing") is None

    # ---- writes -----------------------------------------------------------------------------

    async def test_put_get_round_trip(self, storage: Storage) -> None:
        result = await storage.put("a/b/c", DATA)
        assert isinstance(result, PutResult)
        assert result.ok
        assert not result.conflict
        assert isinstance(result.version, VersionToken)
        assert await storage.get("a/b/c") == DATA

    async def test_put_accepts_bytearray_and_memoryview(self, storage: Storage) -> None:
        await storage.put("ba", bytearray(b"bytearray"))
        await storage.put("mv", memoryview(b"xxmemoryviewxx")[2:-2])
        assert await storage.get("ba") == b"bytearray"
        assert await storage.get("mv") == b"memoryview"

    async def test_overwrite_replaces_content(self, storage: Storage) -> None:
        await storage.put("k", b"first")
        assert (await storage.put("k", b"second", "overwrite")).ok
        assert await storage.get("k") == b"second"

    async def test_put_fresh_writes_new_keys_and_replaces_existing_ones(self, storage: Storage) -> None:
        await storage.put_fresh("chunks/new", b"fresh")
        await storage.put_fresh("chunks/small", memoryview(b"xxviewxx")[2:-2])
        await storage.put_fresh("chunks/big", DATA * 40_000)  # beyond any inline write limit
        assert await storage.get("chunks/new") == b"fresh"
        assert await storage.get("chunks/small") == b"view"
        assert await storage.get("chunks/big") == DATA * 40_000
        await storage.put_fresh("chunks/new", b"again")  # a retried write of the same key
        assert await storage.get("chunks/new") == b"again"
        assert sorted(await _keys(storage, "chunks/")) == ["chunks/big", "chunks/new", "chunks/small"]

    async def test_create_on_missing_key_succeeds(self, storage: Storage) -> None:
        result = await storage.put("new", b"x", mode="create")
        assert result.ok
        assert await storage.get("new") == b"x"

    async def test_create_on_existing_key_is_rejected_and_content_unchanged(self, storage: Storage) -> None:
        await storage.put("k", b"original")
        result = await storage.put("k", b"intruder", mode="create")
        assert not result.ok
        assert result.conflict
        assert await storage.get("k") == b"original"

    async def test_compare_and_swap_with_current_token(self, storage: Storage) -> None:
        await storage.put("repo", b"v1")
        data, token = await storage.get_with_version("repo")
        assert data == b"v1"
        result = await storage.put("repo", b"v2", mode=token)
        assert result.ok
        assert await storage.get("repo") == b"v2"
        # the returned version is the new current one
        _, now = await storage.get_with_version("repo")
        assert result.version == now
        assert (await storage.put("repo", b"v3", mode=result.version)).ok
        assert await storage.get("repo") == b"v3"

    async def test_compare_and_swap_with_stale_token_is_rejected(self, storage: Storage) -> None:
        await storage.put("repo", b"v1")
        _, stale = await storage.get_with_version("repo")
        assert (await storage.put("repo", b"v2", mode=stale)).ok
        result = await storage.put("repo", b"lost", mode=stale)
        assert not result.ok
        assert await storage.get("repo") == b"v2"

    async def test_put_with_backup_swaps_and_keeps_the_previous_object(self, storage: Storage) -> None:
        await storage.put("repo", b"v1")
        previous, token = await storage.get_with_version("repo")
        result = await storage.put_with_backup("repo", b"v2", token, "overwritten/b1", previous)
        assert result.ok
        assert await storage.get("repo") == b"v2"
        assert await storage.get("overwritten/b1") == b"v1"
        _, now = await storage.get_with_version("repo")
        assert result.version == now
        big = DATA * 40_000  # beyond any inline write limit
        result = await storage.put_with_backup("repo", big, now, "overwritten/b2", b"v2")
        assert result.ok
        assert await storage.get("repo") == big
        assert await storage.get("overwritten/b2") == b"v2"
        assert await storage.get("overwritten/b1") == b"v1"  # earlier backups stay as they were

    async def test_put_with_backup_with_stale_token_is_rejected(self, storage: Storage) -> None:
        await storage.put("repo", b"v1")
        previous, stale = await storage.get_with_version("repo")
        assert (await storage.put("repo", b"v2", mode=stale)).ok
        result = await storage.put_with_backup("repo", b"lost", stale, "overwritten/b1", previous)
        assert not result.ok
        assert await storage.get("repo") == b"v2"

    async def test_compare_and_swap_on_missing_key_is_rejected(self, storage: Storage) -> None:
        await storage.put("other", b"v1")
        _, token = await storage.get_with_version("other")
        assert not (await storage.put("absent", b"x", mode=token)).ok
        with pytest.raises(NotFoundError):
            await storage.get("absent")

    async def test_compare_and_swap_after_delete_is_rejected(self, storage: Storage) -> None:
        await storage.put("repo", b"v1")
        _, token = await storage.get_with_version("repo")
        await storage.delete_many(["repo"])
        assert not (await storage.put("repo", b"v2", mode=token)).ok
        assert await storage.head("repo") is None

    async def test_version_of_get_matches_head_and_put(self, storage: Storage) -> None:
        put = await storage.put("k", b"content")
        _, version = await storage.get_with_version("k")
        info = await storage.head("k")
        assert info is not None
        assert info.version == version == put.version
        assert info.size_bytes == len(b"content")
        assert info.key == "k"

    async def test_invalid_mode_is_rejected(self, storage: Storage) -> None:
        with pytest.raises(InvalidInputError):
            await storage.put("k", b"x", mode="sideways")  # type: ignore[arg-type]

    # ---- byte ranges ------------------------------------------------------------------------

    @pytest.mark.parametrize(("byte_range", "expected"), GOOD_RANGES, ids=repr)
    async def test_byte_ranges(self, storage: Storage, byte_range: object, expected: bytes) -> None:
        await storage.put("r", DATA)
        assert await storage.get("r", byte_range) == expected  # type: ignore[arg-type]

    @pytest.mark.parametrize("byte_range", BAD_RANGES, ids=repr)
    async def test_invalid_byte_ranges(self, storage: Storage, byte_range: object) -> None:
        await storage.put("r", DATA)
        with pytest.raises(InvalidInputError) as info:
            await storage.get("r", byte_range)  # type: ignore[arg-type]
        assert info.value.kind == ErrorKind.INVALID_BYTE_RANGE
        assert isinstance(info.value, ValueError)

    # ---- edge-case objects and keys ---------------------------------------------------------

    async def test_empty_object(self, storage: Storage) -> None:
        assert (await storage.put("empty", b"")).ok
        assert await storage.get("empty") == b""
        data, version = await storage.get_with_version("empty")
        assert data == b""
        assert isinstance(version, VersionToken)
        assert await storage.get("empty", OffsetRange(0)) == b""
        assert await storage.get("empty", SuffixRange(5)) == b""
        assert await storage.get("empty", RangeRequest(0, 10)) == b""
        info = await storage.head("empty")
        assert info is not None
        assert info.size_bytes == 0
        assert [i.size_bytes async for i in storage.list_prefix("empty")] == [0]
        assert not (await storage.put("empty", b"x", mode="create")).ok
        assert (await storage.put("empty", b"now full", mode=version)).ok

    async def test_unicode_keys(self, storage: Storage) -> None:
        keys = ["ünïcödé/ключ", "日本語/チャンク", "emoji/🧊", "spaces and!/ref.json"]
        for i, key in enumerate(keys):
            await storage.put(key, f"value {i}".encode())
        for i, key in enumerate(keys):
            assert await storage.get(key) == f"value {i}".encode()
        assert await _keys(storage, "") == sorted(keys)
        assert await _keys(storage, "日本") == ["日本語/チャンク"]
        assert await storage.delete_many(keys) == len(keys)

    @pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/", "./a", "a/../b", "a/./b", "nul\x00"])
    async def test_invalid_keys_are_rejected(self, storage: Storage, key: str) -> None:
        with pytest.raises(InvalidInputError) as info:
            await storage.put(key, b"x")
        assert info.value.kind == ErrorKind.INVALID_KEY
        with pytest.raises(InvalidInputError):
            await storage.get(key)

    async def test_large_object_round_trip(self, storage: Storage) -> None:
        size = self.large_object_bytes
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        assert (await storage.put("big/object", data)).ok
        got, version = await storage.get_with_version("big/object")
        assert got == data
        assert await storage.get("big/object") == data
        assert await storage.get("big/object", RangeRequest(size - 300, size + 5)) == data[-300:]
        assert await storage.get("big/object", OffsetRange(1000)) == data[1000:]
        assert (await storage.put("big/object", b"small", mode=version)).ok

    # ---- listing ----------------------------------------------------------------------------

    async def test_listing_with_prefixes_sharing_a_stem(self, storage: Storage) -> None:
        for key in ["a/b/c", "a/b/c2/d", "a/bc", "a/bx/y", "ab", "b/a"]:
            await storage.put(key, key.encode())
        assert await _keys(storage, "a/b") == ["a/b/c", "a/b/c2/d", "a/bc", "a/bx/y"]
        assert await _keys(storage, "a/b/") == ["a/b/c", "a/b/c2/d"]
        assert await _keys(storage, "a/bc") == ["a/bc"]
        assert await _keys(storage, "a/b/c") == ["a/b/c", "a/b/c2/d"]
        assert await _keys(storage, "a/b/c/") == []
        assert await _keys(storage, "a") == ["a/b/c", "a/b/c2/d", "a/bc", "a/bx/y", "ab"]
        assert await _keys(storage, "a/") == ["a/b/c", "a/b/c2/d", "a/bc", "a/bx/y"]
        assert await _keys(storage, "nothing") == []
        assert await _keys(storage, "nothing/") == []

    async def test_a_key_can_also_be_a_prefix_of_other_keys(self, storage: Storage) -> None:
        if not self.key_can_be_a_prefix:
            pytest.skip("a file cannot also be a directory on this backend")
        for key in ["a/b", "a/b/c", "a/bc"]:
            await storage.put(key, key.encode())
        assert await _keys(storage, "a/b") == ["a/b", "a/b/c", "a/bc"]
        assert await _keys(storage, "a/b/") == ["a/b/c"]
        assert await storage.get("a/b") == b"a/b"

    async def test_listing_everything_with_empty_prefix(self, storage: Storage) -> None:
        keys = ["repo", "snapshots/1", "snapshots/2", "chunks/x", "refs/branch.main/ref.json"]
        for key in keys:
            await storage.put(key, b"12345")
        infos = [info async for info in storage.list_prefix("")]
        assert sorted(i.key for i in infos) == sorted(keys)
        assert all(isinstance(i, ObjectInfo) for i in infos)
        assert all(i.size_bytes == 5 for i in infos)
        assert all(i.created_at is not None for i in infos)
        if self.listing_has_versions:
            assert all(i.version is not None for i in infos)

    async def test_empty_storage_lists_nothing(self, storage: Storage) -> None:
        assert await _keys(storage, "") == []

    # ---- deletes ----------------------------------------------------------------------------

    async def test_delete_many_of_missing_keys_returns_zero(self, storage: Storage) -> None:
        assert await storage.delete_many(["nope", "no/such/key"]) == 0
        assert await storage.delete_many([]) == 0

    async def test_delete_many_counts_and_removes_existing_keys(self, storage: Storage) -> None:
        for key in ["x/1", "x/2", "x/3", "y"]:
            await storage.put(key, b"v")
        assert await storage.delete_many(["x/1", "x/3", "missing", "y"]) == 3
        assert await _keys(storage, "") == ["x/2"]
        with pytest.raises(NotFoundError):
            await storage.get("x/1")
        assert (await storage.put("x/1", b"again", mode="create")).ok

    # ---- concurrency ------------------------------------------------------------------------

    async def test_concurrent_puts_from_many_tasks(self, storage: Storage) -> None:
        n = 40
        await asyncio.gather(*(storage.put(f"c/{i}", f"v{i}".encode()) for i in range(n)))
        values = await asyncio.gather(*(storage.get(f"c/{i}") for i in range(n)))
        assert values == [f"v{i}".encode() for i in range(n)]
        assert len(await _keys(storage, "c/")) == n

    async def test_concurrent_creates_have_exactly_one_winner(self, storage: Storage) -> None:
        results = await asyncio.gather(*(storage.put("tag", f"{i}".encode(), mode="create") for i in range(12)))
        winners = [i for i, r in enumerate(results) if r.ok]
        assert len(winners) == 1
        assert await storage.get("tag") == f"{winners[0]}".encode()

    async def test_concurrent_compare_and_swap_has_exactly_one_winner(self, storage: Storage) -> None:
        await storage.put("repo", b"base")
        _, token = await storage.get_with_version("repo")
        results = await asyncio.gather(*(storage.put("repo", f"{i}".encode(), mode=token) for i in range(12)))
        winners = [i for i, r in enumerate(results) if r.ok]
        assert len(winners) == 1
        assert await storage.get("repo") == f"{winners[0]}".encode()

    # ---- settings, pickling, sync helpers ---------------------------------------------------

    async def test_default_settings_fill_concurrency_and_retries(self, storage: Storage) -> None:
        defaults = storage.default_settings()
        assert isinstance(defaults, StorageSettings)
        assert defaults.concurrency is not None
        assert defaults.retries is not None
        assert defaults.retries.max_tries is not None
        assert defaults.retries.max_tries >= 1
        assert storage.settings.retries == defaults.retries

    async def test_with_settings_overrides_and_sees_same_data(self, storage: Storage) -> None:
        await storage.put("k", b"v")
        custom = StorageSettings(retries=StorageRetriesSettings(max_tries=7))
        other = storage.with_settings(custom)
        assert other.settings.retries is not None
        assert other.settings.retries.max_tries == 7
        # unset fields still come from the defaults
        assert other.settings.concurrency == storage.default_settings().concurrency
        assert other != storage
        assert await other.get("k") == b"v"
        assert storage.with_settings(storage.settings) == storage
        assert storage.with_settings(None).settings == storage.default_settings()

    async def test_pickle_round_trip_is_equal_and_sees_the_data(self, storage: Storage) -> None:
        await storage.put("p/k", b"pickled")
        clone = pickle.loads(pickle.dumps(storage))
        assert clone == storage
        assert hash(clone) == hash(storage)
        assert type(clone) is type(storage)
        assert await clone.get("p/k") == b"pickled"
        custom = storage.with_settings(StorageSettings(retries=StorageRetriesSettings(max_tries=3)))
        assert pickle.loads(pickle.dumps(custom)) == custom

    async def test_repr_is_informative(self, storage: Storage) -> None:
        text = repr(storage)
        assert text.startswith("icechunk.")
        assert str(storage) == text

    def test_list_objects_metadata_from_sync_code(self, storage: Storage) -> None:
        async def fill() -> None:
            await storage.put("m/1", b"a")
            await storage.put("m/2", b"bb")

        asyncio.run(fill())
        listed = storage.list_objects_metadata(prefix="m/")
        assert sorted((i.key, i.size_bytes) for i in listed) == [("m/1", 1), ("m/2", 2)]
        assert all(i.created_at is not None for i in listed)
        with pytest.warns(DeprecationWarning, match="list_objects_metadata"):
            assert sorted(storage.list_objects(prefix="m")) == [("m/1", 1), ("m/2", 2)]

    async def test_sync_listing_works_inside_a_running_loop(self, storage: Storage) -> None:
        await storage.put("loop/1", b"a")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            assert storage.list_objects() == [("loop/1", 1)]
        assert [i.key for i in storage.list_objects_metadata()] == ["loop/1"]

    async def test_latency_wrapper_passes_through(self, storage: Storage) -> None:
        slow = LatencyStorage(storage, write_latency_ms=1, read_latency_ms=1)
        assert (await slow.put("lat", b"x", mode="create")).ok
        assert await slow.get("lat") == b"x"
        assert await storage.get("lat") == b"x"
        assert pickle.loads(pickle.dumps(slow)) == slow
