"""Diffs: net changes of a session, or between two snapshots on one line of history."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from icechunk._errors import ErrorKind, InvalidInputError
from icechunk.core.commit import transaction_log_of
from icechunk.core.session import SessionEngine
from icechunk.format.ids import NodeId, SnapshotId
from icechunk.format.snapshot import Snapshot
from icechunk.format.transaction_log import TransactionLog

__all__ = ["DiffData", "session_diff", "snapshot_diff"]


@dataclass
class DiffData:
    """Paths changed, as plain data (the public ``Diff`` wraps it)."""

    new_groups: set[str] = field(default_factory=set)
    new_arrays: set[str] = field(default_factory=set)
    deleted_groups: set[str] = field(default_factory=set)
    deleted_arrays: set[str] = field(default_factory=set)
    updated_groups: set[str] = field(default_factory=set)
    updated_arrays: set[str] = field(default_factory=set)
    updated_chunks: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    moved_nodes: list[tuple[str, str]] = field(default_factory=list)


def _coords_list(coords: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(row) for row in coords.tolist()]


def _diff_from_logs(
    logs: list[TransactionLog], paths_now: dict[NodeId, str], paths_before: dict[NodeId, str]
) -> DiffData:
    """Fold transaction logs (oldest first) into net changes."""
    new_g: set[NodeId] = set()
    new_a: set[NodeId] = set()
    del_g: set[NodeId] = set()
    del_a: set[NodeId] = set()
    upd_g: set[NodeId] = set()
    upd_a: set[NodeId] = set()
    chunks: dict[NodeId, list[np.ndarray]] = {}
    moves: list[tuple[str, str]] = []
    for log in logs:
        new_g.update(log.new_groups)
        new_a.update(log.new_arrays)
        del_g.update(log.deleted_groups)
        del_a.update(log.deleted_arrays)
        upd_g.update(log.updated_groups)
        upd_a.update(log.updated_arrays)
        for nid, coords in log.updated_chunks.items():
            chunks.setdefault(nid, []).append(coords)
        moves.extend((m.from_path, m.to_path) for m in log.moved_nodes or ())
    created_and_deleted = (new_g & del_g) | (new_a & del_a)
    out = DiffData(moved_nodes=moves)
    out.new_groups = {paths_now[n] for n in new_g - created_and_deleted if n in paths_now}
    out.new_arrays = {paths_now[n] for n in new_a - created_and_deleted if n in paths_now}
    out.deleted_groups = {paths_before[n] for n in del_g - created_and_deleted if n in paths_before}
    out.deleted_arrays = {paths_before[n] for n in del_a - created_and_deleted if n in paths_before}
    gone = del_g | del_a
    out.updated_groups = {paths_now[n] for n in upd_g - new_g - gone if n in paths_now}
    out.updated_arrays = {paths_now[n] for n in upd_a - new_a - gone if n in paths_now}
    for nid, parts in chunks.items():
        if nid in gone or nid not in paths_now:
            continue
        stacked = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if stacked.shape[0] and stacked.shape[1]:
            stacked = np.unique(stacked, axis=0)
        out.updated_chunks[paths_now[nid]] = _coords_list(stacked[:1] if not stacked.shape[1] else stacked)
    return out


def session_diff(engine: SessionEngine) -> DiffData:
    """The uncommitted changes of a session."""
    log = transaction_log_of(engine, SnapshotId(b"\x00" * 12))
    paths_now = {n.id: n.path for n in engine.all_nodes()}
    paths_before = {n.id: n.path for n in engine.base.snapshot.nodes}
    return _diff_from_logs([log], paths_now, paths_before)


def _paths(snapshot: Snapshot) -> dict[NodeId, str]:
    return {n.id: n.path for n in snapshot.nodes}


async def snapshot_diff(repo: object, from_sid: SnapshotId, to_sid: SnapshotId) -> DiffData:
    """Net changes from ``from_sid`` to ``to_sid`` (``from`` must be an ancestor of ``to``)."""
    from icechunk.core.repository import RepoEngine

    assert isinstance(repo, RepoEngine)
    chain: list[SnapshotId] = []
    found = from_sid == to_sid
    if not found:
        async for entry in repo.ancestry(to_sid):
            if entry.id == from_sid:
                found = True
                break
            chain.append(entry.id)
            chain.extend(reversed(entry.pruned_ancestor_tx_logs or ()))
    if not found:
        raise InvalidInputError(
            f"the ancestry of {to_sid} doesn't include {from_sid}: "
            "diff needs `from` to be an ancestor of `to`",
            ErrorKind.BAD_SNAPSHOT_CHAIN_FOR_DIFF,
        )
    logs = [await repo.transaction_log(sid) for sid in reversed(chain)]
    to_snap = (await repo.snapshot(to_sid)).snapshot
    from_snap = (await repo.snapshot(from_sid)).snapshot
    return _diff_from_logs(logs, _paths(to_snap), _paths(from_snap))
