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

from icechunk.format._manifest_wire import Segments, unaligned_u32

__all__ = [
    "MAX_LOCATION_BYTES",
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


def compress_locations(locations: Segments, dictionary: bytes, level: int) -> Segments:
    """One zstd frame (with dictionary id and content size) per location, same rows."""
    if not len(locations):
        return Segments.empty()
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


def _content_sizes(frames: Segments) -> np.ndarray:
    """Declared content size of each zstd frame, -1 when the frame header has none.

    Raises
    ------
    ValueError
        A payload is not a zstd frame.
    """
    data = frames.data
    starts = frames.starts
    if not len(frames):
        return np.zeros(0, dtype=np.int64)
    if int(frames.lengths.min()) < 6:
        raise ValueError("compressed location too short to be a zstd frame")
    padded = np.concatenate([data, np.zeros(16, dtype=np.uint8)])
    words = unaligned_u32(padded)
    if (words[starts] != _ZSTD_MAGIC).any():
        raise ValueError("compressed location is not a zstd frame")
    fhd = padded[starts + 4].astype(np.int64)
    fcs_flag = fhd >> 6
    single = (fhd >> 5) & 1
    pos = starts + 5 + (1 - single) + np.array([0, 1, 2, 4])[fhd & 3]
    fcs_size = np.where(fcs_flag == 0, single, np.array([0, 2, 4, 8])[fcs_flag])
    if (pos + fcs_size > starts + frames.lengths).any():
        raise ValueError("truncated zstd frame header in compressed location")
    b0 = padded[pos].astype(np.int64)
    w = words[pos].astype(np.int64)
    hi = words[pos + 4].astype(np.int64)
    sizes = np.select(
        [fcs_size == 1, fcs_size == 2, fcs_size == 4, fcs_size == 8],
        [b0, (w & 0xFFFF) + 256, w, np.where(hi != 0, MAX_LOCATION_BYTES + 1, w)],
        -1,
    )
    return sizes


def decompress_locations(frames: Segments, dictionary: bytes | None) -> Segments:
    """Decompress every frame with the manifest dictionary (at most 1024 bytes each).

    Raises
    ------
    ValueError
        Not zstd frames, wrong dictionary, corrupt data, or a location over 1024 bytes.
    """
    if not len(frames):
        return Segments.empty()
    if dictionary is None:
        raise ValueError("compressed locations but no location dictionary")
    sizes = _content_sizes(frames)
    if (sizes > MAX_LOCATION_BYTES).any():
        raise ValueError(f"compressed location longer than {MAX_LOCATION_BYTES} bytes")
    dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
    out: list[bytes | memoryview] = [b""] * len(frames)
    try:
        bulk = np.flatnonzero(sizes > 0)
        if bulk.shape[0]:
            part = frames.take(bulk)
            result = dctx.multi_decompress_to_buffer(
                zstandard.BufferWithSegments(np.ascontiguousarray(part.data), _segment_table(part)),
                decompressed_sizes=sizes[bulk].astype(np.uint64).tobytes(),
                threads=_threads(bulk.shape[0]),
            )
            for i, chunk in zip(
                bulk.tolist(), map(result.__getitem__, range(len(result))), strict=True
            ):
                out[i] = chunk
        for i in np.flatnonzero(sizes <= 0).tolist():
            frame = frames.item(i)
            if sizes[i] == 0:
                # validate the (empty) frame as well
                text = dctx.decompress(frame, max_output_size=1)
            else:
                text = dctx.decompress(frame, max_output_size=MAX_LOCATION_BYTES)
            out[i] = text
    except zstandard.ZstdError as err:
        raise ValueError(f"cannot decompress location: {err}") from None
    return Segments.from_bytes_list(frames.rows, out)


def decode_utf8(seg: Segments) -> list[str]:
    """The payloads as ``str`` (UTF-8).

    Raises
    ------
    UnicodeDecodeError
        On invalid UTF-8.
    """
    data = seg.data
    raw = data.base if isinstance(data.base, bytes) and data.base is not None else None
    if raw is None or len(raw) != data.shape[0]:
        raw = data.tobytes()
    return [
        raw[s : s + n].decode("utf-8")
        for s, n in zip(seg.starts.tolist(), seg.lengths.tolist(), strict=True)
    ]
