"""The shared storage suite on the in-memory backend, plus its pickling semantics."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from icechunk.storage import Storage, in_memory_storage
from icechunk.testing.storage import StorageTests


class TestMemoryStorage(StorageTests):
    @pytest.fixture
    def storage(self) -> Storage:
        return in_memory_storage()


async def test_separate_memory_storages_share_nothing() -> None:
    a, b = in_memory_storage(), in_memory_storage()
    await a.put("k", b"a")
    assert await b.head("k") is None
    assert a != b


async def test_unpickled_in_the_same_process_shares_live_data() -> None:
    storage = in_memory_storage()
    await storage.put("before", b"1")
    clone = pickle.loads(pickle.dumps(storage))
    await storage.put("after", b"2")
    assert await clone.get("after") == b"2"


def test_unpickled_in_another_process_is_a_copy_of_the_contents() -> None:
    import asyncio

    storage = in_memory_storage()
    asyncio.run(storage.put("k", b"copied"))
    code = (
        "import asyncio, pickle, sys\n"
        "s = pickle.loads(sys.stdin.buffer.read())\n"
        "print(asyncio.run(s.get('k')).decode())\n"
        "asyncio.run(s.put('k', b'changed elsewhere'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(storage), capture_output=True, check=True
    )
    assert out.stdout.decode().strip() == "copied"
    assert asyncio.run(storage.get("k")) == b"copied"  # the copy's write did not come back


def test_low_level_constructors() -> None:
    from icechunk.storage._local import LocalFileSystemStorage
    from icechunk.storage._memory import MemoryStorage

    assert isinstance(Storage.new_in_memory(), MemoryStorage)
    assert isinstance(Storage.new_local_filesystem("/tmp/icechunk-never-created"), LocalFileSystemStorage)


def test_public_names_of_icechunk_storage() -> None:
    import icechunk.storage as module
    from icechunk._types import ChunkType

    expected = {
        "AnyObjectStoreConfig", "ChecksumAlgorithm", "ChunkType", "ObjectStoreConfig", "S3Options",
        "Storage", "StorageConcurrencySettings", "StorageRetriesSettings", "StorageSettings",
        "StorageTimeoutSettings", "azure_storage", "azure_store", "gcs_storage", "gcs_store",
        "http_storage", "http_store", "in_memory_storage", "local_filesystem_storage",
        "local_filesystem_store", "r2_storage", "redirect_storage", "s3_object_store_storage",
        "s3_storage", "s3_store", "tigris_storage",
    }
    assert set(module.__all__) == expected
    assert all(hasattr(module, name) for name in expected)
    assert module.ChunkType is ChunkType

