"""Garbage collection (API.md §2.7, FORMAT.md §5.13).

An object is deleted only when it is unreachable **and** its storage ``created_at`` is
strictly before the cutoff, so objects written by sessions running concurrently (younger
than the cutoff) are never touched.  Roots: in spec 2 every snapshot listed in the repo info
(which includes every branch and tag tip; expiration is what removes snapshots from that
list), plus the transaction logs named in any ``pruned_ancestor_tx_logs``; in spec 1 the
tips of branches and live tags and their ``parent_id`` ancestors.  ``repo``,
``overwritten/``, ``refs/`` and ``config.yaml`` are never considered.

Memory: snapshots are processed ``max_snapshots_in_memory`` at a time, manifests are
streamed under ``max_concurrent_manifest_fetches`` / ``max_compressed_manifest_mem_bytes``
and reduced to their native chunk ids, which are kept in a sorted numpy array of 12-byte
ids (:class:`ChunkIdSet`); the storage listing is consumed in batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from icechunk._errors import ErrorKind, InvalidInputError, ReadOnlyError
from icechunk.core.progress import Progress
from icechunk.core.reachability import ChunkIdSet, iter_manifests, iter_snapshots
from icechunk.core.repo_state import RepoInfoRefs
from icechunk.format.ids import ChunkId, ManifestId, SnapshotId
from icechunk.format.manifest import RefKind
from icechunk.format.repo_info import Availability, GCRan, RepoInfo
from icechunk.storage._abc import ObjectInfo, Storage

__all__ = ["GCResult", "Reachable", "find_reachable", "garbage_collect"]

_DELETE_BATCH = 1000
_LIST_BATCH = 10_000


@dataclass
class GCResult:
    """Counts (and bytes) of deleted objects, per kind."""

    bytes_deleted: int = 0
    chunks_deleted: int = 0
    manifests_deleted: int = 0
    snapshots_deleted: int = 0
    transaction_logs_deleted: int = 0


@dataclass
class Reachable:
    """Everything the repository still references."""

    snapshots: set[SnapshotId]
    transaction_logs: set[SnapshotId]
    manifests: set[ManifestId]
    chunks: ChunkIdSet


async def find_reachable(
    repo: object,
    *,
    max_snapshots_in_memory: int = 50,
    max_compressed_manifest_mem_bytes: int = 512 * 1024 * 1024,
    max_concurrent_manifest_fetches: int = 500,
    info: RepoInfo | None = None,
    show_progress: bool | None = None,
) -> Reachable:
    """Walk the roots of the repository (see the module docstring)."""
    from icechunk.core.repository import RepoEngine

    assert isinstance(repo, RepoEngine)
    storage = repo.storage
    state = repo.state
    tx_logs: set[SnapshotId] = set()
    if isinstance(state, RepoInfoRefs):
        info = info or await state.info()
        start = list(info.snapshots)
        for entry in info.snapshots.values():
            tx_logs.update(entry.pruned_ancestor_tx_logs or ())
        follow = False
    else:
        branches = await state.branches()
        tags = await state.tags()
        start = [*branches.values(), *tags.values()]
        follow = True
    snapshots: set[SnapshotId] = set()
    manifests: dict[ManifestId, int] = {}
    with Progress("gc: snapshots", len(start) if not follow else None, enabled=show_progress) as bar:
        async for snap in iter_snapshots(storage, start, follow_parents=follow, max_in_memory=max_snapshots_in_memory):
            snapshots.add(snap.id)
            for mfi in snap.manifest_files:
                manifests[mfi.id] = mfi.size_bytes
            for node in snap.nodes:
                if node.array is not None:
                    for mref in node.array.manifests:
                        manifests.setdefault(mref.manifest_id, -1)
            bar.update()
    tx_logs.update(snapshots)
    chunks = ChunkIdSet()
    with Progress("gc: manifests", len(manifests), enabled=show_progress) as bar:
        async for manifest in iter_manifests(
            storage,
            manifests,
            max_concurrent=max_concurrent_manifest_fetches,
            max_bytes=max_compressed_manifest_mem_bytes,
        ):
            for table in manifest.arrays:
                native = table.kind == RefKind.NATIVE
                if native.any():
                    chunks.add(table.chunk_id[native])
            bar.update()
    return Reachable(snapshots, tx_logs, set(manifests), chunks)


def _parse_id(key: str, prefix: str, cls: type) -> object | None:
    try:
        return cls.parse(key[len(prefix) :])
    except (InvalidInputError, ValueError):
        return None  # not an object of ours (FORMAT.md §1.3: ignored when listing)


async def _sweep(
    storage: Storage,
    prefix: str,
    cls: type,
    is_reachable: Callable[[list[object]], np.ndarray],
    cutoff: datetime,
    dry_run: bool,
    exact_count: bool,
    bar: Progress,
) -> tuple[int, int]:
    """Delete unreachable objects under ``prefix`` older than the cutoff: (count, bytes)."""
    count = 0
    size = 0
    batch: list[tuple[object, ObjectInfo]] = []
    doomed: list[str] = []

    async def flush_deletes(force: bool) -> None:
        nonlocal doomed
        if doomed and (force or len(doomed) >= _DELETE_BATCH):
            if not dry_run:
                await storage.delete_many(doomed, exact_count=exact_count)
            doomed = []

    async def judge() -> None:
        nonlocal batch, count, size
        if not batch:
            return
        keep = is_reachable([oid for oid, _ in batch])
        for (_, info), reachable in zip(batch, keep.tolist(), strict=True):
            if reachable or info.created_at is None or info.created_at >= cutoff:
                continue
            doomed.append(info.key)
            count += 1
            size += info.size_bytes
            bar.update()
            await flush_deletes(False)
        batch = []

    async for info in storage.list_prefix(prefix):
        oid = _parse_id(info.key, prefix, cls)
        if oid is None:
            continue
        batch.append((oid, info))
        if len(batch) >= _LIST_BATCH:
            await judge()
    await judge()
    await flush_deletes(True)
    return count, size


async def garbage_collect(
    repo: object,
    delete_object_older_than: datetime,
    *,
    dry_run: bool = False,
    max_snapshots_in_memory: int = 50,
    max_compressed_manifest_mem_bytes: int = 512 * 1024 * 1024,
    max_concurrent_manifest_fetches: int = 500,
    show_progress: bool | None = None,
) -> GCResult:
    """Delete unreachable objects created strictly before ``delete_object_older_than``.

    Raises
    ------
    ReadOnlyError
        When the repository status is read-only (spec 2) or the storage cannot write.
    """
    from icechunk.core.repository import RepoEngine

    assert isinstance(repo, RepoEngine)
    cutoff = delete_object_older_than
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=UTC)
    storage = repo.storage
    if storage.read_only and not dry_run:
        raise ReadOnlyError("cannot garbage-collect on read-only storage", ErrorKind.READ_ONLY_STORAGE)
    info = None
    state = repo.state
    if isinstance(state, RepoInfoRefs):
        info = await state.info()
        if info.status.availability == Availability.READ_ONLY:
            raise ReadOnlyError("repository status is read-only", ErrorKind.READ_ONLY_REPOSITORY)
    reachable = await find_reachable(
        repo,
        max_snapshots_in_memory=max_snapshots_in_memory,
        max_compressed_manifest_mem_bytes=max_compressed_manifest_mem_bytes,
        max_concurrent_manifest_fetches=max_concurrent_manifest_fetches,
        info=info,
        show_progress=show_progress,
    )

    def in_set(ids: set[SnapshotId] | set[ManifestId]) -> Callable[[list[object]], np.ndarray]:
        return lambda batch: np.fromiter((oid in ids for oid in batch), dtype=bool, count=len(batch))

    def chunk_reachable(batch: list[object]) -> np.ndarray:
        raw = np.frombuffer(b"".join(bytes(oid) for oid in batch), dtype=np.uint8).reshape(-1, 12)  # type: ignore[call-overload]
        return reachable.chunks.contains(ChunkIdSet.as_s12(raw))

    # object stores cannot count deletions without a HEAD per key: count what we submit
    exact = False
    result = GCResult()
    with Progress("gc: deleting", None, enabled=show_progress) as bar:
        result.snapshots_deleted, b1 = await _sweep(
            storage, "snapshots/", SnapshotId, in_set(reachable.snapshots), cutoff, dry_run, exact, bar
        )
        result.transaction_logs_deleted, b2 = await _sweep(
            storage, "transactions/", SnapshotId, in_set(reachable.transaction_logs), cutoff, dry_run, exact, bar
        )
        result.manifests_deleted, b3 = await _sweep(
            storage, "manifests/", ManifestId, in_set(reachable.manifests), cutoff, dry_run, exact, bar
        )
        result.chunks_deleted, b4 = await _sweep(
            storage, "chunks/", ChunkId, chunk_reachable, cutoff, dry_run, exact, bar
        )
    result.bytes_deleted = b1 + b2 + b3 + b4
    if not dry_run and isinstance(state, RepoInfoRefs):
        await state.update(lambda _info: GCRan())
    return result
