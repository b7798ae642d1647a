"""Vectorized manifest writer that reproduces ``flatbuffers.Builder`` output byte for byte.

Why builder-identical: the reference writer (Rust ``flatbuffers``) and the Python
``flatbuffers.Builder`` place objects identically when driven in the §2.6 build order, and
that layout is what the fixtures contain.  Reproducing it keeps one code path for small and
huge manifests, makes byte identity with the reference a test we can run, and inherits the
builder's alignment guarantees (every scalar naturally aligned relative to the buffer
start, which the Rust verifier requires).

How: the builder writes back to front; its output is fully determined by the running offset
``off`` (bytes written so far, counted from the buffer end).  Per chunk ref it writes the
index vector, the payload vectors/strings, the ``ChunkRef`` table and, the first time a
(field set, table size) combination occurs, a vtable.  All sizes are known up front except
three alignment paddings, which only depend on ``off`` modulo 8:

- the index vector pad (non-zero only right after a vtable whose size is 2 mod 4),
- the pad in front of the table's first u64 field (0 or 4), which changes the table size and
  hence which vtable it shares.

We therefore scan refs window by window, computing ``off mod 8`` for every ref with a
cumulative sum that restarts at each table holding a u64 field, until the first ref whose
vtable does not exist yet; the builder would write that vtable right after it, so the scan
resumes there.  New vtables are rare (typically 2 to 4 per array), so this is a few
vectorized passes.  With all paddings known, every object's offset is a cumulative sum and
the bytes are filled with numpy scatters into one block, which is spliced into a real
``flatbuffers.Builder`` that then writes the small tables around it (``ArrayManifest``,
vectors, ``Manifest``) and the root, with its vtable de-duplication seeded with ours.
"""

from __future__ import annotations

import struct

import flatbuffers
import numpy as np

from icechunk.format._flatbuf import prepend_struct_slot
from icechunk.format._manifest_wire import (
    B_CHUNK_ID,
    B_COMPRESSED_LOCATION,
    B_ETAG,
    B_INLINE,
    B_LAST_MODIFIED,
    B_LENGTH,
    B_LOCATION,
    B_OFFSET,
    CHUNK_REF_FIELDS,
    F_CHUNK_ID,
    F_COMPRESSED_LOCATION,
    F_ETAG,
    F_INDEX,
    F_INLINE,
    F_LAST_MODIFIED,
    F_LENGTH,
    F_LOCATION,
    F_OFFSET,
    SHAPE_COUNT,
    Segments,
    WireArray,
    scatter_segments,
)

__all__ = ["MAX_BUFFER_SIZE", "build_manifest_buffer"]

MAX_BUFFER_SIZE = flatbuffers.Builder.MAX_BUFFER_SIZE

# Field add order of the ChunkRef table (FORMAT.md §2.6), with inline sizes.
_ADD_ORDER = (
    (B_LENGTH, F_LENGTH, 8),
    (B_OFFSET, F_OFFSET, 8),
    (B_COMPRESSED_LOCATION, F_COMPRESSED_LOCATION, 4),
    (B_LAST_MODIFIED, F_LAST_MODIFIED, 4),
    (B_ETAG, F_ETAG, 4),
    (B_LOCATION, F_LOCATION, 4),
    (B_CHUNK_ID, F_CHUNK_ID, 12),
    (B_INLINE, F_INLINE, 4),
)


