"""Garbage collection (API.md §2.7, FORMAT.md §5.13).

What is kept (behaviour checked against the reference implementation, Icechunk 2.2):

- every snapshot in the history of a branch or a tag;
- every snapshot listed in the repo info written at or after the cutoff (detached snapshots
  of forks and flushes in progress), and every snapshot *file* created at or after it (commits
  not yet visible);
- the manifests and chunks those snapshots use, their transaction logs and the transaction
  logs named in their ``pruned_ancestor_tx_logs``.

Spec 2: the listed snapshots that are not kept are dropped from the repo info in the same
update that logs ``GCRan``; a kept snapshot whose parent is dropped is re-parented onto its
nearest kept ancestor, with the dropped ones added to its ``pruned_ancestor_tx_logs`` (their
transaction logs stay).  Everything else is deleted, but only objects whose storage
``created_at`` is strictly before the cutoff, so objects written by sessions running
concurrently are never touched.  ``repo``, ``overwritten/``, ``refs/`` and ``config.yaml``
are never considered.  A dry run computes the same plan and deletes nothing.

Memory: snapshots are processed ``max_snapshots_in_memory`` at a time, manifests are
streamed under ``max_concurrent_manifest_fetches`` / ``max_compressed_manifest_mem_bytes``
and reduced to their native chunk ids, which are kept in a sorted numpy array of 12-byte
ids (:class:`ChunkIdSet`); the storage listing is consumed in batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from icechunk._errors import ConflictError, ErrorKind, ReadOnlyError
from icechunk.core.progress import Progress
from icechunk.core.reachability import ChunkIdSet, add_manifests_of, iter_manifests, iter_snapshots
from icechunk.core.repo_state import RepoInfoRefs, _copy_info
from icechunk.format.ids import ManifestId, SnapshotId
from icechunk.format.manifest import RefKind
from icechunk.format.repo_info import Availability, GCRan, RepoInfo
from icechunk.storage._abc import ObjectInfo, Storage

__all__ = ["GCResult", "Reachable", "drop_snapshots", "find_reachable", "garbage_collect", "kept_in_repo_info"]


def us_of(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

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
    """Snapshots kept and the manifests and chunks they use."""

    snapshots: set[SnapshotId]
    manifests: set[ManifestId]
    chunks: ChunkIdSet


def kept_in_repo_info(info: RepoInfo, cutoff_us: int) -> set[SnapshotId]:
    """Listed snapshots GC keeps: the history of every branch and tag, and the young ones."""
    kept: set[SnapshotId] = set()
    for tip in [*info.branches.values(), *info.tags.values()]:
        current: SnapshotId | None = tip
        while current is not None and current not in kept:
            kept.add(current)
            entry = info.snapshots.get(current)
            current = entry.parent_id if entry is not None else None
    kept.update(sid for sid, entry in info.snapshots.items() if entry.flushed_at >= cutoff_us)
    return kept


def drop_snapshots(info: RepoInfo, removed: set[SnapshotId]) -> None:
    """Remove snapshots from a (copied) repo info, re-parenting the children that stay.

    A kept snapshot whose parent is removed gets its nearest kept ancestor as parent, and
    the removed ancestors (oldest first, each after its own list) prepended to its
    ``pruned_ancestor_tx_logs``.
    """
    snapshots = info.snapshots
    for sid, entry in list(snapshots.items()):
        parent = entry.parent_id
        if sid in removed or parent is None or parent not in removed:
            continue
        skipped: list[SnapshotId] = []
        while parent is not None and parent in removed:
            skipped.append(parent)
            above = snapshots.get(parent)
            parent = above.parent_id if above is not None else None
        pruned: list[SnapshotId] = []
        for gone in reversed(skipped):
            gone_entry = snapshots.get(gone)
            if gone_entry is not None:
                pruned.extend(gone_entry.pruned_ancestor_tx_logs or ())
            pruned.append(gone)
        pruned.extend(entry.pruned_ancestor_tx_logs or ())
        snapshots[sid] = replace(entry, parent_id=parent, pruned_ancestor_tx_logs=tuple(pruned) or None)
    for sid in removed:
        snapshots.pop(sid, None)


async def _young_snapshot_files(storage: Storage, cutoff: datetime) -> list[SnapshotId]:
    """Snapshot files created at or after the cutoff (maybe not visible in any ref yet)."""
    young: list[SnapshotId] = []
    batch: list[ObjectInfo] = []

    def judge() -> None:
        ids, valid = decode_names([info.key[len("snapshots/") :] for info in batch])
        for row, info in enumerate(batch):
            if valid[row] and (info.created_at is None or info.created_at >= cutoff):
                young.append(SnapshotId(ids[row].tobytes()))
        batch.clear()

    async for info in storage.list_prefix("snapshots/"):
        batch.append(info)
        if len(batch) >= _LIST_BATCH:
            judge()
    if batch:
        judge()
    return young


async def find_reachable(
    storage: Storage,
    start: list[SnapshotId],
    *,
    follow_parents: bool,
    max_snapshots_in_memory: int = 50,
    max_compressed_manifest_mem_bytes: int = 512 * 1024 * 1024,
    max_concurrent_manifest_fetches: int = 500,
    show_progress: bool | None = None,
) -> Reachable:
    """The snapshots of ``start`` (with their spec-1 ancestors) and what they use."""
    snapshots: set[SnapshotId] = set()
    manifests: dict[ManifestId, int] = {}
    total = None if follow_parents else len(start)
    with Progress("gc: snapshots", total, enabled=show_progress) as bar:
        async for snap in iter_snapshots(
            storage, start, follow_parents=follow_parents, max_in_memory=max_snapshots_in_memory
        ):
            snapshots.add(snap.id)
            add_manifests_of(snap, manifests)
            bar.update()
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
    return Reachable(snapshots, set(manifests), chunks)


def _decode_table() -> np.ndarray:
    from icechunk.format.ids import _DECODE

    table = np.full(256, 255, dtype=np.uint8)
    for ch, value in _DECODE.items():
        table[ord(ch)] = value
    return table


_CROCKFORD = _decode_table()
_SHIFTS = np.arange(4, -1, -1, dtype=np.uint8)


def decode_names(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized Crockford decoding of 20-character object names.

    Returns ``(ids, valid)``: ``(n, 12)`` uint8 ids and a mask of the names that are ids
    (others are not objects of ours and are ignored, FORMAT.md §1.3).
    """
    n = len(names)
    ok = np.fromiter((len(x) == 20 and x.isascii() for x in names), dtype=bool, count=n)
    text = b"".join(x.encode("ascii") if good else b"0" * 20 for x, good in zip(names, ok.tolist(), strict=True))
    values = _CROCKFORD[np.frombuffer(text, dtype=np.uint8).reshape(n, 20)]
    ok &= np.all(values != 255, axis=1)
    bits = ((values[:, :, None] >> _SHIFTS) & 1).reshape(n, 100)[:, :96]
    return np.packbits(bits, axis=1), ok


