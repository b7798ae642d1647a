"""Snapshot files (file type 1): the node tree of one commit (FORMAT.md §3.3, §3.6, §3.8)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, TypeVar

import flatbuffers

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
from icechunk.format.ids import ManifestId, NodeId, SnapshotId
from icechunk.format.values import metadata_value_decode, metadata_value_encode

__all__ = [
    "ArrayData",
    "DimensionShape",
    "ManifestFileInfo",
    "ManifestRef",
    "NodeSnapshot",
    "Snapshot",
    "decode_snapshot",
    "encode_snapshot",
    "snapshot_flatbuffer",
]


@dataclass(frozen=True, slots=True)
class DimensionShape:
    """One dimension of an array: its length and its number of chunks.

    ``chunk_length`` is only set when read from a spec-1 file (where it is what is stored);
    spec-1 writers compute it as ``ceil(array_length / num_chunks)`` when it is None.
    """

    array_length: int
    num_chunks: int
    chunk_length: int | None = None


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """A manifest holding chunk refs of an array, and the chunk-index box it covers.

    ``extents`` has one ``(from, to)`` half-open range per dimension (empty for 0-d arrays).
    """

    manifest_id: ManifestId
    extents: tuple[tuple[int, int], ...]

    def contains(self, coords: tuple[int, ...]) -> bool:
        """Whether the chunk index lies inside the extents (empty extents match all)."""
        return all(lo <= c < hi for c, (lo, hi) in zip(coords, self.extents, strict=False))


@dataclass(frozen=True, slots=True)
class ArrayData:
    """The array part of a node: derived shape, dimension names and manifest refs."""

    shape: tuple[DimensionShape, ...]
    dimension_names: tuple[str | None, ...] | None
    manifests: tuple[ManifestRef, ...]


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """A group (``array is None``) or an array in a snapshot."""

    id: NodeId
    path: str
    user_data: bytes
    array: ArrayData | None

    @property
    def is_array(self) -> bool:
        return self.array is not None

    @property
    def is_group(self) -> bool:
        return self.array is None


@dataclass(frozen=True, slots=True)
class ManifestFileInfo:
    """A manifest object used by a snapshot: its id, stored size and total ref count."""

    id: ManifestId
    size_bytes: int
    num_chunk_refs: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A decoded snapshot.

    ``nodes`` is sorted by the raw UTF-8 bytes of the path.  ``parent_id`` is only stored in
    spec-1 files (spec 2 keeps parentage in the repo info).  ``spec_version`` is the header
    byte of the file it was decoded from (2 for new objects unless written as spec 1).
    """

    id: SnapshotId
    parent_id: SnapshotId | None
    flushed_at: int
    message: str
    metadata: dict[str, Any]
    manifest_files: tuple[ManifestFileInfo, ...]
    nodes: tuple[NodeSnapshot, ...]
    spec_version: int = 2
    implementation: str | None = field(default=None, compare=False)


# --- encoding -------------------------------------------------------------------------------

# ``struct`` layouts of the inline structs (FORMAT.md §3.3).
_MANIFEST_FILE_INFO = struct.Struct("<12s4xQI4x")  # spec-1 ManifestFileInfo, 32 bytes, align 8
_DIMENSION_SHAPE = struct.Struct("<QQ")  # spec-1 DimensionShape, 16 bytes, align 8
_CHUNK_INDEX_RANGE = struct.Struct("<II")  # ChunkIndexRange, 8 bytes, align 4

_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF

# Schema slots (field ids) of the tables written here.
_S_ID, _S_PARENT, _S_NODES, _S_FLUSHED_AT, _S_MESSAGE, _S_METADATA = 0, 1, 2, 3, 4, 5
_S_MANIFEST_FILES, _S_MANIFEST_FILES_V2 = 6, 7
_N_ID, _N_PATH, _N_USER_DATA, _N_TYPE, _N_DATA = 0, 1, 2, 3, 4
_A_SHAPE, _A_DIM_NAMES, _A_MANIFESTS, _A_SHAPE_V2 = 0, 1, 2, 3
_NODE_ARRAY, _NODE_GROUP = 1, 2