def _table_geometry() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per field set: field offsets inside the table, size without padding, u64?, vtable size."""
    fo = np.zeros((SHAPE_COUNT, CHUNK_REF_FIELDS), dtype=np.int64)
    base = np.zeros(SHAPE_COUNT, dtype=np.int64)
    has64 = np.zeros(SHAPE_COUNT, dtype=bool)
    vtlen = np.zeros(SHAPE_COUNT, dtype=np.int64)
    for shape in range(SHAPE_COUNT):
        rel = 0
        ends = {}
        for bit, fid, size in _ADD_ORDER:
            if shape & bit:
                rel += size
                ends[fid] = rel
        rel += 4
        ends[F_INDEX] = rel
        rel += 4  # the soffset to the vtable
        base[shape] = rel
        for fid, end in ends.items():
            fo[shape, fid] = rel - end
        has64[shape] = bool(shape & (B_LENGTH | B_OFFSET))
        vtlen[shape] = 4 + 2 * (max(ends) + 1)
    return fo, base, has64, vtlen


_FO, _BASE, _HAS64, _VTLEN = _table_geometry()


def _builder_key(shape: int, objsize: int) -> tuple[int, ...]:
    """The key ``flatbuffers.Builder.WriteVtable`` de-duplicates vtables by."""
    nslots = (int(_VTLEN[shape]) - 4) // 2
    return (*(int(_FO[shape, s]) for s in reversed(range(nslots))), objsize)


def _vtable_bytes(shape: int, objsize: int) -> bytes:
    nslots = (int(_VTLEN[shape]) - 4) // 2
    return struct.pack(
        f"<{nslots + 2}H", int(_VTLEN[shape]), objsize, *(int(_FO[shape, s]) for s in range(nslots))
    )


def _reserve(b: flatbuffers.Builder, nbytes: int) -> None:
    """Grow the builder's buffer (like ``Builder.Prep`` does) until ``nbytes`` fit in front."""
    while b.head < nbytes:
        old = len(b.Bytes)
        if old >= MAX_BUFFER_SIZE:
            raise OverflowError("manifest flatbuffer would exceed 2 GiB")
        b.GrowByteBuffer()
        b.head += len(b.Bytes) - old


# Payloads in the order the builder creates them after the index vector:
# (attribute, presence bit, NUL terminated?)
_PAYLOADS = (
    ("inline", B_INLINE, F_INLINE, 0),
    ("location", B_LOCATION, F_LOCATION, 1),
    ("compressed_location", B_COMPRESSED_LOCATION, F_COMPRESSED_LOCATION, 0),
    ("etag", B_ETAG, F_ETAG, 1),
)


def _scan(off0: int, pre: np.ndarray, base: np.ndarray, is64: np.ndarray) -> tuple[int, np.ndarray]:
    """Paddings for a run of refs between which the builder writes no vtable.

    Returns the index-vector pad of the first ref and the u64 pad of every ref.
    """
    m = pre.shape[0]
    pad_a0 = -off0 % 4
    init = (off0 + pad_a0) % 8
    inc = np.where(is64, 0, pre + base)
    csum = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(inc, out=csum[1:])
    resets = np.where(is64, np.arange(m), -1)
    last = np.maximum.accumulate(resets)
    last_before = np.empty(m, dtype=np.int64)
    last_before[0] = -1
    last_before[1:] = last[:-1]
    has_reset = last_before >= 0
    lb = np.where(has_reset, last_before, 0)
    start_state = np.where(has_reset, base[lb] - csum[lb + 1], init)
    state_in = start_state + csum[:-1]
    table_start = state_in + pre
    pad_c = np.where(is64, -table_start % 8, 0)
    return pad_a0, pad_c


