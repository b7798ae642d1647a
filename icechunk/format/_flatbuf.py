"""Minimal, fast flatbuffer table access and builder helpers shared by the file codecs.

Reading goes through :class:`Table` (precompiled ``struct`` readers, no generated code).
Malformed buffers surface as ``IndexError``/``struct.error``/``UnicodeDecodeError``; the
codecs wrap their decoding in :func:`decoding` which turns those into a ``FormatError``
naming the file.
"""

from __future__ import annotations

import builtins
import contextlib
import struct
from collections.abc import Iterator

import flatbuffers

from icechunk._errors import ErrorKind, FormatError

__all__ = ["FILE_IDENTIFIER", "Table", "decoding", "prepend_struct_slot", "root_table"]

FILE_IDENTIFIER = b"Ichk"

_U8 = struct.Struct("<B").unpack_from
_U16 = struct.Struct("<H").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from


@contextlib.contextmanager
def decoding(name: str, what: str) -> Iterator[None]:
    """Turn low-level decoding failures into a ``FormatError`` naming ``name``."""
    try:
        yield
    except FormatError:
        raise
    except (IndexError, struct.error, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise FormatError(
            f"cannot decode {what} {name}: corrupt or truncated flatbuffer ({type(err).__name__}: {err})",
            ErrorKind.DESERIALIZATION,
        ) from None


class Table:
    """A flatbuffer table: its buffer position and vtable."""

    __slots__ = ("buf", "pos", "vt", "vtlen")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vt = pos - _I32(buf, pos)[0]
        self.vtlen = _U16(buf, self.vt)[0]
        if self.vt < 0 or self.vt + self.vtlen > len(buf) or pos >= len(buf):
            raise IndexError("table out of bounds")

    def field(self, slot: int) -> int:
        """Absolute position of field ``slot`` (0-based schema id), or 0 when absent."""
        o = 4 + 2 * slot
        if o >= self.vtlen:
            return 0
        off = _U16(self.buf, self.vt + o)[0]
        return self.pos + off if off else 0

    def has(self, slot: int) -> bool:
        return self.field(slot) != 0

    def u8(self, slot: int, default: int = 0) -> int:
        p = self.field(slot)
        return _U8(self.buf, p)[0] if p else default

    def u16(self, slot: int, default: int = 0) -> int:
        p = self.field(slot)
        return _U16(self.buf, p)[0] if p else default

    def u32(self, slot: int, default: int = 0) -> int:
        p = self.field(slot)
        return _U32(self.buf, p)[0] if p else default

    def i32(self, slot: int, default: int = 0) -> int:
        p = self.field(slot)
        return _I32(self.buf, p)[0] if p else default

    def u64(self, slot: int, default: int = 0) -> int:
        p = self.field(slot)
        return _U64(self.buf, p)[0] if p else default

    def bool(self, slot: int, default: bool = False) -> bool:
        p = self.field(slot)
        return bool(_U8(self.buf, p)[0]) if p else default

    def _indirect(self, slot: int) -> int:
        p = self.field(slot)
        if not p:
            return 0
        target = p + _U32(self.buf, p)[0]
        if target >= len(self.buf):
            raise IndexError("offset out of bounds")
        return int(target)

    def table(self, slot: int) -> Table | None:
        p = self._indirect(slot)
        return Table(self.buf, p) if p else None

    def string(self, slot: int) -> str | None:
        p = self._indirect(slot)
        if not p:
            return None
        n = _U32(self.buf, p)[0]
        if p + 4 + n > len(self.buf):
            raise IndexError("string out of bounds")
        return self.buf[p + 4 : p + 4 + n].decode("utf-8")

    def vector(self, slot: int) -> tuple[int, int] | None:
        """``(start of elements, length)`` of a vector field, or None when absent."""
        p = self._indirect(slot)
        if not p:
            return None
        return p + 4, _U32(self.buf, p)[0]

    def bytes(self, slot: int) -> builtins.bytes | None:
        v = self.vector(slot)
        if v is None:
            return None
        start, n = v
        if start + n > len(self.buf):
            raise IndexError("byte vector out of bounds")
        return self.buf[start : start + n]

    def tables(self, slot: int) -> list[Table]:
        """Elements of a vector of tables (empty when absent)."""
        v = self.vector(slot)
        if v is None:
            return []
        start, n = v
        buf = self.buf
        if start + 4 * n > len(buf):
            raise IndexError("vector out of bounds")
        return [Table(buf, start + 4 * i + _U32(buf, start + 4 * i)[0]) for i in range(n)]

    def table_at(self, slot: int, i: int) -> Table:
        """Element ``i`` of a vector of tables, without building the others (IndexError when
        the vector is absent or shorter)."""
        v = self.vector(slot)
        if v is None or not 0 <= i < v[1]:
            raise IndexError(f"no element {i} in vector field {slot}")
        at = v[0] + 4 * i
        if at + 4 > len(self.buf):
            raise IndexError("vector out of bounds")
        return Table(self.buf, at + _U32(self.buf, at)[0])

    def strings(self, slot: int) -> list[str]:
        v = self.vector(slot)
        if v is None:
            return []
        start, n = v
        buf = self.buf
        out = []
        for i in range(n):
            p = start + 4 * i + _U32(buf, start + 4 * i)[0]
            length = _U32(buf, p)[0]
            if p + 4 + length > len(buf):
                raise IndexError("string out of bounds")
            out.append(buf[p + 4 : p + 4 + length].decode("utf-8"))
        return out

    def struct_bytes(self, slot: int, size: int) -> builtins.bytes | None:
        """Raw bytes of an inline struct field, or None when absent."""
        p = self.field(slot)
        if not p:
            return None
        if p + size > len(self.buf):
            raise IndexError("struct out of bounds")
        return self.buf[p : p + size]

    def struct_vector(self, slot: int, size: int) -> list[builtins.bytes]:
        """Raw bytes of each element of a vector of structs (empty when absent)."""
        v = self.vector(slot)
        if v is None:
            return []
        start, n = v
        if start + n * size > len(self.buf):
            raise IndexError("struct vector out of bounds")
        return [self.buf[start + i * size : start + (i + 1) * size] for i in range(n)]


def root_table(buf: bytes) -> Table:
    """The root table of a finished flatbuffer."""
    if len(buf) < 8:
        raise IndexError("flatbuffer too short")
    return Table(buf, _U32(buf, 0)[0])


def prepend_struct_slot(
    builder: flatbuffers.Builder, slot: int, raw: bytes, align: int = 1
) -> None:
    """Add an inline struct (given as its raw little-endian bytes) to the open table."""
    builder.Prep(align, len(raw))
    builder.head = builder.head - len(raw)
    builder.Bytes[builder.head : builder.head + len(raw)] = raw
    builder.Slot(slot)


def create_struct_vector(builder: flatbuffers.Builder, items: list[bytes], size: int, align: int) -> int:
    """Create a vector of inline structs from their raw bytes; returns its offset."""
    builder.StartVector(size, len(items), align)
    for raw in reversed(items):
        builder.Prep(align, size)
        builder.head = builder.head - size
        builder.Bytes[builder.head : builder.head + size] = raw
    return int(builder.EndVector())


def create_byte_vector(builder: flatbuffers.Builder, data: bytes) -> int:
    """Create a ``[ubyte]`` vector; returns its offset."""
    return int(builder.CreateByteVector(data))


def finish(builder: flatbuffers.Builder, root: int) -> bytes:
    """Finish with the ``Ichk`` file identifier and return the buffer bytes."""
    builder.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())
