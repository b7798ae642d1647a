"""Manifest files (file type 2): chunk refs of arrays, held as numpy columns (FORMAT.md §3.4, §4.7, §6).

One :class:`ArrayManifest` is a table of chunk refs for one array, stored column-wise and
sorted by chunk coordinates, so lookups are binary searches and encode/decode are a handful of
numpy operations instead of a per-ref Python loop.

Codec layout (private modules):

- ``_manifest_wire``: the refs "as stored" (presence bits, scalars, byte payloads);
- ``_manifest_layout``: vectorized writer, byte-identical to ``flatbuffers.Builder`` driven in
  the reference build order (so small and huge manifests take the same path);
- ``_manifest_read``: vectorized reader for buffers from any writer;
- ``_location_codec``: UTF-8 and zstd-dictionary handling of virtual locations;
- ``_manifest_oracle``: the obvious per-ref codec, used only by the tests as a cross-check.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zstandard
from flatbuffers.builder import BuilderSizeError

from icechunk._errors import ErrorKind, FormatError, InvalidInputError
from icechunk.format._flatbuf import decoding
from icechunk.format._location_codec import (
    MAX_LOCATION_BYTES,
    LocationCompressor,
    decode_utf8,
    decompress_locations,
    train_location_dictionary,
)
from icechunk.format._manifest_layout import ManifestWriter, estimate_size
from icechunk.format._manifest_read import read_manifest_buffer
from icechunk.format._manifest_wire import (
    B_CHUNK_ID,
    B_COMPRESSED_LOCATION,
    B_ETAG,
    B_INLINE,
    B_LAST_MODIFIED,
    B_LENGTH,
    B_LOCATION,
    B_OFFSET,
    Segments,
    WireArray,
    pack_strings,
)
from icechunk.format.header import IMPLEMENTATION_NAME, FileType, decode_envelope, encode_envelope
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

# Flatbuffers above this size are zstd-compressed with several threads: faster, still valid,
# but no longer byte-identical to the reference writer (small manifests always are).
_THREADED_ZSTD_FROM = 8 << 20


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


# --------------------------------------------------------------------------------------------
# packed sort keys
# --------------------------------------------------------------------------------------------


def _key_bits(coords: np.ndarray) -> tuple[int, ...] | None:
    """Bits per dimension for an order-preserving uint64 key, or None if it does not fit."""
    ndim: int = coords.shape[1]
    if ndim <= 2:
        return (32,) * ndim
    if coords.shape[0] == 0:
        return (1,) * ndim
    bits = tuple(max(1, int(m).bit_length()) for m in coords.max(axis=0).tolist())
    return bits if sum(bits) <= 64 else None


def _pack_keys(coords: np.ndarray, bits: tuple[int, ...] | None) -> np.ndarray:
    """Sort keys whose order is the lexicographic order of ``coords`` rows.

    A uint64 (mixed-radix) key when ``bits`` is given, else a big-endian void view.
    """
    n, ndim = coords.shape
    if bits is None:
        be = np.ascontiguousarray(coords, dtype=">u4")
        return be.view(f"V{4 * ndim}").reshape(n)
    key = np.zeros(n, dtype=np.uint64)
    for d in range(ndim):
        if d:
            key <<= np.uint64(bits[d])
        key |= coords[:, d].astype(np.uint64)
    return key


def _is_strictly_sorted(key: np.ndarray) -> bool:
    if key.shape[0] < 2:
        return True
    if key.dtype.kind == "V":
        order = np.argsort(key, kind="stable")
        return bool((order == np.arange(key.shape[0])).all() and (key[1:] != key[:-1]).all())
    return bool((key[1:] > key[:-1]).all())


def _sort_dedup(key: np.ndarray) -> np.ndarray:
    """Rows that sort ``key`` keeping, for equal keys, the last one in input order."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    keep = np.ones(order.shape[0], dtype=bool)
    if order.shape[0] > 1:
        keep[:-1] = k[1:] != k[:-1]
    return order[keep]


def _object_column(n: int, values: np.ndarray | Sequence[object] | None) -> np.ndarray:
    out = np.empty(n, dtype=object)
    if values is not None:
        out[:] = values
    return out


def _not_none(col: np.ndarray) -> np.ndarray:
    # the stubs refuse None as an operand; object columns compare element-wise
    present: np.ndarray = np.not_equal(col, None)  # type: ignore[call-overload]
    return present.astype(bool)


