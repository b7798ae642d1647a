"""Vectorized manifest writer that reproduces ``flatbuffers.Builder`` output byte for byte.

Why builder-identical: the reference writer (Rust ``flatbuffers``) and the Python
``flatbuffers.Builder`` place objects identically when driven in the §2.6 build order, and
that layout is what the fixtures contain.  Reproducing it makes byte identity with the
reference a test we can run, inherits the builder's alignment guarantees (every scalar
naturally aligned relative to the buffer start, which the Rust verifier requires), and lets
small blocks of refs simply go through the builder itself (``_write_refs_one_by_one``), with
the same bytes, where the vectorized set-up would cost more than it saves.

How: the builder writes back to front; its output is fully determined by the running offset
``off`` (bytes written so far, counted from the buffer end).  Per chunk ref it writes the
index vector, the payload vectors/strings, the ``ChunkRef`` table and, the first time a
(field set, table size) combination occurs, a vtable.  All sizes are known up front except
two alignment paddings, which only depend on ``off`` modulo 8:

- the index vector pad (non-zero only right after a vtable whose size is 2 mod 4),
- the pad in front of the table's first u64 field (0 or 4), which changes the table size and
  hence which vtable it shares.

We therefore scan refs window by window, computing ``off mod 8`` for every ref with a
cumulative sum that restarts at each table holding a u64 field, until the first ref whose
vtable does not exist yet; the builder would write that vtable right after it, so the scan
resumes there.  New vtables are rare (typically 2 to 4 per array), so this is a few
vectorized passes.  With all paddings known, every ref's bytes form a *record* whose layout
depends only on its field set, paddings and payload sizes; records are filled through
numpy structured dtypes, straight into the ``flatbuffers.Builder``'s own buffer: long runs
of same-layout refs through one strided view, the rest group by group with one 2-D scatter
of 32-bit words.  The builder then writes the small objects around them
(``ArrayManifest``, vectors, ``Manifest``, root) itself, its vtable de-duplication seeded
with ours.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np

from icechunk.format._fastbuilder import OFFSET, STRUCT, U32, U64, FastBuilder
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
    dense_ids,
    gather_words,
    group_rows,
)

__all__ = ["MAX_BUFFER_SIZE", "ManifestWriter", "build_manifest_buffer", "estimate_size"]

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


# Payloads in the order the builder creates them after the index vector, with their
# presence bit, field id and whether they are NUL-terminated strings.  In memory they end
# up in the reverse order (the builder writes back to front).
_PAYLOADS = (
    ("inline", B_INLINE, F_INLINE, 0),
    ("location", B_LOCATION, F_LOCATION, 1),
    ("compressed_location", B_COMPRESSED_LOCATION, F_COMPRESSED_LOCATION, 0),
    ("etag", B_ETAG, F_ETAG, 1),
)
# Runs of at least this many consecutive refs with the same record layout are written
# straight into the output through a strided structured view (no index arrays).
_MIN_RUN = 2048
# Keep the temporaries of one 2-D scatter below this many elements.
_MAX_SCATTER = 1 << 22


def _scan(off0: int, pre: np.ndarray, base: np.ndarray, is64: np.ndarray) -> tuple[int, np.ndarray]:
    """Paddings for a run of refs between which the builder writes no vtable.

    Returns the index-vector pad of the first ref and the u64 pad of every ref.
    """
    m = pre.shape[0]
    pad_a0 = -off0 % 4
    init = (off0 + pad_a0) % 8
    if not is64.any():  # no table has a u64 field to pad for (say, only inline refs)
        return pad_a0, np.zeros(m, dtype=np.int64)
    if is64.all():
        # every table restarts the state: ref k starts where table k - 1 left it
        state_in = np.empty(m, dtype=np.int64)
        state_in[0] = init
        state_in[1:] = base[:-1]
        return pad_a0, -(state_in + pre) % 8
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


@dataclass(frozen=True, slots=True)
class _Record:
    """Byte layout of everything the builder writes for one ref, lowest address first.

    ``[vtable if new][ChunkRef table, then its u64 pad][payloads, last created first]
    [index vector][index-vector pad]``; every ref with the same field set, paddings and
    payload sizes has the same record, so it is filled through one structured dtype.
    """

    dtype: np.dtype
    vtable: bytes | None
    uoffsets: tuple[tuple[str, int], ...]  # field name -> constant relative uoffset
    payloads: tuple[tuple[str, int, int], ...]  # (payload attribute, field id, word count)


@functools.lru_cache(maxsize=4096)
def _record(
    shape: int, pad_a: int, pad_c: int, vtnew: bool, psizes: tuple[int, ...], ndim: int
) -> _Record:
    """The record of refs with these properties (cached: a dtype costs ~20 µs to build, and
    every manifest of a repository uses the same few records)."""
    names: list[str] = []
    formats: list[object] = []
    offsets: list[int] = []

    def add(name: str, fmt: object, off: int) -> None:
        names.append(name)
        formats.append(fmt)
        offsets.append(off)

    objsize = int(_BASE[shape]) + pad_c
    vtable = _vtable_bytes(shape, objsize) if vtnew else None
    tab = len(vtable) if vtable else 0
    if vtable:
        add("vt", ("u1", (len(vtable),)), 0)
    add("soff", "<i4", tab)
    fo = _FO[shape]
    for bit, fid, fmt in (
        (B_LENGTH, F_LENGTH, "<u8"),
        (B_OFFSET, F_OFFSET, "<u8"),
        (B_LAST_MODIFIED, F_LAST_MODIFIED, "<u4"),
        (B_CHUNK_ID, F_CHUNK_ID, ("u1", (12,))),
    ):
        if shape & bit:
            add(f"f{fid}", fmt, tab + int(fo[fid]))
    pos = tab + objsize
    uoffsets = []
    payloads = []
    # memory order is the reverse of creation order
    for (attr, _bit, fid, _nul), size in reversed(list(zip(_PAYLOADS, psizes, strict=True))):
        if size:
            field_pos = tab + int(fo[fid])
            add(f"u{fid}", "<u4", field_pos)
            uoffsets.append((f"u{fid}", pos - field_pos))
            add(f"n{fid}", "<u4", pos)
            nwords = (size - 4) // 4
            if nwords:
                add(f"d{fid}", ("u1", (4 * nwords,)), pos + 4)
            payloads.append((attr, fid, nwords))
            pos += size
    field_pos = tab + int(fo[F_INDEX])
    add("u0", "<u4", field_pos)
    uoffsets.append(("u0", pos - field_pos))
    add("ndim", "<u4", pos)
    if ndim:
        add("coords", ("<u4", (ndim,)), pos + 4)
    itemsize = pos + 4 + 4 * ndim + pad_a
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})
    return _Record(dtype, vtable, tuple(uoffsets), tuple(payloads))


def _uniform_block(
    seg: Segments, sel: np.ndarray | slice, lengths: np.ndarray
) -> np.ndarray | None:
    """The payloads ``sel`` as a zero-copy ``(m, length)`` view when they are all the same
    length and stored back to back (as strings packed from Python are), else None."""
    if lengths.shape[0] == 0:
        return None
    length = int(lengths[0])
    starts = seg.starts[sel]
    first = int(starts[0])
    m = starts.shape[0]
    if (
        length == 0
        or (lengths != length).any()
        or first + m * length > seg.data.shape[0]
        or (starts != first + length * np.arange(m, dtype=np.int64)).any()
    ):
        return None
    return seg.data[first : first + m * length].reshape(m, length)


def _fill_records(
    target: np.ndarray,
    rec: _Record,
    arr: WireArray,
    rows: slice | np.ndarray,
    soff: np.ndarray,
    seg_index: dict[str, np.ndarray | None],
) -> None:
    """Fill structured records (``target``, one per row of ``rows``) from the columns."""
    if rec.vtable is not None:
        target["vt"] = np.frombuffer(rec.vtable, dtype=np.uint8)
    target["soff"] = soff
    names = rec.dtype.names
    assert names is not None
    if "f3" in names:
        target["f3"] = arr.length[rows]
    if "f2" in names:
        target["f2"] = arr.offset[rows]
    if "f7" in names:
        target["f7"] = arr.last_modified[rows]
    if "f4" in names:
        target["f4"] = arr.chunk_id[rows]
    for name, value in rec.uoffsets:
        target[name] = value
    for attr, fid, nwords in rec.payloads:
        seg: Segments = getattr(arr, attr)
        index = seg_index[attr]
        sel = rows if index is None else index[rows]
        lengths = seg.lengths[sel]
        target[f"n{fid}"] = lengths
        if nwords:
            field = target[f"d{fid}"]
            block = _uniform_block(seg, sel, lengths)
            if block is not None:
                field[:, : block.shape[1]] = block
            else:
                field[...] = gather_words(seg, sel, nwords).view(np.uint8)
    target["ndim"] = arr.coords.shape[1]
    if "coords" in names:
        target["coords"] = arr.coords[rows]


def _write_refs(b: flatbuffers.Builder, arr: WireArray) -> np.ndarray:
    """Write the refs of ``arr`` (index vectors, payloads, tables, new vtables) into ``b``.

    Returns each table's builder offset, for the refs vector.
    """
    n = len(arr)
    ndim = int(arr.coords.shape[1])
    shape = arr.shape.astype(np.intp)
    start_off = b.Offset()

    # sizes that do not depend on the alignment state
    pre = np.full(n, 4 * ndim + 4, dtype=np.int64)
    psize: list[np.ndarray | None] = []
    seg_index: dict[str, np.ndarray | None] = {}
    for attr, _bit, _fid, nul in _PAYLOADS:
        seg: Segments = getattr(arr, attr)
        if not len(seg):
            psize.append(None)
            continue
        padded = 4 + ((seg.lengths + nul + 3) & ~3)
        if len(seg) == n:  # every ref has it: rows are 0..n-1
            size = padded
            seg_index[attr] = None
        else:
            size = np.zeros(n, dtype=np.int64)
            size[seg.rows] = padded
            index = np.zeros(n, dtype=np.int64)
            index[seg.rows] = np.arange(len(seg))
            seg_index[attr] = index
        pre += size
        psize.append(size)
    base = _BASE[shape]
    is64 = _HAS64[shape]

    # paddings and vtables, window by window (see the module docstring)
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
        if unknown[stop - 1]:
            # the builder writes a vtable right after this ref's table, unless one exists
            k = j0 + stop - 1
            code = int(codes[stop - 1])
            sh = int(shape[k])
            vt_key = _builder_key(sh, int(pc[stop - 1] + base[k]))
            existing = b.vtables.get(vt_key)
            if existing is None:
                vtnew[k] = _VTLEN[sh]
                off += int(_VTLEN[sh])
                b.vtables[vt_key] = off
                existing = off
            vt_of_code[code] = existing
            known[code] = True
        else:
            window *= 4
        j0 += stop

    sizes = pad_a + pre + pad_c + base + vtnew
    ends = np.cumsum(sizes)
    ends += start_off
    x_tab = ends - vtnew
    soff = (vt_of_code[shape * 2 + (pad_c >> 2)] - x_tab).astype(np.int32)

    if n == 0:
        return x_tab
    end_off = int(ends[-1])
    total = end_off - start_off
    blk, end8, in_place = _output(b, start_off, end_off)
    u32 = blk.view("<u4")
    rec_pos = end8 - ends  # lowest address of each ref's record

    # group refs by record layout
    key = shape | (pad_a << 8) | ((pad_c >> 2) << 10) | ((vtnew > 0).astype(np.int64) << 11)
    radix = 1 << 12
    for padded_size in psize:
        if padded_size is None:
            continue
        top = int(padded_size.max(initial=0)) // 4 + 1
        if radix * top >= 1 << 62:
            raise OverflowError("chunk ref payloads too large")
        key = key + radix * (padded_size // 4)
        radix *= top
    records: dict[int, _Record] = {}

    def record_of(k: int) -> _Record:
        kk = int(key[k])
        rec = records.get(kk)
        if rec is None:
            rec = _record(
                int(shape[k]),
                int(pad_a[k]),
                int(pad_c[k]),
                bool(vtnew[k]),
                tuple(0 if s is None else int(s[k]) for s in psize),
                ndim,
            )
            records[kk] = rec
        return rec

    rest = np.ones(n, dtype=bool)
    if n >= _MIN_RUN:
        cuts = np.flatnonzero(key[1:] != key[:-1]) + 1
        bounds = np.concatenate(([0], cuts, [n]))
        lengths = np.diff(bounds)
        for r in np.flatnonzero(lengths >= _MIN_RUN).tolist():
            k0, k1 = int(bounds[r]), int(bounds[r + 1])
            rec = record_of(k0)
            lo = int(rec_pos[k1 - 1])
            view = blk[lo : lo + rec.dtype.itemsize * (k1 - k0)].view(rec.dtype)[::-1]
            _fill_records(view, rec, arr, slice(k0, k1), soff[k0:k1], seg_index)
            rest[k0:k1] = False
    left = np.flatnonzero(rest)
    if left.shape[0]:
        for _tid, sel in group_rows(dense_ids(key[left])):
            rows = left[sel]
            rec = record_of(int(rows[0]))
            itemsize = rec.dtype.itemsize
            step = max(1, _MAX_SCATTER // max(1, itemsize // 4))
            for lo in range(0, rows.shape[0], step):
                part = rows[lo : lo + step]
                tmp = np.zeros(part.shape[0], dtype=rec.dtype)
                _fill_records(tmp, rec, arr, part, soff[part], seg_index)
                pos = rec_pos[part]
                if itemsize % 4 == 0 and not (pos & 3).any():
                    idx = (pos >> 2)[:, None] + np.arange(itemsize // 4, dtype=np.int64)
                    u32[idx] = tmp.view("<u4").reshape(part.shape[0], itemsize // 4)
                else:
                    idx = pos[:, None] + np.arange(itemsize, dtype=np.int64)
                    blk[idx] = tmp.view(np.uint8).reshape(part.shape[0], itemsize)

    if not in_place:
        b.Bytes[b.head - total : b.head] = blk.data[end8 - end_off : end8 - start_off]
    del blk, u32
    b.head -= total
    b.minalign = max(b.minalign, 8 if bool(is64.any()) else 4)
    return x_tab


# Blocks of up to this many refs are written ref by ref through the builder: below it the
# vectorized writer's fixed cost (~150-200 µs of numpy set-up) is more than the builder's
# ~6-8 µs per ref, and commits of a few chunks, or of small arrays such as coordinates, are
# common (8 refs: ~210 against ~370 µs; even at 32).
_BUILDER_MAX = 32


def _write_refs_one_by_one(b: FastBuilder, arr: WireArray) -> np.ndarray:
    """Same bytes as :func:`_write_refs`, one builder call per object (for small blocks)."""
    n = len(arr)
    coords = arr.coords.tolist()
    shapes = arr.shape.tolist()
    lengths, offsets = arr.length.tolist(), arr.offset.tolist()
    modified = arr.last_modified.tolist()
    ids = arr.chunk_id.tobytes()

    def by_row(seg: Segments) -> dict[int, bytes]:
        return dict(zip(seg.rows.tolist(), seg.to_list(), strict=True)) if len(seg) else {}

    inline, location = by_row(arr.inline), by_row(arr.location)
    compressed, etag = by_row(arr.compressed_location), by_row(arr.etag)
    tables = np.empty(n, dtype=np.int64)
    for k in range(n):
        index = b.u32_vector(coords[k])
        # payloads in the builder's creation order (§2.6), then the table's fields in add order
        shape = shapes[k]
        x_inline = b.CreateByteVector(inline[k]) if shape & B_INLINE else 0
        x_location = b.CreateString(location[k]) if shape & B_LOCATION else 0
        x_compressed = b.CreateByteVector(compressed[k]) if shape & B_COMPRESSED_LOCATION else 0
        x_etag = b.CreateString(etag[k]) if shape & B_ETAG else 0
        fields: list[tuple[int, int, Any]] = [
            (U64, F_LENGTH, lengths[k] if shape & B_LENGTH else 0),
            (U64, F_OFFSET, offsets[k] if shape & B_OFFSET else 0),
            (OFFSET, F_COMPRESSED_LOCATION, x_compressed),
            (U32, F_LAST_MODIFIED, modified[k] if shape & B_LAST_MODIFIED else 0),
            (OFFSET, F_ETAG, x_etag),
            (OFFSET, F_LOCATION, x_location),
        ]
        if shape & B_CHUNK_ID:
            fields.append((STRUCT, F_CHUNK_ID, ids[12 * k : 12 * k + 12]))
        fields.append((OFFSET, F_INLINE, x_inline))
        fields.append((OFFSET, F_INDEX, index))
        tables[k] = b.table(CHUNK_REF_FIELDS, fields)
    return tables


_IN_PLACE = True  # tests switch it off to exercise the scratch-block path


def _output(b: flatbuffers.Builder, start_off: int, end_off: int) -> tuple[np.ndarray, int, bool]:
    """Where to write builder offsets ``(start_off, end_off]``: ``(bytes, end, in_place)``.

    Offset ``x`` is byte ``end - x`` of the returned array.  It is the builder's own buffer
    when that starts 8-aligned (so buffer positions and final positions agree modulo 8),
    else a zeroed scratch block to copy in afterwards.
    """
    _reserve(b, end_off - start_off)
    blk = np.frombuffer(b.Bytes, dtype=np.uint8)
    end = blk.shape[0]
    if _IN_PLACE and end % 8 == 0 and blk.ctypes.data % 8 == 0:
        return blk, end, True
    end = -(-end_off // 8) * 8
    return np.zeros(end - start_off // 8 * 8, dtype=np.uint8), end, False


def _write_refs_vector(b: flatbuffers.Builder, x_tab: np.ndarray) -> int:
    """The ``[ChunkRef]`` vector (as ``StartVector`` + uoffsets + ``EndVector``); its offset."""
    n = x_tab.shape[0]
    start_off = b.Offset()
    vec_start = start_off + -start_off % 4
    x_vec: int = vec_start + 4 * n + 4
    blk, end, in_place = _output(b, start_off, x_vec)
    u32 = blk.view("<u4")
    p_vec = (end - x_vec) >> 2
    u32[p_vec] = n
    if n:
        x_elem = vec_start + 4 * (n - np.arange(n, dtype=np.int64))
        u32[p_vec + 1 : p_vec + 1 + n] = (x_elem - x_tab).astype(np.uint32)
    total = x_vec - start_off
    if not in_place:
        b.Bytes[b.head - total : b.head] = blk.data[end - x_vec : end - start_off]
    del blk, u32
    b.head -= total
    b.minalign = max(b.minalign, 4)
    return x_vec


def _estimate(arrays: list[WireArray], dictionary: bytes | None) -> int:
    size = 1024 + (len(dictionary) if dictionary else 0)
    for arr in arrays:
        n = len(arr)
        size += n * (4 * int(arr.coords.shape[1]) + 80) + 64
        for seg in (arr.inline, arr.location, arr.etag, arr.compressed_location):
            size += int(seg.lengths.sum()) + 8 * len(seg)
    return -(-size // 8) * 8


class ManifestWriter:
    """Writes a manifest flatbuffer array by array, refs in one or several blocks.

    Same bytes as ``flatbuffers.Builder`` driven in the §2.6 order: for each array (sorted by
    node id) :meth:`add_refs` for its refs in index order (any split into consecutive
    blocks), then :meth:`end_array`; finally :meth:`finish`.
    """

    def __init__(self, size_hint: int = 1024) -> None:
        self._b = FastBuilder(min(-(-max(size_hint, 64) // 8) * 8, MAX_BUFFER_SIZE))
        self._tables: list[int] = []
        self._pending: list[np.ndarray] = []

    def add_refs(self, refs: WireArray) -> None:
        """Write the next refs of the current array (continuing its index order)."""
        write = _write_refs_one_by_one if len(refs) <= _BUILDER_MAX else _write_refs
        self._pending.append(write(self._b, refs))

    def end_array(self, node_id: bytes) -> None:
        """Write the refs vector and the ``ArrayManifest`` table of the current array."""
        b = self._b
        x_tab = np.concatenate(self._pending) if self._pending else np.zeros(0, dtype=np.int64)
        self._pending = []
        refs = _write_refs_vector(b, x_tab)
        b.StartObject(3)
        b.PrependUOffsetTRelativeSlot(1, refs, 0)
        prepend_struct_slot(b, 0, bytes(node_id))
        self._tables.append(b.EndObject())

    def finish(
        self, manifest_id: bytes, compression_algorithm: int | None, dictionary: bytes | None
    ) -> memoryview:
        """Write the arrays vector, dictionary, ``Manifest`` table and root; the buffer."""
        b = self._b
        b.StartVector(4, len(self._tables), 4)
        for t in reversed(self._tables):
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


def estimate_size(arrays: list[WireArray], dictionary: bytes | None) -> int:
    """A generous guess of the flatbuffer size, to size the builder's buffer once."""
    return _estimate(arrays, dictionary)


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
    writer = ManifestWriter(_estimate(arrays, dictionary))
    for arr in arrays:
        writer.add_refs(arr)
        writer.end_array(arr.node_id)
    return writer.finish(manifest_id, compression_algorithm, dictionary)
