"""Transaction logs (file type 4): what one commit changed (FORMAT.md §3.5)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import TypeVar

import flatbuffers
import numpy as np

from icechunk._errors import ErrorKind, FormatError
from icechunk.format._fastbuilder import FastBuilder
from icechunk.format._flatbuf import (
    Table,
    create_struct_vector,
    decoding,
    finish,
    prepend_struct_slot,
    root_table,
)
from icechunk.format.header import IMPLEMENTATION_NAME, FileType, decode_envelope, encode_envelope
from icechunk.format.ids import NodeId, SnapshotId

__all__ = [
    "MoveOperation",
    "NodeType",
    "TransactionLog",
    "decode_transaction_log",
    "encode_transaction_log",
    "normalize_chunk_coords",
    "transaction_log_flatbuffer",
]


class NodeType(enum.IntEnum):
    GROUP = 0
    ARRAY = 1


@dataclass(frozen=True, slots=True)
class MoveOperation:
    """A node moved from ``from_path`` (in the parent snapshot) to ``to_path``."""

    from_path: str
    to_path: str
    node_id: NodeId
    node_type: NodeType


@dataclass(slots=True)
class TransactionLog:
    """A decoded transaction log.

    Node-id lists are sorted by raw bytes.  ``updated_chunks`` maps a node id to a
    ``(n, ndim)`` ``uint32`` array of chunk coordinates, sorted lexicographically without
    duplicates (``(n, 0)`` for 0-d arrays).  ``moved_nodes`` is None when the field is absent
    (spec-1 files), a list (maybe empty) otherwise.
    """

    id: SnapshotId
    new_groups: list[NodeId] = field(default_factory=list)
    new_arrays: list[NodeId] = field(default_factory=list)
    deleted_groups: list[NodeId] = field(default_factory=list)
    deleted_arrays: list[NodeId] = field(default_factory=list)
    updated_arrays: list[NodeId] = field(default_factory=list)
    updated_groups: list[NodeId] = field(default_factory=list)
    updated_chunks: dict[NodeId, np.ndarray] = field(default_factory=dict)
    moved_nodes: list[MoveOperation] | None = None
    spec_version: int = 2
    implementation: str | None = field(default=None, compare=False)

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare numpy arrays with ``==`` (ambiguous truth value).
        if not isinstance(other, TransactionLog):
            return NotImplemented
        if (
            self.id,
            self.new_groups,
            self.new_arrays,
            self.deleted_groups,
            self.deleted_arrays,
            self.updated_arrays,
            self.updated_groups,
            self.moved_nodes,
            self.spec_version,
        ) != (
            other.id,
            other.new_groups,
            other.new_arrays,
            other.deleted_groups,
            other.deleted_arrays,
            other.updated_arrays,
            other.updated_groups,
            other.moved_nodes,
            other.spec_version,
        ):
            return False
        if self.updated_chunks.keys() != other.updated_chunks.keys():
            return False
        return all(
            _same_coords(coords, other.updated_chunks[node])
            for node, coords in self.updated_chunks.items()
        )


def _same_coords(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal coordinate sets; all empty sets are equal whatever their ``ndim``."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) == 0 or len(b) == 0:
        return len(a) == len(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))


# --- shared helpers -------------------------------------------------------------------------

_OBJECT_ID8 = 8
_U32_MAX = 0xFFFFFFFF

# Schema slots (field ids).
_T_ID, _T_NEW_GROUPS, _T_NEW_ARRAYS, _T_DELETED_GROUPS, _T_DELETED_ARRAYS = 0, 1, 2, 3, 4
_T_UPDATED_ARRAYS, _T_UPDATED_GROUPS, _T_UPDATED_CHUNKS, _T_MOVED_NODES = 5, 6, 7, 8
_M_FROM, _M_TO, _M_NODE_ID, _M_NODE_TYPE = 0, 1, 2, 3

# From this many chunks per array on, the numpy block writer (and reader) replace the plain
# builder (and struct loop); both give identical results (tested).  The crossovers differ:
# the writer's fixed cost is one builder table, the reader's a gather set-up.
_VECTORIZE_MIN = 4
_VECTORIZE_READ_MIN = 32

# The Python builder's de-duplication key of the vtable every ChunkIndices table has: one
# field at byte 4 of an 8-byte table.
_CHUNK_INDICES_VTABLE_KEY = (4, 8)


def _fail_encode(what: str, kind: ErrorKind = ErrorKind.SERIALIZATION) -> FormatError:
    return FormatError(f"cannot encode transaction log: {what}", kind)


def normalize_chunk_coords(
    coords: np.ndarray | list[tuple[int, ...]], ndim: int | None = None
) -> np.ndarray:
    """Chunk coordinates as the ``(n, ndim)`` uint32 array a transaction log stores.

    Rows are sorted lexicographically and de-duplicated (already sorted input costs one
    vectorized check).

    Parameters
    ----------
    coords
        An ``(n, ndim)`` integer array or a sequence of index tuples.
    ndim
        Number of dimensions, needed only to shape an empty sequence.

    Raises
    ------
    FormatError
        If the coordinates are not a 2-D array of integers in ``[0, 2**32)``.
    """
    arr = np.asarray(coords)
    if arr.ndim == 2 and arr.shape[1] == 0:
        return np.empty((min(len(arr), 1), 0), dtype=np.uint32)  # a 0-d array has one chunk
    if arr.size == 0:
        return np.empty((0, arr.shape[1] if arr.ndim == 2 else (ndim or 0)), dtype=np.uint32)
    if arr.ndim != 2 or arr.dtype.kind not in "iub":
        raise _fail_encode(
            f"chunk coordinates must be a 2-D integer array, got shape {arr.shape}, dtype {arr.dtype}"
        )
    if arr.dtype != np.uint32:
        if arr.min() < 0 or arr.max() > _U32_MAX:
            raise _fail_encode("chunk coordinates must lie in [0, 2**32)")
        arr = arr.astype(np.uint32)
    arr = np.ascontiguousarray(arr)
    n = len(arr)
    if n < 2:
        return arr
    prev, nxt = arr[:-1], arr[1:]
    differ = prev != nxt
    first = differ.argmax(axis=1)
    rows = np.arange(n - 1)
    if (differ.any(axis=1) & (prev[rows, first] < nxt[rows, first])).all():
        return arr  # strictly increasing already
    arr = arr[np.lexsort(arr.T[::-1])]
    keep = np.ones(n, dtype=bool)
    keep[1:] = (arr[1:] != arr[:-1]).any(axis=1)
    return np.ascontiguousarray(arr[keep])


def _path_key(path: str) -> tuple[bytes, ...]:
    """Segment-wise order of ``moved_nodes`` (``/a < /a/b < /a-b < /aa``)."""
    return tuple(segment.encode("utf-8") for segment in path.split("/") if segment)


# --- encoding -------------------------------------------------------------------------------


def _table_vector(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return int(builder.EndVector())


def _id_vector(builder: flatbuffers.Builder, ids: list[NodeId]) -> int:
    for node_id in ids:
        if len(node_id) != _OBJECT_ID8:
            raise _fail_encode(f"node id {node_id!r} does not have 8 bytes")
    return create_struct_vector(builder, [bytes(i) for i in sorted(ids)], _OBJECT_ID8, 1)


def _chunk_indices_table(builder: flatbuffers.Builder, row: list[int]) -> int:
    builder.StartVector(4, len(row), 4)
    for c in reversed(row):
        builder.PrependUint32(c)
    coords = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, coords, 0)
    return int(builder.EndObject())


def _reserve(builder: flatbuffers.Builder, nbytes: int) -> None:
    """Make room for ``nbytes`` in front of the builder's head (the builder writes backwards)."""
    if builder.head >= nbytes:
        return
    used = len(builder.Bytes) - builder.head
    size = max(2 * len(builder.Bytes), used + nbytes + 1024)
    if size > flatbuffers.Builder.MAX_BUFFER_SIZE:
        raise _fail_encode("the transaction log would exceed 2 GiB")
    grown = bytearray(size)
    grown[size - used :] = builder.Bytes[builder.head :]
    builder.Bytes = grown
    builder.head = size - used


