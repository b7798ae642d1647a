"""Conflict detection between a session's change set and a commit it is rebased over.

"Ours" is the session's change set; "theirs" is the transaction log of a commit made on the
branch after the session's base (plus the snapshot that commit produced).  API.md §5 lists
the conflict types and what the basic solver can resolve.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from icechunk.core.paths import parent
from icechunk.core.session import SessionEngine
from icechunk.format.ids import NodeId
from icechunk.format.snapshot import Snapshot
from icechunk.format.transaction_log import TransactionLog

__all__ = ["ConflictKind", "ConflictRecord", "CoreSolver", "detect_conflicts"]


class ConflictKind(enum.IntEnum):
    NEW_NODE_CONFLICTS_WITH_EXISTING_NODE = 1
    NEW_NODE_IN_INVALID_GROUP = 2
    ZARR_METADATA_DOUBLE_UPDATE = 3
    ZARR_METADATA_UPDATE_OF_DELETED_ARRAY = 4
    ZARR_METADATA_UPDATE_OF_DELETED_GROUP = 5
    CHUNK_DOUBLE_UPDATE = 6
    CHUNKS_UPDATED_IN_DELETED_ARRAY = 7
    CHUNKS_UPDATED_IN_UPDATED_ARRAY = 8
    DELETE_OF_UPDATED_ARRAY = 9
    DELETE_OF_UPDATED_GROUP = 10
    MOVE_OPERATION_CANNOT_BE_REBASED = 11


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    """One conflict: its kind, the node path, and (for chunk conflicts) the chunk indices."""

    kind: ConflictKind
    path: str
    node_id: NodeId | None = None
    chunks: np.ndarray | None = None


def _rows_in(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``a`` that also appear in ``b`` (both (n, ndim) uint32)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros(a.shape[0], dtype=bool)
    if a.shape[1] != b.shape[1]:
        return np.zeros(a.shape[0], dtype=bool)
    if a.shape[1] == 0:
        return np.ones(a.shape[0], dtype=bool)
    width = a.shape[1] * 4
    av = np.ascontiguousarray(a.astype(">u4")).view(f"V{width}").ravel()
    bv = np.ascontiguousarray(b.astype(">u4")).view(f"V{width}").ravel()
    return np.isin(av, bv)


def detect_conflicts(
    engine: SessionEngine, theirs: TransactionLog, after: Snapshot | None
) -> list[ConflictRecord]:
    """Every conflict between the session's changes and one commit (its log and result).

    ``after`` (the commit's snapshot) is only read for the nodes the session creates; it may
    be None when the session creates none.
    """
    ch = engine.changes
    out: list[ConflictRecord] = []
    paths = {n.id: n.path for n in engine.all_nodes()}
    base_paths = {n.id: n.path for n in engine.base.snapshot.nodes}

    def path_of(nid: NodeId) -> str:
        return paths.get(nid) or base_paths.get(nid) or "?"

    if theirs.moved_nodes:
        out.append(ConflictRecord(ConflictKind.MOVE_OPERATION_CANNOT_BE_REBASED, "/"))
        return out

    our_deleted = ch.deleted_node_ids()
    created = [*ch.new_groups.items(), *ch.new_arrays.items()]
    if created and after is None:
        raise ValueError("detect_conflicts needs the commit's snapshot to check created nodes")
    after_nodes = {n.path: n for n in after.nodes} if created and after is not None else {}
    for path, (nid, _) in created:
        existing = after_nodes.get(path)
        if existing is not None and existing.id not in our_deleted:
            out.append(ConflictRecord(ConflictKind.NEW_NODE_CONFLICTS_WITH_EXISTING_NODE, path, nid))
        ancestor = parent(path)
        while ancestor is not None:
            node = after_nodes.get(ancestor)
            if node is not None and node.is_array and node.id not in our_deleted:
                out.append(ConflictRecord(ConflictKind.NEW_NODE_IN_INVALID_GROUP, path, nid))
                break
            ancestor = parent(ancestor)

    their_upd_arrays, their_upd_groups = set(theirs.updated_arrays), set(theirs.updated_groups)
    their_del_arrays, their_del_groups = set(theirs.deleted_arrays), set(theirs.deleted_groups)
    for nid in ch.updated_arrays:
        if nid in their_upd_arrays:
            out.append(ConflictRecord(ConflictKind.ZARR_METADATA_DOUBLE_UPDATE, path_of(nid), nid))
        if nid in their_del_arrays:
            out.append(ConflictRecord(ConflictKind.ZARR_METADATA_UPDATE_OF_DELETED_ARRAY, path_of(nid), nid))
    for nid in ch.updated_groups:
        if nid in their_upd_groups:
            out.append(ConflictRecord(ConflictKind.ZARR_METADATA_DOUBLE_UPDATE, path_of(nid), nid))
        if nid in their_del_groups:
            out.append(ConflictRecord(ConflictKind.ZARR_METADATA_UPDATE_OF_DELETED_GROUP, path_of(nid), nid))

    for nid, changes in ch.chunks.items():
        if changes.is_empty() or nid in our_deleted:
            continue
        if nid in their_del_arrays:
            out.append(ConflictRecord(ConflictKind.CHUNKS_UPDATED_IN_DELETED_ARRAY, path_of(nid), nid))
            continue
        if nid in their_upd_arrays:
            out.append(ConflictRecord(ConflictKind.CHUNKS_UPDATED_IN_UPDATED_ARRAY, path_of(nid), nid))
        their_chunks = theirs.updated_chunks.get(nid)
        if their_chunks is not None and len(their_chunks):
            ours = changes.table().coords
            mask = _rows_in(ours, their_chunks)
            if mask.any():
                out.append(
                    ConflictRecord(ConflictKind.CHUNK_DOUBLE_UPDATE, path_of(nid), nid, ours[mask])
                )

    for path, nid in ch.deleted_arrays.items():
        if nid in their_upd_arrays or nid in theirs.updated_chunks:
            out.append(ConflictRecord(ConflictKind.DELETE_OF_UPDATED_ARRAY, path, nid))
    for path, nid in ch.deleted_groups.items():
        if nid in their_upd_groups:
            out.append(ConflictRecord(ConflictKind.DELETE_OF_UPDATED_GROUP, path, nid))
    return out


@dataclass(frozen=True, slots=True)
class CoreSolver:
    """A conflict-resolution policy.

    ``on_chunk`` is ``"ours"``, ``"theirs"`` or ``"fail"``; ``detect_only`` resolves nothing.
    """

    on_chunk: str = "ours"
    fail_on_delete_of_updated_array: bool = False
    fail_on_delete_of_updated_group: bool = False
    detect_only: bool = False

    def unresolved(self, conflicts: list[ConflictRecord]) -> list[ConflictRecord]:
        """The conflicts this policy cannot resolve."""
        if self.detect_only:
            return list(conflicts)
        out = []
        for c in conflicts:
            if c.kind == ConflictKind.CHUNK_DOUBLE_UPDATE and self.on_chunk in ("ours", "theirs"):
                continue
            if c.kind == ConflictKind.DELETE_OF_UPDATED_ARRAY and not self.fail_on_delete_of_updated_array:
                continue
            if c.kind == ConflictKind.DELETE_OF_UPDATED_GROUP and not self.fail_on_delete_of_updated_group:
                continue
            out.append(c)
        return out

    def apply(self, engine: SessionEngine, conflicts: list[ConflictRecord]) -> None:
        """Edit the change set so it can sit on top of the other commit."""
        if self.on_chunk != "theirs":
            return
        for c in conflicts:
            if c.kind != ConflictKind.CHUNK_DOUBLE_UPDATE or c.node_id is None or c.chunks is None:
                continue
            changes = engine.changes.chunks.get(c.node_id)
            if changes is None:
                continue
            table = changes.table()
            keep = ~_rows_in(table.coords, c.chunks)
            replacement = type(changes)(changes.node_id, changes.ndim)
            replacement.add_table(table.take(np.flatnonzero(keep)))
            engine.changes.chunks[c.node_id] = replacement
