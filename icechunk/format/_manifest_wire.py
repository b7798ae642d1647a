"""Manifest refs "as stored": the columnar wire form shared by the vectorized writer and reader.

A :class:`WireArray` holds the refs of one ``ArrayManifest`` table exactly as they appear in
the flatbuffer (FORMAT.md §3.4): which optional ChunkRef fields are present (a bit mask per
ref), the scalar fields, and the variable-length payloads (inline bytes, location / etag
strings, compressed locations) as :class:`Segments`.  Converting to and from the user-facing
:class:`~icechunk.format.manifest.ArrayManifest` (ref kinds, Python strings, location
compression) happens in ``manifest.py``; this module only knows bytes.

It also holds the two numpy kernels for variable-length payloads: gathering segments out of a
buffer as zero-padded 32-bit words and scattering them back, grouped by word count so each
group is one 2-D fancy-index operation instead of a per-ref Python loop.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "B_CHUNK_ID",
    "B_COMPRESSED_LOCATION",
    "B_ETAG",
    "B_INLINE",
    "B_LAST_MODIFIED",
    "B_LENGTH",
    "B_LOCATION",
    "B_OFFSET",
    "Segments",
    "WireArray",
    "dense_ids",
    "gather_words",
    "group_rows",
    "pack_strings",
    "progressions",
    "strided_gather",
]

# ChunkRef field ids (= vtable slot numbers), FORMAT.md §3.4.
F_INDEX, F_INLINE, F_OFFSET, F_LENGTH, F_CHUNK_ID = 0, 1, 2, 3, 4
F_LOCATION, F_ETAG, F_LAST_MODIFIED, F_COMPRESSED_LOCATION, F_EXTRA = 5, 6, 7, 8, 9
CHUNK_REF_FIELDS = 10

# Presence bits of the optional ChunkRef fields (``index`` is required, always present).
B_LENGTH = 1 << 0
B_OFFSET = 1 << 1
B_COMPRESSED_LOCATION = 1 << 2
B_LAST_MODIFIED = 1 << 3
B_ETAG = 1 << 4
B_LOCATION = 1 << 5
B_CHUNK_ID = 1 << 6
B_INLINE = 1 << 7
SHAPE_COUNT = 1 << 8

# bit -> field id
BIT_FIELD = {
    B_LENGTH: F_LENGTH,
    B_OFFSET: F_OFFSET,
    B_COMPRESSED_LOCATION: F_COMPRESSED_LOCATION,
    B_LAST_MODIFIED: F_LAST_MODIFIED,
    B_ETAG: F_ETAG,
    B_LOCATION: F_LOCATION,
    B_CHUNK_ID: F_CHUNK_ID,
    B_INLINE: F_INLINE,
}


@dataclass(slots=True)
class Segments:
    """Variable-length byte payloads of some refs: ``data[starts[i] : starts[i] + lengths[i]]``.

    ``rows`` are the ref rows (ascending) that have the payload; ``data`` is any uint8 array
    (a packed blob, or the whole flatbuffer when decoding, so nothing is copied).
    """

    rows: np.ndarray  # int64, ascending
    data: np.ndarray  # uint8
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @classmethod
    def empty(cls) -> Segments:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, np.zeros(0, dtype=np.uint8), z, z)

    @classmethod
    def from_bytes_list(cls, rows: np.ndarray, values: list[bytes]) -> Segments:
        """Pack a list of byte strings (one per row) into one blob."""
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        starts = np.zeros(len(values), dtype=np.int64)
        if len(values) > 1:
            np.cumsum(lengths[:-1], out=starts[1:])
        data = np.frombuffer(b"".join(values), dtype=np.uint8)
        return cls(np.asarray(rows, dtype=np.int64), data, starts, lengths)

    def item(self, i: int) -> bytes:
        s = int(self.starts[i])
        return self.data[s : s + int(self.lengths[i])].tobytes()

    def to_list(self) -> list[bytes]:
        """The payloads as ``bytes`` objects (a Python loop; use for small counts)."""
        # slicing one ``bytes`` copy is ~3x cheaper per item than numpy slice + tobytes
        if not len(self.starts):
            return []
        lo = int(self.starts.min())
        raw = self.data[lo : int((self.starts + self.lengths).max())].tobytes()
        starts = (self.starts - lo).tolist()
        ends = (self.starts - lo + self.lengths).tolist()
        return [raw[s:e] for s, e in zip(starts, ends, strict=True)]

    def take(self, sel: np.ndarray) -> Segments:
        return Segments(self.rows[sel], self.data, self.starts[sel], self.lengths[sel])


@dataclass(slots=True)
class WireArray:
    """The refs of one ``ArrayManifest`` table as stored, sorted by ``coords``."""

    node_id: bytes
    coords: np.ndarray  # (n, ndim) uint32
    shape: np.ndarray  # (n,) uint16 presence bits B_*
    offset: np.ndarray  # (n,) uint64, meaningful where B_OFFSET
    length: np.ndarray  # (n,) uint64, meaningful where B_LENGTH
    chunk_id: np.ndarray  # (n, 12) uint8, meaningful where B_CHUNK_ID
    last_modified: np.ndarray  # (n,) uint32, meaningful where B_LAST_MODIFIED
    inline: Segments
    location: Segments
    etag: Segments
    compressed_location: Segments

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    def slice(self, lo: int, hi: int) -> WireArray:
        """Refs ``lo:hi`` (views, payload rows renumbered from 0)."""

        def part(seg: Segments) -> Segments:
            a, b = np.searchsorted(seg.rows, [lo, hi]).tolist()
            return Segments(seg.rows[a:b] - lo, seg.data, seg.starts[a:b], seg.lengths[a:b])

        return WireArray(
            node_id=self.node_id,
            coords=self.coords[lo:hi],
            shape=self.shape[lo:hi],
            offset=self.offset[lo:hi],
            length=self.length[lo:hi],
            chunk_id=self.chunk_id[lo:hi],
            last_modified=self.last_modified[lo:hi],
            inline=part(self.inline),
            location=part(self.location),
            etag=part(self.etag),
            compressed_location=part(self.compressed_location),
        )


def unaligned_u32(data: np.ndarray) -> np.ndarray:
    """A uint32 view starting at *every* byte of ``data`` (element ``i`` = bytes ``i..i+4``).

    ``data`` must have 3 readable bytes past the last position that will be indexed.
    """
    return np.ndarray(
        shape=(max(data.shape[0] - 3, 0),), dtype="<u4", buffer=data, offset=0, strides=(1,)
    )


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values of a 1-d array, sorted: ``np.unique`` without its costs.

    numpy 2's ``np.unique`` imports ``numpy.ma`` on first use (over 10 ms, paid by the first
    commit or manifest read of every process) and hashes; a sort is enough here.
    """
    s = np.sort(values, kind="stable")
    if s.shape[0] < 2:
        return s
    keep = np.empty(s.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def dense_ids(values: np.ndarray) -> np.ndarray:
    """Each value's rank among the distinct values (0, 1, ...), without a full sort.

    Meant for columns with few distinct values: they are found on a sample and confirmed
    with a binary search; falls back to ``np.unique`` when the sample misses many.
    """
    n = values.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    uniq = sorted_unique(np.concatenate([values[:64], values[:: max(1, n // 1024)]]))
    for _ in range(2):
        ids: np.ndarray = np.minimum(np.searchsorted(uniq, values), uniq.shape[0] - 1)
        miss = uniq[ids] != values
        if not miss.any():
            return ids
        missing = values[miss]
        if missing.shape[0] > 4096:
            break
        uniq = sorted_unique(np.concatenate([uniq, missing]))
    return np.unique(values, return_inverse=True)[1].reshape(n)


def group_rows(values: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Positions grouped by value, ``[(value, positions ascending), ...]`` (values >= 0).

    Uses numpy's O(n) radix sort when the values fit in 16 bits.
    """
    if values.shape[0] == 0:
        return []
    lo, hi = int(values.min()), int(values.max())
    if lo == hi:
        return [(lo, np.arange(values.shape[0]))]
    keys = values.astype(np.uint16) if lo >= 0 and hi < 1 << 16 else values
    order = np.argsort(keys, kind="stable")
    sorted_values = values[order]
    cuts = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    bounds = [0, *cuts.tolist(), order.shape[0]]
    return [
        (int(sorted_values[bounds[g]]), order[bounds[g] : bounds[g + 1]])
        for g in range(len(bounds) - 1)
    ]


# Below this many rows a fancy-index gather costs no more than looking for progressions.
_MIN_STRIDED = 256


def progressions(pos: np.ndarray) -> list[tuple[int, int, int]] | None:
    """Split ``pos`` into runs of arithmetic progressions: ``[(start, stop, step), ...]``.

    Builders lay out same-shaped refs at a constant stride (apart from a few refs around new
    vtables), so their fields can be read with a few strided copies instead of index
    arrays.  None when there are too many runs for that to pay off.
    """
    m = pos.shape[0]
    if m < _MIN_STRIDED:
        return None
    # cheap look at 64 evenly spread steps first: scattered layouts bail out here
    probe = np.linspace(0, m - 2, num=64).astype(np.int64)
    if sorted_unique(pos[probe + 1] - pos[probe]).shape[0] > 8:
        return None
    diff = np.diff(pos)
    cuts = np.flatnonzero(diff[1:] != diff[:-1]) + 1
    if cuts.shape[0] > max(8, m >> 11):
        return None
    bounds = [0, *cuts.tolist(), m]
    steps = diff[np.minimum(np.array(bounds[:-1]), m - 2)].tolist()
    return [(bounds[i], bounds[i + 1], steps[i] or 1) for i in range(len(bounds) - 1)]


def strided_gather(
    data: np.ndarray, pos: np.ndarray, width: int, dtype: str = "u1"
) -> np.ndarray | None:
    """``data[pos[i] : pos[i] + width]`` for every i, by strided copies; None if unsuitable.

    Returns ``(m, width // itemsize)`` values of ``dtype`` (``(m,)`` when ``width`` is one
    item).  The caller has checked that every row lies inside ``data``.
    """
    runs = progressions(pos)
    if runs is None:
        return None
    item = np.dtype(dtype).itemsize
    m = pos.shape[0]
    out = np.empty((m,) if width == item else (m, width // item), dtype=dtype)
    for start, stop, step in runs:
        first = int(pos[start])
        base = data[first : first + width].view(dtype)
        if width == item:
            shape: tuple[int, ...] = (stop - start,)
            strides: tuple[int, ...] = (step,)
        else:
            shape, strides = (stop - start, width // item), (step, item)
        out[start:stop] = np.lib.stride_tricks.as_strided(
            base, shape=shape, strides=strides, writeable=False
        )
    return out


# mask of the first k bytes of a little-endian word, k = 0..4
_BYTE_MASK = np.array([0, 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF], dtype=np.uint32)


def gather_words(seg: Segments, sel: np.ndarray | slice, nwords: int) -> np.ndarray:
    """Payloads ``sel`` as zero-padded uint32 words: an ``(len(sel), nwords)`` array.

    Every selected payload must satisfy ``ceil(len / 4) <= nwords <= ceil(len / 4) + 1``
    (room for a string's NUL terminator); bytes past each payload's end are zero.
    """
    data = seg.data
    starts = seg.starts[sel]
    if data.shape[0] < 4 or int(starts.max(initial=0)) + 4 * nwords + 3 >= data.shape[0]:
        # too close to the end for the 4-byte window: work on a padded copy
        data = np.concatenate([data, np.zeros(4 * nwords + 4, dtype=np.uint8)])
    out: np.ndarray
    if (starts & 3).any():
        out = unaligned_u32(data)[starts[:, None] + 4 * np.arange(nwords, dtype=np.int64)]
    else:
        words = data[: data.shape[0] // 4 * 4].view("<u4")
        out = words[(starts >> 2)[:, None] + np.arange(nwords, dtype=np.int64)]
    lengths = seg.lengths[sel]
    for j in range(max(0, nwords - 2), nwords):
        valid = np.clip(lengths - 4 * j, 0, 4)
        out[:, j] &= _BYTE_MASK[valid]
    return out


# Lists at least this long are checked for repeated values (virtual refs usually point to a
# few files: a million refs may hold a thousand distinct locations).
DEDUP_FROM = 4096
_DEDUP_SAMPLE = 2048


def factorize(values: list[Hashable]) -> tuple[list[Hashable], np.ndarray] | None:
    """``(distinct values in first-seen order, index of each value)``, or None.

    None when the list is short or mostly distinct (then de-duplicating does not pay).  The
    work is two C-level passes over the list (``dict.fromkeys`` and a ``map``).
    """
    n = len(values)
    if n < DEDUP_FROM or len(set(values[:_DEDUP_SAMPLE])) > _DEDUP_SAMPLE // 2:
        return None
    codes: dict[Hashable, int] = dict.fromkeys(values)  # type: ignore[assignment]
    if len(codes) > n // 2:
        return None
    for i, key in enumerate(codes):
        codes[key] = i
    inverse = np.fromiter(map(codes.__getitem__, values), dtype=np.int64, count=n)
    return list(codes), inverse


def pack_strings(rows: np.ndarray, values: list[str]) -> Segments:
    """UTF-8 encode a list of strings (one per entry of ``rows``) into one blob.

    The common all-ASCII case is one ``join`` and one ``encode`` instead of a call per string.
    Long lists with many repeats encode each distinct string once: repeated strings then
    share their bytes in the blob (same start), which lets later stages skip repeated work
    by comparing starts instead of bytes.

    Raises
    ------
    TypeError
        If a value is not a ``str``.
    UnicodeEncodeError
        If a value cannot be encoded (lone surrogates).
    """
    distinct = factorize(values)  # type: ignore[arg-type]
    if distinct is not None:
        uniq, inverse = distinct
        packed = pack_strings(np.arange(len(uniq), dtype=np.int64), uniq)  # type: ignore[arg-type]
        return Segments(
            np.asarray(rows, dtype=np.int64), packed.data, packed.starts[inverse], packed.lengths[inverse]
        )
    joined = "".join(values)
    if not joined.isascii():
        return Segments.from_bytes_list(rows, [v.encode("utf-8") for v in values])
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    starts = np.zeros(len(values), dtype=np.int64)
    if len(values) > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    data = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    return Segments(np.asarray(rows, dtype=np.int64), data, starts, lengths)
