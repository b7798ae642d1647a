"""Walking what a repository still references: snapshots, manifests, chunk ids.

Shared by garbage collection and storage statistics.  Both may run over histories far larger
than memory, so nothing here goes through the :class:`AssetManager` caches: snapshots are
fetched at most ``max_in_memory`` at a time and reduced to the ids they name, manifests are
fetched under a count *and* a compressed-bytes budget and reduced to numpy columns, and
native chunk ids are kept as one sorted array of 12-byte strings (:class:`ChunkIdSet`)
instead of a Python set of ``bytes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import numpy as np

from icechunk._errors import ErrorKind, FormatError
from icechunk.core.assets import read_manifest, read_snapshot
from icechunk.core.repo_state import RepoInfoRefs, RepoState
from icechunk.format.ids import ManifestId, SnapshotId
from icechunk.format.manifest import Manifest
from icechunk.format.snapshot import Snapshot
from icechunk.storage._abc import Storage

__all__ = [
    "ByteBudget",
    "add_manifests_of",
    "ChunkIdSet",
    "SnapshotGraphNode",
    "iter_manifests",
    "iter_snapshots",
    "ref_tips",
    "snapshot_graph",
]

def add_manifests_of(snap: Snapshot, manifests: dict[ManifestId, int]) -> None:
    """Record the manifests ``snap`` uses in ``manifests`` as :func:`iter_manifests` takes
    them: id -> stored size from the snapshot's manifest files, -1 when it names one only
    in its nodes."""
    for mfi in snap.manifest_files:
        manifests[mfi.id] = mfi.size_bytes
    for node in snap.nodes:
        if node.array is not None:
            for mref in node.array.manifests:
                manifests.setdefault(mref.manifest_id, -1)


async def iter_snapshots(
    storage: Storage,
    start: Iterable[SnapshotId],
    *,
    follow_parents: bool,
    max_in_memory: int = 50,
) -> AsyncIterator[Snapshot]:
    """Every snapshot of ``start`` (and, with ``follow_parents``, their spec-1 ancestors).

    Each snapshot is yielded once; at most ``max_in_memory`` are being fetched or held at a
    time.  Spec-2 snapshot files carry no parent, so ``follow_parents`` only walks spec-1
    chains.
    """
    seen: set[SnapshotId] = set()
    pending: list[SnapshotId] = []
    for sid in start:
        if sid not in seen:
            seen.add(sid)
            pending.append(sid)
    width = max(int(max_in_memory), 1)
    while pending:
        batch, pending = pending[:width], pending[width:]
        snapshots = await asyncio.gather(*(read_snapshot(storage, sid) for sid in batch))
        for snap in snapshots:
            parent = snap.parent_id
            if follow_parents and parent is not None and parent not in seen:
                seen.add(parent)
                pending.append(parent)
            yield snap
        del snapshots


class ByteBudget:
    """An async semaphore counted in bytes (one request larger than the budget still runs)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), 1)
        self.available = self.capacity
        self._cond = asyncio.Condition()

    async def acquire(self, amount: int) -> int:
        amount = min(max(int(amount), 0), self.capacity)
        async with self._cond:
            await self._cond.wait_for(lambda: self.available >= amount)
            self.available -= amount
        return amount

    async def release(self, amount: int) -> None:
        async with self._cond:
            self.available += amount
            self._cond.notify_all()