def _id_set(ids: Iterable[bytes]) -> ChunkIdSet:
    out = ChunkIdSet()
    raw = b"".join(bytes(i) for i in ids)
    out.add(np.frombuffer(raw, dtype=np.uint8).reshape(-1, 12))
    return out


async def _sweep(
    storage: Storage,
    prefix: str,
    reachable: ChunkIdSet,
    cutoff: datetime,
    dry_run: bool,
    bar: Progress,
) -> tuple[int, int]:
    """Delete unreachable objects under ``prefix`` older than the cutoff: (count, bytes)."""
    count = 0
    size = 0
    batch: list[ObjectInfo] = []
    doomed: list[str] = []

    async def flush_deletes(force: bool) -> None:
        nonlocal doomed
        while doomed and (force or len(doomed) >= _DELETE_BATCH):
            head, doomed = doomed[:_DELETE_BATCH], doomed[_DELETE_BATCH:]
            if not dry_run:
                # object stores cannot count deletions without a HEAD per key: count ourselves
                await storage.delete_many(head, exact_count=False)

    async def judge() -> None:
        nonlocal batch, count, size
        if not batch:
            return
        ids, valid = decode_names([info.key[len(prefix) :] for info in batch])
        keep = reachable.contains(ChunkIdSet.as_s12(ids)) | ~valid
        for info, kept in zip(batch, keep.tolist(), strict=True):
            if kept or info.created_at is None or info.created_at >= cutoff:
                continue
            doomed.append(info.key)
            count += 1
            size += info.size_bytes
        bar.update(len(batch))
        batch = []
        await flush_deletes(False)

    async for info in storage.list_prefix(prefix):
        batch.append(info)
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
    cutoff_us = us_of(cutoff)
    storage = repo.storage
    if storage.read_only and not dry_run:
        raise ReadOnlyError("cannot garbage-collect on read-only storage", ErrorKind.READ_ONLY_STORAGE)
    state = repo.state
    young_files = await _young_snapshot_files(storage, cutoff)
    info: RepoInfo | None = None
    if isinstance(state, RepoInfoRefs):
        info = await state.info()
        if info.status.availability == Availability.READ_ONLY:
            raise ReadOnlyError("repository status is read-only", ErrorKind.READ_ONLY_REPOSITORY)
        kept = kept_in_repo_info(info, cutoff_us)
        removed = set(info.snapshots) - kept
        start, follow = sorted({*kept, *young_files}, key=bytes), False
    else:
        branches = await state.branches()
        tags = await state.tags()
        start, follow = [*branches.values(), *tags.values(), *young_files], True
        removed = set()
    # reachability first: a failure here happens before anything is written or deleted
    reachable = await find_reachable(
        storage,
        start,
        follow_parents=follow,
        max_snapshots_in_memory=max_snapshots_in_memory,
        max_compressed_manifest_mem_bytes=max_compressed_manifest_mem_bytes,
        max_concurrent_manifest_fetches=max_concurrent_manifest_fetches,
        show_progress=show_progress,
    )
    keep_snapshots = set(reachable.snapshots)
    keep_tx_logs = set(reachable.snapshots)
    if info is not None:
        assert isinstance(state, RepoInfoRefs)

        def mutate(fresh: RepoInfo) -> GCRan:
            revived = removed & kept_in_repo_info(fresh, cutoff_us)
            if revived:
                raise ConflictError(
                    message="the repository changed during garbage collection (a ref now points "
                    f"into {len(revived)} snapshot(s) about to be deleted); nothing was deleted, retry",
                    kind=ErrorKind.REPO_INFO_UPDATED,
                )
            drop_snapshots(fresh, removed & set(fresh.snapshots))
            return GCRan()

        if dry_run:
            final = _copy_info(info)
            mutate(final)
        else:
            final = await state.update(mutate)
        keep_snapshots.update(final.snapshots)
        keep_tx_logs.update(final.snapshots)
        for entry in final.snapshots.values():
            keep_tx_logs.update(entry.pruned_ancestor_tx_logs or ())
    result = GCResult()
    with Progress("gc: listing", None, enabled=show_progress) as bar:
        result.snapshots_deleted, b1 = await _sweep(
            storage, "snapshots/", _id_set(keep_snapshots), cutoff, dry_run, bar
        )
        result.transaction_logs_deleted, b2 = await _sweep(
            storage, "transactions/", _id_set(keep_tx_logs), cutoff, dry_run, bar
        )
        result.manifests_deleted, b3 = await _sweep(
            storage, "manifests/", _id_set(reachable.manifests), cutoff, dry_run, bar
        )
        result.chunks_deleted, b4 = await _sweep(storage, "chunks/", reachable.chunks, cutoff, dry_run, bar)
    result.bytes_deleted = b1 + b2 + b3 + b4
    return result
