"""Manifest files (file type 2): chunk refs of arrays, held as numpy columns (FORMAT.md §3.4, §4.7, §6).

One :class:`ArrayManifest` is a table of chunk refs for one array, stored column-wise and
sorted by chunk coordinates, so lookups are binary searches and encode/decode are a handful of
numpy operations instead of a per-ref Python loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from icechunk.format.ids import ChunkId, ManifestId, NodeId

__all__ = [
    "ArrayManifest",
    "ChunkRef",
    "LocationCompression",
    "Manifest",
    "RefKind",
    "decode_manifest",
    "encode_manifest",
]


class RefKind(enum.IntEnum):
    """Kind of a chunk ref; the values match the public ``ChunkType``."""

    NATIVE = 1
    VIRTUAL = 2
    INLINE = 3


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk ref, as a scalar value (for single lookups and small edits)."""

    kind: RefKind
    chunk_id: ChunkId | None = None
    offset: int = 0
    length: int = 0
    inline: bytes | None = None
    location: str | None = None
    etag: str | None = None
    last_modified: int = 0


@dataclass(slots=True)
class ArrayManifest:
    """Chunk refs of one array as columns, sorted by ``coords`` (lexicographic, unique).

    Columns (all of length ``n``):

    - ``coords``: ``(n, ndim)`` uint32 chunk coordinates
    - ``kind``: uint8 :class:`RefKind`
    - ``chunk_id``: ``(n, 12)`` uint8, zeros where not native
    - ``offset``, ``length``: uint64 (0 for inline refs)
    - ``inline``: object array, ``bytes`` for inline rows, None elsewhere
    - ``location``: object array, ``str`` for virtual rows, None elsewhere
    - ``etag``: object array, ``str`` or None (virtual rows only)
    - ``last_modified``: uint32 seconds, 0 = no checksum
    """

    node_id: NodeId
    coords: np.ndarray
    kind: np.ndarray
    chunk_id: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    inline: np.ndarray
    location: np.ndarray
    etag: np.ndarray
    last_modified: np.ndarray

    @property
    def ndim(self) -> int:
        return int(self.coords.shape[1])

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @classmethod
    def empty(cls, node_id: NodeId, ndim: int) -> ArrayManifest:
        """A manifest with no refs."""
        raise NotImplementedError

    @classmethod
    def from_refs(
        cls, node_id: NodeId, ndim: int, refs: dict[tuple[int, ...], ChunkRef]
    ) -> ArrayManifest:
        """Build (sorted) from scalar refs; for small inputs and tests."""
        raise NotImplementedError

    def find(self, coords: tuple[int, ...]) -> int:
        """Row of ``coords`` (binary search), or -1 when there is no ref."""
        raise NotImplementedError

    def ref(self, row: int) -> ChunkRef:
        """The scalar ref at ``row``."""
        raise NotImplementedError

    def take(self, rows: np.ndarray) -> ArrayManifest:
        """A new manifest with the given rows (kept in the given order)."""
        raise NotImplementedError

    @staticmethod
    def concat(node_id: NodeId, parts: list[ArrayManifest]) -> ArrayManifest:
        """Union of parts; on duplicate coordinates the later part wins.  Result sorted."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class LocationCompression:
    """When and how virtual locations are zstd-dictionary compressed (FORMAT.md §4.7)."""

    min_num_chunks: int = 1000
    dictionary_max_training_samples: int = 100
    dictionary_max_size_bytes: int = 2048
    compression_level: int = 3


@dataclass(slots=True)
class Manifest:
    """A decoded manifest file: arrays sorted by node id."""

    id: ManifestId
    arrays: list[ArrayManifest]
    spec_version: int = 2
    implementation: str | None = field(default=None, compare=False)

    def array(self, node_id: NodeId) -> ArrayManifest | None:
        """The refs of one array (binary search by node id), or None."""
        raise NotImplementedError

    @property
    def num_chunk_refs(self) -> int:
        return sum(len(a) for a in self.arrays)


def encode_manifest(
    manifest: Manifest,
    *,
    spec_version: int = 2,
    compression_level: int = 3,
    location_compression: LocationCompression | None = LocationCompression(),
    implementation: str | None = None,
) -> bytes:
    """Encode a manifest file (header + zstd flatbuffer); vectorized."""
    raise NotImplementedError("encode_manifest is being implemented (issue 2)")


def decode_manifest(data: bytes | memoryview, name: str) -> Manifest:
    """Decode a spec-1 or spec-2 manifest file; vectorized.

    Raises
    ------
    FormatError
        On any corrupt, truncated or unsupported input (message names ``name``).
    """
    raise NotImplementedError("decode_manifest is being implemented (issue 2)")
