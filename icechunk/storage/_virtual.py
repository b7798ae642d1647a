"""Readers of byte ranges in *external* objects: the targets of virtual chunk refs.

A virtual chunk ref names ``length`` bytes at ``offset`` of an object outside the repository
(a NetCDF file on S3, a local HDF5 file, a file behind an HTTP server...).  This module turns
an object-store description (``ObjectStoreConfig.*`` plus a bucket/host and a credential) into
a :class:`VirtualReader` that fetches such ranges, enforcing the checksum recorded with the
ref (FORMAT.md §4.7): an ETag becomes ``If-Match`` and a last-modified time
``If-Unmodified-Since``; a source that changed raises ``StorageError`` (kind
``virtual-chunk-modified``) instead of returning different bytes.

Backends:

- S3 / S3-compatible / Tigris, GCS, Azure and HTTP(S) go through obstore (imported lazily),
  built from the same location classes as the repository storages.
- Local files are read directly (``os.pread``): object keys are used exactly as written
  (obstore's path parser refuses ``.``, ``..`` and empty segments, which API.md §4.3 says
  must be kept), and a small local read costs microseconds instead of a round trip through
  obstore's runtime.
- Anything else (``memory://`` for ``ObjectStoreConfig.InMemory``, other fsspec protocols, or
  keys obstore cannot address) falls back to fsspec when it is installed.

Nothing here decides *whether* a read is allowed: authorization is the caller's job
(:mod:`icechunk.core.virtual`).
"""

from __future__ import annotations

import asyncio
import os
import re
import stat as stat_module
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from icechunk._errors import ErrorKind, StorageError
from icechunk.config import ObjectStoreConfig, S3Options
from icechunk.credentials import (
    AzureCredentials,
    Credentials,
    GcsCredentials,
    S3Credentials,
)
from icechunk.storage._retry import RetryPolicy, TransientStorageError, retrying

__all__ = [
    "FsspecReader",
    "LocalFileReader",
    "ObstoreReader",
    "VirtualReader",
    "build_virtual_reader",
    "local_etag",
]

# local reads up to this size run inline on the event loop (page-cache reads take
# microseconds); larger ones go to a worker thread
_INLINE_LOCAL_READ = 1 << 20

# key shapes obstore's path parser rejects: empty, "." or ".." segments
_OBSTORE_UNSAFE_KEY = re.compile(r"(^|/)\.{1,2}(/|$)|//|^/|/$")


class VirtualReader(Protocol):
    """Reads ``[start, end)`` of one object of a store, checking the ref's checksum."""

    async def read(
        self, key: str, start: int, end: int, *, etag: str | None, last_modified: int
    ) -> bytes:
        """The bytes; ``etag`` / ``last_modified`` (u32 seconds, 0 = none) must still hold.

        Raises
        ------
        StorageError
            ``virtual-chunk-modified`` when the checksum no longer holds,
            ``virtual-chunk-fetch`` when the object cannot be read (missing, too short...).
        """
        ...


def _modified(url: str, why: str) -> StorageError:
    return StorageError(
        f"virtual chunk source {url} was modified after the reference was written ({why}); "
        "refusing to return data that may differ",
        ErrorKind.VIRTUAL_CHUNK_MODIFIED,
    )


def _fetch_error(url: str, why: str) -> StorageError:
    return StorageError(f"cannot read virtual chunk from {url}: {why}", ErrorKind.VIRTUAL_CHUNK_FETCH)


def _short(url: str, start: int, end: int, got: int) -> StorageError:
    return _fetch_error(url, f"expected {end - start} bytes at offset {start}, the object has only {got}")


def _strip_quotes(etag: str) -> str:
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag[1:-1] if len(etag) >= 2 and etag[0] == etag[-1] == '"' else etag


def _quoted(etag: str) -> str:
    """An entity tag as HTTP wants it (quoted), whatever the caller stored."""
    etag = etag.strip()
    return etag if etag.startswith(('"', 'W/"')) else f'"{etag}"'


def _since(last_modified: int) -> datetime:
    return datetime.fromtimestamp(last_modified, UTC)


# ---- local files ----------------------------------------------------------------------------


def local_etag(st: os.stat_result) -> str:
    """The ETag of a local file as obstore's local store reports it (inode, mtime µs, size)."""
    mtime_us = st.st_mtime_ns // 1000
    return f'"{st.st_ino:x}-{mtime_us:x}-{st.st_size:x}"'