def _chunk_indices_block(builder: flatbuffers.Builder, coords: np.ndarray) -> int:
    """Write the ChunkIndices tables and their vector with numpy; returns the vector offset.

    Reproduces the builder's output byte for byte.  Offsets here are distances from the end
    of the builder's buffer, like ``Builder.Offset()``.  The first table goes through the
    builder (it may write the shared vtable, 6 bytes, followed by 2 bytes of padding); every
    later chunk is ``[soffset][uoffset=4][ndim][coords...]`` (table immediately followed by
    its coords vector) at a fixed stride, the last chunk first in memory.
    """
    n, ndim = coords.shape
    first = _chunk_indices_table(builder, coords[0].tolist())
    vtable = builder.vtables[_CHUNK_INDICES_VTABLE_KEY]
    builder.Prep(4, 0)  # what StartVector of the next coords vector would pad
    base = builder.Offset()
    stride = 12 + 4 * ndim
    rest = n - 1
    _reserve(builder, rest * stride + 4 * (n + 1))

    table_ends = np.empty(n, dtype=np.int64)
    table_ends[0] = first
    table_ends[1:] = base + np.arange(1, n, dtype=np.int64) * stride
    block = np.empty((rest, 3 + ndim), dtype="<u4")
    block[:, 0] = (vtable - table_ends[:0:-1]).astype(np.uint32)  # soffset (int32, negative)
    block[:, 1] = 4  # uoffset to the coords vector right after the table
    block[:, 2] = ndim
    block[:, 3:] = coords[:0:-1]
    if rest:
        end = builder.head
        builder.Bytes[end - block.nbytes : end] = block.data.cast("B")
        builder.head = end - block.nbytes

    start = builder.Offset()
    vector = np.empty(n + 1, dtype="<u4")
    vector[0] = n
    vector[1:] = start + 4 * (n - np.arange(n, dtype=np.int64)) - table_ends
    end = builder.head
    builder.Bytes[end - vector.nbytes : end] = vector.data.cast("B")
    builder.head = end - vector.nbytes
    return int(builder.Offset())


