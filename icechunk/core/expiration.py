"""Snapshot expiration (API.md §2.7, FORMAT.md §5.13, §3.7).

The plan is a pure function of the snapshot graph and the refs, so the spec-2 path can
recompute it inside the repo-info update loop (it runs again after every lost race).

Rules (checked against the reference implementation, Icechunk 2.2):

- Refs are visited tags first, then branches, each in lexicographic order.  A ref whose tip
  was written strictly before the cutoff is deleted when ``delete_expired_*`` asks for it —
  never ``main``, never a ref pointing at a root.  Every other tip is kept.
- The *heads* are the kept tips, plus (spec 2) every listed snapshot written at or after the
  cutoff (detached snapshots of forks and flushes in progress are kept), plus the roots.
- Walking a head's history, a parent that is young, a kept tip or a root stays.  The first
  parent that is old and kept by no ref leaves the history together with everything older:
  the snapshot is re-parented onto the root, and its ``pruned_ancestor_tx_logs`` receives,
  oldest first, each removed ancestor's own list followed by its id.
- Every snapshot no head keeps is expired: spec 2 drops it from the snapshot list.  The
  returned ids are exactly those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from icechunk._errors import ErrorKind, FormatError
from icechunk.core.reachability import SnapshotGraphNode, snapshot_graph
from icechunk.core.repo_state import LegacyRefs, RepoInfoRefs, RepoState
from icechunk.format import refs as refs_format
from icechunk.format.ids import SnapshotId
from icechunk.format.repo_info import ExpirationRan, RepoInfo

__all__ = ["ExpirationPlan", "expire_snapshots", "plan_expiration"]


@dataclass
class ExpirationPlan:
    """What an expiration changes.

    Attributes
    ----------
    reparented
        Kept snapshot -> ``(new parent, new pruned_ancestor_tx_logs)``.
    retained
        Every snapshot some head keeps.
    expired
        Snapshots no head keeps (dropped from the spec-2 snapshot list).
    deleted_branches, deleted_tags
        Refs removed because their tip expired.
    released
        Every snapshot cut off some history, plus the tips of deleted refs, whether or not
        another ref still keeps it (what spec 1 reports, as the reference does).
    """

    reparented: dict[SnapshotId, tuple[SnapshotId | None, tuple[SnapshotId, ...]]] = field(
        default_factory=dict
    )
    retained: set[SnapshotId] = field(default_factory=set)
    expired: set[SnapshotId] = field(default_factory=set)
    deleted_branches: list[str] = field(default_factory=list)
    deleted_tags: list[str] = field(default_factory=list)
    released: set[SnapshotId] = field(default_factory=set)


def plan_expiration(
    graph: Mapping[SnapshotId, SnapshotGraphNode],
    branches: Mapping[str, SnapshotId],
    tags: Mapping[str, SnapshotId],
    cutoff_us: int,
    *,
    delete_expired_branches: bool = False,
    delete_expired_tags: bool = False,
    young_snapshots_are_heads: bool = True,
) -> ExpirationPlan:
    """Compute an expiration (see the module docstring for the rules).

    Parameters
    ----------
    graph
        Every snapshot to consider, with its parent and time (every parent must be present).
    cutoff_us
        Exclusive bound: snapshots with ``flushed_at < cutoff_us`` expire.
    young_snapshots_are_heads
        Spec 2: also keep every snapshot of ``graph`` at or after the cutoff.
    """
    plan = ExpirationPlan()
    roots = {sid for sid, node in graph.items() if node.parent is None}

    def old(sid: SnapshotId) -> bool:
        return graph[sid].flushed_at < cutoff_us and sid not in roots

    heads: list[SnapshotId] = []
    for kind, refs, delete in (("tag", tags, delete_expired_tags), ("branch", branches, delete_expired_branches)):
        for name in sorted(refs, key=lambda n: n.encode("utf-8")):
            tip = refs[name]
            if tip not in graph:
                raise FormatError(f"{kind} {name!r} points to unknown snapshot {tip}", ErrorKind.SNAPSHOT_NOT_FOUND)
            if delete and old(tip) and not (kind == "branch" and name == "main"):
                (plan.deleted_tags if kind == "tag" else plan.deleted_branches).append(name)
                plan.released.add(tip)
                continue
            heads.append(tip)
    kept_tips = set(heads)
    if young_snapshots_are_heads:
        heads.extend(
            sid for sid, node in sorted(graph.items(), key=lambda kv: bytes(kv[0]))
            if node.flushed_at >= cutoff_us
        )
    heads.extend(sorted(roots, key=bytes))

    def node_of(sid: SnapshotId) -> SnapshotGraphNode:
        found = graph.get(sid)
        if found is None:
            raise FormatError(f"snapshot {sid} is missing from the history", ErrorKind.SNAPSHOT_NOT_FOUND)
        return found

    visited: set[SnapshotId] = set()
    for head in heads:
        current: SnapshotId | None = head
        while current is not None and current not in visited:
            visited.add(current)
            node = graph[current]
            parent = node.parent
            if parent is None or not old(parent) or parent in kept_tips:
                current = parent  # a young ancestor, a kept tip or the root: history goes on
                continue
            # the first old ancestor that no ref keeps: it and everything older leave this history
            skipped: list[SnapshotId] = []
            while parent is not None and node_of(parent).parent is not None:
                skipped.append(parent)
                parent = node_of(parent).parent
            pruned: list[SnapshotId] = []
            for sid in reversed(skipped):  # oldest first
                pruned.extend(graph[sid].pruned)
                pruned.append(sid)
            pruned.extend(node.pruned)
            plan.reparented[current] = (parent, tuple(pruned))
            plan.released.update(skipped)
            current = parent
    plan.retained = visited
    plan.expired = {sid for sid in graph if sid not in visited}
    return plan


def apply_to_repo_info(info: RepoInfo, plan: ExpirationPlan) -> None:
    """Edit a (copied) repo info in place: drop, re-parent, delete refs (spec 2)."""
    for sid in [s for s in info.snapshots if s not in plan.retained]:
        del info.snapshots[sid]
    for sid, (parent, pruned) in plan.reparented.items():
        info.snapshots[sid] = replace(
            info.snapshots[sid], parent_id=parent, pruned_ancestor_tx_logs=pruned or None
        )
    for name in plan.deleted_branches:
        info.branches.pop(name, None)
    for name in plan.deleted_tags:
        info.tags.pop(name, None)
        info.deleted_tags.add(name)


def _graph_of_info(info: RepoInfo) -> dict[SnapshotId, SnapshotGraphNode]:
    graph = {
        sid: SnapshotGraphNode(e.parent_id, e.flushed_at, tuple(e.pruned_ancestor_tx_logs or ()))
        for sid, e in info.snapshots.items()
    }
    for sid, node in graph.items():
        if node.parent is not None and node.parent not in graph:
            raise FormatError(
                f"the parent {node.parent} of snapshot {sid} is not listed", ErrorKind.SNAPSHOT_NOT_FOUND
            )
    return graph


async def expire_snapshots(
    state: RepoState,
    cutoff_us: int,
    *,
    delete_expired_branches: bool = False,
    delete_expired_tags: bool = False,
) -> set[SnapshotId]:
    """Expire snapshots written before ``cutoff_us``; returns the expired ids.

    Spec 2 rewrites only ``repo``, in one update logged as ``ExpirationRan``, and returns the
    snapshots dropped from the list.  Spec 1 does what Icechunk 1.x (and 2.x on spec-1
    repositories) does: it rewrites the snapshot files of re-parented snapshots with their
    new ``parent_id``, deletes (branches) or tombstones (tags) expired refs, and returns every
    snapshot cut off a history, including ones another ref still points to.
    """
    if isinstance(state, RepoInfoRefs):
        result: set[SnapshotId] = set()

        def mutate(info: RepoInfo) -> ExpirationRan:
            plan = plan_expiration(
                _graph_of_info(info),
                info.branches,
                info.tags,
                cutoff_us,
                delete_expired_branches=delete_expired_branches,
                delete_expired_tags=delete_expired_tags,
            )
            apply_to_repo_info(info, plan)
            result.clear()
            result.update(plan.expired)
            return ExpirationRan()

        await state.update(mutate)
        return result
    assert isinstance(state, LegacyRefs)
    return await _expire_spec1(
        state, cutoff_us, delete_expired_branches=delete_expired_branches, delete_expired_tags=delete_expired_tags
    )


async def _expire_spec1(
    state: LegacyRefs, cutoff_us: int, *, delete_expired_branches: bool, delete_expired_tags: bool
) -> set[SnapshotId]:
    from icechunk.core.assets import read_snapshot

    storage = state.assets.storage
    branches = await state.branches()
    tags = await state.tags()
    graph = await snapshot_graph(state, storage, [*branches.values(), *tags.values()])
    plan = plan_expiration(
        graph,
        branches,
        tags,
        cutoff_us,
        delete_expired_branches=delete_expired_branches,
        delete_expired_tags=delete_expired_tags,
        young_snapshots_are_heads=False,
    )
    # re-parent first: a crash half-way leaves shorter histories, never dangling refs
    for sid, (parent, _pruned) in sorted(plan.reparented.items(), key=lambda kv: bytes(kv[0])):
        snap = await read_snapshot(storage, sid)
        await state.assets.write_snapshot(replace(snap, parent_id=parent))
    for name in plan.deleted_branches:
        await storage.delete_many([refs_format.branch_key(name)])
    for name in plan.deleted_tags:
        await storage.put(refs_format.tag_tombstone_key(name), b"", "create")
    # like the reference on spec 1: everything cut off a history (even if a ref still keeps it)
    return plan.released | plan.expired
