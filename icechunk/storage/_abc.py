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
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from icechunk.config import StorageSettings

__all__ = [
    "ByteRange",
    "ObjectInfo",
    "OffsetRange",
    "PutMode",
    "PutResult",
    "RangeRequest",
    "Storage",
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


class Storage(abc.ABC):
    """Async key/bytes storage with conditional writes.

    Construct one with the factories (:func:`icechunk.local_filesystem_storage`,
    :func:`icechunk.in_memory_storage`, :func:`icechunk.s3_storage`, ...), not directly.
    Instances pickle and compare equal after a round trip (an in-memory storage keeps
    sharing its data only within one process).
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

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """Size/time/version of an object, or None when it does not exist."""

    @abc.abstractmethod
    def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (``""`` lists everything)."""

    @abc.abstractmethod
    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete objects (missing ones are ignored); returns how many existed."""

    # ---- capabilities and settings ----------------------------------------------------------

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
