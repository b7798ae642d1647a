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

import ctypes
import itertools
import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import zstandard

from icechunk.format._manifest_wire import (
    Segments,
    gather_words,
    group_rows,
    sorted_unique,
    strided_gather,
    unaligned_u32,
)

__all__ = [
    "MAX_LOCATION_BYTES",
    "LocationCompressor",
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
    repeated: list[bytes | bytearray | memoryview] = list(samples)
    while total < max_size:
        repeated.extend(samples)
        total += sum(len(s) for s in samples)
    try:
        return zstandard.train_dictionary(max_size, repeated).as_bytes()
    except zstandard.ZstdError:
        return None


# Locations per bulk-compression call.  python-zstandard starts a new output buffer about
# every megabyte; calls this small get one buffer, which ``_frames_blob`` reads in one piece.
_CHUNK = 16_384


class LocationCompressor:
    """Compresses locations with a dictionary in chunks on a small thread pool.

    python-zstandard's bulk API loops in C with the GIL released, so while the pool
    compresses, the caller can lay out the refs whose frames are ready
    (:meth:`compressed` blocks until a range is done).  A location equal to the previous one
    (common: several chunks of one file) is compressed once, its frame reused; frames are
    deterministic, so the output is the same.  Use as a context manager.
    """

    def __init__(self, locations: Segments, dictionary: bytes, level: int) -> None:
        self._locations = locations
        self._dict = zstandard.ZstdCompressionDict(dictionary)
        self._level = level
        repeats = _repeats(locations)
        if repeats is None:
            self._inverse = None
            unique = locations
        else:
            self._inverse = np.cumsum(~repeats) - 1
            unique = locations.take(np.flatnonzero(~repeats))
        n = len(unique)
        self._data = np.ascontiguousarray(unique.data)
        table = np.empty((n, 2), dtype=np.uint64)
        table[:, 0] = unique.starts
        table[:, 1] = unique.lengths
        self._table = table
        self._count = n
        workers = _threads(n)
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        starts = list(range(0, n, _CHUNK))
        self._chunks: list[Future[tuple[np.ndarray, np.ndarray]] | _Done]
        if self._pool is not None:
            self._chunks = [self._pool.submit(self._work, lo) for lo in starts]
        else:
            self._chunks = [_Done(self._work(lo)) for lo in starts]

    def __enter__(self) -> LocationCompressor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            for job in self._chunks:
                job.cancel()
            self._pool.shutdown(wait=True)

    def _work(self, lo: int) -> tuple[np.ndarray, np.ndarray]:
        hi = min(self._count, lo + _CHUNK)
        cctx = zstandard.ZstdCompressor(level=self._level, dict_data=self._dict)
        if not self._table[lo:hi, 1].any():
            # only empty locations, which the bulk API refuses: they all get the same frame
            frame = np.frombuffer(cctx.compress(b""), dtype=np.uint8)
            return np.tile(frame, hi - lo), np.full(hi - lo, frame.shape[0], dtype=np.int64)
        frames = cctx.multi_compress_to_buffer(
            # the stubs say ByteString; any contiguous buffer works
            zstandard.BufferWithSegments(self._data, self._table[lo:hi].tobytes()),  # type: ignore[arg-type]
            threads=0,
        )
        return _frames_blob(frames, self._dict.dict_id())

    @staticmethod
    def chunk_size() -> int:
        return _CHUNK

    def compressed(self, lo: int, hi: int) -> Segments:
        """Frames of locations ``lo:hi`` (waits for the chunks holding them)."""
        if self._inverse is None:
            first, last = lo, hi
        else:
            first, last = int(self._inverse[lo]), int(self._inverse[hi - 1]) + 1
        c0, c1 = first // _CHUNK, -(-last // _CHUNK)
        parts = [self._chunks[c].result() for c in range(c0, c1)]
        blob = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        lengths = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        offsets = np.zeros(lengths.shape[0], dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        if self._inverse is None:
            sel: np.ndarray | slice = slice(lo - c0 * _CHUNK, hi - c0 * _CHUNK)
        else:
            sel = self._inverse[lo:hi] - c0 * _CHUNK
        return Segments(self._locations.rows[lo:hi], blob, offsets[sel], lengths[sel])


def _repeats(locations: Segments) -> np.ndarray | None:
    """Which locations equal the previous one; None when a sample says repeats are rare."""
    n = len(locations)
    if n < 2:
        return None
    lengths = locations.lengths
    same_length = lengths[1:] == lengths[:-1]
    shared = same_length & (locations.starts[1:] == locations.starts[:-1])
    if shared.any():
        # pack_strings stored repeated strings once: same bytes, no comparison needed
        # (a repeat that does not share its bytes is merely compressed again)
        repeats = np.zeros(n, dtype=bool)
        repeats[1:] = shared
        return repeats
    sample = sorted_unique(np.linspace(0, n - 2, num=min(n - 1, 256)).astype(np.int64))
    sample = sample[same_length[sample]]
    hits = sum(locations.item(i) == locations.item(i + 1) for i in sample.tolist())
    if hits * 10 < min(n - 1, 256):
        return None
    candidates = np.flatnonzero(same_length)
    items = locations.to_list()
    equal = np.fromiter(
        (items[i] == items[i + 1] for i in candidates.tolist()),
        dtype=bool,
        count=candidates.shape[0],
    )
    repeats = np.zeros(n, dtype=bool)
    repeats[candidates[equal] + 1] = True
    return repeats


class _Done:
    """A finished job with the ``Future`` methods used above."""

    def __init__(self, value: tuple[np.ndarray, np.ndarray]) -> None:
        self._value = value

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self._value

    def cancel(self) -> bool:
        return False


def compress_locations(locations: Segments, dictionary: bytes, level: int) -> Segments:
    """One zstd frame (with dictionary id and content size) per location, same rows."""
    n = len(locations)
    if not n:
        return Segments.empty()
    with LocationCompressor(locations, dictionary, level) as job:
        return job.compressed(0, n)


def _address(buf: object) -> int:
    return int(np.frombuffer(buf, dtype=np.uint8).ctypes.data)  # type: ignore[call-overload]


def _frames_blob(
    frames: zstandard.BufferWithSegmentsCollection, dict_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """The frames of one bulk call as one byte array, and each frame's length.

    Creating a Python object per frame to learn its length costs a good part of what
    compressing it does.  The collection is a few output buffers, each holding consecutive
    frames back to back; we find where each buffer starts (a frame's ``offset`` within its
    buffer drops back to 0), check that the buffers account for every byte, copy each buffer
    in one go, and recover the frame boundaries by parsing the frame headers with numpy.
    Anything unexpected falls back to one object per frame.
    """
    count = len(frames)
    pieces = _buffer_pieces(frames, count)
    if pieces is not None:
        blob = np.concatenate(
            [
                np.array(np.ctypeslib.as_array((ctypes.c_ubyte * size).from_address(address)))
                for address, size in pieces
            ]
        )
        lengths = _frame_lengths(blob, count, dict_id)
        if lengths is not None:
            return blob, lengths
    parts = list(map(frames.__getitem__, range(count)))
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=count)
    joined = b"".join(parts)  # type: ignore[arg-type]  # segments are buffers (not in the stubs)
    return np.frombuffer(joined, dtype=np.uint8), lengths


# Frames sampled per output buffer search step; python-zstandard's buffers hold far more.
_BUFFER_PROBE = 32


def _buffer_pieces(
    frames: zstandard.BufferWithSegmentsCollection, count: int
) -> list[tuple[int, int]] | None:
    """``(address, size)`` of each output buffer of a bulk call, in frame order, or None.

    A buffer starts at frame 0 and wherever a frame's offset is below the previous frame's.
    Sampling every ``_BUFFER_PROBE`` frames then bisecting finds those starts; the result
    is accepted only if the buffers' sizes add up to ``frames.size()`` and each buffer's
    last frame sits where its offset says, which rules out gaps and missed boundaries.
    """
    if count == 0:
        return None
    last = frames[count - 1]
    if int(last.offset) + len(last) == frames.size():
        # everything in one buffer (typical of bulk decompression)
        return _checked_pieces(frames, [0], count)
    for probe in (max(_BUFFER_PROBE, count // 256), _BUFFER_PROBE):
        pieces = _checked_pieces(frames, _buffer_starts(frames, count, probe), count)
        if pieces is not None:
            return pieces
    return None


def _buffer_starts(
    frames: zstandard.BufferWithSegmentsCollection, count: int, probe: int
) -> list[int]:
    """Indices where a new output buffer starts, probing every ``probe`` frames."""

    def offset(i: int) -> int:
        return int(frames[i].offset)

    starts = [0]
    probes = [*range(0, count, probe), count - 1]
    previous = offset(0)
    for lo, hi in itertools.pairwise(probes):
        current = offset(hi)
        if current < previous:
            # one buffer start in (lo, hi]: the first frame whose offset is not above lo's
            a, b = lo, hi
            while b - a > 1:
                mid = (a + b) // 2
                if offset(mid) < previous:
                    b = mid
                else:
                    a = mid
            starts.append(b)
        previous = current
    return starts


def _checked_pieces(
    frames: zstandard.BufferWithSegmentsCollection, starts: list[int], count: int
) -> list[tuple[int, int]] | None:
    """``(address, size)`` per buffer if ``starts`` are exactly the buffer starts, else None."""
    pieces = []
    covered = 0
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else count
        first, last = frames[start], frames[end - 1]
        size = int(last.offset) + len(last)
        if first.offset != 0 or len(first) == 0:
            return None
        if _address(last) - _address(first) != last.offset:
            return None
        pieces.append((_address(first), size))
        covered += size
    return pieces if covered == frames.size() else None


_FCS_SIZE = np.array([0, 2, 4, 8], dtype=np.int64)


def _frame_lengths(blob: np.ndarray, count: int, dict_id: int) -> np.ndarray | None:
    """Lengths of ``count`` single-block zstd frames stored back to back in ``blob``.

    None unless the frame headers found chain exactly from the start to the end of ``blob``.
    """
    size = blob.shape[0]
    padded = np.concatenate([blob, np.zeros(16, dtype=np.uint8)])
    words = unaligned_u32(padded)
    starts = np.flatnonzero(words[:size] == _ZSTD_MAGIC)
    fhd = padded[starts + 4].astype(np.int64)
    single = (fhd >> 5) & 1
    dict_pos = starts + 5 + (1 - single)
    has_dict = (fhd & 3) == 3
    # drop magic numbers that occur inside compressed data: the dictionary id must follow
    genuine = has_dict & (words[dict_pos] == dict_id) & ((fhd & 0x08) == 0)
    starts, fhd, single, dict_pos = (
        starts[genuine],
        fhd[genuine],
        single[genuine],
        dict_pos[genuine],
    )
    if starts.shape[0] != count or count == 0 or starts[0] != 0:
        return None
    fcs_flag = fhd >> 6
    fcs = np.where(fcs_flag == 0, single, _FCS_SIZE[fcs_flag])
    block = dict_pos + 4 + fcs
    header = (
        padded[block].astype(np.int64)
        | padded[block + 1].astype(np.int64) << 8
        | padded[block + 2].astype(np.int64) << 16
    )
    block_type = (header >> 1) & 3
    payload = np.where(block_type == 1, 1, header >> 3)
    lengths: np.ndarray = block + 3 + payload + 4 * ((fhd >> 2) & 1) - starts
    ends = starts + lengths
    if (header & 1).all() and (ends[:-1] == starts[1:]).all() and ends[-1] == size:
        return lengths
    return None


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
        else [(d, np.flatnonzero(fhd == d)) for d in sorted_unique(fhd).tolist()]
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
    sizes = _content_sizes(frames)
    if (sizes > MAX_LOCATION_BYTES).any():
        raise ValueError(f"compressed location longer than {MAX_LOCATION_BYTES} bytes")
    try:
        dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
        # zero-length outputs crash python-zstandard's bulk API (double free): done one by one
        bulk = np.flatnonzero(sizes > 0)
        if bulk.shape[0]:
            part = frames if bulk.shape[0] == len(frames) else frames.take(bulk)
            result = dctx.multi_decompress_to_buffer(
                # the stubs say ByteString; any contiguous buffer works
                zstandard.BufferWithSegments(np.ascontiguousarray(part.data), _segment_table(part)),  # type: ignore[arg-type]
                decompressed_sizes=sizes[bulk].astype(np.uint64).tobytes(),
                threads=_threads(bulk.shape[0]),
            )
            strings = _strings_from_pieces(result, sizes[bulk])
            if bulk.shape[0] == len(frames):
                out = strings
            else:
                out[bulk] = strings
        for i in np.flatnonzero(sizes <= 0).tolist():
            # empty, or no content size in the frame header (then zstd enforces the cap)
            text = dctx.decompress(frames.item(i), max_output_size=MAX_LOCATION_BYTES)
            if sizes[i] == 0 and text:
                raise ValueError("compressed location longer than its declared size")
            out[i] = text.decode("utf-8")
    except zstandard.ZstdError as err:
        raise ValueError(f"cannot decompress location: {err}") from None
    return out


def _objects(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _strings_from_pieces(
    pieces: zstandard.BufferWithSegmentsCollection, sizes: np.ndarray
) -> np.ndarray:
    """UTF-8 decode many small buffers (of known ``sizes``, all > 0) into ``str`` objects.

    One NUL-separated blob, one ``decode`` and one ``split`` in C.  The blob is assembled
    from the collection's output buffers read in one piece each (see ``_buffer_pieces``),
    or else by joining the pieces one object at a time.
    """
    count = len(pieces)
    blob: bytes | None = None
    spans = _buffer_pieces(pieces, count)
    if spans is not None:
        raw = np.concatenate(
            [
                np.ctypeslib.as_array((ctypes.c_ubyte * size).from_address(address))
                for address, size in spans
            ]
        )
        if raw.shape[0] == int(sizes.sum()):
            # a NUL after every string but the last
            size = int(sizes[0])
            if (sizes == size).all():
                joined = np.zeros((count, size + 1), dtype=np.uint8)
                joined[:, :size] = raw.reshape(count, size)
                blob = joined.reshape(-1)[:-1].tobytes()
            else:
                flat = np.zeros(raw.shape[0] + count - 1, dtype=np.uint8)
                keep = np.ones(flat.shape[0], dtype=bool)
                keep[np.cumsum(sizes[:-1]) + np.arange(count - 1)] = False
                flat[keep] = raw
                blob = flat.tobytes()
    if blob is None:
        blob = b"\x00".join(pieces)  # type: ignore[arg-type]  # segments are buffers (not in the stubs)
    if blob.count(b"\x00") == count - 1:
        return _objects(blob.decode("utf-8").split("\x00"))
    # a location contains NUL characters: decode one by one
    return _objects([pieces[i].tobytes().decode("utf-8") for i in range(count)])


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
        starts = seg.starts[rows]
        block = None
        if int(starts.max()) + length < seg.data.shape[0]:
            # flatbuffer strings are NUL-terminated: copy each with its terminator
            block = strided_gather(seg.data, starts, length + 1)
        if block is not None:
            block[:, length] = 0
        else:
            nwords = (length >> 2) + 1
            block = gather_words(seg, rows, nwords).view(np.uint8)[:, : length + 1]
        blob = np.ascontiguousarray(block).tobytes()
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
