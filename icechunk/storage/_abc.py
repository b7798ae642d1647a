"""The async byte-storage vocabulary every backend implements (DESIGN.md, storage layer).

Keys are ``/``-separated strings relative to the repository root (``repo``,
``snapshots/<id>``, ``chunks/<id>``...).  A missing object raises
:class:`icechunk.NotFoundError` (also a ``KeyError``).  Writes take a mode: ``"create"``
(fail if present), ``"overwrite"``, or a :class:`VersionToken` (compare-and-swap).  A lost
create or compare-and-swap is a *result* (``PutResult.ok is False``), not an exception,
because the commit loop expects to lose races.
"""

from __future__ import annotations

import abc
import contextlib
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeAlias

from icechunk.storage._blocking import run_in_fresh_loop

if TYPE_CHECKING:
    from icechunk.config import S3Options, StorageSettings
    from icechunk.credentials import AnyAzureCredential, AnyGcsCredential, AnyS3Credential

__all__ = [
    "ByteRange",
    "ObjectInfo",
    "OffsetRange",
    "PutMode",
    "PutResult",
    "RangeRequest",
    "Storage",
    "StorageObjectInfo",
    "SuffixRange",
    "VersionToken",
]


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """Bytes ``[start, end)``; an ``end`` past the object's end is truncated."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Bytes from ``offset`` to the end."""

    offset: int


@dataclass(frozen=True, slots=True)
class SuffixRange:
    """The last ``suffix`` bytes (the whole object if it is shorter)."""

    suffix: int


ByteRange: TypeAlias = RangeRequest | OffsetRange | SuffixRange


@dataclass(frozen=True, slots=True)
class VersionToken:
    """Opaque version of an object (ETag and/or generation) for compare-and-swap."""

    etag: str | None = None
    generation: str | None = None


PutMode: TypeAlias = Literal["create", "overwrite"] | VersionToken


