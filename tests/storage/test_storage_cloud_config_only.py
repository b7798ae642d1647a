"""GCS, Azure, R2, Tigris, HTTP and redirect storage: constructor and configuration tests only.

There is no GCS/Azure/R2/Tigris server here, so nothing in this module sends a request to
one; S3 behaviour is covered against moto elsewhere.  The redirect test uses local HTTP.
"""

from __future__ import annotations

import asyncio
import http.server
import pickle
import threading
from datetime import UTC, datetime, timedelta

import pytest

from icechunk._errors import ErrorKind, InvalidInputError, ReadOnlyError, StorageError
from icechunk.config import ChecksumAlgorithm, ObjectStoreConfig, S3Options
from icechunk.credentials import (
    AzureCredentials,
    GcsBearerCredential,
    GcsCredentials,
    S3Credentials,
    S3StaticCredentials,
)
from icechunk.storage import (
    Storage,
    StorageSettings,
    azure_storage,
    azure_store,
    gcs_storage,
    gcs_store,
    http_storage,
    http_store,
    local_filesystem_store,
    r2_storage,
    redirect_storage,
    s3_object_store_storage,
    s3_storage,
    s3_store,
    tigris_storage,
)
from icechunk.testing.moto import MotoS3Server

SECRETS = ["AKIASECRETKEYID", "s3cr3t/Access+Key", "SESSION-TOKEN-XYZ", "gcs-bearer-abc", "azure-key-123", "sv=2020&sig=abc"]


def refresh_s3() -> S3StaticCredentials:
    return S3StaticCredentials("AKIASECRETKEYID", "s3cr3t/Access+Key", expires_after=datetime.now(UTC) + timedelta(hours=1))


def refresh_gcs() -> GcsBearerCredential:
    return GcsBearerCredential("gcs-bearer-abc", expires_after=datetime.now(UTC) + timedelta(hours=1))


def _round_trip(storage: Storage) -> Storage:
    clone = pickle.loads(pickle.dumps(storage))
    assert clone == storage
    assert hash(clone) == hash(storage)
    return clone


def _no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# ---- GCS ------------------------------------------------------------------------------------


def test_gcs_config_only_constructors_pickle_and_hide_secrets() -> None:
    variants = [
        gcs_storage(bucket="b", prefix="p", anonymous=True),
        gcs_storage(bucket="b", prefix="p", bearer_token="gcs-bearer-abc"),
        gcs_storage(bucket="b", prefix="p", get_credentials=None, from_env=True),
        Storage.new_gcs("b", "p", GcsCredentials.Refreshable(pickle.dumps(refresh_gcs))),
    ]
    for storage in variants:
        clone = _round_trip(storage)
        _no_secret_in(repr(clone))
        assert "bucket='b'" in repr(clone)
        assert clone.can_write_to_root
        assert not clone.read_only
    assert variants[0] != variants[1]


def test_gcs_config_only_root_prefix_cannot_host_a_new_repository() -> None:
    assert gcs_storage(bucket="b", prefix=None, anonymous=True).can_write_to_root is False


def test_gcs_config_only_defaults_are_the_object_store_defaults() -> None:
    settings = gcs_storage(bucket="b", prefix="p", anonymous=True).default_settings()
    assert settings.concurrency is not None and settings.retries is not None
    assert settings.concurrency.max_concurrent_requests_for_object == 18
    assert settings.concurrency.ideal_concurrent_request_size == 12 * 1024 * 1024
    assert (settings.retries.max_tries, settings.retries.initial_backoff_ms, settings.retries.max_backoff_ms) == (10, 100, 180_000)


def test_gcs_config_only_bad_arguments_are_typed_errors() -> None:
    with pytest.raises(InvalidInputError, match="bucket"):
        gcs_storage(bucket="", prefix="p", anonymous=True)
    with pytest.raises(StorageError):
        gcs_storage(bucket="b", prefix="p", anonymous=True, config={"not_a_gcs_option": "1"})
    with pytest.raises(InvalidInputError, match="credentials"):
        Storage.new_gcs("b", "p", S3Credentials.Anonymous())  # type: ignore[arg-type]
    # a malformed service-account key is rejected up front, without echoing it
    with pytest.raises(StorageError) as error:
        gcs_storage(bucket="b", prefix="p", service_account_key='{"private_key": "azure-key-123"}')
    _no_secret_in(str(error.value))