def _ids_column(n: int, values: np.ndarray | None) -> np.ndarray:
    if values is None:
        return np.zeros((n, 12), dtype=np.uint8)
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.array([bytes(v) if v is not None else bytes(12) for v in arr], dtype="S12")
    if arr.dtype.kind == "S":
        arr = np.frombuffer(np.ascontiguousarray(arr, dtype="S12").tobytes(), dtype=np.uint8)
    return np.ascontiguousarray(arr, dtype=np.uint8).reshape(n, 12)


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

    Treat the columns as read-only once the object is built: :meth:`find` caches a packed
    copy of ``coords``.

    Building: :meth:`from_columns` (vectorized; sorts, de-duplicates with the last row
    winning, normalises dtypes), :meth:`from_refs` (scalar refs), :meth:`empty`.
    Lookup: :meth:`find` / :meth:`get` (one coordinate, a binary search on a cached packed
    key), :meth:`find_many` (many at once), :meth:`ref`, :meth:`items`, :meth:`extents`
    (``ManifestRef.extents``).  Vectorized edits returning new objects: :meth:`take`,
    :meth:`concat` (union, later part wins), :meth:`select_box` (rows inside a chunk-index
    box, for manifest splitting), :meth:`without` (delete coordinates).  ``==`` compares
    every column.
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
    _keys: tuple[tuple[int, ...] | None, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def ndim(self) -> int:
        return int(self.coords.shape[1])

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def empty(cls, node_id: NodeId, ndim: int) -> ArrayManifest:
        """A manifest with no refs."""
        return cls.from_columns(
            node_id, np.zeros((0, ndim), dtype=np.uint32), np.zeros(0, np.uint8)
        )

    @classmethod
    def from_columns(
        cls,
        node_id: NodeId,
        coords: np.ndarray,
        kind: np.ndarray | int,
        *,
        chunk_id: np.ndarray | None = None,
        offset: np.ndarray | None = None,
        length: np.ndarray | None = None,
        inline: np.ndarray | Sequence[bytes | None] | None = None,
        location: np.ndarray | Sequence[str | None] | None = None,
        etag: np.ndarray | Sequence[str | None] | None = None,
        last_modified: np.ndarray | None = None,
        assume_sorted: bool = False,
    ) -> ArrayManifest:
        """Build from (possibly unsorted) columns; missing columns take their defaults.

        Rows are sorted by ``coords``; when a coordinate appears several times the **last**
        row wins.  ``kind`` may be a scalar applying to every row.  ``chunk_id`` may also be
        an ``S12`` array or a sequence of 12-byte ids.  Pass ``assume_sorted=True`` only for
        input already sorted and unique (it is then checked, not sorted).

        Raises
        ------
        InvalidInputError
            On inconsistent column shapes, or unsorted input with ``assume_sorted``.
        """
        coords = np.asarray(coords)
        if coords.ndim != 2:
            raise InvalidInputError(
                f"coords must be a 2-D (n, ndim) array, got shape {coords.shape}",
                ErrorKind.INVALID_CHUNK_INDEX,
            )
        if coords.size and (
            coords.dtype.kind not in "ui" or int(coords.min()) < 0 or int(coords.max()) > 0xFFFFFFFF
        ):
            raise InvalidInputError(
                "chunk coordinates must be integers in [0, 2**32)", ErrorKind.INVALID_CHUNK_INDEX
            )
        coords = np.ascontiguousarray(coords, dtype=np.uint32)
        n = coords.shape[0]
        kinds = np.broadcast_to(np.asarray(kind, dtype=np.uint8), (n,)).copy()

        def num(values: np.ndarray | None, dtype: type) -> np.ndarray:
            if values is None:
                return np.zeros(n, dtype=dtype)
            return np.ascontiguousarray(np.broadcast_to(np.asarray(values), (n,)), dtype=dtype)

        try:
            am = cls(
                node_id=NodeId(node_id),
                coords=coords,
                kind=kinds,
                chunk_id=_ids_column(n, chunk_id),
                offset=num(offset, np.uint64),
                length=num(length, np.uint64),
                inline=_object_column(n, inline),
                location=_object_column(n, location),
                etag=_object_column(n, etag),
                last_modified=num(last_modified, np.uint32),
            )
        except ValueError as err:
            raise InvalidInputError(f"inconsistent manifest columns: {err}") from None
        bits = _key_bits(coords)
        key = _pack_keys(coords, bits)
        if _is_strictly_sorted(key):
            am._keys = (bits, key)
            return am
        if assume_sorted:
            raise InvalidInputError("manifest rows are not sorted and unique by coords")
        return am.take(_sort_dedup(key))

    @classmethod
    def from_refs(
        cls, node_id: NodeId, ndim: int, refs: dict[tuple[int, ...], ChunkRef]
    ) -> ArrayManifest:
        """Build (sorted) from scalar refs; for small inputs and tests."""
        items = list(refs.items())
        n = len(items)
        coords = np.array([c for c, _ in items], dtype=np.int64).reshape(n, ndim)
        for c, _ in items:
            if len(c) != ndim:
                raise InvalidInputError(
                    f"chunk index {c} does not have {ndim} dimensions",
                    ErrorKind.INVALID_CHUNK_INDEX,
                )
        vals = [r for _, r in items]
        return cls.from_columns(
            node_id,
            coords,
            np.array([int(r.kind) for r in vals], dtype=np.uint8),
            chunk_id=np.array(
                [bytes(r.chunk_id) if r.chunk_id is not None else bytes(12) for r in vals],
                dtype="S12",
            ),
            offset=np.array([r.offset for r in vals], dtype=np.uint64),
            length=np.array([r.length for r in vals], dtype=np.uint64),
            inline=[r.inline for r in vals],
            location=[r.location for r in vals],
            etag=[r.etag for r in vals],
            last_modified=np.array([r.last_modified for r in vals], dtype=np.uint32),
        )

    # ---- lookup ------------------------------------------------------------------------

    def _sort_keys(self) -> tuple[tuple[int, ...] | None, np.ndarray]:
        if self._keys is None:
            bits = _key_bits(self.coords)
            self._keys = (bits, _pack_keys(self.coords, bits))
        return self._keys

    def find(self, coords: tuple[int, ...]) -> int:
        """Row of ``coords`` (binary search), or -1 when there is no ref."""
        n = self.coords.shape[0]
        if len(coords) != self.coords.shape[1] or n == 0:
            return -1
        bits, keys = self._sort_keys()
        if bits is None:
            try:
                if min(coords) < 0 or max(coords) > 0xFFFFFFFF:
                    return -1
                probe = np.array(coords, dtype=">u4").view(keys.dtype)[0]
            except (OverflowError, ValueError, TypeError):
                return -1
        else:
            k = 0
            for c, b in zip(coords, bits, strict=True):
                if c < 0 or c >> b:
                    return -1
                k = (k << b) | c
            probe = np.uint64(k)
        row = int(keys.searchsorted(probe))
        return row if row < n and keys[row] == probe else -1

    def find_many(self, coords: np.ndarray) -> np.ndarray:
        """Rows of many coordinates at once (``(m, ndim)``), -1 where there is no ref."""
        coords = np.asarray(coords)
        m = coords.shape[0]
        out = np.full(m, -1, dtype=np.int64)
        n = len(self)
        if n == 0 or m == 0:
            return out
        bits, keys = self._sort_keys()
        coords = coords.reshape(m, self.ndim).astype(np.int64)
        ok = ((coords >= 0) & (coords <= 0xFFFFFFFF)).all(axis=1)
        if bits is not None:
            ok &= (coords < (1 << np.array(bits, dtype=np.int64))).all(axis=1)
        sel = np.flatnonzero(ok)
        probe = _pack_keys(coords[sel].astype(np.uint32), bits)
        rows = np.searchsorted(keys, probe)
        inside = rows < n
        hit = np.zeros(sel.shape[0], dtype=bool)
        hit[inside] = keys[rows[inside]] == probe[inside]
        out[sel[hit]] = rows[hit]
        return out

    def ref(self, row: int) -> ChunkRef:
        """The scalar ref at ``row``."""
        kind = RefKind(int(self.kind[row]))
        if kind == RefKind.NATIVE:
            return ChunkRef(
                kind,
                chunk_id=ChunkId(self.chunk_id[row].tobytes()),
                offset=int(self.offset[row]),
                length=int(self.length[row]),
            )
        if kind == RefKind.INLINE:
            return ChunkRef(kind, inline=self.inline[row])
        return ChunkRef(
            kind,
            offset=int(self.offset[row]),
            length=int(self.length[row]),
            location=self.location[row],
            etag=self.etag[row],
            last_modified=int(self.last_modified[row]),
        )

    def get(self, coords: tuple[int, ...]) -> ChunkRef | None:
        """The ref at ``coords``, or None."""
        row = self.find(coords)
        return None if row < 0 else self.ref(row)

    def items(self) -> Iterator[tuple[tuple[int, ...], ChunkRef]]:
        """``(coords, ChunkRef)`` pairs in order (a Python loop: for small manifests)."""
        for row, c in enumerate(self.coords.tolist()):
            yield tuple(c), self.ref(row)

    def extents(self) -> list[tuple[int, int]]:
        """Per dimension ``(min, max + 1)`` of the coordinates (``ManifestRef.extents``, §6.3).

        Empty list for an empty manifest.
        """
        if len(self) == 0:
            return []
        lo = self.coords.min(axis=0).tolist()
        hi = self.coords.max(axis=0).tolist()
        return [(a, b + 1) for a, b in zip(lo, hi, strict=True)]

    # ---- vectorized edits --------------------------------------------------------------

    def take(self, rows: np.ndarray) -> ArrayManifest:
        """A new manifest with the given rows (kept in the given order)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return ArrayManifest(
            node_id=self.node_id,
            coords=self.coords[rows],
            kind=self.kind[rows],
            chunk_id=self.chunk_id[rows],
            offset=self.offset[rows],
            length=self.length[rows],
            inline=self.inline[rows],
            location=self.location[rows],
            etag=self.etag[rows],
            last_modified=self.last_modified[rows],
        )

    @staticmethod
    def concat(node_id: NodeId, parts: list[ArrayManifest]) -> ArrayManifest:
        """Union of parts; on duplicate coordinates the later part wins.  Result sorted."""
        parts = [p for p in parts if len(p)] or parts[:1]
        if not parts:
            raise InvalidInputError("concat needs at least one part (its ndim is unknown)")
        ndims = {p.ndim for p in parts}
        if len(ndims) != 1:
            raise InvalidInputError(
                f"cannot concat manifests of different dimensionality {sorted(ndims)}",
                ErrorKind.INVALID_CHUNK_INDEX,
            )
        if len(parts) == 1:
            out = parts[0].take(np.arange(len(parts[0])))
            out.node_id = NodeId(node_id)
            out._keys = parts[0]._keys
            return out

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        coords = cat("coords")
        merged = ArrayManifest(
            NodeId(node_id),
            coords,
            cat("kind"),
            cat("chunk_id"),
            cat("offset"),
            cat("length"),
            cat("inline"),
            cat("location"),
            cat("etag"),
            cat("last_modified"),
        )
        bits = _key_bits(coords)
        key = _pack_keys(coords, bits)
        return merged.take(_sort_dedup(key))

    def select_box(self, lo: Sequence[int], hi: Sequence[int]) -> ArrayManifest:
        """Rows with ``lo[d] <= coords[:, d] < hi[d]`` in every dimension (manifest splitting)."""
        mask = np.ones(len(self), dtype=bool)
        for d, (a, b) in enumerate(zip(lo, hi, strict=True)):
            col = self.coords[:, d]
            mask &= (col >= a) & (col < b)
        return self.take(np.flatnonzero(mask))

    def without(self, coords: np.ndarray) -> ArrayManifest:
        """A copy without the rows at ``coords`` (``(m, ndim)``; absent ones are ignored)."""
        rows = self.find_many(coords)
        keep = np.ones(len(self), dtype=bool)
        keep[rows[rows >= 0]] = False
        return self.take(np.flatnonzero(keep))

    # ---- comparison --------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArrayManifest):
            return NotImplemented
        if bytes(self.node_id) != bytes(other.node_id) or self.coords.shape != other.coords.shape:
            return False
        return (
            bool((self.coords == other.coords).all())
            and bool((self.kind == other.kind).all())
            and bool((self.chunk_id == other.chunk_id).all())
            and bool((self.offset == other.offset).all())
            and bool((self.length == other.length).all())
            and bool((self.last_modified == other.last_modified).all())
            and self.inline.tolist() == other.inline.tolist()
            and self.location.tolist() == other.location.tolist()
            and self.etag.tolist() == other.etag.tolist()
        )

    __hash__ = None  # type: ignore[assignment]


_LOCATION_SLOT = ArrayManifest.__dict__["location"]


class _LazyArrayManifest(ArrayManifest):
    """An :class:`ArrayManifest` decoded from a file whose ``location`` column is decoded
    on first use; :meth:`ref` decodes single rows without building the column."""

    __slots__ = ("_lazy",)

    def __init__(self, lazy: _LazyLocations, **columns: Any) -> None:
        super().__init__(location=np.empty(0, dtype=object), **columns)
        self._lazy: _LazyLocations | None = lazy

    @property
    def location(self) -> np.ndarray:
        lazy = getattr(self, "_lazy", None)
        if lazy is not None:
            _LOCATION_SLOT.__set__(self, lazy.materialize())
            self._lazy = None
        return _LOCATION_SLOT.__get__(self)  # type: ignore[no-any-return]

    @location.setter
    def location(self, value: np.ndarray) -> None:
        self._lazy = None
        _LOCATION_SLOT.__set__(self, value)

    def ref(self, row: int) -> ChunkRef:
        lazy = self._lazy
        if lazy is None or int(self.kind[row]) != RefKind.VIRTUAL:
            return super().ref(row)
        return ChunkRef(
            RefKind.VIRTUAL,
            offset=int(self.offset[row]),
            length=int(self.length[row]),
            location=lazy.get(row),
            etag=self.etag[row],
            last_modified=int(self.last_modified[row]),
        )


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
        target = bytes(node_id)
        i = bisect.bisect_left(self.arrays, target, key=lambda a: bytes(a.node_id))
        if i < len(self.arrays) and bytes(self.arrays[i].node_id) == target:
            return self.arrays[i]
        return None

    @property
    def num_chunk_refs(self) -> int:
        return sum(len(a) for a in self.arrays)


# --------------------------------------------------------------------------------------------
# ArrayManifest <-> wire columns
# --------------------------------------------------------------------------------------------


# Presence bits of the payload field each ref kind always has (0: not a valid kind).
_SHAPE_OF_KIND = np.zeros(5, dtype=np.uint16)
_SHAPE_OF_KIND[RefKind.NATIVE] = B_CHUNK_ID
_SHAPE_OF_KIND[RefKind.VIRTUAL] = B_LOCATION
_SHAPE_OF_KIND[RefKind.INLINE] = B_INLINE


def _invalid(msg: str) -> InvalidInputError:
    return InvalidInputError(f"cannot encode manifest: {msg}", ErrorKind.SERIALIZATION)


def _rows_of(mask: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Rows selected by ``mask`` and their values in an object column (no copy when all).

    The values are not checked: the encoders they go to raise TypeError on a wrong type.
    """
    if mask.all():
        return np.arange(mask.shape[0]), column.tolist()
    rows = np.flatnonzero(mask)
    return rows, column[rows].tolist()


def _to_wire(am: ArrayManifest) -> WireArray:
    n = len(am)
    kind = am.kind
    shape = _SHAPE_OF_KIND[np.minimum(kind, len(_SHAPE_OF_KIND) - 1)]
    if n and not shape.all():
        bad = sorted(set(kind[shape == 0].tolist()))
        raise _invalid(f"unknown ref kind(s) {bad} in array {am.node_id}")
    virtual = kind == RefKind.VIRTUAL
    inline = kind == RefKind.INLINE
    any_inline = bool(inline.any())
    shape |= np.where(am.length != 0, B_LENGTH, 0).astype(np.uint16)
    shape |= np.where(am.offset != 0, B_OFFSET, 0).astype(np.uint16)
    if any_inline:  # inline refs carry no offset / length
        shape[inline] &= ~np.uint16(B_LENGTH | B_OFFSET)

    inline_rows, values = _rows_of(inline, am.inline) if any_inline else (np.zeros(0, np.intp), [])
    try:
        inline_seg = Segments.from_bytes_list(inline_rows, values)
    except TypeError:
        raise _invalid("inline refs need a bytes payload") from None
    virtual_rows, values = _rows_of(virtual, am.location)
    try:
        location_seg = pack_strings(virtual_rows, values)
    except TypeError:
        raise _invalid("virtual refs need a str location") from None
    except UnicodeEncodeError as err:
        raise _invalid(f"location is not encodable as UTF-8 ({err})") from None
    etag_mask = virtual & _not_none(am.etag)
    etag_rows, values = _rows_of(etag_mask, am.etag)
    try:
        etag_seg = pack_strings(etag_rows, values)
    except (TypeError, UnicodeEncodeError):
        raise _invalid("etags must be UTF-8 encodable str") from None
    shape[etag_rows] |= B_ETAG
    # at most one checksum: the etag wins over last-modified (FORMAT.md §3.4)
    lm = virtual & (am.last_modified != 0) & ~etag_mask
    shape |= np.where(lm, B_LAST_MODIFIED, 0).astype(np.uint16)
    return WireArray(
        node_id=bytes(am.node_id),
        coords=am.coords,
        shape=shape,
        offset=am.offset,
        length=am.length,
        chunk_id=am.chunk_id,
        last_modified=am.last_modified,
        inline=inline_seg,
        location=location_seg,
        etag=etag_seg,
        compressed_location=Segments.empty(),
    )


def _objects(values: Sequence[object]) -> np.ndarray:
    """A 1-D object array of exactly these values (never interpreted as nested sequences)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _kind_of_shape() -> np.ndarray:
    """Ref kind for each set of present ChunkRef fields, by the reader's precedence (§3.4).

    0 marks field sets that are no valid ref.
    """
    table = np.zeros(1 << 8, dtype=np.uint8)
    for shape in range(1 << 8):
        if shape & B_CHUNK_ID:
            table[shape] = RefKind.NATIVE
        elif shape & (B_COMPRESSED_LOCATION | B_LOCATION):
            table[shape] = RefKind.VIRTUAL
        elif shape & B_INLINE:
            table[shape] = RefKind.INLINE
    return table


_KIND_OF_SHAPE = _kind_of_shape()


def _restrict(seg: Segments, mask: np.ndarray) -> Segments:
    """The payloads of ``seg`` whose row is selected by ``mask``."""
    keep = mask[seg.rows]
    return seg if keep.all() else seg.take(np.flatnonzero(keep))


# Manifests with at least this many virtual refs decode their locations on demand: a
# chunk read needs one location, not a million (FORMAT.md §4.7 frames are independent).
_LAZY_LOCATIONS_FROM = 4096


def _decode_locations(n: int, cseg: Segments, pseg: Segments, dictionary: bytes | None) -> np.ndarray:
    """The location column: compressed frames and plain strings decoded, None elsewhere."""
    location = np.empty(n, dtype=object)
    if len(cseg):
        strings = decompress_locations(cseg, dictionary)
        if len(cseg) == n:
            location = strings
        else:
            location[cseg.rows] = strings
    if len(pseg):
        strings = decode_utf8(pseg)
        if len(pseg) == n:
            location = strings
        else:
            location[pseg.rows] = strings
    return location


class _LazyLocations:
    """The undecoded location column of a big manifest: one row on demand, or all at once."""

    __slots__ = ("_cseg", "_dctx", "_dictionary", "_lock", "_n", "_pseg")

    def __init__(self, n: int, cseg: Segments, pseg: Segments, dictionary: bytes | None) -> None:
        self._n = n
        self._cseg = cseg
        self._pseg = pseg
        self._dictionary = dictionary
        self._dctx: zstandard.ZstdDecompressor | None = None
        self._lock = threading.Lock()

    def get(self, row: int) -> str | None:
        """The location of one row (None for rows without one).

        Raises
        ------
        FormatError
            When the stored bytes do not decode.
        """
        try:
            for seg, compressed in ((self._cseg, True), (self._pseg, False)):
                i = int(np.searchsorted(seg.rows, row))
                if i < len(seg) and int(seg.rows[i]) == row:
                    raw = seg.item(i)
                    if compressed:
                        with self._lock:  # a decompressor is not safe for concurrent use
                            if self._dctx is None:
                                self._dctx = zstandard.ZstdDecompressor(
                                    dict_data=zstandard.ZstdCompressionDict(self._dictionary or b"")
                                )
                            raw = self._dctx.decompress(raw, max_output_size=MAX_LOCATION_BYTES)
                    return raw.decode("utf-8")
        except (zstandard.ZstdError, UnicodeDecodeError, ValueError) as err:
            raise FormatError(
                f"cannot decode the location of chunk ref {row}: {err}", ErrorKind.DESERIALIZATION
            ) from None
        return None

    def materialize(self) -> np.ndarray:
        try:
            return _decode_locations(self._n, self._cseg, self._pseg, self._dictionary)
        except (zstandard.ZstdError, UnicodeDecodeError, ValueError) as err:
            raise FormatError(
                f"cannot decode virtual chunk locations: {err}", ErrorKind.DESERIALIZATION
            ) from None


def _from_wire(w: WireArray, dictionary: bytes | None, algorithm: int) -> ArrayManifest:
    n = len(w)
    shape = w.shape
    kind = _KIND_OF_SHAPE[shape]
    if n and int(kind.min()) == 0:
        raise ValueError("chunk ref with neither chunk id, location nor inline data")
    virtual = kind == RefKind.VIRTUAL
    inline = kind == RefKind.INLINE
    compressed = virtual & ((shape & B_COMPRESSED_LOCATION) != 0)

    cseg = _restrict(w.compressed_location, compressed)
    if len(cseg):
        if algorithm != 1:
            raise ValueError("compressed locations in a manifest without zstd dictionary")
        if dictionary is None:
            raise ValueError("compressed locations but no location dictionary")
    pseg = _restrict(w.location, virtual & ~compressed)
    lazy: _LazyLocations | None = None
    if len(cseg) + len(pseg) >= _LAZY_LOCATIONS_FROM:
        # decoded (and checked) on demand: one row per chunk read, or all on first column use
        lazy = _LazyLocations(n, cseg, pseg, dictionary)
        location = np.empty(0, dtype=object)
    else:
        location = _decode_locations(n, cseg, pseg, dictionary)
    etag = np.empty(n, dtype=object)
    eseg = _restrict(w.etag, virtual)
    if len(eseg):
        etag[eseg.rows] = decode_utf8(eseg)
    inline_col = np.empty(n, dtype=object)
    iseg = _restrict(w.inline, inline)
    if len(iseg):
        inline_col[iseg.rows] = _objects(iseg.to_list())

    # absent scalars are already 0; drop fields that do not belong to the ref's kind
    offset, length, lm = w.offset, w.length, w.last_modified
    if inline.any():
        offset = np.where(inline, np.uint64(0), offset)
        length = np.where(inline, np.uint64(0), length)
    if not virtual.all():
        lm = np.where(virtual, lm, np.uint32(0))
    columns = {
        "node_id": NodeId(w.node_id),
        "coords": w.coords,
        "kind": kind,
        "chunk_id": w.chunk_id,
        "offset": offset,
        "length": length,
        "inline": inline_col,
        "etag": etag,
        "last_modified": lm,
    }
    am = (
        ArrayManifest(location=location, **columns)
        if lazy is None
        else _LazyArrayManifest(lazy, **columns)
    )
    bits = _key_bits(am.coords)
    key = _pack_keys(am.coords, bits)
    if _is_strictly_sorted(key):
        am._keys = (bits, key)
        return am
    # tolerate writers that did not sort (the reference always does)
    return am.take(_sort_dedup(key))


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def encode_manifest(
    manifest: Manifest,
    *,
    spec_version: int = 2,
    compression_level: int = 3,
    location_compression: LocationCompression | None = LocationCompression(),
    implementation: str | None = None,
) -> bytes:
    """Encode a manifest file (header + zstd flatbuffer); vectorized.

    The flatbuffer is byte-identical to the reference writer's (FORMAT.md §2.6); the file
    too, except that flatbuffers over 8 MiB are compressed with multi-threaded zstd.

    Parameters
    ----------
    manifest
        Arrays may be in any order (they are written sorted by node id).
    spec_version
        1 or 2.  Spec 1 never compresses locations.
    compression_level
        zstd level of the file.
    location_compression
        The §4.7 location-dictionary settings; None disables it.  A manifest holding a
        location longer than 1024 bytes is written without dictionary (the reference reader
        caps each decompressed location at 1024 bytes).
    implementation
        Implementation name for the header (default: this library's).

    Raises
    ------
    InvalidInputError
        Inconsistent refs (unknown kind, missing payload, duplicate node ids) or bad version.
    """
    if spec_version not in (1, 2):
        raise InvalidInputError(
            f"cannot write manifest spec version {spec_version}", ErrorKind.UNSUPPORTED_SPEC_VERSION
        )
    arrays = sorted(manifest.arrays, key=lambda a: bytes(a.node_id))
    for a, b in itertools.pairwise(arrays):
        if bytes(a.node_id) == bytes(b.node_id):
            raise _invalid(f"array {a.node_id} appears twice")
    wires = []
    for am in arrays:
        _, key = am._sort_keys()
        if not _is_strictly_sorted(key):
            am = am.take(_sort_dedup(key))
        wires.append(_to_wire(am))

    dictionary = None
    lc = location_compression
    n_virtual = sum(len(w.location) for w in wires)
    if (
        spec_version >= 2
        and lc is not None
        and n_virtual >= lc.min_num_chunks
        and sum(len(w) for w in wires) >= lc.min_num_chunks
        and max(int(w.location.lengths.max(initial=0)) for w in wires) <= MAX_LOCATION_BYTES
    ):
        dictionary = train_location_dictionary(
            _concat_segments([w.location for w in wires]),
            max_samples=lc.dictionary_max_training_samples,
            max_size=lc.dictionary_max_size_bytes,
        )
    try:
        writer = ManifestWriter(estimate_size(wires, dictionary))
        for w in wires:
            if dictionary is not None and len(w.location):
                assert lc is not None
                _add_compressed_refs(writer, w, dictionary, lc.compression_level)
            else:
                writer.add_refs(w)
            writer.end_array(w.node_id)
        buf = writer.finish(
            bytes(manifest.id), _compression_algorithm(spec_version, dictionary), dictionary
        )
    except (OverflowError, BuilderSizeError) as err:
        raise FormatError(
            f"cannot encode manifest {manifest.id}: {err}", ErrorKind.SERIALIZATION
        ) from None
    return encode_envelope(
        buf,
        FileType.MANIFEST,
        spec_version,
        level=compression_level,
        implementation=implementation if implementation is not None else IMPLEMENTATION_NAME,
        threads=2 if len(buf) >= _THREADED_ZSTD_FROM else 0,
    )


# Refs laid out per block while the next blocks' locations are still being compressed.
_COMPRESSED_BLOCK = 8 * LocationCompressor.chunk_size()


def _add_compressed_refs(
    writer: ManifestWriter, w: WireArray, dictionary: bytes, level: int
) -> None:
    """Write ``w`` with its locations zstd-compressed, overlapping compression and layout."""
    locations = w.location
    shape = w.shape.copy()
    shape[locations.rows] ^= B_LOCATION | B_COMPRESSED_LOCATION
    plain = dataclasses.replace(w, shape=shape, location=Segments.empty())
    n, count = len(w), len(locations)
    with LocationCompressor(locations, dictionary, level) as job:
        first = row = 0
        while first < count:
            last = min(count, first + _COMPRESSED_BLOCK)
            end_row = n if last == count else int(locations.rows[last])
            block = plain.slice(row, end_row)
            frames = job.compressed(first, last)
            block.compressed_location = Segments(
                frames.rows - row, frames.data, frames.starts, frames.lengths
            )
            writer.add_refs(block)
            first, row = last, end_row


def _compression_algorithm(spec_version: int, dictionary: bytes | None) -> int | None:
    """``Manifest.compression_algorithm`` to write (None = omit the field).

    Spec 2: explicit 0 for plain locations, omitted (default 1) with a dictionary (§3.4,
    §3.8).  Spec 1: the field does not exist in the spec-1 schema, so it is omitted (this
    reproduces the spec-1 fixtures byte for byte).
    """
    if spec_version < 2:
        return None
    return None if dictionary is not None else 0


def _concat_segments(parts: list[Segments]) -> Segments:
    parts = [p for p in parts if len(p)]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return Segments.empty()
    offsets = np.cumsum([0] + [p.data.shape[0] for p in parts[:-1]])
    return Segments(
        np.concatenate([p.rows for p in parts]),
        np.concatenate([p.data for p in parts]),
        np.concatenate([p.starts + o for p, o in zip(parts, offsets.tolist(), strict=True)]),
        np.concatenate([p.lengths for p in parts]),
    )


def decode_manifest(data: bytes | memoryview, name: str) -> Manifest:
    """Decode a spec-1 or spec-2 manifest file; vectorized.

    Raises
    ------
    FormatError
        On any corrupt, truncated or unsupported input (message names ``name``).
    """
    header, buf = decode_envelope(data, name, FileType.MANIFEST)
    with decoding(name, "manifest"):
        try:
            wire = read_manifest_buffer(buf)
            arrays = [
                _from_wire(w, wire.dictionary, wire.compression_algorithm) for w in wire.arrays
            ]
        except OverflowError as err:
            raise ValueError(str(err)) from None
        manifest_id = ManifestId(wire.id)
    arrays.sort(key=lambda a: bytes(a.node_id))
    return Manifest(
        id=manifest_id,
        arrays=arrays,
        spec_version=header.spec_version,
        implementation=header.implementation,
    )
