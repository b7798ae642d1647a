"""Snapshot files (file type 1): the node tree of one commit (FORMAT.md §3.3, §3.6, §3.8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from icechunk.format.ids import ManifestId, NodeId, SnapshotId

__all__ = [
    "ArrayData",
    "DimensionShape",
    "ManifestFileInfo",
    "ManifestRef",
    "NodeSnapshot",
    "Snapshot",
    "decode_snapshot",
    "encode_snapshot",
]


@dataclass(frozen=True, slots=True)
class DimensionShape:
    """One dimension of an array: its length and its number of chunks.

    ``chunk_length`` is only set when read from a spec-1 file (where it is what is stored);
    spec-1 writers compute it as ``ceil(array_length / num_chunks)`` when it is None.
    """

    array_length: int
    num_chunks: int
    chunk_length: int | None = None


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """A manifest holding chunk refs of an array, and the chunk-index box it covers.

    ``extents`` has one ``(from, to)`` half-open range per dimension (empty for 0-d arrays).
    """

    manifest_id: ManifestId
    extents: tuple[tuple[int, int], ...]

    def contains(self, coords: tuple[int, ...]) -> bool:
        """Whether the chunk index lies inside the extents (empty extents match all)."""
        return all(lo <= c < hi for c, (lo, hi) in zip(coords, self.extents, strict=False))


@dataclass(frozen=True, slots=True)
class ArrayData:
    """The array part of a node: derived shape, dimension names and manifest refs."""

    shape: tuple[DimensionShape, ...]
    dimension_names: tuple[str | None, ...] | None
    manifests: tuple[ManifestRef, ...]


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """A group (``array is None``) or an array in a snapshot."""

    id: NodeId
    path: str
    user_data: bytes
    array: ArrayData | None

    @property
    def is_array(self) -> bool:
        return self.array is not None

    @property
    def is_group(self) -> bool:
        return self.array is None


@dataclass(frozen=True, slots=True)
class ManifestFileInfo:
    """A manifest object used by a snapshot: its id, stored size and total ref count."""

    id: ManifestId
    size_bytes: int
    num_chunk_refs: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A decoded snapshot.

    ``nodes`` is sorted by the raw UTF-8 bytes of the path.  ``parent_id`` is only stored in
    spec-1 files (spec 2 keeps parentage in the repo info).  ``spec_version`` is the header
    byte of the file it was decoded from (2 for new objects unless written as spec 1).
    """

    id: SnapshotId
    parent_id: SnapshotId | None
    flushed_at: int
    message: str
    metadata: dict[str, Any]
    manifest_files: tuple[ManifestFileInfo, ...]
    nodes: tuple[NodeSnapshot, ...]
    spec_version: int = 2
    implementation: str | None = field(default=None, compare=False)


def encode_snapshot(
    snapshot: Snapshot,
    *,
    spec_version: int = 2,
    compression_level: int = 3,
    implementation: str | None = None,
) -> bytes:
    """Encode a snapshot file (header + zstd flatbuffer) as the reference writer does."""
    raise NotImplementedError("encode_snapshot is being implemented (issue 2)")


def decode_snapshot(data: bytes | memoryview, name: str) -> Snapshot:
    """Decode a spec-1 or spec-2 snapshot file.

    Raises
    ------
    FormatError
        On any corrupt, truncated or unsupported input (message names ``name``).
    """
    raise NotImplementedError("decode_snapshot is being implemented (issue 2)")
