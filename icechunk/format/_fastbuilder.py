"""A faster flatbuffer builder that writes exactly the bytes ``flatbuffers.Builder`` writes.

The stock Python builder spends most of its time in small helper calls (``Prep`` → ``Pad``,
``Place`` → ``enforce_number`` → ``encode.Write``) per scalar.  :class:`FastBuilder` keeps its
algorithm — back-to-front writing, the same alignment rule, the same vtable de-duplication
keyed on the vtable's content — but does each step inline with precompiled ``struct``
packers.  Its output is byte-identical (tests compare the two on generated inputs and on every
fixture), so encoders can switch to it without changing a single byte on disk.

Differences that cannot show in the output: padding is not re-zeroed (a fresh builder's
buffer is all zeros and each byte is written at most once, so :meth:`Clear` allocates a new
buffer), and scalar range checks come from ``struct`` (``struct.error``) instead of the
stock ``TypeError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
from flatbuffers.builder import IsNestedError, IsNotNestedError, OffsetArithmeticError

__all__ = [
    "BOOL",
    "EMPTY_VECTOR",
    "I32",
    "OFFSET",
    "STRING",
    "STRUCT",
    "U8",
    "U16",
    "U32",
    "U64",
    "FastBuilder",
    "add_offsets_vector",
    "add_table",
]

# field kinds of :func:`add_table` (scalars are skipped when 0/False, the schema default)
U8, BOOL, U16, U32, I32, U64 = 1, 2, 3, 4, 5, 6
OFFSET = 7  # a uoffset to an object made earlier (0 = absent)
STRUCT = 8  # raw bytes of an inline struct with 1-byte alignment (ids)
# made just before the table, in field order, then referenced like OFFSET:
STRING = 9  # a string, given as UTF-8 bytes (None = absent)
EMPTY_VECTOR = 10  # an empty vector (of anything 4-byte aligned); the value is ignored

_PACK_U8 = struct.Struct("<B").pack_into
_PACK_BOOL = struct.Struct("<?").pack_into
_PACK_U16 = struct.Struct("<H").pack_into
_PACK_I16 = struct.Struct("<h").pack_into
_PACK_U32 = struct.Struct("<I").pack_into
_PACK_I32 = struct.Struct("<i").pack_into
_PACK_U64 = struct.Struct("<Q").pack_into
_PACK_I64 = struct.Struct("<q").pack_into


_SCALAR_KINDS: dict[int, tuple[int, Any]] = {
    U8: (1, _PACK_U8),
    BOOL: (1, _PACK_BOOL),
    U16: (2, _PACK_U16),
    U32: (4, _PACK_U32),
    I32: (4, _PACK_I32),
    U64: (8, _PACK_U64),
}
_STOCK_SLOT = {
    U8: "PrependUint8Slot",
    BOOL: "PrependBoolSlot",
    U16: "PrependUint16Slot",
    U32: "PrependUint32Slot",
    I32: "PrependInt32Slot",
    U64: "PrependUint64Slot",
}


def add_table(
    builder: flatbuffers.Builder, nfields: int, fields: list[tuple[int, int, Any]]
) -> int:
    """Write a whole table: ``fields`` are ``(kind, slot, value)`` in prepend order.

    Same bytes as creating the STRING / EMPTY_VECTOR fields' objects first (in field order),
    then ``StartObject(nfields)``, the matching ``Prepend*Slot`` call per field (the default
    being 0 / False / no offset) and ``EndObject()``; one call on a :class:`FastBuilder`.
    """
    if isinstance(builder, FastBuilder):
        return builder.table(nfields, fields)
    made = {}
    for i, (kind, _, value) in enumerate(fields):
        if kind == STRING and value is not None:
            made[i] = builder.CreateString(value)
        elif kind == EMPTY_VECTOR:
            builder.StartVector(4, 0, 4)
            made[i] = builder.EndVector()
    builder.StartObject(nfields)
    for i, (kind, slot, value) in enumerate(fields):
        if kind in (STRING, EMPTY_VECTOR):
            if i in made:
                builder.PrependUOffsetTRelativeSlot(slot, made[i], 0)
        elif kind == OFFSET:
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == STRUCT:
            builder.Prep(1, len(value))
            builder.head = builder.head - len(value)
            builder.Bytes[builder.head : builder.head + len(value)] = value
            builder.Slot(slot)
        else:
            getattr(builder, _STOCK_SLOT[kind])(slot, value, False if kind == BOOL else 0)
    return int(builder.EndObject())


def add_offsets_vector(builder: flatbuffers.Builder, offsets: list[int] | np.ndarray) -> int:
    """A vector of uoffsets (``StartVector(4, n, 4)``, one ``PrependUOffsetTRelative`` each)."""
    if isinstance(builder, FastBuilder):
        return builder.offsets_vector(offsets)
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return int(builder.EndVector())


@dataclass(frozen=True, slots=True)
class _Block:
    """A memoized object's bytes (see ``FastBuilder._splice``); positions count from its low end."""

    data: bytes
    parent_at: int  # the i32 parent index to patch (-1: none)
    inner: tuple[tuple[int, Any], ...]  # (vtable-offset slot, vtable key) of inner tables
    vtable: Any  # the last table's vtable key: (*reversed(field offsets), object size)
    minalign: int


