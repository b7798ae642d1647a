"""Vectorized manifest reader: any valid manifest flatbuffer -> :class:`WireArray` columns.

It does not assume our own layout: every ref's table is located through the refs vector,
its vtable through its soffset, and every field through its vtable slot, all as numpy
gathers over the whole buffer (no per-ref Python).  So buffers from the reference writer,
from older writers (spec 1, ``ic-0.1.3``) or from any other flatbuffers builder decode the
same way.  Every computed position is bounds-checked before it is used, and problems are
raised as ``ValueError``; callers wrap the call in ``_flatbuf.decoding`` to turn those into
a ``FormatError`` naming the file.
"""

from __future__ import annotations

import numpy as np

from icechunk.format._flatbuf import Table, root_table
from icechunk.format._manifest_wire import (
    B_CHUNK_ID,
    B_COMPRESSED_LOCATION,
    B_ETAG,
    B_INLINE,
    B_LAST_MODIFIED,
    B_LENGTH,
    B_LOCATION,
    B_OFFSET,
    BIT_FIELD,
    CHUNK_REF_FIELDS,
    F_INDEX,
    Segments,
    WireArray,
    sorted_unique,
    strided_gather,
    unaligned_u32,
)

__all__ = ["WireManifest", "read_manifest_buffer"]


