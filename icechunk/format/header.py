"""The 39-byte header and zstd envelope shared by every metadata file (FORMAT.md §2).

``encode_envelope`` turns a finished flatbuffer into the bytes stored on disk and
``decode_envelope`` checks the header and returns the decompressed flatbuffer.  Decoding is
streaming because the reference writer's zstd frames carry no content size.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

import zstandard

from icechunk._errors import ErrorKind, FormatError
from icechunk._version import __version__

__all__ = [
    "HEADER_SIZE",
    "IMPLEMENTATION_NAME",
    "MAGIC",
    "FileType",
    "Header",
    "decode_envelope",
    "encode_envelope",
    "read_header",
]

MAGIC = "ICE🧊CHUNK".encode()
assert len(MAGIC) == 12
HEADER_SIZE = 39
IMPLEMENTATION_NAME = f"ic-py-{__version__}"
_NAME_SIZE = 24
SUPPORTED_SPEC_VERSIONS = (1, 2)
_COMPRESSION_NONE = 0
_COMPRESSION_ZSTD = 1


class FileType(enum.IntEnum):
    """File type byte of the header."""

    SNAPSHOT = 1
    MANIFEST = 2
    ATTRIBUTES = 3
    TRANSACTION_LOG = 4
    CHUNK = 5
    REPO_INFO = 6


@dataclass(frozen=True, slots=True)
class Header:
    """Decoded header fields."""

    implementation: str
    spec_version: int
    file_type: FileType
    compression: int


def _fail(name: str, what: str, kind: ErrorKind = ErrorKind.INVALID_FILE_FORMAT) -> FormatError:
    return FormatError(f"cannot read {name}: {what}", kind)


def read_header(data: bytes | memoryview, name: str, expected: FileType) -> Header:
    """Validate and decode the header of ``data``.

    Parameters
    ----------
    data
        The whole object as stored.
    name
        The object's key, used in error messages.
    expected
        The file type the caller expects at this path.

    Raises
    ------
    FormatError
        Bad magic, truncated header, wrong file type, unsupported spec version or
        compression.
    """
    if len(data) < HEADER_SIZE:
        raise _fail(name, f"file is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    if bytes(data[:12]) != MAGIC:
        raise _fail(name, "bad magic bytes: not an Icechunk file")
    implementation = bytes(data[12:36]).rstrip(b" \x00").decode("utf-8", "replace")
    spec_version, file_type, compression = data[36], data[37], data[38]
    if spec_version not in SUPPORTED_SPEC_VERSIONS:
        raise _fail(
            name,
            f"spec version {spec_version} is not supported (this library reads 1 and 2); "
            "upgrade your library",
            ErrorKind.UNSUPPORTED_SPEC_VERSION,
        )
    try:
        ftype = FileType(file_type)
    except ValueError:
        raise _fail(name, f"unknown file type {file_type}") from None
    if ftype != expected:
        raise _fail(name, f"expected a {expected.name.lower()} file, found {ftype.name.lower()}")
    if compression != _COMPRESSION_ZSTD:
        raise _fail(name, f"unsupported compression byte {compression} (only zstd is accepted)")
    return Header(implementation, spec_version, ftype, compression)


def decode_envelope(data: bytes | memoryview, name: str, expected: FileType) -> tuple[Header, bytes]:
    """Check the header and return it with the decompressed flatbuffer."""
    header = read_header(data, name, expected)
    dobj = _decompressor().decompressobj()
    try:
        payload = dobj.decompress(bytes(data[HEADER_SIZE:]))
    except zstandard.ZstdError as err:
        raise _fail(name, f"corrupt zstd stream ({err})", ErrorKind.DESERIALIZATION) from None
    if not dobj.eof:
        raise _fail(name, "truncated zstd stream", ErrorKind.DESERIALIZATION)
    return header, payload


def encode_envelope(
    payload: bytes | bytearray | memoryview,
    file_type: FileType,
    spec_version: int,
    *,
    level: int = 3,
    implementation: str = IMPLEMENTATION_NAME,
    threads: int = 0,
) -> bytes:
    """Wrap a finished flatbuffer: header, then one streaming zstd frame (no content size).

    ``threads > 0`` uses zstd's multi-threaded mode: faster for big payloads, equally valid,
    but not byte-identical to the reference writer's single-threaded output.
    """
    name = implementation.encode("utf-8")[:_NAME_SIZE].ljust(_NAME_SIZE, b" ")
    head = MAGIC + name + bytes((spec_version, int(file_type), _COMPRESSION_ZSTD))
    cobj = _compressor(level, threads).compressobj()
    return b"".join((head, cobj.compress(payload), cobj.flush()))


_COMPRESSORS = threading.local()
_DECOMPRESSORS = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor: making one costs ~18 µs, more than decompressing a small
    metadata file.  Each ``decompressobj()`` resets its context, and a stream is always read
    to its end (or abandoned on error) before the next one starts on this thread."""
    found: zstandard.ZstdDecompressor | None = getattr(_DECOMPRESSORS, "one", None)
    if found is None:
        found = _DECOMPRESSORS.one = zstandard.ZstdDecompressor()
    return found


def _compressor(level: int, threads: int) -> zstandard.ZstdCompressor:
    """A compressor for these settings, made once per thread.

    Making one costs ~20 µs, as much as compressing a small metadata file; a compressor may
    serve one stream at a time, hence one per thread.  Its output does not depend on reuse.
    """
    cache: dict[tuple[int, int], zstandard.ZstdCompressor] | None = getattr(_COMPRESSORS, "cache", None)
    if cache is None:
        cache = _COMPRESSORS.cache = {}
    found = cache.get((level, threads))
    if found is None:
        found = cache[(level, threads)] = zstandard.ZstdCompressor(level=level, threads=threads)
    return found
