"""ChangeSet: the uncommitted edits of one session, as pure data.

Nodes are tracked by path for new nodes and by node id for edits of nodes of the base
snapshot.  Chunk edits are kept per array in :class:`ChunkChanges`: a small dict overlay for
scalar writes plus columnar tables (:class:`ArrayManifest`) for bulk writes, so a million
virtual refs never become a million Python objects.  Deleted chunks are rows of kind
:data:`TOMBSTONE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from icechunk.core.metadata import ArrayMetadata
from icechunk.format.ids import NodeId
from icechunk.format.manifest import ArrayManifest, ChunkRef

__all__ = ["TOMBSTONE", "ChangeSet", "ChunkChanges"]

TOMBSTONE = 0
"""Kind value of a deleted-chunk row in change tables (manifests never contain it)."""

_COMPACT_AT = 4096


class ChunkChanges:
    """Chunk writes and deletes of one array, newest winning.

    Scalar edits go to a dict overlay; :meth:`add_table` queues a columnar batch.  Queued
    batches and the overlay are folded into one sorted table in a single concatenation when
    the table is read or the overlay grows, keeping lookups O(log n) and making a merge of
    many forks one sort instead of one per fork.
    """

    __slots__ = ("_overlay", "_pending", "_table", "ndim", "node_id")

    def __init__(self, node_id: NodeId, ndim: int) -> None:
        self.node_id = node_id
        self.ndim = ndim
        self._overlay: dict[tuple[int, ...], ChunkRef | None] = {}
        self._pending: list[ArrayManifest] = []  # batches newer than _table, oldest first
        self._table: ArrayManifest | None = None

    def set(self, coords: tuple[int, ...], ref: ChunkRef | None) -> None:
        """Record a write (``ref``) or a delete (``None``) of one chunk."""
        self._overlay[coords] = ref
        if len(self._overlay) >= _COMPACT_AT:
            self._fold()

    def add_table(self, table: ArrayManifest) -> None:
        """Record many refs (or tombstones) at once; later rows win over earlier state."""
        if self._overlay:  # older than the batch: keep the order
            self._pending.append(self._overlay_table())
            self._overlay = {}
        self._pending.append(table)

    def get(self, coords: tuple[int, ...]) -> tuple[bool, ChunkRef | None]:
        """``(touched, ref)``: whether the session touched the chunk and its ref (None = deleted)."""
        if self._pending:
            self._fold()
        if coords in self._overlay:
            return True, self._overlay[coords]
        if self._table is not None:
            row = self._table.find(coords)
            if row >= 0:
                if int(self._table.kind[row]) == TOMBSTONE:
                    return True, None
                return True, self._table.ref(row)
        return False, None

    def table(self) -> ArrayManifest:
        """All edits as one sorted table (tombstones included)."""
        self._fold()
        return self._table if self._table is not None else ArrayManifest.empty(self.node_id, self.ndim)

    def _overlay_table(self) -> ArrayManifest:
        return ArrayManifest.from_refs(
            self.node_id,
            self.ndim,
            {c: (r if r is not None else ChunkRef(kind=TOMBSTONE)) for c, r in self._overlay.items()},  # type: ignore[arg-type]
        )

    def _fold(self) -> None:
        if not self._overlay and not self._pending:
            return
        parts = [] if self._table is None else [self._table]
        parts += self._pending
        if self._overlay:
            parts.append(self._overlay_table())
        self._overlay, self._pending = {}, []
        self._table = parts[0] if len(parts) == 1 else ArrayManifest.concat(self.node_id, parts)

    def keep_inside(self, num_chunks: tuple[int, ...]) -> None:
        """Drop edits outside the chunk grid (after a resize)."""
        table = self.table()
        if len(table) == 0:
            return
        inside = np.all(table.coords < np.asarray(num_chunks, dtype=np.uint64), axis=1)
        if not inside.all():
            self._table = table.take(np.flatnonzero(inside))

    def __len__(self) -> int:
        return len(self.table())

    def is_empty(self) -> bool:
        if self._overlay:
            return False
        return all(len(t) == 0 for t in [self._table, *self._pending] if t is not None)

    def merge_from(self, other: ChunkChanges) -> None:
        """Apply ``other``'s edits on top of ours (``other`` wins on the same chunk)."""
        if other._table is None and not other._pending:
            # scalar edits only: they already win over our table and batches, so a dict
            # update is the whole merge
            self._overlay.update(other._overlay)
            if len(self._overlay) >= _COMPACT_AT:
                self._fold()
            return
        self.add_table(other.table())

    def copy(self) -> ChunkChanges:
        new = ChunkChanges(self.node_id, self.ndim)
        new._table = self.table()
        return new


@dataclass
class ChangeSet:
    """Everything a session changed relative to its base snapshot.

    Attributes
    ----------
    new_groups, new_arrays
        Nodes created in this session, by path.
    updated_groups, updated_arrays
        New ``zarr.json`` of nodes of the base snapshot, by node id.
    deleted_groups, deleted_arrays
        Nodes of the base snapshot deleted in this session: path (in the base) -> node id.
    chunks
        Chunk edits per array node id.
    moves
        ``(from, to)`` renames, in the order applied (rearrange sessions only).
    """

    new_groups: dict[str, tuple[NodeId, bytes]] = field(default_factory=dict)
    new_arrays: dict[str, tuple[NodeId, ArrayMetadata]] = field(default_factory=dict)
    updated_groups: dict[NodeId, bytes] = field(default_factory=dict)
    updated_arrays: dict[NodeId, ArrayMetadata] = field(default_factory=dict)
    deleted_groups: dict[str, NodeId] = field(default_factory=dict)
    deleted_arrays: dict[str, NodeId] = field(default_factory=dict)
    chunks: dict[NodeId, ChunkChanges] = field(default_factory=dict)
    moves: list[tuple[str, str]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.new_groups
            or self.new_arrays
            or self.updated_groups
            or self.updated_arrays
            or self.deleted_groups
            or self.deleted_arrays
            or self.moves
            or any(not c.is_empty() for c in self.chunks.values())
        )

    def chunk_changes(self, node_id: NodeId, ndim: int) -> ChunkChanges:
        """The (possibly new) chunk-edit record of an array."""
        changes = self.chunks.get(node_id)
        if changes is None or changes.ndim != ndim:
            changes = self.chunks[node_id] = ChunkChanges(node_id, ndim)
        return changes

    def new_node_ids(self) -> set[NodeId]:
        return {nid for nid, _ in self.new_groups.values()} | {
            nid for nid, _ in self.new_arrays.values()
        }

    def deleted_node_ids(self) -> set[NodeId]:
        return set(self.deleted_groups.values()) | set(self.deleted_arrays.values())