@dataclass(frozen=True, slots=True)
class PutResult:
    """Outcome of a put: ``ok`` False means a lost create / compare-and-swap race."""

    ok: bool
    version: VersionToken | None = None

    @property
    def conflict(self) -> bool:
        return not self.ok


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Listing/HEAD entry: key (relative to the storage root), size, time, version."""

    key: str
    size_bytes: int
    created_at: datetime | None = None
    version: VersionToken | None = None


#: The name API.md uses for listing entries (``key``, ``size_bytes``, ``created_at``).
StorageObjectInfo = ObjectInfo


class Storage(abc.ABC):
    """Async key/bytes storage with conditional writes.

    Construct one with the factories (:func:`icechunk.local_filesystem_storage`,
    :func:`icechunk.in_memory_storage`, :func:`icechunk.s3_storage`, ...), not directly.
    Instances pickle and compare equal after a round trip (an in-memory storage keeps
    sharing its data only within one process).

    Contract for implementations: ``__eq__``/``__hash__`` compare the *location and
    settings* (never live clients), ``__reduce__`` rebuilds from constructor arguments, and
    ``__repr__`` never shows a secret.  No method holds an asyncio primitive across calls,
    so one instance may be used from several event loops (and threads).
    """

    # ---- the byte vocabulary (what the engine uses) -----------------------------------------

    @abc.abstractmethod
    async def get(self, key: str, byte_range: ByteRange | None = None) -> bytes:
        """Read an object, or a byte range of it.

        Raises
        ------
        NotFoundError
            If the object does not exist.
        """

    @abc.abstractmethod
    async def get_with_version(self, key: str) -> tuple[bytes, VersionToken]:
        """Read a whole object and the version token to compare-and-swap against."""

    @abc.abstractmethod
    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        mode: PutMode = "overwrite",
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        """Write an object.

        ``mode="create"`` fails (``ok=False``) when the key exists; a :class:`VersionToken`
        fails (``ok=False``) unless the current object has that version (a missing object
        never matches).  Writes are atomic: readers see the old or the new bytes.
        """

    async def put_fresh(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Write an object under a new random key that nothing refers to yet.

        Chunks, manifests, snapshots, transaction logs and repo-info backups are written so,
        before the snapshot or ref that makes them reachable.  No reader can know such a key
        until then, so a backend may skip what makes :meth:`put` atomic towards readers (the
        local one writes the file in place instead of renaming a temp file).  The default is
        ``put(key, data, "overwrite")``.
        """
        await self.put(key, data, "overwrite")

    async def put_with_backup(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        expected: VersionToken,
        backup_key: str,
        previous: bytes,
    ) -> PutResult:
        """Compare-and-swap ``key`` to ``data``, keeping the replaced object under ``backup_key``.

        The ``repo`` object is updated so (FORMAT.md §5.3): ``previous`` is its content at
        version ``expected``, as the caller read it, and ``backup_key`` a fresh key.  When
        the swap succeeds, the backup holds ``previous``; when it fails (``ok=False``) a
        backup may or may not have been written.  The default writes the backup with
        :meth:`put_fresh`, then calls :meth:`put`; the local backend hard-links the current
        file as the backup and swaps the new one in, under its directory lock.
        """
        await self.put_fresh(backup_key, previous)
        return await self.put(key, data, expected)

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """Size/time/version of an object, or None when it does not exist."""

    @abc.abstractmethod
    def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (``""`` lists everything)."""

    @abc.abstractmethod
    async def delete_many(self, keys: Iterable[str], *, exact_count: bool = True) -> int:
        """Delete objects (missing ones are ignored); returns how many existed.

        Object stores cannot tell whether a deleted key existed without an extra HEAD per
        key; pass ``exact_count=False`` to skip those (the result is then the number of
        keys submitted).  Local and in-memory storage always count exactly.
        """

    # ---- capabilities and settings ----------------------------------------------------------

    def commit_lock(self) -> contextlib.AbstractAsyncContextManager[object]:
        """An advisory lock that serializes the commit attempts of cooperating writers.

        ``commit(rebase_with=...)`` holds it from reading the branch tip to updating the
        branch, so that writers contending for one branch take turns instead of losing
        races and redoing their manifests and snapshots.  It is only an optimization: the
        compare-and-swap keeps every update safe, and a writer that waits too long goes on
        without the lock.  The default is no lock; the local backend locks a directory.
        """
        return contextlib.nullcontext()

    def expect_writes(self, prefixes: Iterable[str]) -> None:
        """A hint that small objects will soon be written under ``prefixes`` ("" = the root).

        A writable session gives it for what its commit writes (manifests, snapshots,
        transaction logs, the repo object), so that a backend can get ready; the local
        backend makes those directories if missing and keeps files made ahead in them.  The
        default does nothing.
        """
        return None

    @property
    def read_only(self) -> bool:
        """True for backends that cannot write (HTTP)."""
        return False

    @abc.abstractmethod
    def default_settings(self) -> StorageSettings:
        """The backend's default settings, with ``concurrency`` and ``retries`` filled in."""

    @property
    @abc.abstractmethod
    def settings(self) -> StorageSettings:
        """The effective settings (defaults merged with what :meth:`with_settings` gave)."""

    @abc.abstractmethod
    def with_settings(self, settings: StorageSettings | None) -> Storage:
        """A handle on the same storage whose settings are ``settings`` over the defaults."""

    @property
    def can_write_to_root(self) -> bool:
        """Whether creating a repository at this location is allowed (False at a bucket root)."""
        return True

    # ---- sync helpers of the public API (API.md §7.3) ---------------------------------------

    def list_objects_metadata(
        self, settings: StorageSettings | None = None, prefix: str | None = None
    ) -> list[StorageObjectInfo]:
        """Every object under ``prefix`` (default: all), with key, size and creation time.

        Parameters
        ----------
        settings
            Settings to use for this listing instead of the storage's own.
        prefix
            Key prefix relative to the storage root.
        """
        target = self if settings is None else self.with_settings(settings)

        async def collect() -> list[ObjectInfo]:
            return [info async for info in target.list_prefix(prefix or "")]

        return run_in_fresh_loop(collect)

    def list_objects(
        self, settings: StorageSettings | None = None, prefix: str | None = None
    ) -> list[tuple[str, int]]:
        """``(key, size)`` of every object under ``prefix``.

        .. deprecated:: use :meth:`list_objects_metadata`.
        """
        warnings.warn(
            "Storage.list_objects is deprecated; use Storage.list_objects_metadata",
            DeprecationWarning,
            stacklevel=2,
        )
        return [(info.key, info.size_bytes) for info in self.list_objects_metadata(settings, prefix)]

    # ---- low-level constructors (the public factories call these) --------------------------

    @classmethod
    def new_in_memory(cls) -> Storage:
        """A fresh, empty in-memory storage."""
        from icechunk.storage._memory import MemoryStorage

        return MemoryStorage()

    @classmethod
    def new_local_filesystem(cls, path: str) -> Storage:
        """Storage in the directory ``path`` (created on first write)."""
        from icechunk.storage._local import LocalFileSystemStorage

        return LocalFileSystemStorage(path)

    @classmethod
    def new_s3(
        cls,
        config: S3Options,
        bucket: str,
        prefix: str | None,
        credentials: AnyS3Credential | None = None,
        legacy_rooted_keys: bool | None = None,
        *,
        read_headers: Mapping[str, str] | None = None,
        write_headers: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Storage:
        """S3 (or S3-compatible) storage from options and credentials."""
        from icechunk.storage._obstore import ObjectStoreStorage, S3Location

        location = S3Location.build(
            "s3", config, bucket, prefix, credentials, legacy_rooted_keys,
            read_headers=read_headers, write_headers=write_headers, headers=headers,
        )
        return ObjectStoreStorage(location)

    @classmethod
    def new_s3_object_store(
        cls,
        config: S3Options,
        bucket: str,
        prefix: str | None,
        credentials: AnyS3Credential | None = None,
        *,
        read_headers: Mapping[str, str] | None = None,
        write_headers: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Storage:
        """S3 storage (the reference's alternative client; the same backend here)."""
        return cls.new_s3(
            config, bucket, prefix, credentials,
            read_headers=read_headers, write_headers=write_headers, headers=headers,
        )

    @classmethod
    def new_tigris(
        cls,
        config: S3Options,
        bucket: str,
        prefix: str | None,
        use_weak_consistency: bool,
        credentials: AnyS3Credential | None = None,
        legacy_rooted_keys: bool | None = None,
        *,
        read_headers: Mapping[str, str] | None = None,
        write_headers: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Storage:
        """Tigris storage; ``use_weak_consistency`` makes it read-only."""
        from icechunk.storage._obstore import ObjectStoreStorage, S3Location

        location = S3Location.build(
            "tigris", config, bucket, prefix, credentials, legacy_rooted_keys,
            read_headers=read_headers, write_headers=write_headers, headers=headers,
            use_weak_consistency=use_weak_consistency,
        )
        return ObjectStoreStorage(location)

    @classmethod
    def new_r2(
        cls,
        config: S3Options,
        bucket: str | None = None,
        prefix: str | None = None,
        account_id: str | None = None,
        credentials: AnyS3Credential | None = None,
        legacy_rooted_keys: bool | None = None,
        *,
        read_headers: Mapping[str, str] | None = None,
        write_headers: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Storage:
        """Cloudflare R2 storage (endpoint from ``account_id`` or ``config.endpoint_url``)."""
        from icechunk.storage._obstore import ObjectStoreStorage, S3Location

        location = S3Location.build_r2(
            config, bucket, prefix, account_id, credentials, legacy_rooted_keys,
            read_headers=read_headers, write_headers=write_headers, headers=headers,
        )
        return ObjectStoreStorage(location)

    @classmethod
    def new_gcs(
        cls,
        bucket: str,
        prefix: str | None,
        credentials: AnyGcsCredential | None = None,
        *,
        config: Mapping[str, str] | None = None,
        read_headers: Mapping[str, str] | None = None,
        write_headers: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Storage:
        """Google Cloud Storage."""
        from icechunk.storage._obstore import GcsLocation, ObjectStoreStorage

        location = GcsLocation.build(
            bucket, prefix, credentials, config,
            read_headers=read_headers, write_headers=write_headers, headers=headers,
        )
        return ObjectStoreStorage(location)

    @classmethod
    def new_azure_blob(
        cls,
        account: str,
        container: str,
        prefix: str,
        credentials: AnyAzureCredential | None = None,
        *,
        config: Mapping[str, str] | None = None,
    ) -> Storage:
        """Azure Blob Storage."""
        from icechunk.storage._obstore import AzureLocation, ObjectStoreStorage

        return ObjectStoreStorage(AzureLocation.build(account, container, prefix, credentials, config))

    @classmethod
    def new_http(
        cls,
        base_url: str,
        config: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Storage:
        """Read-only HTTP(S) storage under ``base_url``."""
        from icechunk.storage._obstore import HttpLocation, ObjectStoreStorage

        return ObjectStoreStorage(HttpLocation.build(base_url, config, headers))

    @classmethod
    def new_redirect(cls, base_url: str) -> Storage:
        """Read-only storage found by following HTTP redirects from ``base_url``."""
        from icechunk.storage._redirect import RedirectStorage

        return RedirectStorage(base_url)