def _table_vector(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    """A vector of tables (or strings) given their offsets, in order."""
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return int(builder.EndVector())


def _fail_encode(what: str) -> FormatError:
    return FormatError(f"cannot encode snapshot: {what}", ErrorKind.SERIALIZATION)


def _chunk_length(dim: DimensionShape) -> int:
    """The spec-1 ``chunk_length`` of a dimension (back-computed when unknown)."""
    if dim.chunk_length is not None:
        return dim.chunk_length
    if dim.num_chunks == 0:
        return 0
    return -(-dim.array_length // dim.num_chunks)


def _metadata_items(
    builder: flatbuffers.Builder, metadata: dict[str, Any], spec_version: int
) -> int:
    items = []
    for key in sorted(metadata, key=lambda k: k.encode("utf-8")):
        name = builder.CreateSharedString(key)
        try:
            raw = metadata_value_encode(metadata[key], spec_version)
        except (TypeError, ValueError, OverflowError) as err:
            raise _fail_encode(f"metadata value {key!r} is not a JSON value ({err})") from None
        value = builder.CreateByteVector(raw)
        builder.StartObject(2)
        builder.PrependUOffsetTRelativeSlot(1, value, 0)
        builder.PrependUOffsetTRelativeSlot(0, name, 0)
        items.append(builder.EndObject())
    return _table_vector(builder, items)


def _manifest_files(
    builder: flatbuffers.Builder, files: list[ManifestFileInfo], spec_version: int
) -> tuple[int, int | None]:
    """``(manifest_files, manifest_files_v2)`` offsets as the writer of that spec fills them."""
    if spec_version >= 2:
        tables = []
        for info in files:
            builder.StartObject(4)
            builder.PrependUint64Slot(1, info.size_bytes, 0)
            builder.PrependUint32Slot(2, info.num_chunk_refs, 0)
            prepend_struct_slot(builder, 0, info.id)
            tables.append(builder.EndObject())
        v2 = _table_vector(builder, tables)
        return create_struct_vector(builder, [], _MANIFEST_FILE_INFO.size, 8), v2
    raw = [
        _MANIFEST_FILE_INFO.pack(info.id, info.size_bytes, info.num_chunk_refs) for info in files
    ]
    return create_struct_vector(builder, raw, _MANIFEST_FILE_INFO.size, 8), None


def _array_data(builder: flatbuffers.Builder, array: ArrayData, spec_version: int) -> int:
    refs = []
    for ref in array.manifests:
        extents = create_struct_vector(
            builder,
            [_CHUNK_INDEX_RANGE.pack(lo, hi) for lo, hi in ref.extents],
            _CHUNK_INDEX_RANGE.size,
            4,
        )
        builder.StartObject(2)
        builder.PrependUOffsetTRelativeSlot(1, extents, 0)
        prepend_struct_slot(builder, 0, ref.manifest_id)
        refs.append(builder.EndObject())
    manifests = _table_vector(builder, refs)

    dim_names = None
    if array.dimension_names is not None:
        tables = []
        for name in array.dimension_names:
            # An empty name means "unnamed" to readers, so it is written like None.
            offset = builder.CreateSharedString(name) if name else None
            builder.StartObject(1)
            if offset is not None:
                builder.PrependUOffsetTRelativeSlot(0, offset, 0)
            tables.append(builder.EndObject())
        dim_names = _table_vector(builder, tables)

    shape_v2 = None
    if spec_version >= 2:
        tables = []
        for dim in array.shape:
            builder.StartObject(2)
            builder.PrependUint64Slot(0, dim.array_length, 0)
            builder.PrependUint32Slot(1, dim.num_chunks, 0)
            tables.append(builder.EndObject())
        shape = create_struct_vector(builder, [], _DIMENSION_SHAPE.size, 8)
        shape_v2 = _table_vector(builder, tables)
    else:
        raw = [_DIMENSION_SHAPE.pack(dim.array_length, _chunk_length(dim)) for dim in array.shape]
        shape = create_struct_vector(builder, raw, _DIMENSION_SHAPE.size, 8)

    builder.StartObject(4)
    if shape_v2 is not None:
        builder.PrependUOffsetTRelativeSlot(_A_SHAPE_V2, shape_v2, 0)
    builder.PrependUOffsetTRelativeSlot(_A_MANIFESTS, manifests, 0)
    if dim_names is not None:
        builder.PrependUOffsetTRelativeSlot(_A_DIM_NAMES, dim_names, 0)
    builder.PrependUOffsetTRelativeSlot(_A_SHAPE, shape, 0)
    return int(builder.EndObject())


def _node(builder: flatbuffers.Builder, node: NodeSnapshot, spec_version: int) -> int:
    path = builder.CreateString(node.path)
    if node.array is not None:
        data = _array_data(builder, node.array, spec_version)
    else:
        builder.StartObject(0)
        data = builder.EndObject()
    user_data = builder.CreateByteVector(bytes(node.user_data))
    builder.StartObject(6)
    builder.PrependUOffsetTRelativeSlot(_N_DATA, data, 0)
    builder.PrependUOffsetTRelativeSlot(_N_USER_DATA, user_data, 0)
    builder.PrependUOffsetTRelativeSlot(_N_PATH, path, 0)
    prepend_struct_slot(builder, _N_ID, node.id)
    builder.PrependUint8Slot(_N_TYPE, _NODE_ARRAY if node.array is not None else _NODE_GROUP, 0)
    return int(builder.EndObject())


def _check_ranges(snapshot: Snapshot, spec_version: int) -> None:
    """Reject values the fixed-width fields cannot hold (struct would raise otherwise)."""
    if not 0 <= snapshot.flushed_at <= _U64_MAX:
        raise _fail_encode(f"flushed_at {snapshot.flushed_at} is out of range")
    if len(snapshot.id) != 12 or (snapshot.parent_id is not None and len(snapshot.parent_id) != 12):
        raise _fail_encode("snapshot ids must have 12 bytes")
    for info in snapshot.manifest_files:
        if len(info.id) != 12:
            raise _fail_encode(f"manifest id {info.id!r} does not have 12 bytes")
        if not (0 <= info.size_bytes <= _U64_MAX and 0 <= info.num_chunk_refs <= _U32_MAX):
            raise _fail_encode(f"manifest file info {info} is out of range")
    for node in snapshot.nodes:
        if not node.path.startswith("/"):
            raise _fail_encode(f"node path {node.path!r} is not absolute")
        if len(node.id) != 8:
            raise _fail_encode(f"node id {node.id!r} of {node.path!r} does not have 8 bytes")
        if node.array is None:
            continue
        for dim in node.array.shape:
            if spec_version >= 2:
                ok = 0 <= dim.array_length <= _U64_MAX and 0 <= dim.num_chunks <= _U32_MAX
            else:
                # spec 1 stores the chunk length, which must be non-zero for a non-empty axis
                chunk_length = _chunk_length(dim)
                ok = 0 <= dim.array_length <= _U64_MAX and 0 <= chunk_length <= _U64_MAX
                ok = ok and (chunk_length != 0 or dim.array_length == 0)
            if not ok:
                raise _fail_encode(f"dimension {dim} of {node.path!r} cannot be stored")
        for ref in node.array.manifests:
            if len(ref.manifest_id) != 12:
                raise _fail_encode(f"manifest id {ref.manifest_id!r} does not have 12 bytes")
            for lo, hi in ref.extents:
                if not (0 <= lo <= _U32_MAX and 0 <= hi <= _U32_MAX):
                    raise _fail_encode(
                        f"manifest extents {ref.extents} of {node.path!r} are out of range"
                    )


def snapshot_flatbuffer(snapshot: Snapshot, spec_version: int = 2) -> bytes:
    """The uncompressed flatbuffer of a snapshot file (see :func:`encode_snapshot`)."""
    if spec_version not in (1, 2):
        raise FormatError(
            f"cannot write spec version {spec_version} snapshots",
            ErrorKind.UNSUPPORTED_SPEC_VERSION,
        )
    _check_ranges(snapshot, spec_version)
    try:
        return _build(snapshot, spec_version)
    except UnicodeEncodeError as err:
        raise _fail_encode(f"a string is not valid Unicode ({err})") from None


def _build(snapshot: Snapshot, spec_version: int) -> bytes:
    builder = FastBuilder(1024)
    manifest_files, manifest_files_v2 = _manifest_files(
        builder, sorted(snapshot.manifest_files, key=lambda info: bytes(info.id)), spec_version
    )
    metadata = _metadata_items(builder, snapshot.metadata, spec_version)
    message = builder.CreateString(snapshot.message)
    nodes = [
        _node(builder, node, spec_version)
        for node in sorted(snapshot.nodes, key=lambda node: node.path.encode("utf-8"))
    ]
    nodes_vector = _table_vector(builder, nodes)

    builder.StartObject(9)
    builder.PrependUint64Slot(_S_FLUSHED_AT, snapshot.flushed_at, 0)
    if manifest_files_v2 is not None:
        builder.PrependUOffsetTRelativeSlot(_S_MANIFEST_FILES_V2, manifest_files_v2, 0)
    builder.PrependUOffsetTRelativeSlot(_S_MANIFEST_FILES, manifest_files, 0)
    builder.PrependUOffsetTRelativeSlot(_S_METADATA, metadata, 0)
    builder.PrependUOffsetTRelativeSlot(_S_MESSAGE, message, 0)
    builder.PrependUOffsetTRelativeSlot(_S_NODES, nodes_vector, 0)
    if spec_version == 1 and snapshot.parent_id is not None:
        prepend_struct_slot(builder, _S_PARENT, snapshot.parent_id)
    prepend_struct_slot(builder, _S_ID, snapshot.id)
    return finish(builder, builder.EndObject())


def encode_snapshot(
    snapshot: Snapshot,
    *,
    spec_version: int = 2,
    compression_level: int = 3,
    implementation: str | None = None,
) -> bytes:
    """Encode a snapshot file (header + zstd flatbuffer) as the reference writer does.

    Parameters
    ----------
    snapshot
        The snapshot; nodes, manifest files and metadata keys are written sorted (by raw
        UTF-8 path bytes, id bytes and key bytes), whatever their order here.
    spec_version
        1 or 2: decides the dual fields (FORMAT.md §3.8) and the metadata value encoding
        (MessagePack for 1, FlexBuffers for 2).  ``parent_id`` is only written for spec 1;
        ``snapshot.spec_version`` is not consulted.
    compression_level
        zstd level.
    implementation
        Name written in the header (default: this library's).

    Raises
    ------
    FormatError
        If a value cannot be represented (out-of-range integer, non-JSON metadata, ...).
    """
    payload = snapshot_flatbuffer(snapshot, spec_version)
    return encode_envelope(
        payload,
        FileType.SNAPSHOT,
        spec_version,
        level=compression_level,
        implementation=implementation or IMPLEMENTATION_NAME,
    )


# --- decoding -------------------------------------------------------------------------------


_T = TypeVar("_T")


def _required(value: _T | None, what: str) -> _T:
    if value is None:
        raise ValueError(f"required field {what} is absent")
    return value


def _read_shape(data: Table) -> tuple[DimensionShape, ...]:
    # The presence of shape_v2 (not its emptiness) says which field holds the shape.
    if data.has(_A_SHAPE_V2):
        return tuple(DimensionShape(dim.u64(0), dim.u32(1)) for dim in data.tables(_A_SHAPE_V2))
    dims = []
    for raw in data.struct_vector(_A_SHAPE, _DIMENSION_SHAPE.size):
        array_length, chunk_length = _DIMENSION_SHAPE.unpack(raw)
        if chunk_length == 0:
            if array_length != 0:
                raise ValueError(f"dimension of length {array_length} has chunk length 0")
            num_chunks = 0
        else:
            num_chunks = -(-array_length // chunk_length)
        dims.append(DimensionShape(array_length, num_chunks, chunk_length))
    return tuple(dims)


def _read_array(data: Table) -> ArrayData:
    names = None
    if data.has(_A_DIM_NAMES):
        # an absent or empty name is an unnamed dimension
        names = tuple(dim.string(0) or None for dim in data.tables(_A_DIM_NAMES))
    _required(data.vector(_A_MANIFESTS), "ArrayNodeData.manifests")
    refs = []
    for ref in data.tables(_A_MANIFESTS):
        manifest_id = _required(ref.struct_bytes(0, 12), "ManifestRef.object_id")
        _required(ref.vector(1), "ManifestRef.extents")
        extents = tuple(
            _CHUNK_INDEX_RANGE.unpack(raw) for raw in ref.struct_vector(1, _CHUNK_INDEX_RANGE.size)
        )
        refs.append(ManifestRef(ManifestId(manifest_id), extents))
    return ArrayData(_read_shape(data), names, tuple(refs))


def _read_node(node: Table) -> NodeSnapshot:
    node_id = NodeId(_required(node.struct_bytes(_N_ID, 8), "NodeSnapshot.id"))
    path = _required(node.string(_N_PATH), "NodeSnapshot.path")
    user_data = _required(node.bytes(_N_USER_DATA), "NodeSnapshot.user_data")
    kind = node.u8(_N_TYPE)
    data = _required(node.table(_N_DATA), "NodeSnapshot.node_data")
    if kind == _NODE_ARRAY:
        array: ArrayData | None = _read_array(data)
    elif kind == _NODE_GROUP:
        array = None
    else:
        raise ValueError(f"unknown node type {kind} for {path!r}")
    return NodeSnapshot(node_id, path, bytes(user_data), array)


def _read_manifest_files(root: Table) -> tuple[ManifestFileInfo, ...]:
    if root.has(_S_MANIFEST_FILES_V2):
        return tuple(
            ManifestFileInfo(
                ManifestId(_required(info.struct_bytes(0, 12), "ManifestFileInfoV2.id")),
                info.u64(1),
                info.u32(2),
            )
            for info in root.tables(_S_MANIFEST_FILES_V2)
        )
    _required(root.vector(_S_MANIFEST_FILES), "Snapshot.manifest_files")
    out = []
    for raw in root.struct_vector(_S_MANIFEST_FILES, _MANIFEST_FILE_INFO.size):
        manifest_id, size_bytes, num_refs = _MANIFEST_FILE_INFO.unpack(raw)
        out.append(ManifestFileInfo(ManifestId(manifest_id), size_bytes, num_refs))
    return tuple(out)


def _read_snapshot(buf: bytes, spec_version: int, implementation: str) -> Snapshot:
    root = root_table(buf)
    snapshot_id = SnapshotId(_required(root.struct_bytes(_S_ID, 12), "Snapshot.id"))
    parent = root.struct_bytes(_S_PARENT, 12)
    message = _required(root.string(_S_MESSAGE), "Snapshot.message")
    _required(root.vector(_S_METADATA), "Snapshot.metadata")
    metadata = {}
    for item in root.tables(_S_METADATA):
        key = _required(item.string(0), "MetadataItem.name")
        raw = _required(item.bytes(1), "MetadataItem.value")
        metadata[key] = metadata_value_decode(raw, spec_version)
    _required(root.vector(_S_NODES), "Snapshot.nodes")
    nodes = tuple(_read_node(node) for node in root.tables(_S_NODES))
    return Snapshot(
        id=snapshot_id,
        parent_id=SnapshotId(parent) if parent is not None else None,
        flushed_at=root.u64(_S_FLUSHED_AT),
        message=message,
        metadata=metadata,
        manifest_files=_read_manifest_files(root),
        nodes=nodes,
        spec_version=spec_version,
        implementation=implementation,
    )


def decode_snapshot(data: bytes | memoryview, name: str) -> Snapshot:
    """Decode a spec-1 or spec-2 snapshot file.

    The header's spec byte decides how the file is read (metadata values, dual fields);
    ``Snapshot.spec_version`` and ``implementation`` come from the header.

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
    header, buf = decode_envelope(data, name, FileType.SNAPSHOT)
    with decoding(name, "snapshot"):
        return _read_snapshot(buf, header.spec_version, header.implementation)
