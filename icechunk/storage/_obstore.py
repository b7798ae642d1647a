"""Object storage through obstore: S3 and S3-compatible (R2, Tigris, MinIO...), GCS, Azure, HTTP.

``obstore`` is imported lazily (it is an optional dependency).  A *location* (a frozen
dataclass of constructor arguments: bucket, prefix, options, credentials, headers) describes
where the data is; :class:`ObjectStoreStorage` turns it into obstore clients on demand, so
pickling and equality only involve the location and the settings, never a live client.

Behaviour worth knowing:

- Conditional writes are native: ``"create"`` sends ``If-None-Match: *`` and a
  :class:`VersionToken` sends ``If-Match: <etag>`` (GCS: the generation).  Conditional writes
  carry a random ``icechunk_write_id`` user-metadata value; when a retried conditional write
  is rejected, the current object's write id tells whether our own earlier attempt landed
  (its answer was lost), in which case the write is reported as successful.
- Retries: obstore's own retries are disabled; every request goes through
  :func:`icechunk.storage._retry.retrying` with ``settings.retries``.
- Whole-object reads larger than ``settings.concurrency.ideal_concurrent_request_size`` are
  split into ranged GETs (at most ``max_concurrent_requests_for_object`` in flight), pinned to
  the first part's ETag so that a concurrent overwrite cannot produce a mix.
- ``unsafe_use_conditional_create`` / ``unsafe_use_conditional_update`` set to False turn
  the matching conditional writes into plain overwrites (for stores without conditional
  writes), and ``unsafe_use_metadata=False`` stops sending user metadata.
- S3 requests are path-style (``force_path_style`` is accepted and is always in effect), and
  keys with a leading ``/`` (``legacy_rooted_keys=True``) are not supported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from icechunk._errors import (
    ErrorKind,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    StorageError,
)
from icechunk._version import __version__
from icechunk.config import ChecksumAlgorithm, S3Options, StorageSettings
from icechunk.credentials import (
    AZURE_CREDENTIAL_TYPES,
    GCS_CREDENTIAL_TYPES,
    S3_CREDENTIAL_TYPES,
    AnyAzureCredential,
    AnyGcsCredential,
    AnyS3Credential,
    AzureCredentials,
    AzureRefreshableCredential,
    AzureStaticCredentials,
    GcsBearerCredential,
    GcsCredentials,
    GcsStaticCredentials,
    S3Credentials,
    S3StaticCredentials,
    call_pickled_function,
    is_expired,
)
from icechunk.storage._abc import (
    ByteRange,
    ObjectInfo,
    OffsetRange,
    PutMode,
    PutResult,
    RangeRequest,
    Storage,
    SuffixRange,
    VersionToken,
)
from icechunk.storage._common import (
    SettingsMixin,
    bad_mode,
    check_key,
    check_prefix,
    describe_settings,
    normalize_prefix,
)
from icechunk.storage._ranges import check_range, resolve_range
from icechunk.storage._retry import RetryPolicy, TransientStorageError, retrying

__all__ = ["AzureLocation", "GcsLocation", "HttpLocation", "ObjectStoreStorage", "S3Location"]

T = TypeVar("T")

WRITE_ID_KEY = "icechunk_write_id"
DEFAULT_MULTIPART_THRESHOLD = 100 * 1024 * 1024
DELETE_BATCH = 1000
HEAD_CONCURRENCY = 32
USER_AGENT = f"icechunk-python/{__version__}"
TIGRIS_ENDPOINT = "https://fly.storage.tigris.dev"

Headers = tuple[tuple[str, str], ...]


def _obstore() -> Any:
    try:
        import obstore
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise StorageError(
            "object storage needs the optional dependency obstore: pip install 'icechunk[obstore]'",
            ErrorKind.STORAGE_CONFIG,
        ) from error
    return obstore


def _headers(value: object, name: str) -> Headers:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInputError(f"{name} must be a dict of str to str", ErrorKind.STORAGE_CONFIG)
    return tuple(sorted(value.items()))


def _merge_headers(common: Mapping[str, str] | None, specific: Mapping[str, str] | None, name: str) -> Headers:
    return _headers({**(common or {}), **(specific or {})}, name)


def _require_str(value: Any, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise InvalidInputError(
            f"{name} must be a non-empty str, got {value!r}", ErrorKind.STORAGE_CONFIG
        )
    return value


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _check_credentials(credentials: object, accepted: tuple[type, ...], family: str) -> None:
    if credentials is not None and not isinstance(credentials, accepted):
        raise InvalidInputError(
            f"credentials must be {family} credentials, got {type(credentials).__name__}",
            ErrorKind.INVALID_CREDENTIALS,
        )


def _credential_name(credentials: object) -> str:
    # only the variant's name: never the values (repr must not show secrets)
    return type(credentials).__qualname__ if credentials is not None else "None"


# ---- refreshable credential providers -------------------------------------------------------


class _RefreshingProvider:
    """Calls the user's pickled function when the cached credential is missing or expired."""

    def __init__(self, pickled_function: bytes, current: Any) -> None:
        self._pickled_function = pickled_function
        self._current = current
        self._lock = threading.Lock()

    def _fresh(self) -> Any:
        with self._lock:
            current = self._current
            if current is None or is_expired(current.expires_after, margin_seconds=5):
                current = call_pickled_function(self._pickled_function)
                self._current = current
            return current