async def iter_manifests(
    storage: Storage,
    manifests: dict[ManifestId, int],
    *,
    max_concurrent: int = 500,
    max_bytes: int = 512 * 1024 * 1024,
) -> AsyncIterator[Manifest]:
    """Fetch and decode the given manifests (id -> stored size, -1 if unknown), bounded.

    At most ``max_concurrent`` manifests are being fetched or waiting to be consumed, and
    their compressed sizes stay under ``max_bytes`` (a manifest's share is released only
    when the consumer asks for the next one).  Manifests come in completion order; the
    consumer should reduce each one to what it needs and drop it.
    """
    if not manifests:
        return
    limit = max(int(max_concurrent), 1)
    budget = ByteBudget(max_bytes)
    gate = asyncio.Semaphore(limit)
    unknown = max(1, budget.capacity // limit)
    queue: asyncio.Queue[tuple[Manifest | None, BaseException | None, int]] = asyncio.Queue()

    async def one(mid: ManifestId, taken: int) -> None:
        try:
            queue.put_nowait((await read_manifest(storage, mid), None, taken))
        except Exception as err:  # forwarded to the consumer
            queue.put_nowait((None, err, taken))

    async def producer() -> None:
        tasks = []
        try:
            for mid, size in manifests.items():
                await gate.acquire()
                taken = await budget.acquire(size if size >= 0 else unknown)
                tasks.append(asyncio.ensure_future(one(mid, taken)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    feeder = asyncio.ensure_future(producer())
    try:
        for _ in range(len(manifests)):
            manifest, err, taken = await queue.get()
            try:
                if err is not None:
                    raise err
                assert manifest is not None
                yield manifest
            finally:
                manifest = None
                await budget.release(taken)
                gate.release()
    finally:
        if not feeder.done():
            feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)


@dataclass
class ChunkIdSet:
    """A compact, exact set of 12-byte chunk ids: sorted unique ``S12`` numpy array.

    Ids are appended in batches (``(n, 12)`` uint8 rows); batches are merged (sorted and
    de-duplicated) whenever the pending rows exceed ``compact_at``, so memory stays close to
    12 bytes per distinct id.
    """

    compact_at: int = 2_000_000
    _sorted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="S12"))
    _pending: list[np.ndarray] = field(default_factory=list)
    _pending_rows: int = 0

    @staticmethod
    def as_s12(rows: np.ndarray) -> np.ndarray:
        """View ``(n, 12)`` uint8 rows as a 1-d ``S12`` array (a copy when needed)."""
        rows = np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1, 12)
        return rows.view("S12").reshape(-1)

    def add(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        ids = self.as_s12(rows)
        self._pending.append(ids.copy())
        self._pending_rows += len(ids)
        if self._pending_rows >= self.compact_at:
            self._compact()

    def _compact(self) -> None:
        if self._pending:
            self._sorted = np.unique(np.concatenate([self._sorted, *self._pending]))
            self._pending = []
            self._pending_rows = 0

    def __len__(self) -> int:
        self._compact()
        return len(self._sorted)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of the ``S12`` ``ids`` are in the set."""
        self._compact()
        if len(self._sorted) == 0 or len(ids) == 0:
            return np.zeros(len(ids), dtype=bool)
        pos = np.searchsorted(self._sorted, ids)
        pos = np.minimum(pos, len(self._sorted) - 1)
        found: np.ndarray = self._sorted[pos] == ids
        return found


@dataclass(frozen=True, slots=True)
class SnapshotGraphNode:
    """What expiration and statistics need of a snapshot: parent, time, pruned tx logs."""

    parent: SnapshotId | None
    flushed_at: int
    pruned: tuple[SnapshotId, ...] = ()


async def ref_tips(state: RepoState) -> tuple[dict[str, SnapshotId], dict[str, SnapshotId]]:
    """``(branches, tags)`` of the repository."""
    if isinstance(state, RepoInfoRefs):
        info = await state.info()
        return dict(info.branches), dict(info.tags)
    branches = await state.branches()
    tags = await state.tags()
    return branches, tags


async def snapshot_graph(
    state: RepoState, storage: Storage, tips: Iterable[SnapshotId], *, max_in_memory: int = 50
) -> dict[SnapshotId, SnapshotGraphNode]:
    """Parent/time of every snapshot reachable from ``tips``.

    Spec 2 reads the repo info (no snapshot files); spec 1 follows ``parent_id`` chains through
    the snapshot files.
    """
    graph: dict[SnapshotId, SnapshotGraphNode] = {}
    if isinstance(state, RepoInfoRefs):
        info = await state.info()
        for tip in tips:
            current: SnapshotId | None = tip
            while current is not None and current not in graph:
                entry = info.snapshots.get(current)
                if entry is None:
                    raise FormatError(
                        f"snapshot {current} is referenced but not listed in the repo info",
                        ErrorKind.SNAPSHOT_NOT_FOUND,
                    )
                graph[current] = SnapshotGraphNode(
                    entry.parent_id, entry.flushed_at, tuple(entry.pruned_ancestor_tx_logs or ())
                )
                current = entry.parent_id
        return graph
    async for snap in iter_snapshots(storage, tips, follow_parents=True, max_in_memory=max_in_memory):
        graph[snap.id] = SnapshotGraphNode(snap.parent_id, snap.flushed_at)
    return graph
