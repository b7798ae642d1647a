"""Virtual chunk containers and specs: chunks that live in other files (NetCDF, HDF5, ...)."""

from __future__ import annotations

import html
from datetime import datetime

from icechunk.config import VirtualChunkContainer

__all__ = ["VirtualChunkContainer", "VirtualChunkSpec"]


class VirtualChunkSpec:
    """One virtual chunk reference: chunk index, location, byte range and optional checksum.

    Parameters
    ----------
    index
        Chunk coordinates in the array's chunk grid.
    location
        Absolute URL (or ``vcc://<container name>/<path>``) of the object holding the bytes.
    offset, length
        Byte range of the chunk inside that object.
    etag_checksum, last_updated_at_checksum
        Reading fails later if the object's ETag differs, or it was modified after this time.
    """

    __slots__ = ("_etag", "_index", "_last_updated", "_length", "_location", "_offset")

    def __init__(
        self,
        index: list[int],
        location: str,
        offset: int,
        length: int,
        etag_checksum: str | None = None,
        last_updated_at_checksum: datetime | None = None,
    ) -> None:
        self._index = [int(i) for i in index]
        self._location = location
        self._offset = int(offset)
        self._length = int(length)
        self._etag = etag_checksum
        self._last_updated = last_updated_at_checksum

    @property
    def index(self) -> list[int]:
        return list(self._index)

    @property
    def location(self) -> str:
        return self._location

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def length(self) -> int:
        return self._length

    @property
    def etag_checksum(self) -> str | None:
        return self._etag

    @property
    def last_updated_at_checksum(self) -> datetime | None:
        return self._last_updated

    def __reduce__(self) -> tuple[type[VirtualChunkSpec], tuple[object, ...]]:
        return (
            VirtualChunkSpec,
            (self._index, self._location, self._offset, self._length, self._etag, self._last_updated),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VirtualChunkSpec) and self.__reduce__()[1] == other.__reduce__()[1]

    def __repr__(self) -> str:
        return (
            f"icechunk.VirtualChunkSpec(index={self._index!r}, location={self._location!r}, "
            f"offset={self._offset}, length={self._length})"
        )

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"