class LocalFileReader:
    """Byte ranges of local files; keys are absolute paths, used exactly as written."""

    def __init__(self, url_prefix: str = "file://") -> None:
        self._scheme = url_prefix

    def _read_sync(self, key: str, start: int, end: int, etag: str | None, last_modified: int) -> bytes:
        url = f"file://{key}"
        try:
            fd = os.open(key, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise _fetch_error(url, "no such file") from None
        except OSError as err:
            raise _fetch_error(url, err.strerror or str(err)) from None
        try:
            st = os.fstat(fd)
            if not stat_module.S_ISREG(st.st_mode):
                raise _fetch_error(url, "not a regular file")
            if etag is not None and _strip_quotes(etag) != _strip_quotes(local_etag(st)):
                raise _modified(url, "ETag differs")
            # If-Unmodified-Since semantics at the one-second resolution of the checksum
            if last_modified and int(st.st_mtime) > last_modified:
                raise _modified(url, f"modified at {datetime.fromtimestamp(st.st_mtime, UTC).isoformat()}")
            if end > st.st_size:
                raise _short(url, start, end, st.st_size)
            want = end - start
            data = os.pread(fd, want, start)
            if len(data) < want:  # rare: a short read of a regular file
                parts = [data]
                got = len(data)
                while got < want:
                    more = os.pread(fd, want - got, start + got)
                    if not more:
                        raise _short(url, start, end, start + got)
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
            return data
        except OSError as err:
            raise _fetch_error(url, err.strerror or str(err)) from None
        finally:
            os.close(fd)

    async def read(
        self, key: str, start: int, end: int, *, etag: str | None, last_modified: int
    ) -> bytes:
        if end - start <= _INLINE_LOCAL_READ:
            return self._read_sync(key, start, end, etag, last_modified)
        return await asyncio.to_thread(self._read_sync, key, start, end, etag, last_modified)


# ---- obstore --------------------------------------------------------------------------------


class ObstoreReader:
    """Byte ranges through an obstore client (S3, GCS, Azure, HTTP), with retries.

    Parameters
    ----------
    store
        The obstore client, rooted at the bucket / container / host.
    url_base
        ``scheme://bucket`` (for messages).
    policy
        Retries of transient failures.
    fallback
        Reader used for keys obstore cannot address (``.``, ``..`` or empty segments).
    """

    def __init__(
        self,
        store: Any,
        url_base: str,
        policy: RetryPolicy,
        fallback: Callable[[], VirtualReader | None] | None = None,
    ) -> None:
        self._store = store
        self._url_base = url_base
        self._policy = policy
        self._fallback = fallback

    async def read(
        self, key: str, start: int, end: int, *, etag: str | None, last_modified: int
    ) -> bytes:
        url = f"{self._url_base}/{key}"
        if _OBSTORE_UNSAFE_KEY.search(key):
            fallback = self._fallback() if self._fallback is not None else None
            if fallback is None:
                raise _fetch_error(
                    url, "the object key has '.', '..' or empty path segments, which obstore cannot "
                    "address (install the fsspec implementation of this protocol to read it)"
                )
            return await fallback.read(key, start, end, etag=etag, last_modified=last_modified)
        options: dict[str, Any] = {}
        if etag is not None:
            options["if_match"] = _quoted(etag)
        if last_modified:
            options["if_unmodified_since"] = _since(last_modified)
        if end == start:
            if not options:
                return b""
            options["head"] = True  # still enforce the checksum
        else:
            options["range"] = (start, end)

        async def attempt(_: int) -> bytes:
            return await self._get(key, url, options, start, end)

        return await retrying(self._policy, attempt)

    async def _get(self, key: str, url: str, options: dict[str, Any], start: int, end: int) -> bytes:
        import obstore
        from obstore import exceptions as ox

        from icechunk.storage._obstore import _first_line, _is_transient_text

        try:
            result = await obstore.get_async(self._store, key, options=options)  # type: ignore[arg-type]
            if options.get("head"):
                return b""
            data = bytes(await result.bytes_async())
        except ox.PreconditionError:
            raise _modified(url, "ETag or last-modified time no longer matches") from None
        except FileNotFoundError:
            raise _fetch_error(url, "object not found") from None
        except (ConnectionError, TimeoutError) as err:
            raise TransientStorageError(f"reading {url} failed: {_first_line(err)}") from None
        except Exception as err:
            if isinstance(err, ox.BaseError) and _is_transient_text(err):
                raise TransientStorageError(f"reading {url} failed: {_first_line(err)}") from None
            text = _first_line(err)
            lowered = text.lower()
            if "416" in lowered or "range not satisfiable" in lowered or "out of bounds" in lowered:
                raise _fetch_error(url, f"the byte range {start}..{end} is outside the object") from None
            raise _fetch_error(url, text) from None
        if len(data) != end - start:
            raise _short(url, start, end, start + len(data))
        return data


# ---- fsspec ---------------------------------------------------------------------------------


def _info_etag(info: Mapping[str, Any]) -> str | None:
    for name in ("ETag", "etag", "e_tag"):
        value = info.get(name)
        if isinstance(value, str):
            return value
    return None


def _info_mtime(info: Mapping[str, Any]) -> float | None:
    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


class FsspecReader:
    """Byte ranges through an fsspec filesystem (the fallback for other protocols).

    Checksums are checked against ``fs.info()`` before reading: the ETag when the filesystem
    reports one, else a modification time (``mtime``, ``LastModified``, ``created``...).  A
    checksum that cannot be verified at all makes the read fail rather than trust the data.
    """

    def __init__(self, fs: Any, protocol: str, host: str = "") -> None:
        self._fs = fs
        self._protocol = protocol
        self._host = host

    def _read_sync(self, key: str, start: int, end: int, etag: str | None, last_modified: int) -> bytes:
        if self._protocol in ("file", "local"):
            path = url = key
        else:
            path = url = f"{self._protocol}://{self._host}/{key}"
        try:
            if etag is not None or last_modified:
                info = self._fs.info(path)
                if etag is not None:
                    actual = _info_etag(info)
                    if actual is None:
                        raise _fetch_error(url, "the filesystem reports no ETag to check the reference against")
                    if _strip_quotes(actual) != _strip_quotes(etag):
                        raise _modified(url, "ETag differs")
                if last_modified:
                    mtime = _info_mtime(info)
                    if mtime is None:
                        raise _fetch_error(
                            url, "the filesystem reports no modification time to check the reference against"
                        )
                    if int(mtime) > last_modified:
                        raise _modified(url, "modified after the recorded time")
            if end == start:
                return b""
            data = self._fs.cat_file(path, start=start, end=end)
        except StorageError:
            raise
        except FileNotFoundError:
            raise _fetch_error(url, "object not found") from None
        except Exception as err:
            raise _fetch_error(url, f"{type(err).__name__}: {err}") from None
        if len(data) != end - start:
            raise _short(url, start, end, start + len(data))
        return bytes(data)

    async def read(
        self, key: str, start: int, end: int, *, etag: str | None, last_modified: int
    ) -> bytes:
        if self._protocol == "memory":
            return self._read_sync(key, start, end, etag, last_modified)
        return await asyncio.to_thread(self._read_sync, key, start, end, etag, last_modified)


def fsspec_reader(
    protocol: str, host: str, storage_options: Mapping[str, Any] | None = None
) -> FsspecReader | None:
    """An fsspec reader for ``protocol://host``, or None when fsspec (or its backend) is missing."""
    try:
        import fsspec

        fs = fsspec.filesystem(protocol, **dict(storage_options or {}))
    except (ImportError, ValueError):
        return None
    return FsspecReader(fs, protocol, host)


# ---- building readers -----------------------------------------------------------------------


def _client_options(allow_http: bool, stream_timeout: int | None = None) -> dict[str, Any]:
    from icechunk.storage._obstore import USER_AGENT

    out: dict[str, Any] = {"user_agent": USER_AGENT, "timeout": timedelta(minutes=30)}
    if allow_http:
        out["allow_http"] = True
    if stream_timeout:
        out["read_timeout"] = timedelta(seconds=stream_timeout)
    return out


def _obstore_available() -> bool:
    try:
        import obstore  # noqa: F401
    except ImportError:
        return False
    return True


def _s3_credentials(credential: Any) -> Any:
    if isinstance(credential, Credentials.S3):
        return credential.credentials
    return credential  # None or a raw S3Credentials variant


def build_virtual_reader(
    store: Any,
    scheme: str,
    host: str,
    credential: Any,
    policy: RetryPolicy | None = None,
) -> VirtualReader:
    """A reader for objects ``scheme://host/<key>`` of a virtual chunk container's store.

    Parameters
    ----------
    store
        The container's ``ObjectStoreConfig.*``.
    scheme, host
        URL scheme and host (bucket, container, ``host:port``) of the locations.
    credential
        The authorization value: a ``Credentials.*`` wrapper, a sentinel, or None
        (environment / anonymous access).
    policy
        Retries of transient failures (default: 10 tries, 100 ms initial backoff).

    Raises
    ------
    StorageError
        When the store cannot be built (bad options, missing optional dependency).
    """
    policy = policy or RetryPolicy()
    scheme = scheme.lower()
    if isinstance(store, ObjectStoreConfig.LocalFileSystem):
        return LocalFileReader()
    if isinstance(store, ObjectStoreConfig.InMemory) or not _obstore_available():
        reader = fsspec_reader("memory" if isinstance(store, ObjectStoreConfig.InMemory) else scheme, host)
        if reader is None:
            raise StorageError(
                f"no client can read {scheme}:// virtual chunks: install obstore (or fsspec with "
                f"the {scheme} implementation)",
                ErrorKind.STORAGE_CONFIG,
            )
        return reader

    from icechunk.storage._obstore import AzureLocation, GcsLocation, HttpLocation, S3Location

    def fallback() -> VirtualReader | None:
        return fsspec_reader(scheme, host)

    url_base = f"{scheme}://{host}"
    if isinstance(store, (ObjectStoreConfig.S3, ObjectStoreConfig.S3Compatible, ObjectStoreConfig.Tigris)):
        options: S3Options = store.options if not isinstance(store, ObjectStoreConfig.Tigris) else store.opts
        flavor = "tigris" if isinstance(store, ObjectStoreConfig.Tigris) else "s3"
        creds = _s3_credentials(credential)
        if creds is not None and not isinstance(
            creds, (S3Credentials.FromEnv, S3Credentials.Anonymous, S3Credentials.Static, S3Credentials.Refreshable)
        ):
            raise StorageError(f"S3 container needs S3 credentials, got {type(credential).__name__}", ErrorKind.STORAGE_CONFIG)
        location = S3Location(prefix="", flavor=flavor, bucket=host, options=options, credentials=creds)
        client = location.make_store(
            _client_options(bool(location.options.allow_http), location.options.network_stream_timeout_seconds),
            {"max_retries": 0},
            write=False,
        )
        return ObstoreReader(client, url_base, policy, fallback)
    if isinstance(store, ObjectStoreConfig.Gcs):
        creds = credential.credentials if isinstance(credential, Credentials.Gcs) else credential
        if creds is not None and not isinstance(
            creds, (GcsCredentials.FromEnv, GcsCredentials.Anonymous, GcsCredentials.Static, GcsCredentials.Refreshable)
        ):
            raise StorageError(f"GCS container needs GCS credentials, got {type(credential).__name__}", ErrorKind.STORAGE_CONFIG)
        gcs = GcsLocation(prefix="", bucket=host, credentials=creds, config=tuple(sorted((store.opts or {}).items())))
        client = gcs.make_store(_client_options(False), {"max_retries": 0}, write=False)
        return ObstoreReader(client, url_base, policy, fallback)
    if isinstance(store, ObjectStoreConfig.Azure):
        creds = credential.credentials if isinstance(credential, Credentials.Azure) else credential
        if creds is not None and not isinstance(
            creds,
            (AzureCredentials.FromEnv, AzureCredentials.Anonymous, AzureCredentials.Static, AzureCredentials.Refreshable),
        ):
            raise StorageError(f"Azure container needs Azure credentials, got {type(credential).__name__}", ErrorKind.STORAGE_CONFIG)
        opts = dict(store.opts or {})
        container, _, account_in_host = host.partition("@")
        account = opts.pop("account", None) or opts.pop("account_name", None) or account_in_host.split(".")[0]
        if not account:
            raise StorageError(
                "an Azure virtual chunk container needs an account (azure_store(account=...))",
                ErrorKind.STORAGE_CONFIG,
            )
        azure = AzureLocation(prefix="", account=account, container=container, credentials=creds,
                              config=tuple(sorted(opts.items())))
        client = azure.make_store(_client_options(False), {"max_retries": 0}, write=False)
        return ObstoreReader(client, url_base, policy, fallback)
    if isinstance(store, ObjectStoreConfig.Http):
        http = HttpLocation(
            prefix="",
            base_url=url_base,
            config=tuple(sorted((store.opts or {}).items())),
            headers=tuple(sorted((store.headers or {}).items())),
        )
        options_http = _client_options(scheme == "http")
        options_http.update(http.client_defaults())
        if http.headers:
            options_http["default_headers"] = dict(http.headers)
        client = http.make_store(options_http, {"max_retries": 0}, write=False)
        return ObstoreReader(client, url_base, policy, fallback)
    raise StorageError(f"unsupported virtual chunk container store {store!r}", ErrorKind.STORAGE_CONFIG)