# content + start alignment -> block; bounded so a huge repository cannot grow them forever
_SNAPSHOT_BLOCKS: dict[Any, _Block] = {}
_UPDATE_BLOCKS: dict[Any, _Block] = {}
_MAX_BLOCKS = 200_000


def _remember(memo: dict[Any, _Block], key: Any, block: _Block) -> None:
    if len(memo) >= _MAX_BLOCKS:
        memo.clear()
    memo[key] = block


class FastBuilder(flatbuffers.Builder):  # type: ignore[misc]
    """Drop-in replacement for ``flatbuffers.Builder`` (same output, fewer Python calls)."""

    # the stock builder's state (it ships no type information)
    Bytes: bytearray
    head: int
    minalign: int
    nested: bool
    vectorNumElems: int | None
    current_vtable: Any  # list[int] while a table is open, else None
    vtables: dict[Any, int]
    _last_vtable: tuple[Any, bool] = ((), False)  # key and "was new" of the last _end_table
    # when a list: every table appends (object offset, vtable key, vtable offset, vtable new),
    # in write order (the repo-info encoder reuses byte runs with it, see _reuse.py)
    vtable_log: list[tuple[int, Any, int, bool]] | None = None

    def Clear(self) -> None:
        super().Clear()
        self.Bytes = bytearray(len(self.Bytes))  # padding relies on never-written zeros

    # ---- space and alignment --------------------------------------------------------------

    def _grow(self, needed: int) -> int:
        head = self.head
        while head < needed:
            old = len(self.Bytes)
            self.GrowByteBuffer()
            head += len(self.Bytes) - old
        self.head = head
        return head

    def Prep(self, size: int, additionalBytes: int) -> None:
        if size > self.minalign:
            self.minalign = size
        head = self.head
        align = (head - len(self.Bytes) - additionalBytes) & (size - 1)
        if head < align + size + additionalBytes:
            head = self._grow(align + size + additionalBytes)
        self.head = head - align  # the skipped bytes are still zero

    def _scalar(self, size: int, pack: Any, x: Any) -> None:
        if size > self.minalign:
            self.minalign = size
        head = self.head
        align = (head - len(self.Bytes)) & (size - 1)
        if head < align + size:
            head = self._grow(align + size)
        head -= align + size
        pack(self.Bytes, head, x)
        self.head = head

    # ---- offsets --------------------------------------------------------------------------

    def _prepend_relative(self, off: int, pack: Any) -> None:
        self.Prep(4, 0)
        offset = len(self.Bytes) - self.head
        if not off <= offset:
            raise OffsetArithmeticError("flatbuffers: Offset arithmetic error.")
        head = self.head - 4
        pack(self.Bytes, head, offset - off + 4)
        self.head = head

    def PrependUOffsetTRelative(self, off: int) -> None:
        self._prepend_relative(off, _PACK_U32)

    def PrependSOffsetTRelative(self, off: int) -> None:
        self._prepend_relative(off, _PACK_I32)

    def PlaceUOffsetT(self, x: int) -> None:
        head = self.head - 4
        _PACK_U32(self.Bytes, head, x)
        self.head = head

    # ---- vectors and strings --------------------------------------------------------------

    def StartVector(self, elemSize: int, numElems: int, alignment: int) -> int:
        if self.nested:
            raise IsNestedError()
        self.nested = True
        self.vectorNumElems = numElems
        self.Prep(4, elemSize * numElems)
        self.Prep(alignment, elemSize * numElems)
        return int(len(self.Bytes) - self.head)

    def EndVector(self, numElems: int | None = None) -> int:
        if numElems:
            return int(super().EndVector(numElems))  # the deprecated form, with its checks
        if not self.nested:
            raise IsNotNestedError()
        self.nested = False
        head = self.head - 4
        _PACK_U32(self.Bytes, head, self.vectorNumElems)
        self.head = head
        self.vectorNumElems = None
        return int(len(self.Bytes) - head)

    def _bytes_vector(self, x: bytes, terminator: int) -> int:
        n = len(x)
        self.Prep(4, n + terminator)
        head = self.head - terminator - n  # the NUL terminator is a never-written zero
        self.Bytes[head : head + n] = x
        _PACK_U32(self.Bytes, head - 4, n)
        self.head = head - 4
        return int(len(self.Bytes) - self.head)

    def CreateString(self, s: str | bytes, encoding: str = "utf-8", errors: str = "strict") -> int:
        if self.nested:
            raise IsNestedError()
        if isinstance(s, str):
            x = s.encode(encoding, errors)
        elif isinstance(s, (bytes, bytearray)):
            x = bytes(s)
        else:
            raise TypeError("non-string passed to CreateString")
        return self._bytes_vector(x, 1)

    def CreateByteVector(self, x: bytes) -> int:
        if self.nested:
            raise IsNestedError()
        if not isinstance(x, (bytes, bytearray)):
            raise TypeError("non-byte vector passed to CreateByteVector")
        return self._bytes_vector(bytes(x), 0)

    # ---- tables ---------------------------------------------------------------------------

    def StartObject(self, numfields: int) -> None:
        if self.nested:
            raise IsNestedError()
        self.current_vtable = [0] * numfields
        self.objectEnd = len(self.Bytes) - self.head
        self.nested = True

    def EndObject(self) -> int:
        if not self.nested:
            raise IsNotNestedError()
        self.nested = False
        return self.WriteVtable()

    def WriteVtable(self) -> int:
        self.PrependSOffsetTRelative(0)  # placeholder for the offset to the vtable
        object_offset = len(self.Bytes) - self.head
        fields = self.current_vtable
        used = len(fields)
        while used and fields[used - 1] == 0:
            used -= 1  # trailing absent fields are trimmed from the vtable
        rel = [object_offset - f if f else 0 for f in fields[:used]]
        object_size = object_offset - self.objectEnd
        key = (*reversed(rel), object_size)
        existing = self.vtables.get(key)
        created = existing is None
        if existing is None:
            self.Prep(2, (used + 2) * 2 - 2)  # every element is a 2-byte voffset: one alignment
            self.head = self._new_vtable(self.head, key)
            existing = len(self.Bytes) - self.head
            _PACK_I32(self.Bytes, len(self.Bytes) - object_offset, existing - object_offset)
        else:
            _PACK_I32(self.Bytes, self.head, existing - object_offset)
        self.current_vtable = None
        if self.vtable_log is not None:
            self.vtable_log.append((object_offset, key, existing, created))
        return int(object_offset)

    def Slot(self, slotnum: int) -> None:
        if not self.nested:
            raise IsNotNestedError()
        self.current_vtable[slotnum] = len(self.Bytes) - self.head

    def _slot(self, size: int, pack: Any, o: int, x: Any, d: Any) -> None:
        if x != d or (self.forceDefaults and d is not None):
            self._scalar(size, pack, x)
            self.current_vtable[o] = len(self.Bytes) - self.head

    def PrependBoolSlot(self, o: int, x: Any, d: Any) -> None:
        self._slot(1, _PACK_BOOL, o, x, d)

    def PrependUint8Slot(self, o: int, x: Any, d: Any) -> None:
        self._slot(1, _PACK_U8, o, x, d)

    PrependByteSlot = PrependUint8Slot

    def PrependUint16Slot(self, o: int, x: Any, d: Any) -> None:
        self._slot(2, _PACK_U16, o, x, d)

    def PrependInt16Slot(self, o: int, x: Any, d: Any) -> None:
        self._slot(2, _PACK_I16, o, x, d)

    def PrependUint32Slot(self, o: int, x: Any, d: Any) -> None:
        self._slot(4, _PACK_U32, o, x, d)

    def PrependInt32Slot(self, o: int, x: Any, d: Any) -> None:
        self._slot(4, _PACK_I32, o, x, d)

    def PrependUint64Slot(self, o: int, x: Any, d: Any) -> None:
        self._slot(8, _PACK_U64, o, x, d)

    def PrependInt64Slot(self, o: int, x: Any, d: Any) -> None:
        self._slot(8, _PACK_I64, o, x, d)

    def PrependUOffsetTRelativeSlot(self, o: int, x: int, d: int) -> None:
        if x != d or self.forceDefaults:
            self.PrependUOffsetTRelative(x)
            self.current_vtable[o] = len(self.Bytes) - self.head

    # ---- plain scalars --------------------------------------------------------------------

    def PrependUint8(self, x: int) -> None:
        self._scalar(1, _PACK_U8, x)

    PrependByte = PrependUint8

    def PrependBool(self, x: bool) -> None:
        self._scalar(1, _PACK_BOOL, x)

    def PrependUint16(self, x: int) -> None:
        self._scalar(2, _PACK_U16, x)

    def PrependVOffsetT(self, x: int) -> None:
        self._scalar(2, _PACK_U16, x)

    def PrependUint32(self, x: int) -> None:
        self._scalar(4, _PACK_U32, x)

    def PrependInt32(self, x: int) -> None:
        self._scalar(4, _PACK_I32, x)

    def PrependUint64(self, x: int) -> None:
        self._scalar(8, _PACK_U64, x)

    def PrependInt64(self, x: int) -> None:
        self._scalar(8, _PACK_I64, x)

    # ---- whole objects in one call (see add_table / add_offsets_vector) -------------------

    def offsets_vector(self, offsets: list[int] | np.ndarray) -> int:
        if self.nested:
            raise IsNestedError()
        n = len(offsets)
        self.Prep(4, 4 * n)
        buf, size, head = self.Bytes, len(self.Bytes), self.head
        if isinstance(offsets, np.ndarray):
            # element e sits 4 * (n - e) bytes below the current offset, plus its own 4
            here = size - head
            values = here + 4 * (n - np.arange(n, dtype=np.int64)) - offsets
            if n and not int(offsets.max()) <= here:
                raise OffsetArithmeticError("flatbuffers: Offset arithmetic error.")
            head -= 4 * n
            buf[head : head + 4 * n] = values.astype("<u4").tobytes()
            head -= 4
            _PACK_U32(buf, head, n)
            self.head = head
            return size - head
        for x in reversed(offsets):
            off = size - head + 4
            if not x <= off - 4:
                raise OffsetArithmeticError("flatbuffers: Offset arithmetic error.")
            head -= 4
            _PACK_U32(buf, head, off - x)
        head -= 4
        _PACK_U32(buf, head, n)
        self.head = head
        return size - head

    def u32_vector(self, values: list[int]) -> int:
        """A vector of u32 (``StartVector(4, n, 4)``, ``PrependUint32`` each, ``EndVector``)."""
        if self.nested:
            raise IsNestedError()
        n = len(values)
        self.Prep(4, 4 * n)
        head = self.head - 4 * n
        struct.pack_into(f"<{n + 1}I", self.Bytes, head - 4, n, *values)
        self.head = head - 4
        return len(self.Bytes) - self.head

    def table(self, nfields: int, fields: list[tuple[int, int, Any]]) -> int:
        if self.nested:
            raise IsNestedError()
        need = 2 * nfields + 16
        pre = False
        for kind, _, value in fields:
            if kind >= STRING:
                pre = True
                need += 24 + (len(value) if value is not None else 0)
            else:
                need += len(value) if kind == STRUCT else 16
        if self.head < need:
            self._grow(need)
        buf, size, head = self.Bytes, len(self.Bytes), self.head
        minalign = self.minalign
        if pre:  # strings and empty vectors first, then the table refers to them
            resolved = []
            for kind, slot, value in fields:
                if kind == STRING:
                    if value is None:
                        continue
                    n = len(value)
                    head -= ((head - size - n - 1) & 3) + 1 + n  # NUL: a never-written zero
                    buf[head : head + n] = value
                    head -= 4
                    _PACK_U32(buf, head, n)
                    kind, value = OFFSET, size - head
                elif kind == EMPTY_VECTOR:
                    head -= ((head - size) & 3) + 4
                    _PACK_U32(buf, head, 0)
                    kind, value = OFFSET, size - head
                resolved.append((kind, slot, value))
            fields = resolved
            if minalign < 4:
                minalign = 4
        vt = [0] * nfields
        object_end = size - head
        for kind, slot, value in fields:
            if kind == OFFSET:
                if not value:
                    continue
                head -= (head - size) & 3
                off = size - head
                if not value <= off:
                    raise OffsetArithmeticError("flatbuffers: Offset arithmetic error.")
                head -= 4
                _PACK_U32(buf, head, off + 4 - value)
                if minalign < 4:
                    minalign = 4
            elif kind == STRUCT:
                head -= len(value)
                buf[head : head + len(value)] = value
            else:
                if not value:
                    continue
                width, pack = _SCALAR_KINDS[kind]
                head -= ((head - size) & (width - 1)) + width
                pack(buf, head, value)
                if minalign < width:
                    minalign = width
            vt[slot] = size - head
        self.minalign = minalign
        return self._end_table(head, object_end, vt)

    # ---- the two objects a repo-info file is mostly made of ---------------------------------

    def _end_table(self, head: int, object_end: int, vt: list[int]) -> int:
        """Placeholder, vtable (new or shared) and vtable offset of a table whose fields end at
        ``head``; ``vt`` holds each slot's field offset (0 = absent)."""
        buf, size = self.Bytes, len(self.Bytes)
        head -= ((head - size) & 3) + 4
        object_offset = size - head
        used = len(vt)
        while used and vt[used - 1] == 0:
            used -= 1
        rel = [object_offset - f if f else 0 for f in vt[:used]]
        object_size = object_offset - object_end
        key = (*reversed(rel), object_size)
        existing = self.vtables.get(key)
        created = existing is None
        self._last_vtable = (key, created)
        if existing is None:
            head = self._new_vtable(head, key)  # 4-aligned here and even-sized: no padding
            existing = size - head
        _PACK_I32(buf, size - object_offset, existing - object_offset)
        if self.vtable_log is not None:
            self.vtable_log.append((object_offset, key, existing, created))
        self.head = head
        if self.minalign < 4:
            self.minalign = 4
        return object_offset

    def _new_vtable(self, head: int, key: tuple[int, ...]) -> int:
        """Write and register the vtable ``key`` (``(*reversed(field offsets), object size)``,
        the de-duplication key) so that it ends at ``head``; returns where it starts."""
        words = len(key) + 1  # its own size, the object size, one offset per field
        head -= 2 * words
        struct.pack_into(f"<{words}H", self.Bytes, head, 2 * words, key[-1], *key[-2::-1])
        self.vtables[key] = len(self.Bytes) - head
        return head

    # ---- memoized objects: re-encoding a repo info copies what it wrote last time -------------
    #
    # A commit rewrites the whole repo info: every snapshot entry and ops-log update it held
    # before is written again, byte for byte the same except for (a) where it lands, (b) the
    # snapshot's parent index and (c) the offsets to vtables shared with other tables.  Inside
    # an object every offset is relative, so its bytes depend only on its content and on the
    # 8-byte alignment it starts at.  A block is those bytes, from the object's start down to
    # its last table's vtable-offset slot; splicing it back and patching (b) and (c) gives the
    # bytes the field-by-field path would write.

    def _splice(self, block: _Block, parent: int) -> int:
        """Write a memoized object where the field-by-field path would; returns its offset."""
        data = block.data
        n = len(data)
        if self.head < n + 64:  # the block plus a vtable of at most 6 slots and padding
            self._grow(n + 64)
        buf, size = self.Bytes, len(self.Bytes)
        top = self.head
        low = top - n
        buf[low:top] = data
        if block.parent_at >= 0:
            _PACK_I32(buf, low + block.parent_at, parent)
        log = self.vtable_log
        for at, key in block.inner:  # inner tables: their shared vtable exists (checked)
            inner_vtable = self.vtables[key]
            _PACK_I32(buf, low + at, inner_vtable - (size - low - at))
            if log is not None:
                log.append((size - low - at, key, inner_vtable, False))
        object_offset = size - low
        existing = self.vtables.get(block.vtable)
        created = existing is None
        head = low
        if existing is None:
            head = self._new_vtable(head, block.vtable)
            existing = size - head
        _PACK_I32(buf, low, existing - object_offset)
        if log is not None:
            log.append((object_offset, block.vtable, existing, created))
        self.head = head
        if self.minalign < block.minalign:
            self.minalign = block.minalign
        return object_offset

    def _capture(
        self,
        start: int,
        object_offset: int,
        parent_off: int,
        inner: tuple[tuple[int, Any], ...],
        minalign: int,
    ) -> _Block:
        """The block of an object just written from ``start`` (offset from the end) down to
        ``object_offset``; ``parent_off`` / ``inner`` placeholders given as offsets from the end."""
        size = len(self.Bytes)
        low = size - object_offset
        return _Block(
            data=bytes(self.Bytes[low : size - start]),
            parent_at=object_offset - parent_off if parent_off else -1,
            inner=tuple((object_offset - off, key) for off, key in inner),
            vtable=self._last_vtable[0],
            minalign=minalign,
        )

    def _string_at(self, head: int, data: bytes) -> int:
        """Write a string ending at ``head`` (space already reserved); returns the new head."""
        n = len(data)
        size = len(self.Bytes)
        head -= ((head - size - n - 1) & 3) + 1 + n  # the NUL terminator is a never-written zero
        self.Bytes[head : head + n] = data
        head -= 4
        _PACK_U32(self.Bytes, head, n)
        return head

    def snapshot_entry(self, flushed_at: int, message: bytes, parent: int, sid: bytes) -> int:
        """A repo-info ``SnapshotInfo`` with no metadata and no pruned logs, in one call.

        Same bytes as an empty metadata vector, the message string and ``add_table(6,
        [(U64, 2, flushed_at), (OFFSET, 4, metadata), (OFFSET, 3, message), (I32, 1, parent),
        (STRUCT, 0, sid)])``.
        """
        if self.nested:
            raise IsNestedError()
        if len(sid) != 12:
            raise ValueError("a snapshot id has 12 bytes")
        start = len(self.Bytes) - self.head
        key = (sid, message, flushed_at, parent != 0, start & 7)
        block = _SNAPSHOT_BLOCKS.get(key)
        if block is not None:
            return self._splice(block, parent)
        object_offset, parent_off = self._snapshot_entry(flushed_at, message, parent, sid)
        _remember(
            _SNAPSHOT_BLOCKS,
            key,
            self._capture(start, object_offset, parent_off, (), 8 if flushed_at else 4),
        )
        return object_offset

    def _snapshot_entry(
        self, flushed_at: int, message: bytes, parent: int, sid: bytes
    ) -> tuple[int, int]:
        """The field-by-field path; returns the table's offset and its parent's (0: absent)."""
        need = len(message) + 96
        if self.head < need:
            self._grow(need)
        buf, size, head = self.Bytes, len(self.Bytes), self.head
        head -= ((head - size) & 3) + 4  # the empty vector: its length, 0, is already there
        metadata = size - head
        head = self._string_at(head, message)
        msg = size - head
        object_end = msg
        vt = [0, 0, 0, 0, 0]
        if flushed_at:
            head -= ((head - size) & 7) + 8
            _PACK_U64(buf, head, flushed_at)
            vt[2] = size - head
            if self.minalign < 8:
                self.minalign = 8
        head -= (head - size) & 3
        _PACK_U32(buf, head - 4, size - head + 4 - metadata)
        head -= 4
        vt[4] = size - head
        _PACK_U32(buf, head - 4, size - head + 4 - msg)
        head -= 4
        vt[3] = size - head
        if parent:
            head -= 4
            _PACK_I32(buf, head, parent)
            vt[1] = size - head
        head -= 12
        buf[head : head + 12] = sid
        vt[0] = size - head
        return self._end_table(head, object_end, vt), vt[1]

    def new_commit_update(
        self, updated_at: int, backup: bytes | None, branch: bytes, new_id: bytes, type_id: int
    ) -> int:
        """A repo-info ``Update`` of kind NewCommit (member table, backup path, update table).

        Same bytes as ``add_table(2, [(STRUCT, 1, new_id), (STRING, 0, branch)])`` then
        ``add_table(4, [(U64, 2, updated_at), (STRING, 3, backup), (OFFSET, 1, member),
        (U8, 0, type_id)])``.
        """
        if self.nested:
            raise IsNestedError()
        if len(new_id) != 12:
            raise ValueError("a snapshot id has 12 bytes")
        start = len(self.Bytes) - self.head
        key = (updated_at, backup, branch, new_id, type_id, start & 7)
        block = _UPDATE_BLOCKS.get(key)
        if block is not None and block.inner[0][1] in self.vtables:
            return self._splice(block, 0)
        object_offset, member, member_vtable = self._new_commit_update(
            updated_at, backup, branch, new_id, type_id
        )
        if not member_vtable[1]:  # the member's vtable is shared, not inside the block
            inner = ((member, member_vtable[0]),)
            minalign = 8 if updated_at else 4
            _remember(_UPDATE_BLOCKS, key, self._capture(start, object_offset, 0, inner, minalign))
        return object_offset

    def _new_commit_update(
        self, updated_at: int, backup: bytes | None, branch: bytes, new_id: bytes, type_id: int
    ) -> tuple[int, int, tuple[Any, bool]]:
        """The field-by-field path; returns the offsets of the update and member tables and the
        member's vtable key with whether it was new."""
        need = len(branch) + (len(backup) if backup is not None else 0) + 128
        if self.head < need:
            self._grow(need)
        buf, size = self.Bytes, len(self.Bytes)
        head = self._string_at(self.head, branch)
        name = size - head
        object_end = name
        head -= 12
        buf[head : head + 12] = new_id
        slot1 = size - head
        _PACK_U32(buf, head - 4, size - head + 4 - name)
        head -= 4
        member = self._end_table(head, object_end, [size - head, slot1])
        member_vtable = self._last_vtable
        head = self.head
        backup_at = 0
        if backup is not None:
            head = self._string_at(head, backup)
            backup_at = size - head
        object_end = size - head
        vt = [0, 0, 0, 0]
        if updated_at:
            head -= ((head - size) & 7) + 8
            _PACK_U64(buf, head, updated_at)
            vt[2] = size - head
            if self.minalign < 8:
                self.minalign = 8
        head -= (head - size) & 3
        if backup_at:
            _PACK_U32(buf, head - 4, size - head + 4 - backup_at)
            head -= 4
            vt[3] = size - head
        _PACK_U32(buf, head - 4, size - head + 4 - member)
        head -= 4
        vt[1] = size - head
        if type_id:
            head -= 1
            _PACK_U8(buf, head, type_id)
            vt[0] = size - head
        return self._end_table(head, object_end, vt), member, member_vtable
