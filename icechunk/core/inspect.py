"""Debug views of repository objects as plain dicts (structure not stable)."""

from __future__ import annotations

from typing import Any

from icechunk._errors import ErrorKind, SnapshotNotFoundError
from icechunk.core.repo_state import spec2_only
from icechunk.core.repository import RepoEngine
from icechunk.format.ids import ManifestId, SnapshotId
from icechunk.format.manifest import RefKind

__all__ = ["inspect_manifest", "inspect_repo_info", "inspect_snapshot", "inspect_transaction_log"]


def _iso(us: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(us / 1e6, UTC).isoformat()


async def inspect_snapshot(repo: RepoEngine, sid: SnapshotId) -> dict[str, Any]:
    snap = (await repo.snapshot(sid)).snapshot
    nodes = []
    for node in snap.nodes:
        item: dict[str, Any] = {"path": node.path, "id": str(node.id), "type": "array" if node.is_array else "group"}
        if node.array is not None:
            item["shape"] = [[d.array_length, d.num_chunks] for d in node.array.shape]
            item["dimension_names"] = list(node.array.dimension_names) if node.array.dimension_names else None
            item["manifest_refs"] = [
                {"id": str(m.manifest_id), "extents": [list(e) for e in m.extents]} for m in node.array.manifests
            ]
        nodes.append(item)
    return {
        "id": str(snap.id),
        "flushed_at": _iso(snap.flushed_at),
        "commit_message": snap.message,
        "metadata": dict(snap.metadata),
        "manifests": [
            {"id": str(m.id), "size_bytes": m.size_bytes, "num_chunk_refs": m.num_chunk_refs}
            for m in snap.manifest_files
        ],
        "nodes": nodes,
    }


async def inspect_manifest(repo: RepoEngine, mid: ManifestId) -> dict[str, Any]:
    manifest = await repo.assets.fetch_manifest(mid)
    head = await repo.storage.head(f"manifests/{mid}")
    arrays = []
    totals = {RefKind.INLINE: 0, RefKind.NATIVE: 0, RefKind.VIRTUAL: 0}
    for table in manifest.arrays:
        counts = {kind: int((table.kind == kind).sum()) for kind in totals}
        for kind, n in counts.items():
            totals[kind] += n
        arrays.append(
            {
                "node_id": str(table.node_id),
                "num_chunk_refs": len(table),
                "inline": counts[RefKind.INLINE],
                "native": counts[RefKind.NATIVE],
                "virtual": counts[RefKind.VIRTUAL],
            }
        )
    return {
        "id": str(mid),
        "size_bytes": head.size_bytes if head else None,
        "num_arrays": len(manifest.arrays),
        "total_chunk_refs": manifest.num_chunk_refs,
        "total_inline": totals[RefKind.INLINE],
        "total_native": totals[RefKind.NATIVE],
        "total_virtual": totals[RefKind.VIRTUAL],
        "arrays": arrays,
        "compression": "zstd",
    }


async def inspect_repo_info(repo: RepoEngine) -> dict[str, Any]:
    info = await spec2_only(repo.state, "inspect_repo_info").info()
    return {
        "spec_version": info.spec_version,
        "branches": {k: str(v) for k, v in sorted(info.branches.items())},
        "tags": {k: str(v) for k, v in sorted(info.tags.items())},
        "deleted_tags": sorted(info.deleted_tags),
        "snapshots": [
            {
                "id": str(e.id),
                "parent_id": str(e.parent_id) if e.parent_id else None,
                "flushed_at": _iso(e.flushed_at),
                "message": e.message,
                "metadata": dict(e.metadata),
                "pruned_ancestor_tx_logs": [str(s) for s in e.pruned_ancestor_tx_logs or ()],
            }
            for e in sorted(info.snapshots.values(), key=lambda e: bytes(e.id))
        ],
        "metadata": dict(info.metadata or {}),
        "latest_updates": [
            {"kind": type(u.kind).__name__, "updated_at": _iso(u.updated_at), "backup_path": u.backup_path}
            for u in info.latest_updates
        ],
    }


async def inspect_transaction_log(repo: RepoEngine, sid: SnapshotId) -> dict[str, Any]:
    """What one commit changed, as node ids.

    When expiration re-parented the snapshot (spec 2.1 ``pruned_ancestor_tx_logs``), the
    logs of the pruned ancestors are merged in, oldest first, and a ``synthetic_composite``
    key says which logs were merged and which were missing.
    """
    from icechunk.core.commit import merge_logs
    from icechunk.core.repo_state import RepoInfoRefs

    try:
        log = await repo.transaction_log(sid)
    except SnapshotNotFoundError:
        raise SnapshotNotFoundError(f"no transaction log for snapshot {sid}", ErrorKind.SNAPSHOT_NOT_FOUND) from None
    pruned: tuple[SnapshotId, ...] = ()
    if isinstance(repo.state, RepoInfoRefs):
        entry = (await repo.state.info()).snapshots.get(sid)
        pruned = tuple(entry.pruned_ancestor_tx_logs or ()) if entry is not None else ()
    merged: list[str] = []
    missing: list[str] = []
    if pruned:
        composite = None
        for old in pruned:
            try:
                older = await repo.transaction_log(old)
            except SnapshotNotFoundError:
                missing.append(str(old))
                continue
            composite = older if composite is None else merge_logs(sid, composite, older)
            merged.append(str(old))
        if composite is not None:
            log = merge_logs(sid, composite, log)

    def ids(values: list[Any]) -> list[str]:
        return [str(v) for v in values]

    out: dict[str, Any] = {
        "new_groups": ids(log.new_groups),
        "new_arrays": ids(log.new_arrays),
        "deleted_groups": ids(log.deleted_groups),
        "deleted_arrays": ids(log.deleted_arrays),
        "updated_groups": ids(log.updated_groups),
        "updated_arrays": ids(log.updated_arrays),
        "updated_chunks": {str(k): v.tolist() for k, v in log.updated_chunks.items()},
        "moved_nodes": [
            {"from": m.from_path, "to": m.to_path, "node_id": str(m.node_id)} for m in (log.moved_nodes or [])
        ],
    }
    if pruned:
        out["synthetic_composite"] = {
            "note": (
                "expiration removed ancestors of this snapshot; their transaction logs are "
                "merged into this view, oldest first"
            ),
            "merged_pruned_ancestor_tx_logs": merged,
            "missing_tx_logs": missing,
        }
    return out