class _S3Provider(_RefreshingProvider):
    def __call__(self) -> dict[str, Any]:
        creds = self._fresh()
        if not isinstance(creds, S3StaticCredentials):
            raise StorageError(
                f"get_credentials must return S3StaticCredentials, got {type(creds).__name__}",
                ErrorKind.STORAGE_CONFIG,
            )
        return {
            "access_key_id": creds.access_key_id,
            "secret_access_key": creds.secret_access_key,
            "token": creds.session_token,
            "expires_at": _aware(creds.expires_after),
        }


class _GcsProvider(_RefreshingProvider):
    def __call__(self) -> dict[str, Any]:
        creds = self._fresh()
        if not isinstance(creds, GcsBearerCredential):
            raise StorageError(
                f"get_credentials must return GcsBearerCredential, got {type(creds).__name__}",
                ErrorKind.STORAGE_CONFIG,
            )
        return {"token": creds.bearer, "expires_at": _aware(creds.expires_after)}


class _AzureProvider(_RefreshingProvider):
    def __call__(self) -> dict[str, Any]:
        creds = self._fresh()
        expires = _aware(getattr(creds, "expires_after", None))
        if isinstance(creds, AzureRefreshableCredential.AccessKey):
            return {"access_key": creds.key, "expires_at": expires}
        if isinstance(creds, AzureRefreshableCredential.SasToken):
            return {"sas_token": creds.token, "expires_at": expires}
        if isinstance(creds, AzureRefreshableCredential.BearerToken):
            return {"token": creds.bearer, "expires_at": expires}
        raise StorageError(
            f"get_credentials must return an AzureRefreshableCredential, got {type(creds).__name__}",
            ErrorKind.STORAGE_CONFIG,
        )


