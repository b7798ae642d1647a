"""Building the external-object readers of each container store kind (no network I/O)."""

from __future__ import annotations

import pytest

from icechunk import Credentials, ObjectStoreConfig, S3Options, StorageError
from icechunk.credentials import (
    HttpAccess,
    azure_anonymous_credentials,
    gcs_anonymous_credentials,
    s3_anonymous_credentials,
)
from icechunk.storage import azure_store, gcs_store, http_store, s3_store
from icechunk.storage._virtual import (
    FsspecReader,
    LocalFileReader,
    ObstoreReader,
    build_virtual_reader,
)


@pytest.mark.parametrize(
    ("store", "scheme", "host", "credential"),
    [
        (s3_store(region="us-east-1", anonymous=True), "s3", "bucket", None),
        (s3_store(endpoint_url="http://127.0.0.1:1", allow_http=True, s3_compatible=True), "s3", "b",
         Credentials.S3(s3_anonymous_credentials())),
        (ObjectStoreConfig.Tigris(S3Options(region="auto")), "tigris", "b", Credentials.S3(s3_anonymous_credentials())),
        (gcs_store(), "gs", "bucket", Credentials.Gcs(gcs_anonymous_credentials())),
        (azure_store(account="acct"), "az", "container", Credentials.Azure(azure_anonymous_credentials())),
        (http_store(), "https", "example.org:8443", HttpAccess),
    ],
)
def test_obstore_readers_build_offline(store: object, scheme: str, host: str, credential: object) -> None:
    pytest.importorskip("obstore")
    assert isinstance(build_virtual_reader(store, scheme, host, credential), ObstoreReader)


def test_local_and_fallback_readers() -> None:
    assert isinstance(build_virtual_reader(ObjectStoreConfig.LocalFileSystem("/"), "file", "", None), LocalFileReader)
    pytest.importorskip("fsspec")
    assert isinstance(build_virtual_reader(ObjectStoreConfig.InMemory(), "memory", "x", None), FsspecReader)


def test_wrong_credential_kind_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="S3 credentials"):
        build_virtual_reader(s3_store(), "s3", "b", Credentials.Gcs(gcs_anonymous_credentials()))
    with pytest.raises(StorageError, match="account"):
        build_virtual_reader(ObjectStoreConfig.Azure({}), "az", "container", None)
