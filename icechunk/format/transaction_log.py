"""Transaction logs (file type 4): what one commit changed (FORMAT.md §3.5)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from icechunk.format.ids import NodeId, SnapshotId

__all__ = ["MoveOperation", "NodeType", "TransactionLog", "decode_transaction_log", "encode_transaction_log"]


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


def encode_transaction_log(
    log: TransactionLog,
    *,
    spec_version: int = 2,
    compression_level: int = 3,
    implementation: str | None = None,
) -> bytes:
    """Encode a transaction log file (header + zstd flatbuffer)."""
    raise NotImplementedError("encode_transaction_log is being implemented (issue 2)")


def decode_transaction_log(data: bytes | memoryview, name: str) -> TransactionLog:
    """Decode a spec-1 or spec-2 transaction log file.

    Raises
    ------
    FormatError
        On any corrupt, truncated or unsupported input (message names ``name``).
    """
    raise NotImplementedError("decode_transaction_log is being implemented (issue 2)")
