"""Virtual chunks: where refs may point, who may read them, and reading them.

API.md §18.3 and FORMAT.md §4.7.  A virtual ref stores a location: an absolute URL, or
``vcc://<container name>/<relative path>`` resolved against the named container's
``url_prefix``.  The repository configuration declares *containers* (url prefix + how to
reach the store); the user of a repository *authorizes* containers by url prefix with a
credential.  Reading a virtual chunk:

1. resolves the location and picks the container with the **longest** matching prefix
   (none: InvalidInputError ``no-container-for-virtual-chunk``);
2. refuses, before any I/O, unless that container's prefix is authorized
   (InvalidInputError ``unauthorized-virtual-chunk-container``): a repository cannot make its
   readers fetch local files or private buckets they did not allow;
3. reads the byte range through one cached client per container and bucket/host
   (:mod:`icechunk.storage._virtual`), enforcing the ref's ETag / last-modified checksum.

The object key is the URL path after the host, percent-decoded (``%3F`` → ``?``, ``%23`` →
``#``, ``%25`` → ``%``); ``//``, ``.`` and ``..`` are kept as written.  A raw ``?`` or ``#``
starts the URL's query or fragment, which is not part of the key.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from icechunk._errors import ErrorKind, InvalidInputError, StorageError
from icechunk.config import ObjectStoreConfig, StorageRetriesSettings, VirtualChunkContainer
from icechunk.credentials import (
    AzureCredentials,
    Credentials,
    GcsCredentials,
    S3Credentials,
)
from icechunk.format.manifest import ChunkRef
from icechunk.storage._abc import ByteRange, OffsetRange, RangeRequest, SuffixRange
from icechunk.storage._retry import RetryPolicy
from icechunk.storage._virtual import VirtualReader, build_virtual_reader

__all__ = [
    "VCC_SCHEME",
    "ParsedLocation",
    "VirtualResolver",
    "absolute_range",
    "normalize_authorizations",
    "parse_location",
    "resolve_vcc",
]

VCC_SCHEME = "vcc://"

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/?#]*)([^?#]*)")


@dataclass(frozen=True, slots=True)
class ParsedLocation:
    """An absolute location split for fetching: ``scheme://host/key``."""

    url: str
    scheme: str
    host: str
    key: str


def parse_location(url: str) -> ParsedLocation:
    """Split an absolute URL into scheme, host and (percent-decoded) object key.

    ``file:///data/x.nc`` has an empty host and the key ``/data/x.nc`` (an absolute path);
    for other schemes the key is the path without its leading ``/``.

    Raises
    ------
    InvalidInputError
        ``invalid-virtual-ref`` when ``url`` is not an absolute URL.
    """
    match = _URL.match(url)
    if match is None:
        raise InvalidInputError(
            f"virtual chunk location {url!r} is not an absolute URL (scheme://...)",
            ErrorKind.INVALID_VIRTUAL_REF,
        )
    scheme, host, path = match.group(1).lower(), match.group(2), match.group(3)
    if scheme == "file":
        if host not in ("", "localhost"):
            raise InvalidInputError(
                f"file:// locations must be absolute local paths (file:///...), got {url!r}",
                ErrorKind.INVALID_VIRTUAL_REF,
            )
        return ParsedLocation(url, scheme, "", unquote(path))
    return ParsedLocation(url, scheme, host, unquote(path[1:] if path.startswith("/") else path))


def resolve_vcc(containers: Mapping[str, VirtualChunkContainer], location: str) -> str:
    """``location`` with a ``vcc://<name>/`` prefix replaced by that container's url prefix.

    Other locations, and ``vcc://`` names that match no container, are returned unchanged.
    """
    if not location.startswith(VCC_SCHEME):
        return location
    name, sep, rest = location[len(VCC_SCHEME):].partition("/")
    for container in containers.values():
        if sep and container.name == name:
            return container.url_prefix + rest
    return location


def absolute_range(ref: ChunkRef, byte_range: ByteRange | None) -> tuple[int, int]:
    """``[start, end)`` in the target object for a range relative to the chunk."""
    start, length = int(ref.offset), int(ref.length)
    if byte_range is None:
        lo, hi = 0, length
    elif isinstance(byte_range, RangeRequest):
        lo, hi = byte_range.start, min(byte_range.end, length)
    elif isinstance(byte_range, OffsetRange):
        lo, hi = byte_range.offset, length
    elif isinstance(byte_range, SuffixRange):
        lo, hi = max(length - byte_range.suffix, 0), length
    else:
        raise InvalidInputError(f"unsupported byte range {byte_range!r}", ErrorKind.INVALID_BYTE_RANGE)
    lo = min(lo, length)
    return start + lo, start + max(hi, lo)


# ---- authorizations -------------------------------------------------------------------------

