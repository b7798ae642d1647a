"""Column-wise (numpy) reading of a flatbuffer vector of tables.

A long vector of small tables (the snapshot list of a repo info, the ops log) is read one field
at a time for all its tables at once: the distinct vtables are read once each in Python, every
other step is a numpy gather.  Out-of-range positions raise ``IndexError`` (numpy would
silently wrap negative indices), which the codecs' :func:`~icechunk.format._flatbuf.decoding`
turns into a ``FormatError`` like any other truncated buffer.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

__all__ = ["Columns", "check_offsets_vector"]

_U16 = struct.Struct("<H").unpack_from
# below this many tables, distinct vtables are grouped with a dict (np.unique costs ~30 µs
# whatever the size; a repo info rewritten in the append layout mixes several vtables)
SMALL_GROUPING = 1024
_WIDTH = {"u1": 1, "<u4": 4, "<i4": 4, "<u8": 8}


def check_offsets_vector(buf: bytes, start: int, n: int) -> None:
    """Raise IndexError unless the ``n`` 4-byte elements from ``start`` lie inside ``buf``."""
    if start < 0 or start + 4 * n > len(buf):
        raise IndexError("vector out of bounds")


class Columns:
    """Field positions of a list of tables (usually the elements of a vector of tables).

    Parameters
    ----------
    buf
        The whole flatbuffer.
    pos
        Position of each table.
    nslots
        Number of leading schema fields to locate.
    """

    __slots__ = ("buf", "fields", "pos", "u8")

    def __init__(self, buf: bytes, pos: npt.NDArray[np.int64], nslots: int) -> None:
        self.buf = buf
        self.u8 = np.frombuffer(buf, np.uint8)
        self.pos = pos
        n = len(pos)
        vt = pos - self.scalars(pos, "<i4")
        fields = np.zeros((n, nslots), dtype=np.int64)
        if n and (vt == vt[0]).all():  # the usual case: one shape for every table
            offsets = np.array(self._vtable(int(vt[0]), nslots), dtype=np.int64)
            fields = np.where(offsets != 0, offsets + pos[:, None], 0)
        elif n:
            vtables, which = _distinct(vt)
            offsets = np.array([self._vtable(v, nslots) for v in vtables], dtype=np.int64).reshape(
                len(vtables), nslots
            )
            rows = offsets[which]
            fields = np.where(rows != 0, rows + pos[:, None], 0)
        self.fields = fields  # absolute position of each field, 0 when absent

    @classmethod
    def of_vector(cls, buf: bytes, start: int, n: int, nslots: int) -> Columns:
        """The tables of the vector whose ``n`` elements start at ``start`` (``Table.vector``)."""
        check_offsets_vector(buf, start, n)
        rel = np.frombuffer(buf, "<u4", n, start).astype(np.int64)
        return cls(buf, rel + (start + 4 * np.arange(n, dtype=np.int64)), nslots)

    def _vtable(self, vt: int, nslots: int) -> list[int]:
        buf = self.buf
        if vt < 0 or vt + 4 > len(buf):
            raise IndexError("table out of bounds")
        vtlen = _U16(buf, vt)[0]
        if vt + vtlen > len(buf):
            raise IndexError("table out of bounds")
        present = max(0, min(nslots, (vtlen - 4) // 2))  # slots the vtable lists
        return [*struct.unpack_from(f"<{present}H", buf, vt + 4), *([0] * (nslots - present))]

    def field(self, slot: int) -> npt.NDArray[np.int64]:
        """Absolute positions of field ``slot`` (0 where absent)."""
        return self.fields[:, slot]

    def gather(self, positions: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
        """The ``width`` bytes at each position, as an ``(n, width)`` array."""
        if len(positions) and (int(positions.min()) < 0 or int(positions.max()) + width > len(self.buf)):
            raise IndexError("field out of bounds")
        out: npt.NDArray[np.uint8] = self.u8[positions[:, None] + np.arange(width)]
        return out

    def scalars(self, positions: npt.NDArray[np.int64], dtype: str) -> npt.NDArray[np.int64]:
        """The little-endian ``dtype`` value (``u1``, ``<u4``, ``<i4`` or ``<u8``) at each position.

        Values up to 32 bits come back as int64 (ready for position arithmetic), ``<u8`` as uint64.
        """
        raw = self.gather(positions, _WIDTH[dtype])
        values = raw.view(dtype).reshape(-1)
        out: npt.NDArray[np.int64] = values if dtype == "<u8" else values.astype(np.int64)
        return out

    def scalar_field(self, slot: int, dtype: str) -> npt.NDArray[np.int64]:
        """The value of a scalar field in every table (0 where absent)."""
        f = self.field(slot)
        present = f != 0
        if present.all():
            return self.scalars(f, dtype)
        out: npt.NDArray[np.int64] = np.zeros(len(f), dtype=np.uint64 if dtype == "<u8" else np.int64)
        if present.any():
            out[present] = self.scalars(f[present], dtype)
        return out

    def targets(self, positions: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Where the offset fields at ``positions`` point (strings, vectors, tables)."""
        target = positions + self.scalars(positions, "<u4")
        if len(target) and int(target.max()) >= len(self.buf):
            raise IndexError("offset out of bounds")
        return target

    def strings(self, positions: npt.NDArray[np.int64]) -> list[str]:
        """The strings referenced by the offset fields at ``positions`` (all present)."""
        at = self.targets(positions)
        lengths = self.scalars(at, "<u4")
        ends = at + 4 + lengths
        if len(ends) and int(ends.max()) > len(self.buf):
            raise IndexError("string out of bounds")
        buf = self.buf
        return [buf[a:b].decode("utf-8") for a, b in zip((at + 4).tolist(), ends.tolist(), strict=True)]

    def vector_lengths(self, positions: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Lengths of the vectors referenced by the offset fields at ``positions``."""
        return self.scalars(self.targets(positions), "<u4")

    def raw12(self, positions: npt.NDArray[np.int64]) -> list[bytes]:
        """The 12 bytes at each position (inline id structs), as ``bytes`` objects."""
        raw = np.ascontiguousarray(self.gather(positions, 12))
        out: list[bytes] = raw.view("V12").reshape(-1).tolist()
        return out


def _distinct(values: npt.NDArray[np.int64]) -> tuple[list[int], npt.NDArray[np.int64]]:
    """The distinct values and, for each value, the index of its distinct value."""
    if len(values) > SMALL_GROUPING:
        distinct, which = np.unique(values, return_inverse=True)
        return distinct.tolist(), which.reshape(-1)
    listed = values.tolist()
    index = {v: i for i, v in enumerate(dict.fromkeys(listed))}
    return list(index), np.fromiter(map(index.__getitem__, listed), dtype=np.int64, count=len(listed))