def _chunks_vector(builder: flatbuffers.Builder, coords: np.ndarray) -> int:
    if len(coords) >= _VECTORIZE_MIN:
        return _chunk_indices_block(builder, coords)
    return _table_vector(builder, [_chunk_indices_table(builder, row) for row in coords.tolist()])


def _size_hint(log: TransactionLog, chunks: list[tuple[NodeId, np.ndarray]]) -> int:
    ids = (
        len(log.new_groups)
        + len(log.new_arrays)
        + len(log.deleted_groups)
        + len(log.deleted_arrays)
        + len(log.updated_arrays)
        + len(log.updated_groups)
    )
    size = (
        1024
        + 8 * ids
        + sum(64 + coords.shape[0] * (16 + 4 * coords.shape[1]) for _, coords in chunks)
    )
    for move in log.moved_nodes or ():
        size += 48 + 4 * (len(move.from_path) + len(move.to_path))
    return int(size)


def _updated_chunks(builder: flatbuffers.Builder, chunks: list[tuple[NodeId, np.ndarray]]) -> int:
    arrays = []
    for node_id, coords in chunks:
        if len(node_id) != _OBJECT_ID8:
            raise _fail_encode(f"node id {node_id!r} does not have 8 bytes")
        vector = _chunks_vector(builder, coords)
        builder.StartObject(2)
        builder.PrependUOffsetTRelativeSlot(1, vector, 0)
        prepend_struct_slot(builder, 0, node_id)
        arrays.append(builder.EndObject())
    return _table_vector(builder, arrays)


