"""Virtual-ref location strings: UTF-8 (de)coding in bulk and zstd dictionary compression.

FORMAT.md §4.7: when a spec-2 manifest has at least ``min_num_chunks`` refs and at least as
many virtual refs, the writer trains a zstd dictionary on a random sample of the locations
and stores every location as its own zstd frame compressed with that dictionary.  Readers
decompress each frame with the manifest's dictionary and a 1024-byte output cap.

Per-location work is done by python-zstandard's bulk APIs (``multi_compress_to_buffer`` /
``multi_decompress_to_buffer``), which loop in C and can use several threads; the frames
are the same as one ``ZstdCompressor.compress`` call per location would give.
"""

from __future__ import annotations

import os

import numpy as np
import zstandard

from icechunk.format._manifest_wire import (
    DEDUP_FROM,
    Segments,
    dense_ids,
    factorize,
    gather_words,
    group_rows,
    unaligned_u32,
)

__all__ = [
    "MAX_LOCATION_BYTES",
    "check_location_frames",
    "compress_locations",
    "decode_utf8",
    "decompress_locations",
    "train_location_dictionary",
]

MAX_LOCATION_BYTES = 1024
"""The reference reader's output cap per compressed location: longer ones are never compressed."""

_MIN_SAMPLE_LENGTH = 8
_ZSTD_MAGIC = 0xFD2FB528
# Below this many items the bulk APIs run in the calling thread only.
_THREADED_FROM = 20_000


def _threads(count: int) -> int:
    return min(4, os.cpu_count() or 1) if count >= _THREADED_FROM else 0


def _segment_table(seg: Segments) -> bytes:
    table = np.empty((len(seg), 2), dtype=np.uint64)
    table[:, 0] = seg.starts
    table[:, 1] = seg.lengths
    return table.tobytes()


def train_location_dictionary(
    locations: Segments,
    *,
    max_samples: int,
    max_size: int,
    rng: np.random.Generator | None = None,
) -> bytes | None:
    """Train the location dictionary, or None when the §4.7 rules say not to use one.

    A uniform random sample of up to ``max_samples`` locations (what reservoir sampling
    yields) is taken; no dictionary when at least half of them are shorter than 8 bytes or
    when zstd cannot train one; the sample is repeated until it holds ``max_size`` bytes.
    """
    count = len(locations)
    if count == 0 or max_samples <= 0 or max_size <= 0:
        return None
    rng = rng if rng is not None else np.random.default_rng()
    picks = np.sort(rng.choice(count, size=min(max_samples, count), replace=False))
    samples = [locations.item(int(i)) for i in picks]
    if 2 * sum(len(s) < _MIN_SAMPLE_LENGTH for s in samples) >= len(samples):
        return None
    total = sum(len(s) for s in samples)
    repeated = list(samples)
    while total < max_size:
        repeated.extend(samples)
        total += sum(len(s) for s in samples)
    try:
        return zstandard.train_dictionary(max_size, repeated).as_bytes()
    except zstandard.ZstdError:
        return None


def _shared_payloads(seg: Segments) -> tuple[Segments, np.ndarray] | None:
    """``(distinct payloads, index of each row)`` when rows share bytes in the blob, else None.

    :func:`pack_strings` stores a repeated location once and points every row at it, so
    equal starts mean equal payloads.
    """
    n = len(seg)
    if n < DEDUP_FROM or bool((seg.starts[1:] > seg.starts[:-1]).all()):
        return None
    ids = dense_ids(seg.starts)
    count = int(ids.max()) + 1
    if count > n // 2:
        return None
    first = np.full(count, n, dtype=np.int64)
    np.minimum.at(first, ids, np.arange(n, dtype=np.int64))
    uniq = seg.take(first)
    return Segments(np.arange(count, dtype=np.int64), uniq.data, uniq.starts, uniq.lengths), ids


def _spread(distinct: Segments, rows: np.ndarray, inverse: np.ndarray) -> Segments:
    """Per-row payloads from distinct ones: rows share the bytes of their distinct value."""
    return Segments(rows, distinct.data, distinct.starts[inverse], distinct.lengths[inverse])


