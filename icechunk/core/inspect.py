"""Debug views of repository objects as plain dicts (API.md §2.6; structure not stable).

The top-level keys are the documented ones; the inner layout follows what the reference
implementation (Icechunk 2.2) returns: a ``header`` describing the file, ISO-8601 UTC times
ending in ``Z``, ids in their Crockford form, ops-log entries as
``{"update_type": {"type": "NewCommitUpdate", ...}, "updated_at": ..., "backup_path": ...}``.
"""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from icechunk._errors import ErrorKind, SnapshotNotFoundError
from icechunk.core.repo_state import RepoInfoRefs, spec2_only
from icechunk.core.repository import RepoEngine
from icechunk.format import repo_info as ri
from icechunk.format.ids import ManifestId, ObjectId, SnapshotId
from icechunk.format.manifest import RefKind

__all__ = ["inspect_manifest", "inspect_repo_info", "inspect_snapshot", "inspect_transaction_log"]

_IMPLEMENTATION = re.compile(r"^(.*?)-(\d.*)$")


def _iso(us: int) -> str:
    moment = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _header(implementation: str | None, spec_version: int, file_type: str) -> dict[str, Any]:
    name = (implementation or "").strip()
    match = _IMPLEMENTATION.match(name)
    return {
        "written_by": name,
        "app_name": match.group(1) if match else name,
        "app_version": match.group(2) if match else "",
        "spec_version": f"{spec_version}.0",
        "file_type": file_type,
        "compression": "zstd",
    }


async def inspect_snapshot(repo: RepoEngine, sid: SnapshotId) -> dict[str, Any]:
    snap = (await repo.snapshot(sid)).snapshot
    nodes = []
    for node in snap.nodes:
        item: dict[str, Any] = {
            "id": str(node.id),
            "path": node.path,
            "node_type": "array" if node.is_array else "group",
        }
        if node.array is not None:
            names = node.array.dimension_names
            shape = []
            for axis, dim in enumerate(node.array.shape):
                entry: dict[str, Any] = {}
                if names is not None and names[axis] is not None:
                    entry["name"] = names[axis]
                entry["array_length"] = dim.array_length
                entry["num_chunks"] = dim.num_chunks
                shape.append(entry)
            item["shape"] = shape
            item["manifest_refs"] = [
                {"id": str(m.manifest_id), "extents": [list(e) for e in m.extents]}
                for m in node.array.manifests
            ]
        nodes.append(item)
    return {
        "id": str(snap.id),
        "header": _header(snap.implementation, snap.spec_version, "snapshot"),
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
    from icechunk.core.assets import keys
    from icechunk.format.header import FileType, decode_envelope

    manifest = await repo.assets.fetch_manifest(mid)
    # like the reference: the size of the (decompressed) flatbuffer
    _, payload = decode_envelope(await repo.storage.get(keys.manifest(mid)), keys.manifest(mid), FileType.MANIFEST)
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
                "num_inline": counts[RefKind.INLINE],
                "num_native": counts[RefKind.NATIVE],
                "num_virtual": counts[RefKind.VIRTUAL],
            }
        )
    return {
        "id": str(mid),
        "header": _header(manifest.implementation, manifest.spec_version, "manifest"),
        "size_bytes": len(payload),
        "num_arrays": len(manifest.arrays),
        "total_chunk_refs": manifest.num_chunk_refs,
        "total_inline": totals[RefKind.INLINE],
        "total_native": totals[RefKind.NATIVE],
        "total_virtual": totals[RefKind.VIRTUAL],
        "arrays": arrays,
        "compression": {"uses_location_compression": False, "num_compressed_refs": 0},
    }


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, ObjectId) else value


def _update(entry: ri.UpdateEntry) -> dict[str, Any]:
    kind = entry.kind
    body: dict[str, Any] = {"type": f"{type(kind).__name__}Update"}
    if isinstance(kind, ri.RepoStatusChanged):
        body["status"] = {
            "availability": kind.status.availability.name,
            "set_at": _iso(kind.status.set_at),
            "limited_availability_reason": kind.status.reason,
        }
    else:
        body.update({f.name: _plain(getattr(kind, f.name)) for f in fields(kind)})
    out: dict[str, Any] = {"update_type": body, "updated_at": _iso(entry.updated_at)}
    if entry.backup_path is not None:
        out["backup_path"] = entry.backup_path
    return out


async def inspect_repo_info(repo: RepoEngine) -> dict[str, Any]:
    info = await spec2_only(repo.state, "inspect_repo_info").info()
    snapshots = []
    for entry in sorted(info.snapshots.values(), key=lambda e: bytes(e.id)):
        item: dict[str, Any] = {"id": str(entry.id)}
        if entry.parent_id is not None:
            item["parent_id"] = str(entry.parent_id)
        item["flushed_at"] = _iso(entry.flushed_at)
        item["message"] = entry.message
        item["metadata"] = dict(entry.metadata)
        if entry.pruned_ancestor_tx_logs:
            item["pruned_ancestor_tx_logs"] = [str(s) for s in entry.pruned_ancestor_tx_logs]
        snapshots.append(item)
    return {
        "header": _header(info.implementation, 2, "repo-info"),
        "spec_version": f"{info.spec_version}.0",
        "branches": {k: str(v) for k, v in sorted(info.branches.items())},
        "tags": {k: str(v) for k, v in sorted(info.tags.items())},
        "deleted_tags": sorted(info.deleted_tags),
        "snapshots": snapshots,
        "metadata": dict(info.metadata or {}),
        "latest_updates": [_update(u) for u in info.latest_updates],
    }


async def inspect_transaction_log(repo: RepoEngine, sid: SnapshotId) -> dict[str, Any]:
    """What one commit changed, as node ids.

    When expiration re-parented the snapshot (spec 2.1 ``pruned_ancestor_tx_logs``), the
    logs of the pruned ancestors are merged in, oldest first, and a ``synthetic_composite``
    key says which logs were merged and which were missing.
    """
    from icechunk.core.commit import merge_logs

    try:
        log = await repo.transaction_log(sid)
    except SnapshotNotFoundError:
        raise SnapshotNotFoundError(f"no transaction log for snapshot {sid}", ErrorKind.SNAPSHOT_NOT_FOUND) from None
    header = _header(log.implementation, log.spec_version, "transaction-log")
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
        "header": header,
        "new_groups": ids(log.new_groups),
        "new_arrays": ids(log.new_arrays),
        "deleted_groups": ids(log.deleted_groups),
        "deleted_arrays": ids(log.deleted_arrays),
        "updated_groups": ids(log.updated_groups),
        "updated_arrays": ids(log.updated_arrays),
        "updated_chunks": [
            {"node_id": str(k), "chunks": v.tolist()} for k, v in log.updated_chunks.items()
        ],
        "moved_nodes": [
            {
                "from": m.from_path,
                "to": m.to_path,
                "node_id": str(m.node_id),
                "node_type": "array" if int(m.node_type) == 1 else "group",
            }
            for m in (log.moved_nodes or [])
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
