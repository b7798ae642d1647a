"""The public storage factories and object-store config builders (API.md §7.1, §7.2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from icechunk.config import ChecksumAlgorithm, ObjectStoreConfig, S3Options
from icechunk.credentials import (
    GcsBearerCredential,
    S3StaticCredentials,
    azure_credentials,
    gcs_credentials,
    s3_credentials,
)
from icechunk.storage._abc import Storage

if TYPE_CHECKING:
    import os

__all__ = [
    "azure_storage",
    "azure_store",
    "gcs_storage",
    "gcs_store",
    "http_storage",
    "http_store",
    "in_memory_storage",
    "local_filesystem_storage",
    "local_filesystem_store",
    "r2_storage",
    "redirect_storage",
    "s3_object_store_storage",
    "s3_storage",
    "s3_store",
    "tigris_storage",
]


def in_memory_storage() -> Storage:
    """Volatile storage in this process's memory (tests, scratch repositories).

    Separate calls share nothing.  A pickled copy unpickled in the same process shares the
    live data; unpickled elsewhere it holds a copy of the contents at pickling time.
    """
    return Storage.new_in_memory()


def local_filesystem_storage(path: str | os.PathLike[str], *, fsync: bool = False) -> Storage:
    """Storage in the local directory ``path`` (POSIX; not on network filesystems).

    Opening does not create the directory; the first write does.  Unlike the reference,
    concurrent commits from several processes are safe: compare-and-swap of the ``repo``
    file is a real one (directory ``flock`` plus a content-hash check).

    Parameters
    ----------
    path
        Root directory of the repository.
    fsync
        Make every write durable with ``fsync`` (slower; default False, as the reference).
    """
    from icechunk.storage._local import LocalFileSystemStorage

    return LocalFileSystemStorage(path, fsync=fsync)


def s3_storage(
    *,
    bucket: str,
    prefix: str | None,
    region: str | None = None,
    endpoint_url: str | None = None,
    allow_http: bool = False,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    expires_after: datetime | None = None,
    anonymous: bool | None = None,
    from_env: bool | None = None,
    get_credentials: Callable[[], S3StaticCredentials] | None = None,
    scatter_initial_credentials: bool = False,
    force_path_style: bool = False,
    network_stream_timeout_seconds: int = 60,
    requester_pays: bool = False,
    checksum_algorithm: ChecksumAlgorithm | None = None,
    legacy_rooted_keys: bool | None = None,
    read_headers: dict[str, str] | None = None,
    write_headers: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Storage:
    """Storage in an S3 bucket, or an S3-compatible service (``endpoint_url``: MinIO, moto...).

    Parameters
    ----------
    bucket, prefix
        Where the repository lives (an empty/None prefix is the bucket root, where creating a
        repository is refused).
    region, endpoint_url, allow_http, force_path_style, requester_pays, checksum_algorithm
        Connection options (see :class:`S3Options`); requests are always path-style.
    network_stream_timeout_seconds
        Abort a response stream that stalls this long (0 disables).
    access_key_id, secret_access_key, session_token, expires_after, anonymous, from_env,
    get_credentials, scatter_initial_credentials
        Credentials, dispatched by :func:`icechunk.credentials.s3_credentials`.
    legacy_rooted_keys
        None or False; True (keys with a leading ``/``) is not supported.
    read_headers, write_headers, headers
        Extra HTTP headers: reads send ``{**headers, **read_headers}``, writes
        ``{**headers, **write_headers}``.

    Raises
    ------
    InvalidInputError
        For a bad argument (named in the message), including conflicting credentials.
    StorageError
        For an unsupported configuration.
    """
    credentials = s3_credentials(
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        session_token=session_token,
        expires_after=expires_after,
        anonymous=anonymous,
        from_env=from_env,
        get_credentials=get_credentials,
        scatter_initial_credentials=scatter_initial_credentials,
    )
    options = S3Options(
        region=region, endpoint_url=endpoint_url, allow_http=allow_http,
        force_path_style=force_path_style,
        network_stream_timeout_seconds=network_stream_timeout_seconds,
        requester_pays=requester_pays, checksum_algorithm=checksum_algorithm,
    )
    return Storage.new_s3(
        options, bucket, prefix, credentials, legacy_rooted_keys,
        read_headers=read_headers, write_headers=write_headers, headers=headers,
    )


def s3_object_store_storage(
    *,
    bucket: str,
    prefix: str | None,
    region: str | None = None,
    endpoint_url: str | None = None,
    allow_http: bool = False,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    expires_after: datetime | None = None,
    anonymous: bool | None = None,
    from_env: bool | None = None,
    force_path_style: bool = False,
    read_headers: dict[str, str] | None = None,
    write_headers: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Storage:
    """S3 storage without refreshable credentials (the same backend as :func:`s3_storage`)."""
    return s3_storage(
        bucket=bucket, prefix=prefix, region=region, endpoint_url=endpoint_url,
        allow_http=allow_http, access_key_id=access_key_id,
        secret_access_key=secret_access_key, session_token=session_token,
        expires_after=expires_after, anonymous=anonymous, from_env=from_env,
        force_path_style=force_path_style, read_headers=read_headers,
        write_headers=write_headers, headers=headers,
    )


def tigris_storage(
    *,
    bucket: str,
    prefix: str | None,
    region: str | None = None,
    endpoint_url: str | None = None,
    use_weak_consistency: bool = False,
    allow_http: bool = False,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    expires_after: datetime | None = None,
    anonymous: bool | None = None,
    from_env: bool | None = None,
    get_credentials: Callable[[], S3StaticCredentials] | None = None,
    scatter_initial_credentials: bool = False,
    network_stream_timeout_seconds: int = 60,
    checksum_algorithm: ChecksumAlgorithm | None = None,
    legacy_rooted_keys: bool | None = None,
    read_headers: dict[str, str] | None = None,
    write_headers: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Storage:
    """Storage on Tigris (``use_weak_consistency=True`` gives read-only nearest-region reads).

    Strongly consistent mode sends ``X-Tigris-Consistent: true``; the endpoint defaults to
    ``https://fly.storage.tigris.dev`` and the region to ``auto``.
    """
    credentials = s3_credentials(
        access_key_id=access_key_id, secret_access_key=secret_access_key,
        session_token=session_token, expires_after=expires_after, anonymous=anonymous,
        from_env=from_env, get_credentials=get_credentials,
        scatter_initial_credentials=scatter_initial_credentials,
    )
    options = S3Options(
        region=region, endpoint_url=endpoint_url, allow_http=allow_http,
        network_stream_timeout_seconds=network_stream_timeout_seconds,
        checksum_algorithm=checksum_algorithm,
    )
    return Storage.new_tigris(
        options, bucket, prefix, use_weak_consistency, credentials, legacy_rooted_keys,
        read_headers=read_headers, write_headers=write_headers, headers=headers,
    )


def r2_storage(
    *,
    bucket: str | None = None,
    prefix: str | None = None,
    account_id: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    allow_http: bool = False,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    expires_after: datetime | None = None,
    anonymous: bool | None = None,
    from_env: bool | None = None,
    get_credentials: Callable[[], S3StaticCredentials] | None = None,
    scatter_initial_credentials: bool = False,
    network_stream_timeout_seconds: int = 60,
    checksum_algorithm: ChecksumAlgorithm | None = None,
    legacy_rooted_keys: bool | None = None,
    read_headers: dict[str, str] | None = None,
    write_headers: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Storage:
    """Storage on Cloudflare R2.

    With ``account_id`` the endpoint is ``https://<account_id>.r2.cloudflarestorage.com``;
    otherwise ``endpoint_url`` is required.  The region defaults to ``auto``.

    Raises
    ------
    InvalidInputError
        When neither ``account_id`` nor ``endpoint_url`` is given, or ``bucket`` is missing.
    """
    credentials = s3_credentials(
        access_key_id=access_key_id, secret_access_key=secret_access_key,
        session_token=session_token, expires_after=expires_after, anonymous=anonymous,
        from_env=from_env, get_credentials=get_credentials,
        scatter_initial_credentials=scatter_initial_credentials,
    )
    options = S3Options(
        region=region, endpoint_url=endpoint_url, allow_http=allow_http,
        network_stream_timeout_seconds=network_stream_timeout_seconds,
        checksum_algorithm=checksum_algorithm,
    )
    return Storage.new_r2(
        options, bucket, prefix, account_id, credentials, legacy_rooted_keys,
        read_headers=read_headers, write_headers=write_headers, headers=headers,
    )


def gcs_storage(
    *,
    bucket: str,
    prefix: str | None,
    service_account_file: str | None = None,
    service_account_key: str | None = None,
    application_credentials: str | None = None,
    bearer_token: str | None = None,
    anonymous: bool | None = None,
    from_env: bool | None = None,
    config: dict[str, str] | None = None,
    get_credentials: Callable[[], GcsBearerCredential] | None = None,
    scatter_initial_credentials: bool = False,
    read_headers: dict[str, str] | None = None,
    write_headers: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Storage:
    """Storage in a Google Cloud Storage bucket.

    Credentials are dispatched by :func:`icechunk.credentials.gcs_credentials`; ``config``
    holds extra client options (obstore ``GCSConfig`` keys, e.g. ``base_url``).
    """
    credentials = gcs_credentials(
        service_account_file=service_account_file,
        service_account_key=service_account_key,
        application_credentials=application_credentials,
        bearer_token=bearer_token,
        from_env=from_env,
        anonymous=anonymous,
        get_credentials=get_credentials,
        scatter_initial_credentials=scatter_initial_credentials,
    )
    return Storage.new_gcs(
        bucket, prefix, credentials, config=config,
        read_headers=read_headers, write_headers=write_headers, headers=headers,
    )


def azure_storage(
    *,
    account: str,
    container: str,
    prefix: str,
    access_key: str | None = None,
    sas_token: str | None = None,
    bearer_token: str | None = None,
    from_env: bool | None = None,
    anonymous: bool | None = None,
    config: dict[str, str] | None = None,
) -> Storage:
    """Storage in an Azure Blob Storage container.

    Credentials are dispatched by :func:`icechunk.credentials.azure_credentials`; ``config``
    holds extra client options (obstore ``AzureConfig`` keys, e.g. ``use_emulator``).
    """
    credentials = azure_credentials(
        access_key=access_key,
        sas_token=sas_token,
        bearer_token=bearer_token,
        from_env=from_env,
        anonymous=anonymous,
    )
    return Storage.new_azure_blob(account, container, prefix, credentials, config=config)


def http_storage(
    base_url: str, opts: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> Storage:
    """Read-only storage over HTTP(S) GETs under ``base_url`` (writes raise ReadOnlyError).

    Parameters
    ----------
    base_url
        ``http://`` or ``https://`` URL of the repository root.
    opts
        HTTP client options (obstore ``ClientConfig`` keys, string values).
    headers
        Headers sent with every request.
    """
    return Storage.new_http(base_url, opts, headers)


def redirect_storage(base_url: str) -> Storage:
    """Read-only storage found by following HTTP redirects from ``base_url`` (max 10)."""
    return Storage.new_redirect(base_url)


# ---- ObjectStoreConfig builders (virtual chunk containers) -----------------------------------


def local_filesystem_store(path: str) -> ObjectStoreConfig.LocalFileSystem:
    """Config of a local-directory virtual chunk store."""
    return ObjectStoreConfig.LocalFileSystem(path)


def s3_store(
    region: str | None = None,
    endpoint_url: str | None = None,
    allow_http: bool = False,
    anonymous: bool = False,
    s3_compatible: bool = False,
    force_path_style: bool = False,
    network_stream_timeout_seconds: int = 60,
    requester_pays: bool = False,
    checksum_algorithm: ChecksumAlgorithm | None = None,
) -> ObjectStoreConfig.S3 | ObjectStoreConfig.S3Compatible:
    """Config of an S3 (``s3_compatible=False``) or S3-compatible virtual chunk store."""
    options = S3Options(
        region=region,
        endpoint_url=endpoint_url,
        allow_http=allow_http,
        anonymous=anonymous,
        force_path_style=force_path_style,
        network_stream_timeout_seconds=network_stream_timeout_seconds,
        requester_pays=requester_pays,
        checksum_algorithm=checksum_algorithm,
    )
    if s3_compatible:
        return ObjectStoreConfig.S3Compatible(options)
    return ObjectStoreConfig.S3(options)


def gcs_store(opts: dict[str, str] | None = None) -> ObjectStoreConfig.Gcs:
    """Config of a GCS virtual chunk store."""
    return ObjectStoreConfig.Gcs(opts)


def azure_store(*, account: str, config: dict[str, str] | None = None) -> ObjectStoreConfig.Azure:
    """Config of an Azure virtual chunk store: ``{"account": account, **config}``."""
    return ObjectStoreConfig.Azure({"account": account, **(config or {})})


def http_store(
    opts: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
) -> ObjectStoreConfig.Http:
    """Config of an HTTP(S) virtual chunk store."""
    return ObjectStoreConfig.Http(opts, headers)