_RAW_S3 = (S3Credentials.FromEnv, S3Credentials.Anonymous, S3Credentials.Static, S3Credentials.Refreshable)
_RAW_GCS = (GcsCredentials.FromEnv, GcsCredentials.Anonymous, GcsCredentials.Static, GcsCredentials.Refreshable)
_RAW_AZURE = (
    AzureCredentials.FromEnv, AzureCredentials.Anonymous, AzureCredentials.Static, AzureCredentials.Refreshable,
)
_SENTINELS = (Credentials.LocalFileSystemAccess, Credentials.HttpAccess)

_EXPLICIT_REPLACEMENT = {
    "s3": "Credentials.S3(S3Credentials.FromEnv())",
    "tigris": "Credentials.S3(S3Credentials.FromEnv())",
    "gs": "Credentials.Gcs(GcsCredentials.Anonymous())",
    "gcs": "Credentials.Gcs(GcsCredentials.Anonymous())",
    "az": "Credentials.Azure(AzureCredentials.FromEnv())",
    "azure": "Credentials.Azure(AzureCredentials.FromEnv())",
    "abfs": "Credentials.Azure(AzureCredentials.FromEnv())",
    "file": "icechunk.credentials.LocalFileSystemAccess",
    "http": "icechunk.credentials.HttpAccess",
    "https": "icechunk.credentials.HttpAccess",
}


def _wrap(credential: Any) -> Any:
    """Raw S3/GCS/Azure credentials are accepted and wrapped like ``containers_credentials``."""
    if isinstance(credential, _RAW_S3):
        return Credentials.S3(credential)
    if isinstance(credential, _RAW_GCS):
        return Credentials.Gcs(credential)
    if isinstance(credential, _RAW_AZURE):
        return Credentials.Azure(credential)
    return credential


def normalize_authorizations(value: Mapping[Any, Any] | None, *, warn: bool = True) -> dict[str, Any]:
    """The ``authorize_virtual_chunk_access`` map with ``/``-terminated prefixes.

    A ``None`` credential (environment or anonymous access) is deprecated: it warns with a
    ``DeprecationWarning`` naming the explicit value to use for the prefix's scheme.

    Raises
    ------
    InvalidInputError
        ``invalid-credentials`` for keys that are not strings or values that are no
        credential at all.
    """
    out: dict[str, Any] = {}
    for prefix, credential in (value or {}).items():
        if not isinstance(prefix, str) or not prefix:
            raise InvalidInputError(
                f"authorize_virtual_chunk_access keys must be url prefixes, got {prefix!r}",
                ErrorKind.INVALID_CREDENTIALS,
            )
        key = prefix if prefix.endswith("/") else prefix + "/"
        credential = _wrap(credential)
        if credential is None:
            if warn:
                scheme = prefix.split("://", 1)[0].lower() if "://" in prefix else ""
                replacement = _EXPLICIT_REPLACEMENT.get(scheme, "an explicit credential")
                warnings.warn(
                    f"authorizing virtual chunk container {key!r} with None is deprecated; "
                    f"pass {replacement} instead",
                    DeprecationWarning,
                    stacklevel=4,
                )
        elif not isinstance(credential, (Credentials.S3, Credentials.Gcs, Credentials.Azure, *_SENTINELS)):
            raise InvalidInputError(
                f"authorize_virtual_chunk_access[{prefix!r}] must be a credential "
                f"(Credentials.S3/Gcs/Azure, LocalFileSystemAccess, HttpAccess) or None, "
                f"got {type(credential).__name__}",
                ErrorKind.INVALID_CREDENTIALS,
            )
        out[key] = credential
    return out


def _credential_fits(store: Any, credential: Any) -> bool:
    if credential is None:
        return True
    if isinstance(store, (ObjectStoreConfig.S3, ObjectStoreConfig.S3Compatible, ObjectStoreConfig.Tigris)):
        return isinstance(credential, Credentials.S3)
    if isinstance(store, ObjectStoreConfig.Gcs):
        return isinstance(credential, Credentials.Gcs)
    if isinstance(store, ObjectStoreConfig.Azure):
        return isinstance(credential, Credentials.Azure)
    if isinstance(store, ObjectStoreConfig.Http):
        return isinstance(credential, Credentials.HttpAccess)
    if isinstance(store, ObjectStoreConfig.LocalFileSystem):
        return isinstance(credential, Credentials.LocalFileSystemAccess)
    return isinstance(credential, _SENTINELS)  # in-memory and other test stores


# ---- the resolver ---------------------------------------------------------------------------