# ---- locations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Location:
    """Where the objects live and how to reach them (constructor arguments only)."""

    prefix: str

    kind = "object-store"
    ranged_reads = True
    supports_metadata = True
    supports_storage_class = False

    @property
    def read_only(self) -> bool:
        return False

    def make_store(self, client_options: dict[str, Any], retry_config: dict[str, Any]) -> Any:
        raise NotImplementedError

    def header_options(self, write: bool) -> Headers:
        return ()

    def client_defaults(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class S3Location(_Location):
    """An S3 bucket (or an S3-compatible service: R2, Tigris, MinIO, moto...)."""

    flavor: str = "s3"
    bucket: str = ""
    options: S3Options = field(default_factory=S3Options)
    credentials: AnyS3Credential | None = None
    read_headers: Headers = ()
    write_headers: Headers = ()
    use_weak_consistency: bool = False

    supports_storage_class = True

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.flavor

    @property
    def read_only(self) -> bool:
        return self.use_weak_consistency

    @classmethod
    def build(
        cls,
        flavor: str,
        config: S3Options | None,
        bucket: str,
        prefix: str | None,
        credentials: AnyS3Credential | None,
        legacy_rooted_keys: bool | None,
        *,
        read_headers: Mapping[str, str] | None = None,
        write_headers: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        use_weak_consistency: bool = False,
    ) -> S3Location:
        """Validate the arguments of an S3-family factory and capture them."""
        given: object = S3Options() if config is None else config
        if not isinstance(given, S3Options):
            raise InvalidInputError(
                f"config must be an S3Options, got {type(given).__name__}", ErrorKind.STORAGE_CONFIG
            )
        config = given
        _require_str(bucket, "bucket")
        if not isinstance(prefix, (str, type(None))):
            raise InvalidInputError(f"prefix must be a str or None, got {prefix!r}", ErrorKind.STORAGE_CONFIG)
        if legacy_rooted_keys:
            raise StorageError(
                "legacy_rooted_keys=True (keys with a leading '/') is not supported by this "
                "implementation",
                ErrorKind.STORAGE_CONFIG,
            )
        _check_credentials(credentials, S3_CREDENTIAL_TYPES, "S3")
        if config.checksum_algorithm is not None and config.checksum_algorithm not in _CHECKSUMS:
            raise InvalidInputError(
                f"checksum_algorithm {config.checksum_algorithm.name} is not supported here; "
                f"use one of {', '.join(c.name for c in _CHECKSUMS)}",
                ErrorKind.STORAGE_CONFIG,
            )
        if flavor == "tigris" and not use_weak_consistency:
            # Tigris serves strongly consistent reads only when asked
            headers = {"X-Tigris-Consistent": "true", **(headers or {})}
        location = cls(
            prefix=normalize_prefix(prefix),
            flavor=flavor,
            bucket=bucket,
            options=dataclasses.replace(config),
            credentials=credentials,
            read_headers=_merge_headers(headers, read_headers, "read_headers"),
            write_headers=_merge_headers(headers, write_headers, "write_headers"),
            use_weak_consistency=bool(use_weak_consistency),
        )
        location.make_store({"allow_http": True}, {"max_retries": 0})  # validates
        return location

    @classmethod
    def build_r2(
        cls,
        config: S3Options | None,
        bucket: str | None,
        prefix: str | None,
        account_id: str | None,
        credentials: AnyS3Credential | None,
        legacy_rooted_keys: bool | None,
        *,
        read_headers: Mapping[str, str] | None = None,
        write_headers: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> S3Location:
        """Cloudflare R2: endpoint from ``account_id`` unless ``endpoint_url`` is set."""
        config = dataclasses.replace(config) if config is not None else S3Options()
        if config.endpoint_url is None:
            if not account_id:
                raise InvalidInputError(
                    "r2_storage needs account_id or endpoint_url", ErrorKind.STORAGE_CONFIG
                )
            config.endpoint_url = f"https://{_require_str(account_id, 'account_id')}.r2.cloudflarestorage.com"
        if config.region is None:
            config.region = "auto"
        if bucket is None:
            raise InvalidInputError("r2_storage needs a bucket", ErrorKind.STORAGE_CONFIG)
        return cls.build(
            "r2", config, bucket, prefix, credentials, legacy_rooted_keys,
            read_headers=read_headers, write_headers=write_headers, headers=headers,
        )

    def __hash__(self) -> int:
        return hash((self.flavor, self.bucket, self.prefix))

    def header_options(self, write: bool) -> Headers:
        return self.write_headers if write else self.read_headers

    def client_defaults(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allow_http": bool(self.options.allow_http)}
        stream_timeout = self.options.network_stream_timeout_seconds
        if stream_timeout:  # None: client default; 0: disabled
            out["read_timeout"] = timedelta(seconds=stream_timeout)
        return out

    def make_store(self, client_options: dict[str, Any], retry_config: dict[str, Any]) -> Any:
        _obstore()  # a clear StorageError when the optional dependency is missing
        from obstore.store import S3Store

        opts = self.options
        config: dict[str, Any] = {}
        if opts.region is not None:
            config["region"] = opts.region
        elif self.flavor in ("tigris", "r2"):
            config["region"] = "auto"
        endpoint = opts.endpoint_url or (TIGRIS_ENDPOINT if self.flavor == "tigris" else None)
        if endpoint is not None:
            config["endpoint"] = endpoint
            config["virtual_hosted_style_request"] = False
        if opts.requester_pays:
            config["request_payer"] = True
        if opts.checksum_algorithm is not None:
            config["checksum_algorithm"] = _CHECKSUMS[opts.checksum_algorithm]
        provider = None
        creds = self.credentials
        if opts.anonymous or isinstance(creds, S3Credentials.Anonymous):
            config["skip_signature"] = True
        elif isinstance(creds, S3Credentials.Static):
            config["access_key_id"] = creds.credentials.access_key_id
            config["secret_access_key"] = creds.credentials.secret_access_key
            if creds.credentials.session_token is not None:
                config["token"] = creds.credentials.session_token
        elif isinstance(creds, S3Credentials.Refreshable):
            provider = _S3Provider(creds.pickled_function, creds.current)
        return _bucket_store(S3Store, self.bucket, self.prefix, config, client_options, retry_config, provider)

    def describe(self) -> str:
        o = self.options
        parts = [f"bucket={self.bucket!r}", f"prefix={self.prefix!r}"]
        if o.region is not None:
            parts.append(f"region={o.region!r}")
        if o.endpoint_url is not None:
            parts.append(f"endpoint_url={o.endpoint_url!r}")
        if o.allow_http:
            parts.append("allow_http=True")
        if o.anonymous:
            parts.append("anonymous=True")
        if self.use_weak_consistency:
            parts.append("use_weak_consistency=True")
        parts.append(f"credentials={_credential_name(self.credentials)}")
        return ", ".join(parts)


_CHECKSUMS = {ChecksumAlgorithm.Sha256: "sha256", ChecksumAlgorithm.Crc64Nvme: "crc64nvme"}


@dataclass(frozen=True)
class GcsLocation(_Location):
    """A Google Cloud Storage bucket."""

    bucket: str = ""
    credentials: AnyGcsCredential | None = None
    config: tuple[tuple[str, str], ...] = ()
    read_headers: Headers = ()
    write_headers: Headers = ()

    kind = "gcs"

    @classmethod
    def build(
        cls,
        bucket: str,
        prefix: str | None,
        credentials: AnyGcsCredential | None,
        config: Mapping[str, str] | None,
        *,
        read_headers: Mapping[str, str] | None = None,
        write_headers: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> GcsLocation:
        """Validate the arguments of :func:`gcs_storage` and capture them."""
        _require_str(bucket, "bucket")
        _check_credentials(credentials, GCS_CREDENTIAL_TYPES, "GCS")
        location = cls(
            prefix=normalize_prefix(prefix),
            bucket=bucket,
            credentials=credentials,
            config=_headers(config, "config"),
            read_headers=_merge_headers(headers, read_headers, "read_headers"),
            write_headers=_merge_headers(headers, write_headers, "write_headers"),
        )
        location.make_store({}, {"max_retries": 0})  # validates
        return location

    def __hash__(self) -> int:
        return hash(("gcs", self.bucket, self.prefix))

    def header_options(self, write: bool) -> Headers:
        return self.write_headers if write else self.read_headers

    def make_store(self, client_options: dict[str, Any], retry_config: dict[str, Any]) -> Any:
        _obstore()  # a clear StorageError when the optional dependency is missing
        from obstore.store import GCSStore

        config: dict[str, Any] = dict(self.config)
        provider = None
        creds = self.credentials
        if isinstance(creds, GcsCredentials.Anonymous):
            config["skip_signature"] = True
        elif isinstance(creds, GcsCredentials.Static):
            static = creds.credentials
            if isinstance(static, GcsStaticCredentials.ServiceAccount):
                config["service_account"] = static.path
            elif isinstance(static, GcsStaticCredentials.ServiceAccountKey):
                config["service_account_key"] = static.key
            elif isinstance(static, GcsStaticCredentials.ApplicationCredentials):
                config["application_credentials"] = static.path
            elif isinstance(static, GcsStaticCredentials.BearerToken):
                config["bearer_token"] = static.token
        elif isinstance(creds, GcsCredentials.Refreshable):
            provider = _GcsProvider(creds.pickled_function, creds.current)
        return _bucket_store(GCSStore, self.bucket, self.prefix, config, client_options, retry_config, provider)

    def describe(self) -> str:
        return (
            f"bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"credentials={_credential_name(self.credentials)}"
        )


@dataclass(frozen=True)
class AzureLocation(_Location):
    """An Azure Blob Storage container."""

    account: str = ""
    container: str = ""
    credentials: AnyAzureCredential | None = None
    config: tuple[tuple[str, str], ...] = ()

    kind = "azure"

    @classmethod
    def build(
        cls,
        account: str,
        container: str,
        prefix: str | None,
        credentials: AnyAzureCredential | None,
        config: Mapping[str, str] | None,
    ) -> AzureLocation:
        """Validate the arguments of :func:`azure_storage` and capture them."""
        _require_str(account, "account")
        _require_str(container, "container")
        _check_credentials(credentials, AZURE_CREDENTIAL_TYPES, "Azure")
        location = cls(
            prefix=normalize_prefix(prefix),
            account=account,
            container=container,
            credentials=credentials,
            config=_headers(config, "config"),
        )
        location.make_store({}, {"max_retries": 0})  # validates
        return location

    def __hash__(self) -> int:
        return hash(("azure", self.account, self.container, self.prefix))

    def make_store(self, client_options: dict[str, Any], retry_config: dict[str, Any]) -> Any:
        _obstore()  # a clear StorageError when the optional dependency is missing
        from obstore.store import AzureStore

        config: dict[str, Any] = dict(self.config)
        config["account_name"] = self.account
        provider = None
        creds = self.credentials
        if isinstance(creds, AzureCredentials.Anonymous):
            config["skip_signature"] = True
        elif isinstance(creds, AzureCredentials.Static):
            static = creds.credentials
            if isinstance(static, AzureStaticCredentials.AccessKey):
                config["account_key"] = static.key
            elif isinstance(static, AzureStaticCredentials.SasToken):
                config["sas_key"] = static.token
            elif isinstance(static, AzureStaticCredentials.BearerToken):
                config["token"] = static.token
        elif isinstance(creds, AzureCredentials.Refreshable):
            provider = _AzureProvider(creds.pickled_function, creds.current)
        return _bucket_store(AzureStore, self.container, self.prefix, config, client_options, retry_config, provider)

    def describe(self) -> str:
        return (
            f"account={self.account!r}, container={self.container!r}, prefix={self.prefix!r}, "
            f"credentials={_credential_name(self.credentials)}"
        )


@dataclass(frozen=True)
class HttpLocation(_Location):
    """Read-only objects under an HTTP(S) base URL."""

    base_url: str = ""
    config: tuple[tuple[str, str], ...] = ()
    headers: Headers = ()

    kind = "http"
    ranged_reads = False
    supports_metadata = False

    @property
    def read_only(self) -> bool:
        return True

    @classmethod
    def build(
        cls, base_url: str, config: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> HttpLocation:
        """Validate the arguments of :func:`http_storage` and capture them."""
        _require_str(base_url, "base_url")
        if not re.match(r"^https?://[^/]+", base_url):
            raise InvalidInputError(
                f"base_url must be an http:// or https:// URL, got {base_url!r}", ErrorKind.CANNOT_PARSE_URL
            )
        location = cls(
            prefix="", base_url=base_url.rstrip("/"), config=_headers(config, "opts"),
            headers=_headers(headers, "headers"),
        )
        location.make_store({}, {"max_retries": 0})  # validates
        return location

    def __hash__(self) -> int:
        return hash(("http", self.base_url))

    def header_options(self, write: bool) -> Headers:
        return self.headers

    def client_defaults(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.config:
            lowered = value.strip().lower()
            out[key] = {"true": True, "false": False}.get(lowered, value)
        if self.base_url.startswith("http://"):
            out.setdefault("allow_http", True)
        return out

    def make_store(self, client_options: dict[str, Any], retry_config: dict[str, Any]) -> Any:
        _obstore()  # a clear StorageError when the optional dependency is missing
        from obstore.store import HTTPStore

        return _construct(
            lambda: HTTPStore(
                self.base_url,
                client_options=client_options,  # type: ignore[arg-type]
                retry_config=retry_config,  # type: ignore[arg-type]
            )
        )

    def describe(self) -> str:
        return f"base_url={_strip_query(self.base_url)!r}"


def _bucket_store(
    store_class: Callable[..., Any],
    bucket: str,
    prefix: str,
    config: dict[str, Any],
    client_options: dict[str, Any],
    retry_config: dict[str, Any],
    provider: Any,
) -> Any:
    """An obstore S3/GCS/Azure store (``store_class``) of a bucket (Azure: container)."""
    return _construct(
        lambda: store_class(
            bucket,
            prefix=prefix or None,
            config=config,
            client_options=client_options,
            retry_config=retry_config,
            credential_provider=provider,
        )
    )


def _construct(build: Callable[[], T]) -> T:
    _obstore()
    try:
        return build()
    except Exception as error:
        raise StorageError(
            f"invalid object store configuration: {_first_line(error)}", ErrorKind.STORAGE_CONFIG
        ) from None


# ---- error translation ----------------------------------------------------------------------

_TRANSIENT_TEXT = re.compile(
    r"status code: (?:5\d\d|429|408)|error sending request|timed out|timeout|"
    r"connection (?:reset|refused|closed|aborted)|broken pipe|incomplete message|"
    r"body error|SlowDown|ServiceUnavailable|RequestTimeout|InternalError",
    re.IGNORECASE,
)


def _strip_query(text: str) -> str:
    # signed URLs and SAS tokens travel in query strings: never echo them
    return re.sub(r"(https?://[^\s?]*)\?\S*", r"\1?<redacted>", text)


def _first_line(error: BaseException) -> str:
    text = str(error).split("\n\nDebug source:")[0].strip()
    return _strip_query(text.splitlines()[0] if text else type(error).__name__)


def _is_transient_text(error: BaseException) -> bool:
    return bool(_TRANSIENT_TEXT.search(str(error).split("\n\nDebug source:")[0]))


def _translate(error: BaseException, key: str, action: str) -> BaseException:
    """Our error for an obstore failure while ``action``-ing ``key``."""
    from obstore import exceptions as ox

    if isinstance(error, FileNotFoundError):
        return NotFoundError(f"object not found: {key!r}", ErrorKind.OBJECT_NOT_FOUND)
    if isinstance(error, (ox.PermissionDeniedError, ox.UnauthenticatedError)):
        return StorageError(f"access denied to {key!r} ({action}): {_first_line(error)}", ErrorKind.OBJECT_STORE)
    if isinstance(error, (ox.UnknownConfigurationKeyError,)):
        return StorageError(f"invalid object store configuration: {_first_line(error)}", ErrorKind.STORAGE_CONFIG)
    if isinstance(error, ox.InvalidPathError) or (
        isinstance(error, ValueError) and "path" in str(error).lower()
    ):
        return InvalidInputError(f"invalid storage key {key!r}: {_first_line(error)}", ErrorKind.INVALID_KEY)
    if isinstance(error, ox.NotSupportedError):
        return StorageError(f"{action} {key!r} is not supported by this store", ErrorKind.STORAGE_OTHER)
    if isinstance(error, (ConnectionError, TimeoutError)) or (
        isinstance(error, ox.BaseError) and _is_transient_text(error)
    ):
        return TransientStorageError(f"{action} {key!r} failed: {_first_line(error)}", ErrorKind.OBJECT_STORE)
    if isinstance(error, (ox.BaseError, OSError)):
        return StorageError(f"{action} {key!r} failed: {_first_line(error)}", ErrorKind.OBJECT_STORE)
    return error


def _range_refusal(error: BaseException, key: str) -> StorageError:
    """The error of a ranged GET the server refused (past the end, empty object...).

    Anything else (missing object, transient failure, unexpected error) is raised.
    """
    translated = _translate(error, key, "get")
    if isinstance(translated, (NotFoundError, TransientStorageError)) or not isinstance(
        translated, StorageError
    ):
        raise translated from None
    return translated


def _token(meta: Mapping[str, Any]) -> VersionToken:
    return VersionToken(etag=meta.get("e_tag"), generation=meta.get("version"))


def _info(key: str, meta: Mapping[str, Any]) -> ObjectInfo:
    return ObjectInfo(key, int(meta["size"]), meta.get("last_modified"), _token(meta))


class _ChangedWhileReading(Exception):
    """The object was replaced between the parts of a split read."""


# ---- the storage ----------------------------------------------------------------------------


class ObjectStoreStorage(SettingsMixin, Storage):
    """Storage in an object store; built by :func:`s3_storage`, :func:`gcs_storage`, ..."""

    def __init__(self, location: _Location, settings: StorageSettings | None = None) -> None:
        self._location = location
        self._user_settings = self._check_settings(settings)
        self._stores: tuple[Any, Any] | None = None
        self._stores_lock = threading.Lock()

    @property
    def location(self) -> _Location:
        """The constructor arguments (bucket, prefix, options, credentials...)."""
        return self._location

    @property
    def read_only(self) -> bool:
        return self._location.read_only

    @property
    def can_write_to_root(self) -> bool:
        return bool(self._location.prefix)

    # ---- clients ----------------------------------------------------------------------------

    def _clients(self) -> tuple[Any, Any]:
        """``(read_store, write_store)``, built on first use (they never travel in pickles)."""
        stores = self._stores
        if stores is None:
            with self._stores_lock:
                stores = self._stores
                if stores is None:
                    stores = self._build_clients()
                    self._stores = stores
        return stores

    def _build_clients(self) -> tuple[Any, Any]:
        loc = self._location
        base: dict[str, Any] = {"user_agent": USER_AGENT, "timeout": timedelta(minutes=30)}
        base.update(loc.client_defaults())
        timeouts = self.settings.timeouts
        if timeouts is not None:
            if timeouts.connect_timeout_ms is not None:
                base["connect_timeout"] = timedelta(milliseconds=timeouts.connect_timeout_ms)
            if timeouts.read_timeout_ms is not None:
                base["read_timeout"] = timedelta(milliseconds=timeouts.read_timeout_ms)
            if timeouts.operation_attempt_timeout_ms is not None:
                base["timeout"] = timedelta(milliseconds=timeouts.operation_attempt_timeout_ms)
        retry = {"max_retries": 0}

        def build(write: bool) -> Any:
            options = dict(base)
            headers = loc.header_options(write)
            if headers:
                options["default_headers"] = dict(headers)
            return loc.make_store(options, retry)

        reader = build(False)
        same = loc.header_options(True) == loc.header_options(False)
        return reader, (reader if same else build(True))

    @property
    def _reader(self) -> Any:
        return self._clients()[0]

    @property
    def _writer(self) -> Any:
        return self._clients()[1]

    async def _retry(self, operation: Callable[[int], Awaitable[T]]) -> T:
        settings = self.settings
        run = retrying(RetryPolicy.from_settings(settings.retries), operation)
        timeouts = settings.timeouts
        if timeouts is not None and timeouts.operation_timeout_ms:
            try:
                return await asyncio.wait_for(run, timeouts.operation_timeout_ms / 1000)
            except TimeoutError:
                raise StorageError(
                    f"storage operation timed out after {timeouts.operation_timeout_ms} ms",
                    ErrorKind.OBJECT_STORE,
                ) from None
        return await run

    # ---- reads ------------------------------------------------------------------------------

    async def get(self, key: str, byte_range: ByteRange | None = None) -> bytes:
        check_key(key)
        if byte_range is None:
            return (await self._get_whole(key))[0]
        check_range(byte_range)
        return await self._retry(lambda attempt: self._get_range(key, byte_range))

    async def get_with_version(self, key: str) -> tuple[bytes, VersionToken]:
        check_key(key)
        return await self._get_whole(key)

    async def _raw_head(self, key: str) -> Mapping[str, Any] | None:
        obstore = _obstore()
        try:
            return await obstore.head_async(self._reader, key)  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except Exception as error:
            raise _translate(error, key, "head") from None

    async def _head_or_missing(self, key: str) -> Mapping[str, Any]:
        meta = await self._raw_head(key)
        if meta is None:
            raise NotFoundError(f"object not found: {key!r}", ErrorKind.OBJECT_NOT_FOUND)
        return meta

    async def _get_range(self, key: str, byte_range: ByteRange) -> bytes:
        obstore = _obstore()
        request: Any
        if isinstance(byte_range, RangeRequest) and byte_range.end == byte_range.start:
            request = None  # HTTP cannot express an empty range
        elif isinstance(byte_range, SuffixRange) and byte_range.suffix == 0:
            request = None
        elif isinstance(byte_range, RangeRequest):
            request = (byte_range.start, byte_range.end)
        elif isinstance(byte_range, OffsetRange):
            request = {"offset": byte_range.offset}
        else:
            request = {"suffix": byte_range.suffix}
        if request is not None:
            try:
                result = await obstore.get_async(self._reader, key, options={"range": request})
                return bytes(await result.bytes_async())
            except Exception as error:
                _range_refusal(error, key)
                # the server refused the range (past the end, empty object...): decide here
        meta = await self._head_or_missing(key)
        start, end = resolve_range(byte_range, int(meta["size"]))
        if start == end:
            return b""
        result = await obstore.get_async(self._reader, key, options={"range": (start, end)})
        return bytes(await result.bytes_async())

    async def _get_whole(self, key: str) -> tuple[bytes, VersionToken]:
        concurrency = self.settings.concurrency
        part = (concurrency.ideal_concurrent_request_size if concurrency else None) or 0
        parallel = (concurrency.max_concurrent_requests_for_object if concurrency else None) or 1
        if self._location.ranged_reads and part > 0:
            for _ in range(3):
                try:
                    return await self._split_get(key, part, max(1, parallel))
                except _ChangedWhileReading:
                    continue
        return await self._retry(lambda attempt: self._plain_get(key))

    async def _plain_get(self, key: str) -> tuple[bytes, VersionToken]:
        obstore = _obstore()
        try:
            result = await obstore.get_async(self._reader, key)
            data = bytes(await result.bytes_async())
        except Exception as error:
            raise _translate(error, key, "get") from None
        return data, _token(result.meta)

    async def _first_part(self, key: str, part: int) -> tuple[bytes, Mapping[str, Any]]:
        obstore = _obstore()
        try:
            result = await obstore.get_async(self._reader, key, options={"range": (0, part)})
            return bytes(await result.bytes_async()), result.meta
        except Exception as error:
            first_error = _range_refusal(error, key)
        # ranged GETs fail on empty objects: look at the object instead
        meta = await self._head_or_missing(key)
        if int(meta["size"]) == 0:
            return b"", meta
        raise first_error

    async def _part(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        obstore = _obstore()
        from obstore import exceptions as ox

        options: dict[str, Any] = {"range": (start, end)}
        if etag is not None:
            options["if_match"] = etag
        try:
            result = await obstore.get_async(self._reader, key, options=options)
            return bytes(await result.bytes_async())
        except (ox.PreconditionError, FileNotFoundError):
            raise _ChangedWhileReading() from None
        except Exception as error:
            raise _translate(error, key, "get") from None

    async def _split_get(self, key: str, part: int, parallel: int) -> tuple[bytes, VersionToken]:
        first, meta = await self._retry(lambda attempt: self._first_part(key, part))
        size = int(meta["size"])
        if len(first) >= size:
            return first, _token(meta)
        etag = meta.get("e_tag")
        bounds = [(start, min(start + part, size)) for start in range(len(first), size, part)]
        limit = asyncio.Semaphore(parallel)  # per call: never shared across event loops

        async def fetch(start: int, end: int) -> bytes:
            async with limit:
                return await self._retry(lambda attempt: self._part(key, start, end, etag))

        tasks = [asyncio.ensure_future(fetch(s, e)) for s, e in bounds]
        try:
            rest = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return b"".join([first, *rest]), _token(meta)

    async def head(self, key: str) -> ObjectInfo | None:
        check_key(key)
        meta = await self._retry(lambda attempt: self._raw_head(key))
        return None if meta is None else _info(key, meta)

    async def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        prefix = check_prefix(prefix)
        # obstore lists whole path segments ("a/b" lists "a/b/..." only): list the parent
        # segment and filter by string prefix so that "a/b" also finds "a/b" and "a/bc"
        if not prefix:
            segment = None
        elif prefix.endswith("/"):
            segment = prefix.rstrip("/")
        else:
            segment = prefix.rsplit("/", 1)[0] if "/" in prefix else None
        policy = RetryPolicy.from_settings(self.settings.retries)
        last: str | None = None
        failures = 0
        while True:
            try:
                async for info in self._list_once(segment, last):
                    last = info.key
                    if info.key.startswith(prefix):
                        yield info
                return
            except TransientStorageError:
                failures += 1
                if failures >= policy.max_tries:
                    raise
                await asyncio.sleep(policy.backoff_seconds(failures))

    async def _list_once(self, segment: str | None, offset: str | None) -> AsyncIterator[ObjectInfo]:
        obstore = _obstore()
        try:
            if offset is None:
                stream = obstore.list(self._reader, segment, chunk_size=1000)
            else:
                stream = obstore.list(self._reader, segment, offset=offset, chunk_size=1000)
            async for batch in stream:
                for meta in batch:
                    yield _info(meta["path"], meta)
        except TransientStorageError:
            raise
        except Exception as error:
            raise _translate(error, segment or "", "list") from None

    # ---- writes -----------------------------------------------------------------------------

    def _check_writable(self, key: str) -> None:
        if self.read_only:
            raise ReadOnlyError(
                f"cannot write {key!r}: this storage is read-only", ErrorKind.READ_ONLY_STORAGE
            )

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        mode: PutMode = "overwrite",
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        check_key(key)
        self._check_writable(key)
        settings = self.settings
        if mode == "create":
            if settings.unsafe_use_conditional_create is False:
                mode = "overwrite"
        elif isinstance(mode, VersionToken):
            if settings.unsafe_use_conditional_update is False:
                mode = "overwrite"
            elif mode.etag is None and mode.generation is None:
                return PutResult(ok=False)  # an empty token matches nothing
        elif mode != "overwrite":
            raise bad_mode(mode)
        use_metadata = self._location.supports_metadata and settings.unsafe_use_metadata is not False
        attributes: dict[str, str] = {}
        if content_type is not None:
            attributes["Content-Type"] = content_type
        if use_metadata and metadata:
            attributes.update(metadata)
        storage_class = self._storage_class(key, settings)
        if storage_class is not None:
            attributes["Storage-Class"] = storage_class
        write_id = None
        if mode != "overwrite" and use_metadata:
            write_id = uuid.uuid4().hex
            attributes[WRITE_ID_KEY] = write_id
        payload = data if isinstance(data, bytes) else memoryview(data).cast("B")
        size = len(payload) if isinstance(payload, bytes) else payload.nbytes
        threshold = settings.minimum_size_for_multipart_upload or DEFAULT_MULTIPART_THRESHOLD
        multipart = mode == "overwrite" and size >= threshold
        concurrency = settings.concurrency
        chunk = max(5 * 1024 * 1024, (concurrency.ideal_concurrent_request_size if concurrency else 0) or 0)
        parallel = max(1, (concurrency.max_concurrent_requests_for_object if concurrency else 0) or 1)
        obstore_mode: Any = mode
        if isinstance(mode, VersionToken):
            obstore_mode = {}
            if mode.etag is not None:
                obstore_mode["e_tag"] = mode.etag
            if mode.generation is not None:  # obstore wants the key absent, not None
                obstore_mode["version"] = mode.generation

        async def attempt(number: int) -> PutResult:
            obstore = _obstore()
            from obstore import exceptions as ox

            try:
                result = await obstore.put_async(
                    self._writer,
                    key,
                    payload,
                    attributes=attributes or None,
                    mode=obstore_mode,
                    use_multipart=multipart,
                    chunk_size=chunk,
                    max_concurrency=parallel,
                )
            except (ox.AlreadyExistsError, ox.PreconditionError, FileNotFoundError) as error:
                # a 404 answers a compare-and-swap on a missing object (a lost race), but for
                # other writes it means the bucket or container itself is missing
                if isinstance(error, FileNotFoundError) and not isinstance(mode, VersionToken):
                    raise StorageError(
                        f"cannot write {key!r}: the bucket or container does not exist",
                        ErrorKind.STORAGE_CONFIG,
                    ) from None
                if number > 1 and write_id is not None:
                    landed = await self._own_write(key, write_id)
                    if landed is not None:
                        return PutResult(ok=True, version=landed)
                return PutResult(ok=False)
            except Exception as error:
                raise _translate(error, key, "put") from None
            return PutResult(ok=True, version=_token(result))

        return await self._retry(attempt)

    async def _own_write(self, key: str, write_id: str) -> VersionToken | None:
        """The version of ``key`` if its current content is our write ``write_id``."""
        obstore = _obstore()
        try:
            result = await obstore.get_async(self._reader, key, options={"head": True})
        except Exception:
            return None
        if result.attributes.get(WRITE_ID_KEY) == write_id:
            return _token(result.meta)
        return None

    def _storage_class(self, key: str, settings: StorageSettings) -> str | None:
        if not self._location.supports_storage_class:
            return None
        if key.startswith("chunks/"):
            return settings.chunks_storage_class or settings.storage_class
        return settings.metadata_storage_class or settings.storage_class

    async def delete_many(self, keys: Iterable[str], *, exact_count: bool = True) -> int:
        unique = list(dict.fromkeys(check_key(k) for k in keys))
        if not unique:
            return 0
        self._check_writable(unique[0])
        if exact_count:
            limit = asyncio.Semaphore(HEAD_CONCURRENCY)

            async def exists(key: str) -> bool:
                async with limit:
                    return await self._retry(lambda attempt: self._raw_head(key)) is not None

            flags = await asyncio.gather(*(exists(k) for k in unique))
            unique = [k for k, present in zip(unique, flags, strict=True) if present]
        for start in range(0, len(unique), DELETE_BATCH):
            batch = unique[start : start + DELETE_BATCH]
            await self._retry(lambda attempt, batch=batch: self._delete_batch(batch))  # type: ignore[misc]
        return len(unique)

    async def _delete_batch(self, keys: list[str]) -> None:
        obstore = _obstore()
        try:
            await obstore.delete_async(self._writer, keys)
        except FileNotFoundError:
            return
        except Exception as error:
            raise _translate(error, keys[0], "delete") from None

    # ---- settings, identity, pickling, repr ---------------------------------------------------

    def with_settings(self, settings: StorageSettings | None) -> ObjectStoreStorage:
        return ObjectStoreStorage(self._location, settings)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectStoreStorage):
            return NotImplemented
        return self._location == other._location and self.settings == other.settings

    def __hash__(self) -> int:
        return hash((ObjectStoreStorage, self._location))

    def __reduce__(self) -> tuple[Any, ...]:
        return (ObjectStoreStorage, (self._location, self._user_settings))

    def __repr__(self) -> str:
        return (
            f"icechunk.storage.ObjectStoreStorage({self._location.kind}, "
            f"{self._location.describe()}{describe_settings(self)})"
        )

    __str__ = __repr__