# ---- Azure ----------------------------------------------------------------------------------


def test_azure_config_only_constructors_pickle_and_hide_secrets() -> None:
    variants = [
        azure_storage(account="acct", container="c", prefix="p", anonymous=True),
        azure_storage(account="acct", container="c", prefix="p", access_key="YXp1cmUta2V5LTEyMw=="),
        azure_storage(account="acct", container="c", prefix="p", sas_token="sv=2020&sig=abc"),
        azure_storage(account="acct", container="c", prefix="p", bearer_token="azure-key-123"),
        azure_storage(account="acct", container="c", prefix="p", config={"use_emulator": "true"}),
    ]
    for storage in variants:
        clone = _round_trip(storage)
        _no_secret_in(repr(clone))
        assert "YXp1cmUta2V5LTEyMw==" not in repr(clone)
        assert "account='acct'" in repr(clone) and "container='c'" in repr(clone)


def test_azure_config_only_bad_arguments_are_typed_errors() -> None:
    with pytest.raises(InvalidInputError, match="account"):
        azure_storage(account="", container="c", prefix="p", anonymous=True)
    with pytest.raises(InvalidInputError, match="container"):
        azure_storage(account="a", container="", prefix="p", anonymous=True)
    with pytest.raises(ValueError, match="Conflicting"):
        azure_storage(account="a", container="c", prefix="p", access_key="k", from_env=True)
    assert isinstance(
        Storage.new_azure_blob("a", "c", "p", AzureCredentials.FromEnv()), Storage
    )


# ---- S3 family: R2, Tigris, S3 options ------------------------------------------------------


def test_r2_config_only_endpoint_from_account_id() -> None:
    storage = r2_storage(bucket="b", prefix="p", account_id="abc123", access_key_id="AKIASECRETKEYID", secret_access_key="s3cr3t/Access+Key")
    text = repr(_round_trip(storage))
    assert "https://abc123.r2.cloudflarestorage.com" in text
    assert "region='auto'" in text
    _no_secret_in(text)
    explicit = r2_storage(bucket="b", prefix="p", endpoint_url="https://custom.example", anonymous=True)
    assert "https://custom.example" in repr(explicit)


def test_r2_config_only_needs_account_id_or_endpoint_and_bucket() -> None:
    with pytest.raises(InvalidInputError, match="account_id or endpoint_url"):
        r2_storage(bucket="b", prefix="p", anonymous=True)
    with pytest.raises(InvalidInputError, match="bucket"):
        r2_storage(account_id="abc", prefix="p", anonymous=True)


def test_tigris_config_only_weak_consistency_is_read_only() -> None:
    strong = tigris_storage(bucket="b", prefix="p", anonymous=True)
    weak = tigris_storage(bucket="b", prefix="p", anonymous=True, use_weak_consistency=True)
    assert not strong.read_only
    assert weak.read_only
    assert strong != weak
    with pytest.raises(ReadOnlyError) as error:
        asyncio.run(weak.put("k", b"x"))
    assert error.value.kind == ErrorKind.READ_ONLY_STORAGE
    _round_trip(weak)


def test_s3_config_only_refreshable_credentials_pickle_and_hide_secrets() -> None:
    storage = s3_storage(bucket="b", prefix="p", get_credentials=refresh_s3, scatter_initial_credentials=True)
    clone = _round_trip(storage)
    _no_secret_in(repr(clone))
    _no_secret_in(str(clone))
    assert "S3Credentials.Refreshable" in repr(clone)


def test_s3_config_only_static_credentials_never_in_repr() -> None:
    storage = s3_storage(
        bucket="b", prefix="p", access_key_id="AKIASECRETKEYID", secret_access_key="s3cr3t/Access+Key",
        session_token="SESSION-TOKEN-XYZ", region="eu-west-1",
    )
    text = repr(_round_trip(storage))
    _no_secret_in(text)
    assert "region='eu-west-1'" in text


