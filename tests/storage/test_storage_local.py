"""The shared storage suite on local disk, plus local-only behaviour."""

from __future__ import annotations

import asyncio
import errno
import os
import pickle
from pathlib import Path

import pytest

from icechunk._errors import NotFoundError, StorageError
from icechunk.storage import Storage, StorageSettings, local_filesystem_storage
from icechunk.storage._local import LOCAL_DEFAULTS, content_etag
from icechunk.testing.storage import StorageTests


class TestLocalStorage(StorageTests):
    listing_has_versions = False
    key_can_be_a_prefix = False

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Storage:
        return local_filesystem_storage(tmp_path / "repo")


class TestLocalStorageWithFsync(StorageTests):
    listing_has_versions = False
    key_can_be_a_prefix = False
    large_object_bytes = 1024 * 1024 + 1

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Storage:
        return local_filesystem_storage(str(tmp_path / "repo"), fsync=True)


def test_opening_does_not_create_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    storage = local_filesystem_storage(root)
    assert not root.exists()
    assert asyncio.run(storage.head("repo")) is None
    assert storage.list_objects_metadata() == []
    assert asyncio.run(storage.delete_many(["x"])) == 0
    assert not root.exists()
    asyncio.run(storage.put("snapshots/ABC", b"x"))
    assert (root / "snapshots" / "ABC").read_bytes() == b"x"


def test_defaults_match_the_reference_local_backend(tmp_path: Path) -> None:
    settings = local_filesystem_storage(tmp_path).default_settings()
    assert settings == LOCAL_DEFAULTS
    assert settings.concurrency is not None and settings.retries is not None
    assert settings.concurrency.max_concurrent_requests_for_object == 5
    assert settings.concurrency.ideal_concurrent_request_size == 4096
    assert (settings.retries.max_tries, settings.retries.initial_backoff_ms, settings.retries.max_backoff_ms) == (1, 0, 0)
    assert settings.unsafe_use_conditional_update is False
    assert settings.unsafe_use_metadata is False
    assert settings.unsafe_use_conditional_create is None