def compress_locations(locations: Segments, dictionary: bytes, level: int) -> Segments:
    """One zstd frame (with dictionary id and content size) per location, same rows.

    Repeated locations (sharing their bytes, see :func:`_shared_payloads`) are compressed
    once: the frames are deterministic, so the result is the same as compressing each row.
    """
    if not len(locations):
        return Segments.empty()
    shared = _shared_payloads(locations)
    if shared is not None:
        distinct, inverse = shared
        return _spread(compress_locations(distinct, dictionary, level), locations.rows, inverse)
    cctx = zstandard.ZstdCompressor(
        level=level, dict_data=zstandard.ZstdCompressionDict(dictionary)
    )
    data = np.ascontiguousarray(locations.data)
    frames = cctx.multi_compress_to_buffer(
        zstandard.BufferWithSegments(data, _segment_table(locations)),
        threads=_threads(len(locations)),
    )
    parts = list(map(frames.__getitem__, range(len(frames))))
    return Segments.from_bytes_list(locations.rows, parts)


_DICT_ID_SIZE = np.array([0, 1, 2, 4], dtype=np.int64)


def _content_sizes(frames: Segments) -> np.ndarray:
    """Declared content size of each zstd frame, -1 when the frame header has none.

    Raises
    ------
    ValueError
        A payload is not a zstd frame.
    """
    data = frames.data
    starts = frames.starts
    lengths = frames.lengths
    if not len(frames):
        return np.zeros(0, dtype=np.int64)
    if int(lengths.min()) < 6:
        raise ValueError("compressed location too short to be a zstd frame")
    # every read below stays inside its frame, which the reader checked is inside ``data``
    words = unaligned_u32(data)
    if (words[starts] != _ZSTD_MAGIC).any():
        raise ValueError("compressed location is not a zstd frame")
    fhd = data[starts + 4]
    first = int(fhd[0])
    uniform = bool((fhd == first).all())
    descriptors = (
        [(first, slice(None))]
        if uniform
        else [(d, np.flatnonzero(fhd == d)) for d in np.unique(fhd).tolist()]
    )
    sizes = np.full(starts.shape[0], -1, dtype=np.int64)
    for desc, rows in descriptors:
        single = (desc >> 5) & 1
        fcs_size = [single, 2, 4, 8][desc >> 6]
        offset = 5 + (1 - single) + int(_DICT_ID_SIZE[desc & 3])
        if offset + fcs_size > int(lengths[rows].min()):
            raise ValueError("truncated zstd frame header in compressed location")
        pos = starts[rows] + offset
        if fcs_size == 1:
            sizes[rows] = data[pos]
        elif fcs_size == 2:
            sizes[rows] = (data[pos].astype(np.int64) | data[pos + 1].astype(np.int64) << 8) + 256
        elif fcs_size == 4:
            sizes[rows] = words[pos]
        elif fcs_size == 8:
            high = words[pos + 4].astype(np.int64)
            sizes[rows] = np.where(high != 0, MAX_LOCATION_BYTES + 1, words[pos])
    return sizes


def check_location_frames(frames: Segments) -> None:
    """Check that every payload is a zstd frame declaring at most 1024 bytes (or no size).

    Raises
    ------
    ValueError
        Otherwise.
    """
    if (_content_sizes(frames) > MAX_LOCATION_BYTES).any():
        raise ValueError(f"compressed location longer than {MAX_LOCATION_BYTES} bytes")