class VirtualResolver:
    """Container matching, authorization and cached readers of one repository handle.

    Parameters
    ----------
    containers
        The configured containers, keyed by url prefix.
    authorizations
        Normalized ``authorize_virtual_chunk_access`` (see :func:`normalize_authorizations`).
    retries
        Retries of transient read failures (None: 10 tries, 100 ms initial backoff).

    Raises
    ------
    StorageError
        When an authorized prefix names a container whose store does not fit the credential.
    """

    def __init__(
        self,
        containers: Mapping[str, VirtualChunkContainer] | None,
        authorizations: Mapping[str, Any],
        retries: StorageRetriesSettings | None = None,
    ) -> None:
        self.containers: dict[str, VirtualChunkContainer] = dict(containers or {})
        self.authorizations = dict(authorizations)
        self._by_name = {c.name: c for c in self.containers.values() if c.name is not None}
        # longest prefix first: the first match is the longest
        self._prefixes = tuple(sorted(self.containers, key=len, reverse=True))
        self._policy = RetryPolicy.from_settings(retries)
        self._readers: dict[tuple[str, str, str], VirtualReader] = {}
        self._lock = threading.Lock()
        for prefix, credential in self.authorizations.items():
            container = self.containers.get(prefix)
            if container is not None and not _credential_fits(container.store, credential):
                raise StorageError(
                    f"the credential authorizing virtual chunk container {prefix!r} "
                    f"({type(credential).__name__}) does not fit its store "
                    f"({type(container.store).__name__})",
                    ErrorKind.STORAGE_CONFIG,
                )

    # ---- matching ---------------------------------------------------------------------------

    def resolve(self, location: str) -> tuple[str, VirtualChunkContainer | None]:
        """``(absolute url, container)`` of a location; container None when nothing matches."""
        if location.startswith(VCC_SCHEME):
            name, sep, rest = location[len(VCC_SCHEME):].partition("/")
            container = self._by_name.get(name) if sep else None
            if container is None:
                return location, None
            return container.url_prefix + rest, container
        for prefix in self._prefixes:
            if location.startswith(prefix):
                return location, self.containers[prefix]
        return location, None

    def valid_prefixes(self) -> tuple[str, ...]:
        """Prefixes a valid location starts with (container prefixes and ``vcc://<name>/``)."""
        return (*self._prefixes, *(f"{VCC_SCHEME}{name}/" for name in self._by_name))

    def invalid_locations(self, locations: Iterable[str]) -> set[str]:
        """The locations (of an iterable of distinct ones) that match no container."""
        prefixes = self.valid_prefixes()
        if not prefixes:
            return set(locations)
        return {loc for loc in locations if not loc.startswith(prefixes)}

    # ---- reading ----------------------------------------------------------------------------

    def _reader(self, container: VirtualChunkContainer, parsed: Any) -> VirtualReader:
        cache_key = (container.url_prefix, parsed.scheme, parsed.host)
        reader = self._readers.get(cache_key)
        if reader is None:
            with self._lock:
                reader = self._readers.get(cache_key)
                if reader is None:
                    credential = self.authorizations.get(container.url_prefix)
                    reader = build_virtual_reader(
                        container.store, parsed.scheme, parsed.host, credential, self._policy
                    )
                    self._readers[cache_key] = reader
        return reader

    def authorize(self, location: str) -> tuple[ParsedLocation, VirtualChunkContainer]:
        """Resolve and check a location for reading (no I/O).

        Raises
        ------
        InvalidInputError
            ``no-container-for-virtual-chunk`` or ``unauthorized-virtual-chunk-container``.
        """
        url, container = self.resolve(location)
        if container is None:
            raise InvalidInputError(
                f"no virtual chunk container matches the location {location!r}; add one to the "
                "repository config (RepositoryConfig.set_virtual_chunk_container)",
                ErrorKind.NO_CONTAINER_FOR_VIRTUAL_CHUNK,
            )
        if container.url_prefix not in self.authorizations:
            raise InvalidInputError(
                f"virtual chunk container {container.url_prefix!r} is not authorized: pass "
                f"authorize_virtual_chunk_access={{{container.url_prefix!r}: <credentials>}} when "
                f"opening the repository to read {location!r}",
                ErrorKind.UNAUTHORIZED_VIRTUAL_CHUNK_CONTAINER,
            )
        return parse_location(url), container

    async def fetch(self, ref: ChunkRef, byte_range: ByteRange | None = None) -> bytes:
        """The bytes of a virtual chunk (or a range of it, relative to the chunk)."""
        location = ref.location
        if location is None:
            raise InvalidInputError("virtual chunk ref without a location", ErrorKind.INVALID_VIRTUAL_REF)
        parsed, container = self.authorize(location)
        start, end = absolute_range(ref, byte_range)
        reader = self._reader(container, parsed)
        return await reader.read(
            parsed.key, start, end, etag=ref.etag, last_modified=int(ref.last_modified or 0)
        )