async def test_compare_and_swap_is_real_even_though_the_flag_says_unconditional(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    assert storage.settings.unsafe_use_conditional_update is False
    await storage.put("repo", b"v1")
    _, stale = await storage.get_with_version("repo")
    await storage.put("repo", b"v2")
    assert not (await storage.put("repo", b"v3", mode=stale)).ok


async def test_version_is_the_blake2b_content_hash(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    result = await storage.put("k", b"hello")
    assert result.version is not None and result.version.etag == content_etag(b"hello")
    assert len(result.version.etag) == 32


async def test_head_of_a_big_object_does_not_report_a_version(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    await storage.put("small", b"x")
    put = await storage.put("big", b"x" * (2 * 1024 * 1024))
    assert put.ok and put.version is None  # big overwrites skip the content hash
    created = await storage.put("big2", b"x" * (2 * 1024 * 1024), mode="create")
    assert created.version is not None  # conditional writes always report it
    small, big = await storage.head("small"), await storage.head("big")
    assert small is not None and small.version is not None
    assert big is not None and big.version is None and big.size_bytes == 2 * 1024 * 1024


async def test_no_temp_or_lock_files_are_left_behind(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    await storage.put("repo", b"1", mode="create")
    _, v = await storage.get_with_version("repo")
    await storage.put("repo", b"2", mode=v)
    await storage.put("repo", b"3", mode=v)  # lost
    await storage.put("repo", b"4", mode="create")  # lost
    await storage.put("chunks/big", b"x" * (2 * 1024 * 1024))
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["chunks/big", "repo"]


async def test_put_fresh_writes_in_place_without_a_temp_file_or_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = local_filesystem_storage(tmp_path)

    def no_rename(*args: object) -> None:
        raise AssertionError("put_fresh renamed or linked a file")

    monkeypatch.setattr(os, "replace", no_rename)
    monkeypatch.setattr(os, "link", no_rename)
    await storage.put_fresh("snapshots/ABC", b"snapshot bytes")
    await storage.put_fresh("chunks/XYZ", b"c" * (1 << 17))  # written off the event loop
    assert (tmp_path / "snapshots" / "ABC").read_bytes() == b"snapshot bytes"
    assert (tmp_path / "chunks" / "XYZ").read_bytes() == b"c" * (1 << 17)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["ABC", "XYZ"]


async def _put_v2_with_backup(storage: Storage) -> tuple[bool, bytes]:
    """Write ``repo`` = v1, then swap in v2 keeping v1 as ``overwritten/b``."""
    await storage.put("repo", b"v1")
    previous, token = await storage.get_with_version("repo")
    result = await storage.put_with_backup("repo", b"v2", token, "overwritten/b", previous)
    return result.ok, previous


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_put_with_backup_links_the_old_file_and_exchanges_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = local_filesystem_storage(tmp_path)
    await storage.put("repo", b"v1")
    old_inode = os.stat(tmp_path / "repo").st_ino

    def no_replace(*args: object) -> None:
        raise AssertionError("the repo file was renamed over (ext4 then flushes it at once)")

    monkeypatch.setattr(os, "replace", no_replace)
    previous, token = await storage.get_with_version("repo")
    assert (await storage.put_with_backup("repo", b"v2", token, "overwritten/b", previous)).ok
    backup = os.stat(tmp_path / "overwritten" / "b")
    assert backup.st_ino == old_inode  # the backup is the old file itself, not a copy
    assert backup.st_nlink == 1  # the temp name that held it after the exchange is gone
    assert (tmp_path / "repo").read_bytes() == b"v2"
    assert _files(tmp_path) == ["overwritten/b", "repo"]


async def test_put_with_backup_falls_back_to_rename_and_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without renameat2 exchange and without hard links, the same outcome by other means."""
    import icechunk.storage._local as local

    def no_link(*args: object) -> None:
        raise OSError(errno.EPERM, "hard links not allowed here")

    monkeypatch.setattr(local, "exchange", lambda first, second: False)
    monkeypatch.setattr(os, "link", no_link)
    ok, _ = await _put_v2_with_backup(local_filesystem_storage(tmp_path))
    assert ok
    assert (tmp_path / "repo").read_bytes() == b"v2"
    assert (tmp_path / "overwritten" / "b").read_bytes() == b"v1"
    assert _files(tmp_path) == ["overwritten/b", "repo"]


async def test_put_with_backup_stale_version_leaves_no_backup_or_temp_file(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    await storage.put("repo", b"v1")
    previous, stale = await storage.get_with_version("repo")
    await storage.put("repo", b"v2")
    assert not (await storage.put_with_backup("repo", b"v3", stale, "overwritten/b", previous)).ok
    assert _files(tmp_path) == ["repo"]
    assert (tmp_path / "repo").read_bytes() == b"v2"


async def test_put_with_backup_failing_swap_keeps_the_committed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import icechunk.storage._local as local

    def broken(first: str, second: str) -> bool:
        raise OSError(errno.EIO, "disk failure", first)

    monkeypatch.setattr(local, "exchange", broken)
    storage = local_filesystem_storage(tmp_path)
    with pytest.raises(StorageError, match="disk failure"):
        await _put_v2_with_backup(storage)
    assert (tmp_path / "repo").read_bytes() == b"v1"
    # the backup link made before the failure is a harmless orphan; no temp file is left
    assert _files(tmp_path) == ["overwritten/b", "repo"]


def test_exchange_swaps_two_files_or_says_it_cannot(tmp_path: Path) -> None:
    from icechunk.storage._exchange import exchange

    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"A")
    second.write_bytes(b"B")
    if not exchange(str(first), str(second)):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available on this system or filesystem")
    assert (first.read_bytes(), second.read_bytes()) == (b"B", b"A")
    with pytest.raises(FileNotFoundError):
        exchange(str(first), str(tmp_path / "missing"))


async def test_put_fresh_failure_is_a_storage_error(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    await storage.put("file", b"x")
    with pytest.raises(StorageError):
        await storage.put_fresh("file/child", b"y")  # a file cannot be a directory
    assert await storage.get("file") == b"x"


async def test_stray_temp_files_are_not_listed(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    await storage.put("chunks/a", b"1")
    (tmp_path / "chunks" / ".0123456789abcdef0123456789abcdef.tmp").write_bytes(b"partial")
    assert [i.key async for i in storage.list_prefix("")] == ["chunks/a"]


async def test_directory_is_not_an_object(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    await storage.put("dir/child", b"x")
    with pytest.raises(NotFoundError):
        await storage.get("dir")
    assert await storage.head("dir") is None
    assert await storage.delete_many(["dir"]) == 0


async def test_key_under_an_existing_file_is_a_storage_error(tmp_path: Path) -> None:
    storage = local_filesystem_storage(tmp_path)
    await storage.put("file", b"x")
    with pytest.raises(StorageError):
        await storage.put("file/child", b"y")


def test_equality_uses_the_resolved_path_and_settings(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    a = local_filesystem_storage(tmp_path / "real")
    b = local_filesystem_storage(str(tmp_path / "link"))
    c = local_filesystem_storage(tmp_path / "real" / ".." / "real")
    assert a == b == c and hash(a) == hash(b)
    assert a != local_filesystem_storage(tmp_path / "other")
    assert a != a.with_settings(StorageSettings(unsafe_use_metadata=True))
    assert a != local_filesystem_storage(tmp_path / "real", fsync=True)
    restored = pickle.loads(pickle.dumps(b))
    assert restored == a and str(tmp_path / "real") in repr(restored)


def test_bad_path_argument_is_a_typed_error(tmp_path: Path) -> None:
    from icechunk._errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="path"):
        local_filesystem_storage(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        local_filesystem_storage("")