class _Buf:
    """Bounds-checked numpy gathers over one flatbuffer."""

    __slots__ = ("b8", "n", "u16", "u32", "u32x", "u64")

    def __init__(self, buf: bytes) -> None:
        self.b8 = np.frombuffer(buf, dtype=np.uint8)
        self.n = self.b8.shape[0]
        self.u16 = self.b8[: self.n // 2 * 2].view("<u2")
        self.u32 = self.b8[: self.n // 4 * 4].view("<u4")
        self.u64 = self.b8[: self.n // 8 * 8].view("<u8")
        self.u32x = unaligned_u32(self.b8)

    def check(self, pos: np.ndarray, width: int, what: str) -> None:
        if pos.shape[0] and (int(pos.min()) < 0 or int(pos.max()) + width > self.n):
            raise ValueError(f"{what} out of bounds")

    def at_u16(self, pos: np.ndarray) -> np.ndarray:
        self.check(pos, 2, "vtable entry")
        gathered: np.ndarray
        if (pos & 1).any():
            gathered = self.b8[pos].astype(np.uint16) | (self.b8[pos + 1].astype(np.uint16) << 8)
        else:
            gathered = self.u16[pos >> 1]
        return gathered

    def at_u32(self, pos: np.ndarray, what: str) -> np.ndarray:
        self.check(pos, 4, what)
        values = strided_gather(self.b8, pos, 4, "<u4")
        if values is not None:
            return values
        gathered: np.ndarray = self.u32x[pos] if (pos & 3).any() else self.u32[pos >> 2]
        return gathered

    def at_u64(self, pos: np.ndarray, what: str) -> np.ndarray:
        self.check(pos, 8, what)
        values = strided_gather(self.b8, pos, 8, "<u8")
        if values is not None:
            return values
        gathered: np.ndarray
        if (pos & 7).any():
            lo = self.u32x[pos].astype(np.uint64)
            hi = self.u32x[pos + 4].astype(np.uint64)
            gathered = lo | (hi << np.uint64(32))
        else:
            gathered = self.u64[pos >> 3]
        return gathered

    def at_bytes(self, pos: np.ndarray, width: int, what: str) -> np.ndarray:
        """``(len(pos), width)`` uint8 rows (width a multiple of 4)."""
        self.check(pos, width, what)
        rows = strided_gather(self.b8, pos, width)
        if rows is not None:
            return rows
        words = np.arange(0, width, 4, dtype=np.int64)
        if (pos & 3).any():
            return np.ascontiguousarray(self.u32x[pos[:, None] + words]).view(np.uint8)
        return np.ascontiguousarray(self.u32[(pos >> 2)[:, None] + words // 4]).view(np.uint8)


class WireManifest:
    """The decoded tables of a manifest flatbuffer, refs still in wire form."""

    __slots__ = ("arrays", "compression_algorithm", "dictionary", "has_algorithm", "id")

    def __init__(
        self,
        id: bytes,
        arrays: list[WireArray],
        compression_algorithm: int,
        has_algorithm: bool,
        dictionary: bytes | None,
    ) -> None:
        self.id = id
        self.arrays = arrays
        self.compression_algorithm = compression_algorithm
        self.has_algorithm = has_algorithm
        self.dictionary = dictionary


def read_manifest_buffer(buf: bytes) -> WireManifest:
    """Decode a manifest flatbuffer (spec 1 or 2) into wire columns.

    Raises
    ------
    ValueError, IndexError, struct.error
        On corrupt input (wrap with ``_flatbuf.decoding``).
    """
    root = root_table(buf)
    mid = root.struct_bytes(0, 12)
    if mid is None:
        raise ValueError("manifest without id")
    if not root.has(1):
        raise ValueError("manifest without arrays")
    dictionary = root.bytes(2)
    algorithm = root.u8(3, 1)
    has_algorithm = root.has(3)
    g = _Buf(buf)
    arrays = [_read_array(g, am) for am in root.tables(1)]
    return WireManifest(bytes(mid), arrays, algorithm, has_algorithm, dictionary)


# Limits that keep corrupt input from allocating absurd amounts of memory: numpy's maximum
# number of dimensions, and the reference verifier's 2 GiB "apparent size".
MAX_NDIM = 64
MAX_APPARENT_SIZE = 1 << 31

# Above this many distinct ChunkRef vtables in one array, field offsets are gathered per ref
# instead of being read once per vtable.
_MAX_VTABLES = 64


def _vtable_groups(vt: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Distinct vtable positions (sorted) and each table's index into them.

    Builders de-duplicate vtables, so there are usually a handful; None when there are
    more than ``_MAX_VTABLES``.
    """
    n = vt.shape[0]
    cand = sorted_unique(np.concatenate([vt[:16], vt[:: max(1, n // 256)]]))
    for _ in range(2):
        if cand.shape[0] <= 4:
            # a few comparisons beat a binary search per table
            gid = np.zeros(n, dtype=np.intp)
            miss = vt != cand[0]
            for k in range(1, cand.shape[0]):
                hit = vt == cand[k]
                gid[hit] = k
                miss &= ~hit
        else:
            gid = np.minimum(np.searchsorted(cand, vt), cand.shape[0] - 1)
            miss = cand[gid] != vt
        if not miss.any():
            return cand, gid
        cand = sorted_unique(np.concatenate([cand, vt[miss][:4096]]))
        if cand.shape[0] > _MAX_VTABLES:
            return None
    return None


def _read_array(g: _Buf, am: Table) -> WireArray:
    node = am.struct_bytes(0, 8)
    if node is None:
        raise ValueError("array manifest without node id")
    vec = am.vector(1)
    if vec is None:
        raise ValueError("array manifest without refs")
    start, n = vec
    if start + 4 * n > g.n:
        raise ValueError("refs vector out of bounds")
    elem = start + 4 * np.arange(n, dtype=np.int64)
    uo = (
        g.u32[start >> 2 : (start >> 2) + n]
        if start % 4 == 0
        else g.u32x[start : start + 4 * n : 4]
    )
    tpos = elem + uo.astype(np.int64)
    vt = tpos - g.at_u32(tpos, "chunk ref").view(np.int32).astype(np.int64)

    # field offsets of every table, read once per distinct vtable when possible
    groups = _vtable_groups(vt) if n else None
    if groups is not None:
        cand, gid = groups
        table = np.zeros((cand.shape[0], CHUNK_REF_FIELDS), dtype=np.int64)
        for k, pos in enumerate(cand.tolist()):
            if pos < 0 or pos + 4 > g.n:
                raise ValueError("chunk ref vtable out of bounds")
            vt_size = int(g.b8[pos]) | int(g.b8[pos + 1]) << 8
            if vt_size < 4 or pos + vt_size > g.n:
                raise ValueError("chunk ref vtable out of bounds")
            for fid in range(min(CHUNK_REF_FIELDS, (vt_size - 4) // 2)):
                q = pos + 4 + 2 * fid
                table[k, fid] = int(g.b8[q]) | int(g.b8[q + 1]) << 8

        def field(fid: int) -> np.ndarray | int:
            col = table[:, fid]
            first = int(col[0])
            return first if (col == first).all() else col[gid]
    else:
        vtlen = g.at_u16(vt).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
        if n and (int(vtlen.min()) < 4 or int((vt + vtlen).max()) > g.n):
            raise ValueError("chunk ref vtable out of bounds")

        def field(fid: int) -> np.ndarray | int:
            slot = 4 + 2 * fid
            fo = np.zeros(n, dtype=np.int64)
            inside = vtlen > slot
            if inside.any():
                fo[inside] = g.at_u16(vt[inside] + slot)
            return fo

    # a field offset is a scalar when it is the same in every vtable
    fo_index = field(F_INDEX)
    if n and not np.all(fo_index):
        raise ValueError("chunk ref without index")
    shape = np.zeros(n, dtype=np.uint16)
    fos: dict[int, np.ndarray | int] = {}
    for bit, fid in BIT_FIELD.items():
        fo = field(fid)
        fos[bit] = fo
        if isinstance(fo, int):
            if fo:
                shape |= bit
        elif fo.any():
            shape |= np.where(fo != 0, bit, 0).astype(np.uint16)

    # chunk coordinates
    ip = tpos + fo_index
    iv = ip + g.at_u32(ip, "index offset").astype(np.int64)
    dims = g.at_u32(iv, "index vector")
    ndim = int(dims[0]) if n else 0
    if n and (dims != ndim).any():
        raise ValueError("chunk refs of one array have different numbers of dimensions")
    if ndim > MAX_NDIM or n * ndim * 4 > MAX_APPARENT_SIZE:
        raise ValueError(f"chunk index with {ndim} dimensions")
    if ndim:
        g.check(iv + 4 * ndim, 4, "index vector")
        coords = strided_gather(g.b8, iv + 4, 4 * ndim, "<u4")
        if coords is None:
            cols = iv[:, None] + 4 + 4 * np.arange(ndim, dtype=np.int64)
            coords = g.u32x[cols] if (iv & 3).any() else g.u32[cols >> 2]
        coords = np.ascontiguousarray(coords, dtype=np.uint32).reshape(n, ndim)
    else:
        coords = np.zeros((n, 0), dtype=np.uint32)

    def present(bit: int) -> np.ndarray | slice:
        """Rows having field ``bit`` (a slice when all do)."""
        has = (shape & bit) != 0
        if has.all():
            return slice(None)
        return np.flatnonzero(has)

    def positions(bit: int, rows: np.ndarray | slice) -> np.ndarray:
        fo = fos[bit]
        return tpos[rows] + (fo if isinstance(fo, int) else fo[rows])

    def scalar(bit: int, dtype: str, width: int) -> np.ndarray:
        rows = present(bit)
        pos = positions(bit, rows)
        if not pos.shape[0]:
            return np.zeros(n, dtype=dtype)
        values = g.at_u64(pos, "u64 field") if width == 8 else g.at_u32(pos, "u32 field")
        if isinstance(rows, slice):
            return np.ascontiguousarray(values, dtype=dtype)
        out = np.zeros(n, dtype=dtype)
        out[rows] = values
        return out

    rows = present(B_CHUNK_ID)
    pos = positions(B_CHUNK_ID, rows)
    if isinstance(rows, slice) and n:
        chunk_id = g.at_bytes(pos, 12, "chunk id")
    else:
        chunk_id = np.zeros((n, 12), dtype=np.uint8)
        if pos.shape[0]:
            chunk_id[rows] = g.at_bytes(pos, 12, "chunk id")

    def segments(bit: int) -> Segments:
        rows = np.flatnonzero(shape & bit)
        if not rows.shape[0]:
            return Segments.empty()
        fp = positions(bit, rows)
        target = fp + g.at_u32(fp, "payload offset").astype(np.int64)
        lengths = g.at_u32(target, "payload length").astype(np.int64)
        g.check(target + 4 + lengths, 0, "payload")
        if int(lengths.sum()) > MAX_APPARENT_SIZE:
            # like the reference verifier's limit: shared payloads must not blow up memory
            raise ValueError("chunk ref payloads exceed the 2 GiB apparent size limit")
        return Segments(rows, g.b8, target + 4, lengths)

    return WireArray(
        node_id=bytes(node),
        coords=coords,
        shape=shape,
        offset=scalar(B_OFFSET, "<u8", 8),
        length=scalar(B_LENGTH, "<u8", 8),
        chunk_id=chunk_id,
        last_modified=scalar(B_LAST_MODIFIED, "<u4", 4),
        inline=segments(B_INLINE),
        location=segments(B_LOCATION),
        etag=segments(B_ETAG),
        compressed_location=segments(B_COMPRESSED_LOCATION),
    )