def test_s3_config_only_bad_arguments_are_typed_errors() -> None:
    with pytest.raises(InvalidInputError, match="bucket"):
        s3_storage(bucket="", prefix="p", anonymous=True)
    with pytest.raises(ValueError, match="Conflicting arguments"):
        s3_storage(bucket="b", prefix="p", anonymous=True, access_key_id="a", secret_access_key="s")
    with pytest.raises(InvalidInputError, match="checksum_algorithm"):
        s3_storage(bucket="b", prefix="p", anonymous=True, checksum_algorithm=ChecksumAlgorithm.Crc32)
    with pytest.raises(StorageError, match="legacy_rooted_keys"):
        s3_storage(bucket="b", prefix="", anonymous=True, legacy_rooted_keys=True)
    with pytest.raises(InvalidInputError, match="headers"):
        s3_storage(bucket="b", prefix="p", anonymous=True, headers={"x": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="get_credentials"):
        s3_storage(bucket="b", prefix="p", get_credentials=lambda: refresh_s3())
    with pytest.raises(InvalidInputError, match="settings"):
        s3_storage(bucket="b", prefix="p", anonymous=True).with_settings({"retries": 3})  # type: ignore[arg-type]


def test_s3_config_only_supported_checksums_accepted() -> None:
    for algorithm in (ChecksumAlgorithm.Sha256, ChecksumAlgorithm.Crc64Nvme):
        s3_storage(bucket="b", prefix="p", anonymous=True, checksum_algorithm=algorithm)


def test_s3_object_store_storage_is_the_same_backend() -> None:
    a = s3_object_store_storage(bucket="b", prefix="p", anonymous=True)
    b = s3_storage(bucket="b", prefix="p", anonymous=True)
    assert a == b


def test_new_s3_matches_the_factory() -> None:
    options = S3Options(region="us-east-1", endpoint_url="http://127.0.0.1:1", allow_http=True, network_stream_timeout_seconds=60)
    direct = Storage.new_s3(options, "b", "p", S3Credentials.Anonymous())
    factory = s3_storage(bucket="b", prefix="p", region="us-east-1", endpoint_url="http://127.0.0.1:1", allow_http=True, anonymous=True)
    assert direct == factory
    options.region = "changed"  # the storage keeps its own copy
    assert direct == factory


def test_equality_depends_on_settings() -> None:
    a = s3_storage(bucket="b", prefix="p", anonymous=True)
    assert a != a.with_settings(StorageSettings(storage_class="GLACIER"))
    assert a == a.with_settings(a.default_settings())


# ---- HTTP and redirect ----------------------------------------------------------------------


def test_http_config_only_is_read_only_and_validates_the_url() -> None:
    storage = http_storage("https://example.com/repo?sig=sv=2020&sig=abc", headers={"Authorization": "Bearer gcs-bearer-abc"})
    assert storage.read_only
    _no_secret_in(repr(storage))
    _round_trip(storage)
    with pytest.raises(InvalidInputError, match="base_url"):
        http_storage("ftp://example.com/repo")
    with pytest.raises(ReadOnlyError):
        asyncio.run(storage.delete_many(["x"]))


def test_redirect_storage_follows_redirects_to_http_icechunk(moto_server: MotoS3Server) -> None:
    s3 = moto_server.storage(prefix="redirected/repo", write_headers={"x-amz-acl": "public-read"})
    asyncio.run(s3.put("repo", b"repo-info"))
    host = moto_server.endpoint_url.removeprefix("http://")
    final = f"http+icechunk://{host}/{moto_server.bucket}/redirected/repo"

    class Redirector(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "/hop2" if self.path == "/start" else final)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        storage = redirect_storage(f"http://127.0.0.1:{server.server_port}/start")
        assert storage.read_only
        assert asyncio.run(storage.get("repo")) == b"repo-info"
        with pytest.raises(ReadOnlyError):
            asyncio.run(storage.put("repo", b"x"))
        _round_trip(storage)
    finally:
        server.shutdown()
        server.server_close()


# ---- ObjectStoreConfig builders -------------------------------------------------------------


def test_object_store_config_builders() -> None:
    assert local_filesystem_store("/data") == ObjectStoreConfig.LocalFileSystem("/data")
    s3 = s3_store(region="us-east-1", allow_http=True)
    assert isinstance(s3, ObjectStoreConfig.S3)
    assert s3.options.network_stream_timeout_seconds == 60
    assert isinstance(s3_store(s3_compatible=True), ObjectStoreConfig.S3Compatible)
    assert gcs_store({"a": "b"}) == ObjectStoreConfig.Gcs({"a": "b"})
    assert azure_store(account="acct", config={"x": "y"}) == ObjectStoreConfig.Azure({"account": "acct", "x": "y"})
    assert http_store(headers={"h": "v"}) == ObjectStoreConfig.Http(None, {"h": "v"})
