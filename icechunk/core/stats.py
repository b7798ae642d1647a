"""Storage used by the chunks reachable from branches and tags (API.md §2.7, §10).

Every snapshot in the history of a branch or tag is visited once and every manifest they use
is read once (streamed, bounded like garbage collection).  A chunk is counted once:

- native refs by chunk id (its ``length``),
- virtual refs by ``(location, offset, length)``,
- inline refs once per manifest that holds them (inline bytes live in the manifest).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icechunk.core.reachability import (
    ChunkIdSet,
    add_manifests_of,
    iter_manifests,
    iter_snapshots,
    ref_tips,
    snapshot_graph,
)
from icechunk.core.repo_state import RepoInfoRefs
from icechunk.format.ids import ManifestId
from icechunk.format.manifest import RefKind

__all__ = ["ChunkStats", "chunk_storage_stats"]

_COMPACT_AT = 2_000_000


@dataclass(frozen=True)
class ChunkStats:
    native_bytes: int = 0
    virtual_bytes: int = 0
    inlined_bytes: int = 0


class _Unique:
    """Rows ``(key..., length)`` de-duplicated on the key columns; sum of lengths of uniques."""

    def __init__(self) -> None:
        self._keys: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []
        self._rows = 0

    def add(self, keys: np.ndarray, lengths: np.ndarray) -> None:
        if len(keys):
            self._keys.append(keys)
            self._lengths.append(lengths.astype(np.uint64))
            self._rows += len(keys)
            if self._rows >= _COMPACT_AT:
                self._compact()

    def _compact(self) -> None:
        if len(self._keys) <= 1:
            return
        keys = np.concatenate(self._keys)
        lengths = np.concatenate(self._lengths)
        _, first = np.unique(keys, axis=0 if keys.ndim > 1 else None, return_index=True)
        self._keys = [keys[first]]
        self._lengths = [lengths[first]]
        self._rows = len(first)

    def total(self) -> int:
        self._compact()
        if not self._keys:
            return 0
        if len(self._keys) == 1:
            keys, lengths = self._keys[0], self._lengths[0]
            _, first = np.unique(keys, axis=0 if keys.ndim > 1 else None, return_index=True)
            return int(lengths[first].sum())
        return 0  # pragma: no cover - _compact leaves one part


async def chunk_storage_stats(
    repo: object,
    *,
    max_snapshots_in_memory: int = 50,
    max_compressed_manifest_mem_bytes: int = 512 * 1024 * 1024,
    max_concurrent_manifest_fetches: int = 500,
) -> ChunkStats:
    """Native, virtual and inline bytes of the chunks reachable from branches and tags."""
    from icechunk.core.repository import RepoEngine

    assert isinstance(repo, RepoEngine)
    storage = repo.storage
    branches, tags = await ref_tips(repo.state)
    tips = [*branches.values(), *tags.values()]
    if isinstance(repo.state, RepoInfoRefs):
        ids = list(await snapshot_graph(repo.state, storage, tips))
        follow = False
    else:
        ids, follow = tips, True
    manifests: dict[ManifestId, int] = {}
    async for snap in iter_snapshots(storage, ids, follow_parents=follow, max_in_memory=max_snapshots_in_memory):
        add_manifests_of(snap, manifests)
    native = _Unique()
    virtual = _Unique()
    inlined = 0
    async for manifest in iter_manifests(
        storage,
        manifests,
        max_concurrent=max_concurrent_manifest_fetches,
        max_bytes=max_compressed_manifest_mem_bytes,
    ):
        for table in manifest.arrays:
            kind = table.kind
            mask = kind == RefKind.NATIVE
            if mask.any():
                native.add(ChunkIdSet.as_s12(table.chunk_id[mask]), table.length[mask])
            mask = kind == RefKind.VIRTUAL
            if mask.any():
                locations = table.location[mask]
                hashes = np.fromiter((hash(loc) for loc in locations), dtype=np.int64, count=len(locations))
                key = np.stack(
                    [hashes.view(np.uint64), table.offset[mask], table.length[mask]], axis=1
                )
                virtual.add(key, table.length[mask])
            mask = kind == RefKind.INLINE
            if mask.any():
                inlined += sum(len(b) for b in table.inline[mask] if b is not None)
    return ChunkStats(native.total(), virtual.total(), inlined)
