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

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from icechunk._errors import ErrorKind, ReadOnlyError
from icechunk.core.progress import Progress
from icechunk.core.reachability import ChunkIdSet, iter_manifests, iter_snapshots
from icechunk.core.repo_state import RepoInfoRefs
from icechunk.format.ids import ManifestId, SnapshotId
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

    result = GCResult()
    with Progress("gc: listing", None, enabled=show_progress) as bar:
        result.snapshots_deleted, b1 = await _sweep(
            storage, "snapshots/", _id_set(reachable.snapshots), cutoff, dry_run, bar
        )
        result.transaction_logs_deleted, b2 = await _sweep(
            storage, "transactions/", _id_set(reachable.transaction_logs), cutoff, dry_run, bar
        )
        result.manifests_deleted, b3 = await _sweep(
            storage, "manifests/", _id_set(reachable.manifests), cutoff, dry_run, bar
        )
        result.chunks_deleted, b4 = await _sweep(storage, "chunks/", reachable.chunks, cutoff, dry_run, bar)
    result.bytes_deleted = b1 + b2 + b3 + b4
    if not dry_run and isinstance(state, RepoInfoRefs):
        await state.update(lambda _info: GCRan())
    return result