def decompress_locations(frames: Segments, dictionary: bytes | None) -> np.ndarray:
    """Decompress every frame with the manifest dictionary into ``str`` (object array).

    Each location is at most 1024 bytes (checked on the frame header before any work).

    Raises
    ------
    ValueError
        Not zstd frames, wrong dictionary, corrupt data, or a location over 1024 bytes.
    UnicodeDecodeError
        A location is not UTF-8.
    """
    out = np.empty(len(frames), dtype=object)
    if not len(frames):
        return out
    if dictionary is None:
        raise ValueError("compressed locations but no location dictionary")
    repeated = _repeated_frames(frames)
    if repeated is not None:
        distinct, inverse = repeated
        return decompress_locations(distinct, dictionary)[inverse]
    sizes = _content_sizes(frames)
    if (sizes > MAX_LOCATION_BYTES).any():
        raise ValueError(f"compressed location longer than {MAX_LOCATION_BYTES} bytes")
    try:
        dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
        known = sizes >= 0
        bulk = np.flatnonzero(known)
        if bulk.shape[0]:
            part = frames if bulk.shape[0] == len(frames) else frames.take(bulk)
            result = dctx.multi_decompress_to_buffer(
                zstandard.BufferWithSegments(np.ascontiguousarray(part.data), _segment_table(part)),
                decompressed_sizes=sizes[bulk].astype(np.uint64).tobytes(),
                threads=_threads(bulk.shape[0]),
            )
            strings = _strings_from_pieces(result)
            if bulk.shape[0] == len(frames):
                out = strings
            else:
                out[bulk] = strings
        for i in np.flatnonzero(~known).tolist():
            # no content size in the frame header: let zstd enforce the cap
            text = dctx.decompress(frames.item(i), max_output_size=MAX_LOCATION_BYTES)
            out[i] = text.decode("utf-8")
    except zstandard.ZstdError as err:
        raise ValueError(f"cannot decompress location: {err}") from None
    return out


def _repeated_frames(frames: Segments) -> tuple[Segments, np.ndarray] | None:
    """``(distinct frames, index of each frame)`` when many frames are equal, else None.

    Equal locations compress to equal frames, but a reader cannot rely on a writer sharing
    their bytes, so frames are compared by content (``bytes`` slices in a dict).
    """
    n = len(frames)
    if n < DEDUP_FROM:
        return None
    raw = frames.data.base if isinstance(frames.data.base, bytes) else None
    if raw is None or frames.data.ctypes.data != _address(raw):
        raw = frames.data.tobytes()
    starts = frames.starts.tolist()
    ends = (frames.starts + frames.lengths).tolist()
    pieces = list(map(raw.__getitem__, map(slice, starts, ends)))
    distinct = factorize(pieces)  # type: ignore[arg-type]
    if distinct is None:
        return None
    uniq, inverse = distinct
    return Segments.from_bytes_list(np.arange(len(uniq), dtype=np.int64), uniq), inverse  # type: ignore[arg-type]


def _address(raw: bytes) -> int:
    return np.frombuffer(raw, dtype=np.uint8).ctypes.data


def _objects(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _strings_from_pieces(pieces: zstandard.BufferWithSegmentsCollection) -> np.ndarray:
    """UTF-8 decode many small buffers: one join, one decode and one split in C."""
    count = len(pieces)
    blob = b"\x00".join(pieces)
    if blob.count(b"\x00") == count - 1:
        return _objects(blob.decode("utf-8").split("\x00"))
    # a location contains NUL characters: decode one by one
    return _objects([bytes(pieces[i]).decode("utf-8") for i in range(count)])


# Below this many strings the per-string loop is cheaper than the vectorized path.
_LOOP_BELOW = 64


def decode_utf8(seg: Segments) -> np.ndarray:
    """The payloads as ``str`` (UTF-8), an object array in the order of ``seg``.

    Payloads of equal length are gathered as rows of a byte matrix with one NUL column
    appended, so a single ``decode`` and ``split`` per distinct length creates all the
    ``str`` objects in C.

    Raises
    ------
    UnicodeDecodeError
        On invalid UTF-8.
    """
    n = len(seg)
    out = np.empty(n, dtype=object)
    if n < _LOOP_BELOW:
        out[:] = [p.decode("utf-8") for p in seg.to_list()]
        return out
    for length, rows in group_rows(seg.lengths):
        m = rows.shape[0]
        nwords = (length >> 2) + 1
        words = gather_words(seg, rows, nwords)
        blob = np.ascontiguousarray(words.view(np.uint8)[:, : length + 1]).tobytes()
        if blob.count(b"\x00") == m:
            strings = blob.decode("utf-8").split("\x00")
            strings.pop()
        else:  # NUL characters inside some strings
            strings = [p.decode("utf-8") for p in seg.take(rows).to_list()]
        if m == n:
            out[:] = strings
        else:
            out[rows] = _objects(strings)
    return out
