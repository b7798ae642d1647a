"""Virtual refs into objects on S3 (moto on 127.0.0.1) and behind a local HTTP server."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from _virtual_servers import CountingHTTPServer, file_etag

import icechunk as ic
from icechunk import (
    Credentials,
    ErrorKind,
    InvalidInputError,
    RepositoryConfig,
    StorageError,
    VirtualChunkContainer,
)
from icechunk.credentials import HttpAccess, s3_static_credentials
from icechunk.storage import http_store, s3_store
from icechunk.testing.moto import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3Server

VALUES = np.arange(100, dtype="<i4")
RAW = VALUES.tobytes()
FIXTURE_CHUNK = bytes.fromhex("28b52ffd206455000020000028420100fde488")


def _s3_container(server: MotoS3Server, prefix: str = "s3://testbucket/") -> VirtualChunkContainer:
    return VirtualChunkContainer(
        prefix,
        s3_store(
            region=REGION, endpoint_url=server.endpoint_url, allow_http=True, s3_compatible=True,
            force_path_style=True,
        ),
    )


def _s3_auth(prefix: str = "s3://testbucket/") -> dict[str, Any]:
    return {
        prefix: Credentials.S3(
            s3_static_credentials(access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY)
        )
    }


def _array(session: ic.Session) -> zarr.Array:
    return zarr.create_array(
        session.store, name="a", shape=(100,), chunks=(10,), dtype="<i4", compressors=None, fill_value=-1
    )


# ---- S3 -------------------------------------------------------------------------------------


def test_s3_virtual_refs_read_and_detect_overwrites(
    tmp_path: Path, moto_virtual: MotoS3Server, s3_client: Any
) -> None:
    key = f"data/{tmp_path.name}/f.bin"
    etag = s3_client.put_object(Bucket="testbucket", Key=key, Body=RAW)["ETag"]
    written_at = s3_client.head_object(Bucket="testbucket", Key=key)["LastModified"]
    config = RepositoryConfig.default()
    config.set_virtual_chunk_container(_s3_container(moto_virtual))
    repo = ic.Repository.create(
        ic.local_filesystem_storage(str(tmp_path / "repo")), config, authorize_virtual_chunk_access=_s3_auth()
    )
    session = repo.writable_session("main")
    arr = _array(session)
    url = f"s3://testbucket/{key}"
    session.store.set_virtual_ref("a/c/0", url, offset=0, length=40, checksum=etag)
    session.store.set_virtual_ref("a/c/1", url, offset=40, length=40, checksum=written_at)
    assert session.store.set_virtual_refs_arr(
        "a", (8,), [url] * 8, 80 + 40 * np.arange(8), np.full(8, 40), arr_offset=(2,)
    ) is None
    np.testing.assert_array_equal(arr[:], VALUES)
    session.commit("s3 refs")

    # a fresh handle reads everything (one client per container, concurrent chunk fetches)
    fresh = ic.Repository.open(repo.storage, authorize_virtual_chunk_access=_s3_auth())
    np.testing.assert_array_equal(zarr.open_array(fresh.readonly_session("main").store, path="a")[:], VALUES)

    # overwrite the object (a second later, so last-modified moves): checksummed chunks refuse
    time.sleep(1.1)
    s3_client.put_object(Bucket="testbucket", Key=key, Body=RAW[::-1])
    ro = zarr.open_array(fresh.readonly_session("main").store, path="a")
    for sl in (slice(0, 10), slice(10, 20)):
        with pytest.raises(StorageError) as err:
            ro[sl]
        assert err.value.kind == ErrorKind.VIRTUAL_CHUNK_MODIFIED, sl
    assert not np.array_equal(ro[20:30], VALUES[20:30])  # no checksum: the new bytes

    # missing object
    session = repo.writable_session("main")
    session.store.set_virtual_ref("a/c/0", "s3://testbucket/data/none.bin", offset=0, length=40)
    with pytest.raises(StorageError) as err:
        zarr.open_array(session.store, path="a")[:10]
    assert err.value.kind == ErrorKind.VIRTUAL_CHUNK_FETCH


def test_s3_unauthorized_and_unknown_prefix(tmp_path: Path, moto_virtual: MotoS3Server, s3_client: Any) -> None:
    s3_client.put_object(Bucket="testbucket", Key="auth/f.bin", Body=RAW)
    config = RepositoryConfig.default()
    config.set_virtual_chunk_container(_s3_container(moto_virtual))
    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")), config)
    assert repo.authorized_virtual_container_prefixes == set()
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_ref("a/c/0", "s3://testbucket/auth/f.bin", offset=0, length=40)
    session.store.set_virtual_ref("a/c/1", "s3://otherbucket/f.bin", offset=0, length=40, validate_container=False)
    with pytest.raises(InvalidInputError) as err:
        arr[:10]
    assert err.value.kind == ErrorKind.UNAUTHORIZED_VIRTUAL_CHUNK_CONTAINER
    with pytest.raises(InvalidInputError) as err:
        arr[10:20]
    assert err.value.kind == ErrorKind.NO_CONTAINER_FOR_VIRTUAL_CHUNK
    session.commit("refs")
    authorized = repo.reopen(authorize_virtual_chunk_access=_s3_auth())
    np.testing.assert_array_equal(zarr.open_array(authorized.readonly_session("main").store, path="a")[:10], VALUES[:10])


@pytest.mark.parametrize("fixture", ["test-repo-v2", "test-repo-v2-migrated", "test-repo-v1"])
def test_fixture_virtual_chunk_through_moto(
    fixture_copy: Any, fixture: str, moto_virtual: MotoS3Server, s3_client: Any
) -> None:
    """The reference fixtures' virtual chunk ``s3://testbucket/can_read_old/chunk-1``, served by moto.

    The stored last-modified checksum is 4294111232 (9999-12-31 wrapped to u32, i.e. 2106):
    it must not reject the read.
    """
    s3_client.put_object(Bucket="testbucket", Key="can_read_old/chunk-1", Body=FIXTURE_CHUNK)
    path = fixture_copy(fixture)
    override = RepositoryConfig.default()
    override.set_virtual_chunk_container(_s3_container(moto_virtual))  # endpoint -> moto
    repo = ic.Repository.open(
        ic.local_filesystem_storage(str(path)), config=override, authorize_virtual_chunk_access=_s3_auth()
    )
    for ref in ({"branch": "main"}, {"branch": "my-branch"}, {"tag": "it also works!"}):
        session = repo.readonly_session(**ref)
        assert session.chunk_type("/group1/big_chunks", [0, 0]) == ic.ChunkType.virtual
        big = zarr.open_array(session.store, path="group1/big_chunks", mode="r")[:]
        assert big.shape == (10, 10)
        assert (big == 42.0).all()
    batches = list(repo.readonly_session("main").store.array_chunk_iterator("/group1/big_chunks"))
    (coords, kinds, paths, _, lengths, _) = batches[0]
    row = coords.tolist().index([0, 0])
    assert kinds[row] == ic.ChunkType.virtual.value
    assert paths[row] == "s3://testbucket/can_read_old/chunk-1" and lengths[row] == 19
    # without authorization the same read is refused
    unauthorized = ic.Repository.open(ic.local_filesystem_storage(str(path)), config=override)
    with pytest.raises(InvalidInputError) as err:
        zarr.open_array(unauthorized.readonly_session("main").store, path="group1/big_chunks", mode="r")[:]
    assert err.value.kind == ErrorKind.UNAUTHORIZED_VIRTUAL_CHUNK_CONTAINER
    shutil.rmtree(path)


# ---- HTTP -----------------------------------------------------------------------------------


def _http_repo(server: CountingHTTPServer, authorize: bool = True) -> ic.Repository:
    config = RepositoryConfig.default()
    config.set_virtual_chunk_container(VirtualChunkContainer(server.url + "/", http_store()))
    auth = {server.url + "/": HttpAccess} if authorize else None
    return ic.Repository.create(ic.in_memory_storage(), config, authorize_virtual_chunk_access=auth)


def test_http_virtual_refs_read_and_detect_changes(http_server: CountingHTTPServer) -> None:
    target = http_server.root / "data" / "f.bin"
    target.parent.mkdir()
    target.write_bytes(RAW)
    repo = _http_repo(http_server)
    session = repo.writable_session("main")
    arr = _array(session)
    url = f"{http_server.url}/data/f.bin"
    session.store.set_virtual_ref("a/c/0", url, offset=0, length=40, checksum=file_etag(target))
    written_at = datetime.fromtimestamp(int(target.stat().st_mtime), UTC)
    session.store.set_virtual_ref("a/c/1", url, offset=40, length=40, checksum=written_at)
    session.store.set_virtual_refs_arr("a", (8,), [url] * 8, 80 + 40 * np.arange(8), np.full(8, 40), arr_offset=(2,))
    np.testing.assert_array_equal(arr[:], VALUES)
    assert http_server.requests["/data/f.bin"] == 10
    session.commit("http refs")

    time.sleep(1.1)
    target.write_bytes(RAW[::-1])
    ro = zarr.open_array(repo.readonly_session("main").store, path="a")
    for sl in (slice(0, 10), slice(10, 20)):
        with pytest.raises(StorageError) as err:
            ro[sl]
        assert err.value.kind == ErrorKind.VIRTUAL_CHUNK_MODIFIED, sl
    assert not np.array_equal(ro[20:30], VALUES[20:30])


def test_http_unauthorized_container_fetches_nothing(http_server: CountingHTTPServer) -> None:
    (http_server.root / "f.bin").write_bytes(RAW)
    repo = _http_repo(http_server, authorize=False)
    session = repo.writable_session("main")
    arr = _array(session)
    session.store.set_virtual_refs_arr(
        "a", (10,), [f"{http_server.url}/f.bin"] * 10, 40 * np.arange(10), np.full(10, 40)
    )
    with pytest.raises(InvalidInputError) as err:
        arr[:]
    assert err.value.kind == ErrorKind.UNAUTHORIZED_VIRTUAL_CHUNK_CONTAINER
    # the partial-values path swallows per-key errors into None, still without fetching
    from zarr.core.buffer import default_buffer_prototype

    values = zarr.core.sync.sync(
        session.store.get_partial_values(default_buffer_prototype(), [("a/c/0", None), ("a/c/1", None)])
    )
    assert values == [None, None]
    assert http_server.total == 0
    session.commit("refs")
    # the same refs with the container authorized do fetch
    authorized = repo.reopen(authorize_virtual_chunk_access={http_server.url + "/": HttpAccess})
    np.testing.assert_array_equal(zarr.open_array(authorized.readonly_session("main").store, path="a")[:], VALUES)
    assert http_server.total == 10


def test_http_unknown_prefix_fetches_nothing(http_server: CountingHTTPServer) -> None:
    (http_server.root / "f.bin").write_bytes(RAW)
    repo = _http_repo(http_server)
    session = repo.writable_session("main")
    arr = _array(session)
    other = "http://127.0.0.1:1/f.bin"  # no container for this host
    with pytest.raises(InvalidInputError) as err:
        session.store.set_virtual_ref("a/c/0", other, offset=0, length=40)
    assert err.value.kind == ErrorKind.NO_CONTAINER_FOR_VIRTUAL_CHUNK
    session.store.set_virtual_ref("a/c/0", other, offset=0, length=40, validate_container=False)
    with pytest.raises(InvalidInputError) as err:
        arr[:10]
    assert err.value.kind == ErrorKind.NO_CONTAINER_FOR_VIRTUAL_CHUNK
    assert http_server.total == 0
