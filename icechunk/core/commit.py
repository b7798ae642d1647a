"""Turning a session's change set into a snapshot: manifests, snapshot, transaction log.

FORMAT.md §5.2: new manifests for arrays whose chunks (or grid) changed, written
concurrently; arrays without changes keep their manifest refs; then the snapshot and the
transaction log (concurrently).  Nothing is visible before the caller's ref update.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from icechunk._errors import ErrorKind, SessionStateError
from icechunk.core.aio import gather
from icechunk.core.session import NodeView, SessionEngine
from icechunk.core.splitting import split_edges, split_extents, split_ids
from icechunk.format.ids import ManifestId, NodeId, SnapshotId
from icechunk.format.manifest import ArrayManifest, Manifest
from icechunk.format.repo_info import SnapshotEntry
from icechunk.format.snapshot import (
    ArrayData,
    ManifestFileInfo,
    ManifestRef,
    NodeSnapshot,
    Snapshot,
)
from icechunk.format.transaction_log import MoveOperation, TransactionLog

__all__ = ["PreparedSnapshot", "prepare_snapshot"]


@dataclass(frozen=True, slots=True)
class PreparedSnapshot:
    """A written snapshot and transaction log, ready to be made visible by a ref update."""

    snapshot: Snapshot
    transaction_log: TransactionLog
    entry: SnapshotEntry


def _extents(coords: np.ndarray) -> tuple[tuple[int, int], ...]:
    if coords.shape[1] == 0:
        return ()
    lo = coords.min(axis=0)
    hi = coords.max(axis=0)
    return tuple((int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True))


def _inside(extents: tuple[tuple[int, int], ...], num_chunks: tuple[int, ...]) -> bool:
    return all(hi <= max(n, 1) for (_, hi), n in zip(extents, num_chunks, strict=False))


class _ManifestWriter:
    """Writes new manifests with bounded concurrency and remembers their file infos."""

    def __init__(self, engine: SessionEngine) -> None:
        self.engine = engine
        self.infos: dict[ManifestId, ManifestFileInfo] = {}
        self._rows: dict[ManifestId, int] | None = None
        self._semaphore = asyncio.Semaphore(max(engine.config.max_concurrent_manifest_fetches, 1))

    def rows_of(self) -> dict[ManifestId, int]:
        """Ref count of every manifest of the base snapshot (built once per commit)."""
        if self._rows is None:
            self._rows = {i.id: i.num_chunk_refs for i in self.engine.base.snapshot.manifest_files}
        return self._rows

    async def write(self, table: ArrayManifest) -> ManifestRef:
        mid = ManifestId.random()
        async with self._semaphore:
            size = await self.engine.assets.write_manifest(Manifest(mid, [table]))
        self.infos[mid] = ManifestFileInfo(mid, size, len(table))
        return ManifestRef(mid, _extents(table.coords))


async def _array_manifests(
    engine: SessionEngine, node: NodeView, writer: _ManifestWriter, rewrite_all: bool
) -> tuple[ManifestRef, ...]:
    """The manifest refs of an array in the new snapshot (writing new manifests if needed)."""
    meta = node.array
    assert meta is not None
    changes = engine.changes.chunks.get(node.id)
    changed = changes is not None and not changes.is_empty()
    base_refs: tuple[ManifestRef, ...] = ()
    # old manifests of another rank are never reused
    if node.base is not None and node.base.array is not None and len(node.base.array.shape) == meta.ndim:
        base_refs = node.base.array.manifests
        if not changed and not rewrite_all and all(_inside(m.extents, meta.num_chunks) for m in base_refs):
            return base_refs
    edges = split_edges(node.path, meta.dimension_names, meta.num_chunks, engine.config.splitting)
    boxes = split_extents(edges)
    clean: dict[int, list[ManifestRef]] = {}
    if not rewrite_all and len(boxes) > 1 and base_refs:
        # untouched splits whose old manifests lie inside them are reused without reading them
        touched_boxes = (
            set(split_ids(changes.table().coords, edges).tolist()) if changed and changes else set()
        )
        clean, dirty = _clean_boxes(base_refs, edges, meta.num_chunks, touched_boxes)
        refs = await _partial_refs(engine, node, dirty)
    else:
        refs = await engine.current_refs(node)
    if len(refs) == 0 and not clean:
        return ()
    ids = split_ids(refs.coords, edges) if len(boxes) > 1 else np.zeros(len(refs), dtype=np.int64)
    if changed and changes:
        touched = set(split_ids(changes.table().coords, edges).tolist()) if len(boxes) > 1 else {0}
    else:
        touched = set()
    if len(boxes) == 1 and not clean and (rewrite_all or touched):
        # one split, rewritten: all refs in one manifest (no per-row sort/copy of big tables)
        return (await writer.write(refs),)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.searchsorted(sorted_ids, np.arange(len(boxes)), side="left")
    stops = np.searchsorted(sorted_ids, np.arange(len(boxes)), side="right")
    jobs: list[asyncio.Future[ManifestRef] | ManifestRef] = []
    inside = {} if rewrite_all else _refs_inside_boxes(base_refs, edges, boxes)
    for box_id, _box in enumerate(boxes):
        if box_id in clean:
            jobs.extend(clean[box_id])
            continue
        if starts[box_id] == stops[box_id]:
            continue
        rows = np.sort(order[starts[box_id] : stops[box_id]])
        if not rewrite_all and box_id not in touched:
            # FORMAT.md §6.2: untouched split -> reuse the old manifests lying inside it;
            # rows of partially overlapping ones are rewritten restricted to the split
            reused, rest = _reusable(writer.rows_of(), inside.get(box_id, []), refs.coords[rows])
            if reused is not None:
                jobs.extend(reused)
                if len(rest):
                    jobs.append(asyncio.ensure_future(writer.write(refs.take(rows[rest]))))
                continue
        jobs.append(asyncio.ensure_future(writer.write(refs.take(rows))))
    return tuple([j if isinstance(j, ManifestRef) else await j for j in jobs])


def _clean_boxes(
    base_refs: tuple[ManifestRef, ...],
    edges: list[list[int]],
    num_chunks: tuple[int, ...],
    touched: set[int],
) -> tuple[dict[int, list[ManifestRef]], list[ManifestRef]]:
    """Split boxes reusable as-is (untouched, only old manifests lying entirely inside them
    and inside the grid) and the old manifests the other boxes need to read."""
    counts = [len(e) - 1 for e in edges]
    ndim = len(edges)
    lows = np.asarray([[lo for lo, _ in m.extents] for m in base_refs], dtype=np.int64).reshape(-1, ndim)
    highs = np.asarray([[hi for _, hi in m.extents] for m in base_refs], dtype=np.int64).reshape(-1, ndim)
    # per dimension, the first and last split each manifest's extents overlap
    first = np.stack([np.searchsorted(e[1:-1], lows[:, d], side="right") for d, e in enumerate(edges)], axis=1)
    last = np.stack(
        [np.searchsorted(e[1:-1], np.maximum(highs[:, d] - 1, lows[:, d]), side="right") for d, e in enumerate(edges)],
        axis=1,
    )
    grid = np.maximum(np.asarray(num_chunks, dtype=np.int64), 1)
    single = np.all(first == last, axis=1) & np.all(highs <= grid, axis=1)
    by_box: dict[int, list[ManifestRef]] = {}
    spans: dict[int, bool] = {}
    for i, mref in enumerate(base_refs):
        ranges = [range(int(a), int(b) + 1) for a, b in zip(first[i], last[i], strict=True)]
        whole = bool(single[i])
        for idx in itertools.product(*ranges):
            box_id = int(np.ravel_multi_index(idx, counts)) if ndim else 0
            by_box.setdefault(box_id, []).append(mref)
            spans[box_id] = spans.get(box_id, True) and whole
    clean = {
        box_id: refs for box_id, refs in by_box.items() if spans[box_id] and box_id not in touched
    }
    dirty = list(dict.fromkeys(m for box_id, refs in by_box.items() if box_id not in clean for m in refs))
    return clean, dirty


async def _partial_refs(engine: SessionEngine, node: NodeView, manifests: list[ManifestRef]) -> ArrayManifest:
    """The current refs held by some old manifests plus every session change (sorted, live)."""
    from icechunk.core.changeset import TOMBSTONE

    assert node.array is not None
    assert node.base is not None
    ndim = node.array.ndim
    loaded = await gather(*(engine.assets.fetch_manifest(m.manifest_id) for m in manifests))
    parts = [t for m in loaded if (t := m.array(node.base.id)) is not None and len(t)]
    changes = engine.changes.chunks.get(node.id)
    if changes is not None and not changes.is_empty():
        parts.append(changes.table())
    if not parts:
        return ArrayManifest.empty(node.id, ndim)
    merged = ArrayManifest.concat(node.id, parts)
    keep = merged.kind != TOMBSTONE
    if ndim:
        grid = np.maximum(np.asarray(node.array.num_chunks, dtype=np.uint64), 1)
        keep &= np.all(merged.coords < grid, axis=1)
    return merged if keep.all() else merged.take(np.flatnonzero(keep))


def _in_extents(coords: np.ndarray, extents: tuple[tuple[int, int], ...]) -> np.ndarray:
    mask = np.ones(len(coords), dtype=bool)
    for d, (lo, hi) in enumerate(extents):
        mask &= (coords[:, d] >= lo) & (coords[:, d] < hi)
    return mask


def _overlap(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> bool:
    return all(lo1 < hi2 and lo2 < hi1 for (lo1, hi1), (lo2, hi2) in zip(a, b, strict=True))


def _refs_inside_boxes(
    base_refs: tuple[ManifestRef, ...], edges: list[list[int]], boxes: list[tuple[tuple[int, int], ...]]
) -> dict[int, list[ManifestRef]]:
    """Old manifest refs grouped by the split box that contains them entirely."""
    if not base_refs:
        return {}
    ndim = len(edges)
    lows = np.asarray([[lo for lo, _ in m.extents] for m in base_refs], dtype=np.int64).reshape(-1, ndim)
    out: dict[int, list[ManifestRef]] = {}
    for mref, box_id in zip(base_refs, split_ids(lows, edges).tolist(), strict=True):
        box = boxes[box_id] if 0 <= box_id < len(boxes) else None
        if box is not None and all(lo <= a and b <= hi for (a, b), (lo, hi) in zip(mref.extents, box, strict=True)):
            out.setdefault(box_id, []).append(mref)
    return out


def _reusable(
    rows_of: dict[ManifestId, int], candidates: list[ManifestRef], coords: np.ndarray
) -> tuple[list[ManifestRef] | None, np.ndarray]:
    """Old manifests reusable as-is for a split box, and the rows (indices) left to write.

    ``candidates`` are the old manifests lying entirely inside the box.  Returns
    ``(None, ...)`` when the box must be written from scratch (nothing reusable, or the
    leftover rows would overlap a reused manifest's extents).
    """
    covered = np.zeros(len(coords), dtype=bool)
    reused: list[ManifestRef] = []
    for mref in candidates:
        mine = _in_extents(coords, mref.extents)
        count = int(mine.sum())
        if count and count == rows_of.get(mref.manifest_id, -1) and _extents(coords[mine]) == mref.extents:
            reused.append(mref)
            covered |= mine
    if not reused:
        return None, np.zeros(0, dtype=np.int64)
    rest = np.flatnonzero(~covered)
    if len(rest):
        rest_extents = _extents(coords[rest])
        if any(_overlap(rest_extents, m.extents) for m in reused):
            return None, rest
    return reused, rest


async def prepare_snapshot(
    engine: SessionEngine,
    message: str,
    metadata: dict[str, Any] | None,
    *,
    parent: SnapshotId | None,
    rewrite_manifests: bool = False,
    merge_log_of: SnapshotId | None = None,
    pruned_ancestor_tx_logs: tuple[SnapshotId, ...] | None = None,
) -> PreparedSnapshot:
    """Write manifests, snapshot and transaction log for the session's current state.

    Parameters
    ----------
    parent
        Parent recorded for the new snapshot (the base, or the base's parent for an amend).
    merge_log_of
        For amend: fold this snapshot's transaction log into the new one.
    """
    if not isinstance(message, str):
        raise TypeError(f"commit message must be a string, got {type(message).__name__}")
    writer = _ManifestWriter(engine)
    nodes = engine.all_nodes()
    arrays = [n for n in nodes if n.array is not None]
    written = await gather(*(_array_manifests(engine, n, writer, rewrite_manifests) for n in arrays))
    manifest_refs = dict(zip((n.id for n in arrays), written, strict=True))
    snapshot_nodes = []
    for node in nodes:
        mrefs = manifest_refs.get(node.id)
        array = None
        if node.array is not None:
            array = ArrayData(node.array.shape, node.array.dimension_names, mrefs or ())
        snapshot_nodes.append(NodeSnapshot(node.id, node.path, node.user_data, array))
    base_infos = {i.id: i for i in engine.base.snapshot.manifest_files}
    infos: dict[ManifestId, ManifestFileInfo] = {}
    for snode in snapshot_nodes:
        for mref in snode.array.manifests if snode.array else ():
            info = writer.infos.get(mref.manifest_id) or base_infos.get(mref.manifest_id)
            if info is None:
                raise SessionStateError(
                    f"manifest {mref.manifest_id} has no file info", ErrorKind.MANIFEST_INFO_NOT_FOUND
                )
            infos[mref.manifest_id] = info
    from icechunk.core.repo_state import now_us

    base_time = engine.base.snapshot.flushed_at
    flushed_at = max(now_us(), base_time + 1)
    props = {**engine.default_metadata, **(metadata or {})}
    sid = SnapshotId.random()
    snapshot = Snapshot(
        id=sid,
        parent_id=parent,
        flushed_at=flushed_at,
        message=message,
        metadata=props,
        manifest_files=tuple(sorted(infos.values(), key=lambda i: bytes(i.id))),
        nodes=tuple(snapshot_nodes),
        spec_version=engine.assets.spec_version,
    )
    log = transaction_log_of(engine, sid)
    if merge_log_of is not None:
        previous = await engine.assets.fetch_transaction_log(merge_log_of)
        log = merge_logs(sid, previous, log)
    await gather(engine.assets.write_snapshot(snapshot), engine.assets.write_transaction_log(log))
    entry = SnapshotEntry(sid, parent, flushed_at, message, props, pruned_ancestor_tx_logs)
    return PreparedSnapshot(snapshot, log, entry)


def transaction_log_of(engine: SessionEngine, sid: SnapshotId) -> TransactionLog:
    """The transaction log describing the session's change set (FORMAT.md §7.6)."""
    ch = engine.changes
    deleted = ch.deleted_node_ids()
    new_ids = ch.new_node_ids()
    updated_chunks: dict[NodeId, np.ndarray] = {}
    for nid, changes in ch.chunks.items():
        if nid in deleted or changes.is_empty():
            continue
        updated_chunks[nid] = changes.table().coords
    moved = None
    if engine.assets.spec_version >= 2:
        moved = moved_nodes_of(engine)
    return TransactionLog(
        id=sid,
        new_groups=sorted((nid for nid, _ in ch.new_groups.values()), key=bytes),
        new_arrays=sorted((nid for nid, _ in ch.new_arrays.values()), key=bytes),
        deleted_groups=sorted(ch.deleted_groups.values(), key=bytes),
        deleted_arrays=sorted(ch.deleted_arrays.values(), key=bytes),
        updated_arrays=sorted((n for n in ch.updated_arrays if n not in new_ids), key=bytes),
        updated_groups=sorted((n for n in ch.updated_groups if n not in new_ids), key=bytes),
        updated_chunks=dict(sorted(updated_chunks.items(), key=lambda kv: bytes(kv[0]))),
        moved_nodes=moved,
        spec_version=engine.assets.spec_version,
    )


def _segment_key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def moved_nodes_of(engine: SessionEngine) -> list[MoveOperation]:
    """One collapsed move per moved node (descendants included), sorted segment-wise by target."""
    from icechunk.format.transaction_log import NodeType

    if not engine.changes.moves:
        return []
    out = []
    for base in engine.base.snapshot.nodes:
        now = engine._current_path(base.path)
        if now != base.path:
            kind = NodeType.ARRAY if base.is_array else NodeType.GROUP
            out.append(MoveOperation(base.path, now, base.id, kind))
    return sorted(out, key=lambda m: _segment_key(m.to_path))


def merge_logs(sid: SnapshotId, older: TransactionLog, newer: TransactionLog) -> TransactionLog:
    """Union of two consecutive transaction logs (amend), per FORMAT.md §5.8."""

    def union(a: list[NodeId], b: list[NodeId]) -> list[NodeId]:
        return sorted(set(a) | set(b), key=bytes)

    chunks: dict[NodeId, np.ndarray] = {}
    for nid in set(older.updated_chunks) | set(newer.updated_chunks):
        parts = [log.updated_chunks[nid] for log in (older, newer) if nid in log.updated_chunks]
        stacked = np.concatenate(parts) if len(parts) > 1 else parts[0]
        chunks[nid] = np.unique(stacked, axis=0) if stacked.shape[1] else stacked[:1]
    new_nodes = set(older.new_groups) | set(older.new_arrays)
    deleted = set(newer.deleted_groups) | set(newer.deleted_arrays)
    return TransactionLog(
        id=sid,
        new_groups=[n for n in union(older.new_groups, newer.new_groups) if n not in deleted],
        new_arrays=[n for n in union(older.new_arrays, newer.new_arrays) if n not in deleted],
        deleted_groups=[n for n in union(older.deleted_groups, newer.deleted_groups) if n not in new_nodes],
        deleted_arrays=[n for n in union(older.deleted_arrays, newer.deleted_arrays) if n not in new_nodes],
        updated_arrays=[n for n in union(older.updated_arrays, newer.updated_arrays) if n not in new_nodes],
        updated_groups=[n for n in union(older.updated_groups, newer.updated_groups) if n not in new_nodes],
        updated_chunks=dict(sorted(chunks.items(), key=lambda kv: bytes(kv[0]))),
        moved_nodes=(older.moved_nodes or []) + (newer.moved_nodes or []) if newer.moved_nodes is not None else older.moved_nodes,
        spec_version=newer.spec_version,
    )