def transaction_log_flatbuffer(log: TransactionLog, spec_version: int = 2) -> bytes:
    """The uncompressed flatbuffer of a transaction log (see :func:`encode_transaction_log`)."""
    if spec_version not in (1, 2):
        raise _fail_encode(
            f"cannot write spec version {spec_version}", ErrorKind.UNSUPPORTED_SPEC_VERSION
        )
    if len(log.id) != 12:
        raise _fail_encode("the snapshot id must have 12 bytes")
    try:
        return _build(log, spec_version)
    except UnicodeEncodeError as err:
        raise _fail_encode(f"a path is not valid Unicode ({err})") from None


def _build(log: TransactionLog, spec_version: int) -> bytes:
    moves = sorted(log.moved_nodes or (), key=lambda move: _path_key(move.to_path))
    if moves and spec_version < 2:
        raise _fail_encode(
            "spec 1 cannot record moved nodes", ErrorKind.UNSUPPORTED_OPERATION_FOR_VERSION
        )
    chunks = [
        (node, normalize_chunk_coords(log.updated_chunks[node]))
        for node in sorted(log.updated_chunks)
    ]
    builder = FastBuilder(_size_hint(log, chunks))
    id_lists = (
        log.new_groups,
        log.new_arrays,
        log.deleted_groups,
        log.deleted_arrays,
        log.updated_groups,
        log.updated_arrays,
    )
    # Spec-2 writers create the id vectors before the chunk lists; the spec-1 writer
    # (ic-0.1.3 fixtures) after them.  Following each keeps both byte-identical.
    if spec_version >= 2:
        lists = [_id_vector(builder, ids) for ids in id_lists]
        updated_chunks = _updated_chunks(builder, chunks)
    else:
        updated_chunks = _updated_chunks(builder, chunks)
        lists = [_id_vector(builder, ids) for ids in id_lists]
    new_groups, new_arrays, deleted_groups, deleted_arrays, updated_groups, updated_arrays = lists

    moved_nodes = None
    if spec_version >= 2:
        tables = []
        for move in moves:
            if len(move.node_id) != _OBJECT_ID8:
                raise _fail_encode(f"node id {move.node_id!r} does not have 8 bytes")
            from_path = builder.CreateString(move.from_path)
            to_path = builder.CreateString(move.to_path)
            builder.StartObject(4)
            prepend_struct_slot(builder, _M_NODE_ID, move.node_id)
            builder.PrependUOffsetTRelativeSlot(_M_TO, to_path, 0)
            builder.PrependUOffsetTRelativeSlot(_M_FROM, from_path, 0)
            builder.PrependUint8Slot(_M_NODE_TYPE, int(move.node_type), 0)
            tables.append(builder.EndObject())
        moved_nodes = _table_vector(builder, tables)

    builder.StartObject(10)
    if moved_nodes is not None:
        builder.PrependUOffsetTRelativeSlot(_T_MOVED_NODES, moved_nodes, 0)
    builder.PrependUOffsetTRelativeSlot(_T_UPDATED_CHUNKS, updated_chunks, 0)
    builder.PrependUOffsetTRelativeSlot(_T_UPDATED_GROUPS, updated_groups, 0)
    builder.PrependUOffsetTRelativeSlot(_T_UPDATED_ARRAYS, updated_arrays, 0)
    builder.PrependUOffsetTRelativeSlot(_T_DELETED_ARRAYS, deleted_arrays, 0)
    builder.PrependUOffsetTRelativeSlot(_T_DELETED_GROUPS, deleted_groups, 0)
    builder.PrependUOffsetTRelativeSlot(_T_NEW_ARRAYS, new_arrays, 0)
    builder.PrependUOffsetTRelativeSlot(_T_NEW_GROUPS, new_groups, 0)
    prepend_struct_slot(builder, _T_ID, log.id)
    return finish(builder, builder.EndObject())


