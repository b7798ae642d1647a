"""A straightforward, per-ref manifest codec used as a test oracle (FORMAT.md §2.6, §3.4).

This is deliberately the obvious implementation: the ``flatbuffers.Builder`` driven object by
object in the reference writer's build order, and a ``Table``-based reader that walks every
ref.  It is far too slow for big manifests (a Python call per field) but easy to check by
eye, so the tests use it to validate the vectorized codec in ``_manifest_layout`` /
``_manifest_read`` byte for byte and value for value.  Nothing in the library calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers

from icechunk.format._flatbuf import Table, finish, prepend_struct_slot, root_table

__all__ = ["OracleArray", "OracleRef", "oracle_build", "oracle_read"]

# ChunkRef field ids (FORMAT.md §3.4)
_INDEX, _INLINE, _OFFSET, _LENGTH, _CHUNK_ID = 0, 1, 2, 3, 4
_LOCATION, _ETAG, _LAST_MODIFIED, _COMPRESSED_LOCATION = 5, 6, 7, 8


@dataclass(frozen=True)
class OracleRef:
    """One chunk ref exactly as stored: absent fields are None / 0."""

    index: tuple[int, ...]
    inline: bytes | None = None
    offset: int = 0
    length: int = 0
    chunk_id: bytes | None = None
    location: bytes | None = None  # UTF-8
    etag: bytes | None = None  # UTF-8
    last_modified: int = 0
    compressed_location: bytes | None = None


@dataclass(frozen=True)
class OracleArray:
    node_id: bytes
    refs: list[OracleRef]


def oracle_build(
    manifest_id: bytes,
    arrays: list[OracleArray],
    *,
    compression_algorithm: int | None,
    dictionary: bytes | None = None,
) -> bytes:
    """Build a manifest flatbuffer with ``flatbuffers.Builder`` in the §2.6 order.

    ``compression_algorithm`` None omits the field; 1 is the schema default and is omitted too.
    """
    b = flatbuffers.Builder(1024)
    array_offsets = []
    for arr in arrays:
        ref_offsets = []
        for ref in arr.refs:
            b.StartVector(4, len(ref.index), 4)
            for c in reversed(ref.index):
                b.PrependUint32(c)
            index = b.EndVector()
            inline = location = etag = cloc = None
            if ref.inline is not None:
                inline = b.CreateByteVector(ref.inline)
            if ref.location is not None:
                location = b.CreateString(ref.location)
            if ref.compressed_location is not None:
                cloc = b.CreateByteVector(ref.compressed_location)
            if ref.etag is not None:
                etag = b.CreateString(ref.etag)
            b.StartObject(10)
            b.PrependUint64Slot(_LENGTH, ref.length, 0)
            b.PrependUint64Slot(_OFFSET, ref.offset, 0)
            if cloc is not None:
                b.PrependUOffsetTRelativeSlot(_COMPRESSED_LOCATION, cloc, 0)
            b.PrependUint32Slot(_LAST_MODIFIED, ref.last_modified, 0)
            if etag is not None:
                b.PrependUOffsetTRelativeSlot(_ETAG, etag, 0)
            if location is not None:
                b.PrependUOffsetTRelativeSlot(_LOCATION, location, 0)
            if ref.chunk_id is not None:
                prepend_struct_slot(b, _CHUNK_ID, ref.chunk_id)
            if inline is not None:
                b.PrependUOffsetTRelativeSlot(_INLINE, inline, 0)
            b.PrependUOffsetTRelativeSlot(_INDEX, index, 0)
            ref_offsets.append(b.EndObject())
        b.StartVector(4, len(ref_offsets), 4)
        for off in reversed(ref_offsets):
            b.PrependUOffsetTRelative(off)
        refs = b.EndVector()
        b.StartObject(3)
        b.PrependUOffsetTRelativeSlot(1, refs, 0)
        prepend_struct_slot(b, 0, arr.node_id)
        array_offsets.append(b.EndObject())
    b.StartVector(4, len(array_offsets), 4)
    for off in reversed(array_offsets):
        b.PrependUOffsetTRelative(off)
    arrays_vec = b.EndVector()
    dict_vec = b.CreateByteVector(dictionary) if dictionary is not None else None
    b.StartObject(5)
    if dict_vec is not None:
        b.PrependUOffsetTRelativeSlot(2, dict_vec, 0)
    b.PrependUOffsetTRelativeSlot(1, arrays_vec, 0)
    prepend_struct_slot(b, 0, manifest_id)
    if compression_algorithm is not None:
        b.PrependUint8Slot(3, compression_algorithm, 1)
    return finish(b, b.EndObject())


def oracle_read(buf: bytes) -> tuple[bytes, list[OracleArray], int, bytes | None, bool]:
    """Read every field of every ref with :class:`Table`.

    Returns ``(manifest id, arrays, compression_algorithm, dictionary, has_algorithm_field)``.
    """
    root = root_table(buf)
    mid = root.struct_bytes(0, 12)
    assert mid is not None
    arrays = []
    for am in root.tables(1):
        node = am.struct_bytes(0, 8)
        assert node is not None
        refs = []
        for t in am.tables(1):
            v = t.vector(_INDEX)
            assert v is not None
            start, n = v
            index = tuple(
                int.from_bytes(buf[start + 4 * i : start + 4 * i + 4], "little") for i in range(n)
            )
            loc = t.bytes(_LOCATION) if t.has(_LOCATION) else None
            etag = t.bytes(_ETAG) if t.has(_ETAG) else None
            refs.append(
                OracleRef(
                    index=index,
                    inline=t.bytes(_INLINE),
                    offset=t.u64(_OFFSET),
                    length=t.u64(_LENGTH),
                    chunk_id=t.struct_bytes(_CHUNK_ID, 12),
                    location=loc,
                    etag=etag,
                    last_modified=t.u32(_LAST_MODIFIED),
                    compressed_location=t.bytes(_COMPRESSED_LOCATION),
                )
            )
        arrays.append(OracleArray(node, refs))
    return mid, arrays, root.u8(3, 1), root.bytes(2), root.has(3)


def table_field_positions(buf: bytes) -> list[tuple[str, int]]:
    """``(type, absolute position)`` of every u32/u64 scalar and offset in the buffer.

    Used by the tests to check natural alignment of everything a verifier would look at.
    """
    out: list[tuple[str, int]] = [("u32", 0)]
    root = root_table(buf)
    out.append(("i32", root.pos))
    for slot in (1, 2):
        p = root.field(slot)
        if p:
            out.append(("u32", p))
    for am in root.tables(1):
        out.append(("i32", am.pos))
        out.append(("u32", am.field(1)))
        v = am.vector(1)
        assert v is not None
        out.append(("u32", v[0] - 4))
        for t in am.tables(1):
            out.extend(_ref_positions(t))
    return out


def _ref_positions(t: Table) -> list[tuple[str, int]]:
    out = [("i32", t.pos), ("u16", t.vt)]
    for slot in (_OFFSET, _LENGTH):
        p = t.field(slot)
        if p:
            out.append(("u64", p))
    p = t.field(_LAST_MODIFIED)
    if p:
        out.append(("u32", p))
    for slot in (_INDEX, _INLINE, _LOCATION, _ETAG, _COMPRESSED_LOCATION):
        p = t.field(slot)
        if p:
            out.append(("u32", p))
            v = t.vector(slot)
            assert v is not None
            out.append(("u32", v[0] - 4))
            if slot == _INDEX:
                out.extend(("u32", v[0] + 4 * i) for i in range(v[1]))
    return out
