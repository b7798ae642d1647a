"""The shared storage suite on S3, against moto's S3 server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from icechunk._errors import ErrorKind, ReadOnlyError, StorageError
from icechunk.storage import (
    Storage,
    StorageConcurrencySettings,
    StorageSettings,
    http_storage,
)
from icechunk.storage._abc import RangeRequest
from icechunk.testing.moto import MotoS3Server
from icechunk.testing.storage import StorageTests


class TestS3StorageOnMoto(StorageTests):
    @pytest.fixture
    def storage(self, moto_server: MotoS3Server) -> Storage:
        return moto_server.storage()


class TestS3StorageOnMotoWithSplitReads(StorageTests):
    """Whole-object reads split into many ranged GETs (small ideal request size)."""

    large_object_bytes = 600_000

    @pytest.fixture
    def storage(self, moto_server: MotoS3Server) -> Storage:
        settings = StorageSettings(
            concurrency=StorageConcurrencySettings(
                ideal_concurrent_request_size=64 * 1024, max_concurrent_requests_for_object=4
            )
        )
        return moto_server.storage().with_settings(settings)


def test_prefix_isolates_repositories(moto_server: MotoS3Server) -> None:
    a, b = moto_server.storage(prefix="iso/a"), moto_server.storage(prefix="iso/ab")
    asyncio.run(a.put("repo", b"a"))
    asyncio.run(b.put("repo", b"b"))
    assert asyncio.run(a.get("repo")) == b"a"
    assert [i.key for i in a.list_objects_metadata()] == ["repo"]
    assert a != b


def test_bucket_root_cannot_host_a_new_repository(moto_server: MotoS3Server) -> None:
    assert moto_server.storage(prefix="").can_write_to_root is False
    assert moto_server.storage(prefix="/").can_write_to_root is False
    assert moto_server.storage(prefix="some/repo").can_write_to_root is True


def test_missing_bucket_write_is_a_storage_error(moto_server: MotoS3Server) -> None:
    storage = moto_server.storage(bucket="no-such-bucket")
    with pytest.raises(StorageError, match="bucket"):
        asyncio.run(storage.put("k", b"x"))
    with pytest.raises(StorageError, match="bucket"):
        asyncio.run(storage.put("k", b"x", mode="create"))  # not a lost race


async def test_http_storage_reads_objects_and_refuses_writes(moto_server: MotoS3Server) -> None:
    # write_headers reach the server: the object is made public for anonymous HTTP reads
    s3 = moto_server.storage(prefix="public/repo", write_headers={"x-amz-acl": "public-read"})
    await s3.put("snapshots/X", b"0123456789")
    http = http_storage(f"{moto_server.endpoint_url}/{moto_server.bucket}/public/repo")
    assert http.read_only
    assert await http.get("snapshots/X") == b"0123456789"
    assert await http.get("snapshots/X", RangeRequest(2, 5)) == b"234"
    data, version = await http.get_with_version("snapshots/X")
    assert data == b"0123456789" and version.etag
    info = await http.head("snapshots/X")
    assert info is not None and info.size_bytes == 10
    with pytest.raises(ReadOnlyError) as error:
        await http.put("snapshots/Y", b"x")
    assert error.value.kind == ErrorKind.READ_ONLY_STORAGE
    with pytest.raises(ReadOnlyError):
        await http.delete_many(["snapshots/X"])
    assert pickle.loads(pickle.dumps(http)) == http


async def test_user_metadata_and_write_id_are_attached(moto_server: MotoS3Server) -> None:
    import obstore

    storage = moto_server.storage(prefix="meta")
    await storage.put("repo", b"x", mode="create", metadata={"ic_file_type": "repo-info"})
    store = storage._reader  # type: ignore[attr-defined]
    result = await obstore.get_async(store, "repo", options={"head": True})
    assert result.attributes["ic_file_type"] == "repo-info"
    assert len(result.attributes["icechunk_write_id"]) == 32
    plain = storage.with_settings(StorageSettings(unsafe_use_metadata=False))
    await plain.put("repo2", b"x", mode="create", metadata={"ic_file_type": "repo-info"})
    result = await obstore.get_async(store, "repo2", options={"head": True})
    assert "ic_file_type" not in result.attributes
    assert "icechunk_write_id" not in result.attributes


async def test_conditional_flags_off_turn_conditional_writes_into_overwrites(moto_server: MotoS3Server) -> None:
    storage = moto_server.storage().with_settings(
        StorageSettings(unsafe_use_conditional_create=False, unsafe_use_conditional_update=False)
    )
    await storage.put("k", b"1")
    _, stale = await storage.get_with_version("k")
    await storage.put("k", b"2")
    assert (await storage.put("k", b"3", mode="create")).ok
    assert (await storage.put("k", b"4", mode=stale)).ok
    assert await storage.get("k") == b"4"


async def test_delete_many_without_exact_count(moto_server: MotoS3Server) -> None:
    storage = moto_server.storage()
    await storage.put("a", b"1")
    assert await storage.delete_many(["a", "b"], exact_count=False) == 2
    assert await storage.head("a") is None


REFRESH_CALLS: list[int] = []


def moto_credentials():
    from datetime import UTC, datetime, timedelta

    from icechunk.credentials import S3StaticCredentials

    REFRESH_CALLS.append(1)
    return S3StaticCredentials("testing", "testing", expires_after=datetime.now(UTC) + timedelta(hours=1))


async def test_refreshable_credentials_are_called_for_requests(moto_server: MotoS3Server) -> None:
    REFRESH_CALLS.clear()
    storage = moto_server.storage(access_key_id=None, secret_access_key=None, get_credentials=moto_credentials)
    await storage.put("k", b"v")
    assert await storage.get("k") == b"v"
    assert len(REFRESH_CALLS) == 1  # cached until it expires
    clone = pickle.loads(pickle.dumps(storage))
    assert await clone.get("k") == b"v"


async def test_attempt_timeouts_are_retried_then_reported() -> None:
    import socket
    import threading
    import time

    from icechunk.storage import StorageRetriesSettings, StorageTimeoutSettings, s3_storage

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_stall() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # never answers
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_stall, daemon=True)
    thread.start()
    try:
        storage = s3_storage(
            bucket="b", prefix="p", endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
            allow_http=True, access_key_id="x", secret_access_key="y", region="us-east-1",
        ).with_settings(
            StorageSettings(
                timeouts=StorageTimeoutSettings(operation_attempt_timeout_ms=300),
                retries=StorageRetriesSettings(max_tries=2, initial_backoff_ms=1, max_backoff_ms=1),
            )
        )
        started = time.perf_counter()
        with pytest.raises(StorageError):
            await storage.get("k")
        elapsed = time.perf_counter() - started
        assert 0.5 < elapsed < 10
        assert len(accepted) >= 2  # the attempt was retried on a new connection
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