def encode_transaction_log(
    log: TransactionLog,
    *,
    spec_version: int = 2,
    compression_level: int = 3,
    implementation: str | None = None,
) -> bytes:
    """Encode a transaction log file (header + zstd flatbuffer).

    Parameters
    ----------
    log
        The log.  Node-id lists and ``updated_chunks`` keys are written sorted by bytes,
        coordinates sorted and de-duplicated, moves sorted by destination path (segment-wise).
    spec_version
        1 or 2.  Spec 2 always writes ``moved_nodes`` (possibly empty); spec 1 omits it and
        cannot hold moves.  ``log.spec_version`` is not consulted.
    compression_level
        zstd level.
    implementation
        Name written in the header (default: this library's).

    Raises
    ------
    FormatError
        Invalid coordinates or ids, or moves in a spec-1 log.
    """
    payload = transaction_log_flatbuffer(log, spec_version)
    return encode_envelope(
        payload,
        FileType.TRANSACTION_LOG,
        spec_version,
        level=compression_level,
        implementation=implementation or IMPLEMENTATION_NAME,
    )


# --- decoding -------------------------------------------------------------------------------


class _Gather:
    """Vectorized little-endian u32 reads at arbitrary positions of a buffer, bounds-checked."""

    __slots__ = ("bytes", "size", "words")

    def __init__(self, buf: bytes) -> None:
        self.size = len(buf)
        self.bytes = np.frombuffer(buf, dtype=np.uint8)
        self.words = self.bytes[: self.size // 4 * 4].view("<u4")

    def u32(self, pos: np.ndarray) -> np.ndarray:
        """Values at the (int64) positions ``pos``, any shape."""
        if pos.size == 0:
            return np.empty(pos.shape, dtype=np.uint32)
        if pos.min() < 0 or pos.max() > self.size - 4:
            raise IndexError("offset out of bounds")
        if not (pos & 3).any():
            out: np.ndarray = self.words[pos >> 2]
            return out
        raw = self.bytes[pos.reshape(-1, 1) + np.arange(4)]  # unaligned: gather bytes
        out = raw.view("<u4").reshape(pos.shape)
        return out


_T = TypeVar("_T")


def _required(value: _T | None, what: str) -> _T:
    if value is None:
        raise ValueError(f"required field {what} is absent")
    return value


def _read_chunks_loop(buf: bytes, table: Table) -> np.ndarray:
    rows = []
    for chunk in table.tables(1):
        start, ndim = _required(chunk.vector(0), "ChunkIndices.coords")
        if start + 4 * ndim > len(buf):
            raise IndexError("coords out of bounds")
        rows.append(struct.unpack_from(f"<{ndim}I", buf, start))
    if not rows:
        return np.empty((0, 0), dtype=np.uint32)
    ndim = len(rows[0])
    if any(len(row) != ndim for row in rows):
        raise ValueError("chunk coordinates of one array have different lengths")
    return np.array(rows, dtype=np.uint32).reshape(len(rows), ndim)


def _read_chunks_vectorized(buf: bytes, gather: _Gather, start: int, n: int) -> np.ndarray:
    slots = start + 4 * np.arange(n, dtype=np.int64)
    tables = slots + gather.u32(slots)
    vtables = tables - gather.u32(tables).view(np.int32)
    distinct, which = (
        np.unique(vtables, return_inverse=True)
        if (vtables != vtables[0]).any()
        else (vtables[:1], None)
    )
    offsets = []
    for vt in distinct.tolist():
        if vt < 0 or vt + 4 > len(buf):
            raise IndexError("vtable out of bounds")
        vtlen = struct.unpack_from("<H", buf, vt)[0]
        offset = struct.unpack_from("<H", buf, vt + 4)[0] if vtlen >= 6 else 0
        if offset == 0:
            raise ValueError("required field ChunkIndices.coords is absent")
        offsets.append(offset)
    field = tables + (offsets[0] if which is None else np.asarray(offsets, dtype=np.int64)[which])
    vectors = field + gather.u32(field)
    lengths = gather.u32(vectors)
    ndim = int(lengths[0])
    if (lengths != ndim).any():
        raise ValueError("chunk coordinates of one array have different lengths")
    if int(vectors.max()) + 4 + 4 * ndim > len(buf):
        raise IndexError("coords out of bounds")
    return gather.u32((vectors + 4).reshape(-1, 1) + 4 * np.arange(ndim, dtype=np.int64))


def _read_ids(root: Table, slot: int, what: str) -> list[NodeId]:
    _required(root.vector(slot), what)
    return [NodeId(raw) for raw in root.struct_vector(slot, _OBJECT_ID8)]


def _read_log(buf: bytes, spec_version: int, implementation: str) -> TransactionLog:
    root = root_table(buf)
    log_id = SnapshotId(_required(root.struct_bytes(_T_ID, 12), "TransactionLog.id"))
    _required(root.vector(_T_UPDATED_CHUNKS), "TransactionLog.updated_chunks")
    gather = None
    updated: dict[NodeId, np.ndarray] = {}
    for table in root.tables(_T_UPDATED_CHUNKS):
        node_id = NodeId(
            _required(table.struct_bytes(0, _OBJECT_ID8), "ArrayUpdatedChunks.node_id")
        )
        start, n = _required(table.vector(1), "ArrayUpdatedChunks.chunks")
        if n >= _VECTORIZE_READ_MIN:
            if start + 4 * n > len(buf):
                raise IndexError("vector out of bounds")
            gather = gather or _Gather(buf)
            updated[node_id] = _read_chunks_vectorized(buf, gather, start, n)
        else:
            updated[node_id] = _read_chunks_loop(buf, table)
    moved = None
    if root.has(_T_MOVED_NODES):
        moved = [
            MoveOperation(
                _required(move.string(_M_FROM), "MoveOperation.from"),
                _required(move.string(_M_TO), "MoveOperation.to"),
                NodeId(
                    _required(move.struct_bytes(_M_NODE_ID, _OBJECT_ID8), "MoveOperation.node_id")
                ),
                NodeType(move.u8(_M_NODE_TYPE)),
            )
            for move in root.tables(_T_MOVED_NODES)
        ]
    return TransactionLog(
        id=log_id,
        new_groups=_read_ids(root, _T_NEW_GROUPS, "new_groups"),
        new_arrays=_read_ids(root, _T_NEW_ARRAYS, "new_arrays"),
        deleted_groups=_read_ids(root, _T_DELETED_GROUPS, "deleted_groups"),
        deleted_arrays=_read_ids(root, _T_DELETED_ARRAYS, "deleted_arrays"),
        updated_arrays=_read_ids(root, _T_UPDATED_ARRAYS, "updated_arrays"),
        updated_groups=_read_ids(root, _T_UPDATED_GROUPS, "updated_groups"),
        updated_chunks=updated,
        moved_nodes=moved,
        spec_version=spec_version,
        implementation=implementation,
    )


def decode_transaction_log(data: bytes | memoryview, name: str) -> TransactionLog:
    """Decode a spec-1 or spec-2 transaction log file.

    ``moved_nodes`` is None when the file has no such field (spec 1); ``spec_version`` and
    ``implementation`` come from the header.

    Parameters
    ----------
    data
        The whole object as stored.
    name
        The object's key, used in error messages.

    Raises
    ------
    FormatError
        On any corrupt, truncated or unsupported input (message names ``name``).
    """
    header, buf = decode_envelope(data, name, FileType.TRANSACTION_LOG)
    with decoding(name, "transaction log"):
        return _read_log(buf, header.spec_version, header.implementation)
