"""Read-only storage found by following HTTP redirects (``redirect_storage``).

The first use sends ``GET base_url`` and follows at most 10 HTTP redirects until the
``Location`` has a storage scheme: ``s3://bucket/prefix``, ``gs://`` / ``gcs://``,
``tigris://``, or ``http(s)+icechunk://`` / ``http(s)+ic://`` (plain HTTP storage).  The
resolved storage uses anonymous credentials and is kept for the life of the handle.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterable
from typing import Any

from icechunk._errors import ErrorKind, InvalidInputError, ReadOnlyError, StorageError
from icechunk.config import S3Options, StorageSettings
from icechunk.credentials import GcsCredentials, S3Credentials
from icechunk.storage._abc import ByteRange, ObjectInfo, PutMode, PutResult, Storage, VersionToken
from icechunk.storage._common import SettingsMixin, describe_settings

__all__ = ["RedirectStorage", "resolve_redirect"]

MAX_REDIRECTS = 10


class _NoFollow(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # surface the 3xx as an HTTPError so that we can read Location


def _bad(message: str) -> StorageError:
    return StorageError(message, ErrorKind.BAD_REDIRECT)


def storage_for_url(url: str) -> Storage | None:
    """A read-only-use storage for a resolved storage URL, or None for plain http(s)."""
    from icechunk.storage._obstore import GcsLocation, HttpLocation, ObjectStoreStorage, S3Location

    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    if scheme == "s3":
        return ObjectStoreStorage(
            S3Location.build("s3", S3Options(), bucket, prefix, S3Credentials.Anonymous(), None)
        )
    if scheme == "tigris":
        return ObjectStoreStorage(
            S3Location.build(
                "tigris", S3Options(), bucket, prefix, S3Credentials.Anonymous(), None,
                use_weak_consistency=False,
            )
        )
    if scheme in ("gs", "gcs"):
        return ObjectStoreStorage(GcsLocation.build(bucket, prefix, GcsCredentials.Anonymous(), None))
    if scheme in ("http+icechunk", "http+ic", "https+icechunk", "https+ic"):
        base = scheme.split("+", 1)[0] + "://" + url.split("://", 1)[1]
        return ObjectStoreStorage(HttpLocation.build(base, None, None))
    if scheme in ("http", "https"):
        return None
    raise _bad(f"redirect to unsupported storage URL scheme {scheme!r}")


def resolve_redirect(base_url: str, timeout: float = 30.0) -> Storage:
    """Follow redirects from ``base_url`` to a storage (blocking; at most 10 hops)."""
    opener = urllib.request.build_opener(_NoFollow)
    url = base_url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout):
                raise _bad(f"{url} answered without redirecting to a storage URL")
        except urllib.error.HTTPError as answer:
            location = answer.headers.get("Location") if 300 <= answer.code < 400 else None
            if location is None:
                raise _bad(f"{url} answered HTTP {answer.code} instead of a redirect") from None
        except urllib.error.URLError as error:
            raise StorageError(f"cannot reach {url}: {error.reason}", ErrorKind.OBJECT_STORE) from None
        url = urllib.parse.urljoin(url, location)
        target = storage_for_url(url)
        if target is not None:
            return target
    raise _bad(f"more than {MAX_REDIRECTS} redirects from {base_url}")


class RedirectStorage(SettingsMixin, Storage):
    """Read-only storage behind an HTTP redirect; resolved on first use."""

    def __init__(self, base_url: str, settings: StorageSettings | None = None) -> None:
        url: object = base_url  # validated at runtime: users pass anything
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise InvalidInputError(
                f"base_url must be an http(s) URL, got {base_url!r}", ErrorKind.CANNOT_PARSE_URL
            )
        self._base_url = base_url
        self._user_settings = self._check_settings(settings)
        self._target: Storage | None = None
        self._lock = threading.Lock()

    @property
    def read_only(self) -> bool:
        return True

    async def _resolved(self) -> Storage:
        target = self._target
        if target is None:
            target = await asyncio.to_thread(resolve_redirect, self._base_url)
            if self._user_settings is not None:
                target = target.with_settings(self._user_settings)
            with self._lock:
                self._target = self._target or target
                target = self._target
        return target

    async def get(self, key: str, byte_range: ByteRange | None = None) -> bytes:
        return await (await self._resolved()).get(key, byte_range)

    async def get_with_version(self, key: str) -> tuple[bytes, VersionToken]:
        return await (await self._resolved()).get_with_version(key)

    async def head(self, key: str) -> ObjectInfo | None:
        return await (await self._resolved()).head(key)

    async def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        async for info in (await self._resolved()).list_prefix(prefix):
            yield info

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        mode: PutMode = "overwrite",
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        raise ReadOnlyError(f"cannot write {key!r}: redirect storage is read-only", ErrorKind.READ_ONLY_STORAGE)

    async def delete_many(self, keys: Iterable[str], *, exact_count: bool = True) -> int:
        raise ReadOnlyError("cannot delete: redirect storage is read-only", ErrorKind.READ_ONLY_STORAGE)

    def with_settings(self, settings: StorageSettings | None) -> RedirectStorage:
        return RedirectStorage(self._base_url, settings)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RedirectStorage):
            return NotImplemented
        return (self._base_url, self.settings) == (other._base_url, other.settings)

    def __hash__(self) -> int:
        return hash((RedirectStorage, self._base_url))

    def __reduce__(self) -> tuple[Any, ...]:
        return (RedirectStorage, (self._base_url, self._user_settings))

    def __repr__(self) -> str:
        return f"icechunk.storage.RedirectStorage(base_url={self._base_url!r}{describe_settings(self)})"

    __str__ = __repr__