def _inject_refs(b: flatbuffers.Builder, arr: WireArray) -> int:
    """Write the refs of ``arr`` and their vector into ``b``; returns the vector's offset."""
    n = len(arr)
    ndim = int(arr.coords.shape[1])
    shape = arr.shape.astype(np.intp)
    start_off = b.Offset()

    # sizes that do not depend on alignment state
    pre = np.full(n, 4 * ndim + 4, dtype=np.int64)
    payload_sizes = []
    for attr, _bit, _fid, nul in _PAYLOADS:
        seg: Segments = getattr(arr, attr)
        if len(seg):
            size = 4 + ((seg.lengths + nul + 3) & ~3)
            pre[seg.rows] += size
            payload_sizes.append((attr, seg, size))
    base = _BASE[shape]
    is64 = _HAS64[shape]

    pad_a = np.zeros(n, dtype=np.int64)
    pad_c = np.zeros(n, dtype=np.int64)
    vtnew = np.zeros(n, dtype=np.int64)
    known = np.zeros(2 * SHAPE_COUNT, dtype=bool)
    vt_of_code = np.zeros(2 * SHAPE_COUNT, dtype=np.int64)
    off = start_off
    j0 = 0
    window = 64
    while j0 < n:
        j1 = min(n, j0 + window)
        pa0, pc = _scan(off, pre[j0:j1], base[j0:j1], is64[j0:j1])
        codes = shape[j0:j1] * 2 + (pc >> 2)
        unknown = ~known[codes]
        stop = int(np.argmax(unknown)) + 1 if unknown.any() else j1 - j0
        pad_a[j0] = pa0
        pad_c[j0 : j0 + stop] = pc[:stop]
        off += pa0 + int(pre[j0 : j0 + stop].sum() + pc[:stop].sum() + base[j0 : j0 + stop].sum())
        if stop < j1 - j0 or unknown[stop - 1]:
            # ref j0 + stop - 1 uses a vtable not written by us yet
            k = j0 + stop - 1
            code = int(codes[stop - 1])
            sh = int(shape[k])
            objsize = int(pc[stop - 1] + base[k])
            key = _builder_key(sh, objsize)
            existing = b.vtables.get(key)
            if existing is None:
                vtnew[k] = _VTLEN[sh]
                off += int(_VTLEN[sh])
                b.vtables[key] = off
                existing = off
            vt_of_code[code] = existing
            known[code] = True
        else:
            window *= 4
        j0 += stop

    sizes = pad_a + pre + pad_c + base + vtnew
    ends = np.empty(n, dtype=np.int64)
    np.cumsum(sizes, out=ends)
    ends += start_off
    x_idx = ends - sizes + pad_a + 4 * ndim + 4
    cur = x_idx.copy()
    x_payload: dict[str, np.ndarray] = {}
    for attr, seg, size in payload_sizes:
        cur[seg.rows] += size
        x_payload[attr] = cur[seg.rows]
    x_tab = cur + pad_c + base
    codes = shape * 2 + (pad_c >> 2)
    vt_off = vt_of_code[codes]

    vec_start = int(ends[-1]) if n else start_off
    vec_start += -vec_start % 4
    x_vec = vec_start + 4 * n + 4
    total = x_vec - start_off
    end8 = -(-x_vec // 8) * 8
    lo8 = start_off // 8 * 8
    blk = np.zeros(end8 - lo8, dtype=np.uint8)
    u32 = blk.view("<u4")
    u64 = blk.view("<u8")

    # index vectors
    p_idx = (end8 - x_idx) >> 2
    u32[p_idx] = ndim
    if ndim:
        u32[p_idx[:, None] + np.arange(1, ndim + 1)] = arr.coords
    # payloads: length prefix then bytes (NUL terminators and padding stay zero)
    for attr, seg, _size in payload_sizes:
        p = end8 - x_payload[attr]
        u32[p >> 2] = seg.lengths
        scatter_segments(u32, p + 4, seg)
    # tables
    p_tab = end8 - x_tab
    u32[p_tab >> 2] = (vt_off - x_tab).astype(np.uint32)
    fo_idx = _FO[shape, F_INDEX]
    u32[(p_tab + fo_idx) >> 2] = (x_tab - fo_idx - x_idx).astype(np.uint32)
    for attr, _bit, fid, _nul in _PAYLOADS:
        if attr in x_payload:
            rows = getattr(arr, attr).rows
            fo = _FO[shape[rows], fid]
            u32[(p_tab[rows] + fo) >> 2] = (x_tab[rows] - fo - x_payload[attr]).astype(np.uint32)
    for bit, fid, col in ((B_LENGTH, F_LENGTH, arr.length), (B_OFFSET, F_OFFSET, arr.offset)):
        rows = np.flatnonzero(shape & bit)
        if rows.shape[0]:
            u64[(p_tab[rows] + _FO[shape[rows], fid]) >> 3] = col[rows]
    rows = np.flatnonzero(shape & B_LAST_MODIFIED)
    if rows.shape[0]:
        u32[(p_tab[rows] + _FO[shape[rows], F_LAST_MODIFIED]) >> 2] = arr.last_modified[rows]
    rows = np.flatnonzero(shape & B_CHUNK_ID)
    if rows.shape[0]:
        ids = np.ascontiguousarray(arr.chunk_id[rows], dtype=np.uint8).view("<u4")
        p = (p_tab[rows] + _FO[shape[rows], F_CHUNK_ID]) >> 2
        u32[p[:, None] + np.arange(3)] = ids
    # the vtables this array introduced
    for k in np.flatnonzero(vtnew).tolist():
        sh = int(shape[k])
        raw = _vtable_bytes(sh, int(pad_c[k] + base[k]))
        p = end8 - int(x_tab[k]) - len(raw)
        blk[p : p + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    # the refs vector: length, then one uoffset per table
    p_vec = (end8 - x_vec) >> 2
    u32[p_vec] = n
    if n:
        x_elem = vec_start + 4 * (n - np.arange(n, dtype=np.int64))
        u32[p_vec + 1 : p_vec + 1 + n] = (x_elem - x_tab).astype(np.uint32)

    _reserve(b, total)
    b.Bytes[b.head - total : b.head] = memoryview(blk)[end8 - x_vec : end8 - start_off]
    b.head -= total
    b.minalign = max(b.minalign, 8 if bool(is64.any()) else 4)
    return x_vec


def _estimate(arrays: list[WireArray], dictionary: bytes | None) -> int:
    size = 1024 + (len(dictionary) if dictionary else 0)
    for arr in arrays:
        n = len(arr)
        size += n * (4 * int(arr.coords.shape[1]) + 80) + 64
        for seg in (arr.inline, arr.location, arr.etag, arr.compressed_location):
            size += int(seg.lengths.sum()) + 8 * len(seg)
    return -(-size // 8) * 8


def build_manifest_buffer(
    manifest_id: bytes,
    arrays: list[WireArray],
    *,
    compression_algorithm: int | None,
    dictionary: bytes | None = None,
) -> memoryview:
    """The manifest flatbuffer (FORMAT.md §3.4), byte-identical to the §2.6 builder recipe.

    Parameters
    ----------
    manifest_id
        12 raw bytes.
    arrays
        Tables in the order they are written (sorted by node id).
    compression_algorithm
        Value of ``Manifest.compression_algorithm``; None (or the default 1) omits the field.
    dictionary
        ``location_dictionary`` bytes, or None.

    Raises
    ------
    OverflowError
        If the buffer would exceed the 2 GiB flatbuffer limit.
    """
    b = flatbuffers.Builder(min(_estimate(arrays, dictionary), MAX_BUFFER_SIZE))
    tables = []
    for arr in arrays:
        refs = _inject_refs(b, arr)
        b.StartObject(3)
        b.PrependUOffsetTRelativeSlot(1, refs, 0)
        prepend_struct_slot(b, 0, bytes(arr.node_id))
        tables.append(b.EndObject())
    b.StartVector(4, len(tables), 4)
    for t in reversed(tables):
        b.PrependUOffsetTRelative(t)
    arrays_vec = b.EndVector()
    dict_vec = b.CreateByteVector(bytes(dictionary)) if dictionary is not None else None
    b.StartObject(5)
    if dict_vec is not None:
        b.PrependUOffsetTRelativeSlot(2, dict_vec, 0)
    b.PrependUOffsetTRelativeSlot(1, arrays_vec, 0)
    prepend_struct_slot(b, 0, bytes(manifest_id))
    if compression_algorithm is not None:
        b.PrependUint8Slot(3, compression_algorithm, 1)
    root = b.EndObject()
    b.Finish(root, file_identifier=b"Ichk")
    return memoryview(b.Bytes)[b.Head() :]
