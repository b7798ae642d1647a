"""Upgrade a spec-1 repository to spec 2 (FORMAT.md §8.4).

Only metadata is read and only ``repo`` is written: snapshots, manifests, transaction logs
and chunks stay the spec-1 files they are.  Steps:

1. read the refs (branches, live tags, deleted tags with their old targets) and
   ``config.yaml``;
2. read the snapshots reachable from the live refs (``parent_id`` chains), prefetching the
   snapshot files ``prefetch_concurrency`` at a time;
3. build the repo info: refs, snapshot list (metadata re-encoded to FlexBuffers on write),
   status Online set at the root's time, and a synthetic ops log (below) under a
   ``RepoMigrated{1, 2}`` entry;
4. unless dry-run: create ``repo`` (create-if-absent), read it back to verify, then (when
   ``delete_unused_v1_files``) delete ``refs/branch.main/ref.json`` first (1.x clients then
   fail fast), every other object under ``refs/``, check none remain, and delete
   ``config.yaml`` (best effort).  Any failure restores the deleted ref objects and deletes
   ``repo`` again, so the spec-1 repository stays usable.

Synthetic history (oldest first, then sorted by time with collisions bumped by 1 µs so times
strictly increase): ``RepoInitialized`` at the root's time; ``NewCommit(main)`` for each
non-root snapshot of main; per other branch (by name) ``BranchCreated`` at its tip time +
1 ms and ``NewCommit(branch)`` for its snapshots not yet attributed; per live tag (by name)
``TagCreated`` at target time + 1 ms; per deleted tag ``TagCreated`` (+1 ms) and
``TagDeleted`` (+2 ms).

The persisted config is ``config.yaml`` converted to FlexBuffers with every top-level field
and the S3 store options' defaults filled in — what Icechunk 2.2 writes (checked); the
``test-repo-v2-migrated`` fixture (2.0.0-alpha.7) instead holds the runtime config merged
with storage defaults (FORMAT.md §10 item 6).  Containers whose prefix current readers
reject are kept, as the reference does.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from icechunk._errors import (
    ErrorKind,
    IcechunkError,
    NotFoundError,
    ReadOnlyError,
    SessionStateError,
    SnapshotNotFoundError,
)
from icechunk.core.assets import keys, read_snapshot
from icechunk.core.repo_state import now_us
from icechunk.format import refs as refs_format
from icechunk.format.config_yaml import decode_config_yaml
from icechunk.format.ids import SnapshotId
from icechunk.format.repo_config import REPO_CONFIG_FIELDS, encode_repo_config
from icechunk.format.repo_info import (
    Availability,
    BranchCreated,
    NewCommit,
    RepoInfo,
    RepoInitialized,
    RepoMigrated,
    RepoStatusRecord,
    SnapshotEntry,
    TagCreated,
    TagDeleted,
    UpdateEntry,
    UpdateKind,
    decode_repo_info,
    encode_repo_info,
)
from icechunk.storage._abc import Storage

__all__ = ["MigrationPlan", "migrate_to_v2", "plan_migration"]

_MS = 1000  # µs


@dataclass
class MigrationPlan:
    """The new ``repo`` and the spec-1 objects it makes obsolete (with their bytes)."""

    info: RepoInfo
    ref_objects: dict[str, bytes] = field(default_factory=dict)
    has_config_yaml: bool = False


_S3_DEFAULTS: dict[str, Any] = {
    "region": None,
    "endpoint_url": None,
    "anonymous": False,
    "allow_http": False,
    "force_path_style": False,
    "network_stream_timeout_seconds": None,
    "requester_pays": False,
    "checksum_algorithm": None,
}


def complete_config(raw: dict[str, Any]) -> dict[str, Any]:
    """``config.yaml`` as the reference re-serializes it: every top-level field present and
    S3-style store options with their defaults (containers are kept as written, even those
    that current readers ignore)."""
    out = {name: raw.get(name) for name in REPO_CONFIG_FIELDS}
    out.update({k: v for k, v in raw.items() if k not in out})
    containers = out.get("virtual_chunk_containers")
    if isinstance(containers, dict):
        completed = {}
        for key, container in containers.items():
            if isinstance(container, dict) and isinstance(container.get("store"), dict):
                container = dict(container)
                store = dict(container["store"])
                for variant in ("s3", "s3_compatible", "tigris"):
                    if isinstance(store.get(variant), dict):
                        store[variant] = {**_S3_DEFAULTS, **store[variant]}
                container["store"] = store
            completed[key] = container
        out["virtual_chunk_containers"] = completed
    return out


def _fail(message: str) -> SessionStateError:
    return SessionStateError(f"cannot migrate the repository: {message}", ErrorKind.INVALID_REPOSITORY_MIGRATION)


async def _read_refs(storage: Storage) -> tuple[dict[str, bytes], refs_format.RefListing]:
    listed = [info.key async for info in storage.list_prefix(refs_format.REFS_PREFIX)]
    contents = await asyncio.gather(*(storage.get(k) for k in listed))
    objects = dict(zip(listed, contents, strict=True))
    return objects, refs_format.parse_ref_listing(listed)


def _ref_target(objects: dict[str, bytes], key: str) -> SnapshotId | None:
    data = objects.get(key)
    return None if data is None else refs_format.decode_ref(data, key)


async def _snapshot_entries(
    storage: Storage, tips: list[SnapshotId], concurrency: int
) -> dict[SnapshotId, SnapshotEntry]:
    """Entries of every snapshot reachable from ``tips`` (prefetching all snapshot files)."""
    entries: dict[SnapshotId, SnapshotEntry] = {}
    semaphore = asyncio.Semaphore(max(int(concurrency), 1))

    def entry_of(snap: Any) -> SnapshotEntry:
        return SnapshotEntry(snap.id, snap.parent_id, snap.flushed_at, snap.message, dict(snap.metadata))

    async def prefetch(sid: SnapshotId) -> None:
        async with semaphore:
            # unreachable or unreadable files are not needed; reachable ones are re-read
            with contextlib.suppress(IcechunkError):
                entries[sid] = entry_of(await read_snapshot(storage, sid))

    listed = []
    async for info in storage.list_prefix("snapshots/"):
        try:
            listed.append(SnapshotId.parse(info.key[len("snapshots/") :]))
        except ValueError:
            continue
    await asyncio.gather(*(prefetch(sid) for sid in listed))
    reachable: dict[SnapshotId, SnapshotEntry] = {}
    for tip in tips:
        current: SnapshotId | None = tip
        while current is not None and current not in reachable:
            entry = entries.get(current)
            if entry is None:
                entry = entry_of(await read_snapshot(storage, current))
            reachable[current] = entry
            current = entry.parent_id
    return reachable


def _chain(entries: dict[SnapshotId, SnapshotEntry], tip: SnapshotId) -> list[SnapshotId]:
    """Ancestry of ``tip``, oldest first (root included)."""
    out = []
    current: SnapshotId | None = tip
    while current is not None:
        out.append(current)
        current = entries[current].parent_id
    out.reverse()
    return out


def synthetic_history(
    entries: dict[SnapshotId, SnapshotEntry],
    branches: dict[str, SnapshotId],
    tags: dict[str, SnapshotId],
    deleted_tags: dict[str, SnapshotId | None],
    deleted_tag_times: dict[str, int],
) -> list[UpdateEntry]:
    """The reconstructed ops log, **newest first** (see the module docstring)."""
    main_chain = _chain(entries, branches["main"])
    root = main_chain[0]
    events: list[tuple[int, UpdateKind]] = [(entries[root].flushed_at, RepoInitialized())]
    attributed = {root}
    for sid in main_chain[1:]:
        events.append((entries[sid].flushed_at, NewCommit("main", sid)))
        attributed.add(sid)
    for name in sorted((b for b in branches if b != "main"), key=lambda n: n.encode()):
        tip = branches[name]
        events.append((entries[tip].flushed_at + _MS, BranchCreated(name)))
        for sid in _chain(entries, tip):
            if sid not in attributed:
                events.append((entries[sid].flushed_at, NewCommit(name, sid)))
                attributed.add(sid)
    for name in sorted(tags, key=lambda n: n.encode()):
        events.append((entries[tags[name]].flushed_at + _MS, TagCreated(name)))
    for name in sorted(deleted_tags, key=lambda n: n.encode()):
        target = deleted_tags[name]
        when = deleted_tag_times.get(name, entries[root].flushed_at)
        events.append((when + _MS, TagCreated(name)))
        if target is not None:
            events.append((when + 2 * _MS, TagDeleted(name, target)))
    events.sort(key=lambda e: e[0])  # stable: generation order breaks ties
    out: list[UpdateEntry] = []
    previous = -1
    for when, kind in events:
        when = max(when, previous + 1)
        out.append(UpdateEntry(kind, when))
        previous = when
    out.reverse()
    return out


async def plan_migration(storage: Storage, *, prefetch_concurrency: int | None = None) -> MigrationPlan:
    """Read the spec-1 repository and build its spec-2 ``repo`` (nothing is written)."""
    from icechunk.core.repository import detect_spec_version

    version = await detect_spec_version(storage)
    if version is None:
        raise _fail("there is no repository at this location")
    if version != 1:
        raise _fail(f"the repository is already spec {version}")
    objects, listing = await _read_refs(storage)
    branches = {n: t for n in listing.branches if (t := _ref_target(objects, refs_format.branch_key(n)))}
    tags = {n: t for n in listing.tags if (t := _ref_target(objects, refs_format.tag_key(n)))}
    deleted = {n: _ref_target(objects, refs_format.tag_key(n)) for n in listing.deleted_tags}
    if "main" not in branches:
        raise _fail("the branch 'main' is missing")
    entries = await _snapshot_entries(
        storage, [*branches.values(), *tags.values()], 64 if prefetch_concurrency is None else prefetch_concurrency
    )
    deleted_times: dict[str, int] = {}
    for name, target in deleted.items():
        if target is None:
            continue
        if target in entries:
            deleted_times[name] = entries[target].flushed_at
        else:
            with contextlib.suppress(SnapshotNotFoundError):
                deleted_times[name] = (await read_snapshot(storage, target)).flushed_at
    history = synthetic_history(entries, branches, tags, deleted, deleted_times)
    root = _chain(entries, branches["main"])[0]
    config = None
    has_yaml = False
    try:
        raw = decode_config_yaml(await storage.get(keys.CONFIG_YAML))
        has_yaml = True
        config = encode_repo_config(complete_config(raw))
    except NotFoundError:
        pass
    migrated_at = max(now_us(), history[0].updated_at + 1)
    info = RepoInfo(
        tags=tags,
        branches=branches,
        deleted_tags=set(deleted),
        snapshots=entries,
        status=RepoStatusRecord(Availability.ONLINE, entries[root].flushed_at),
        latest_updates=[UpdateEntry(RepoMigrated(1, 2), migrated_at), *history],
        metadata={},
        config=config,
    )
    return MigrationPlan(info, objects, has_yaml)


async def migrate_to_v2(
    storage: Storage,
    *,
    dry_run: bool,
    delete_unused_v1_files: bool = True,
    prefetch_concurrency: int | None = None,
    compression_level: int = 3,
) -> MigrationPlan:
    """Migrate the spec-1 repository in ``storage`` (see the module docstring).

    Raises
    ------
    SessionStateError
        (``invalid-repository-migration``) no spec-1 repository here, ``main`` missing, the
        written ``repo`` does not read back, or refs appeared during the migration.
    ReadOnlyError
        On read-only storage.
    """
    if storage.read_only and not dry_run:
        raise ReadOnlyError("cannot migrate a repository on read-only storage", ErrorKind.READ_ONLY_STORAGE)
    plan = await plan_migration(storage, prefetch_concurrency=prefetch_concurrency)
    data = encode_repo_info(plan.info, compression_level=compression_level)
    if dry_run:
        return plan
    if not (await storage.put(keys.REPO, data, "create")).ok:
        raise _fail("a 'repo' object already exists (concurrent migration?)")
    deleted: list[str] = []
    try:
        written = decode_repo_info(await storage.get(keys.REPO), keys.REPO)
        if (
            written.branches != plan.info.branches
            or written.tags != plan.info.tags
            or set(written.snapshots) != set(plan.info.snapshots)
        ):
            raise _fail("the written repo object does not read back identically")
        if delete_unused_v1_files:
            main_key = refs_format.branch_key("main")
            await storage.delete_many([main_key])
            deleted.append(main_key)
            others = [k for k in plan.ref_objects if k != main_key]
            if others:
                await storage.delete_many(others)
                deleted.extend(others)
            leftover = [info.key async for info in storage.list_prefix(refs_format.REFS_PREFIX)]
            if leftover:
                raise _fail(f"refs appeared during the migration: {sorted(leftover)}")
    except BaseException:
        await _rollback(storage, plan, deleted)
        raise
    if delete_unused_v1_files and plan.has_config_yaml:
        with contextlib.suppress(IcechunkError):  # best effort: spec 2 ignores config.yaml
            await storage.delete_many([keys.CONFIG_YAML])
    return plan


async def _rollback(storage: Storage, plan: MigrationPlan, deleted: list[str]) -> None:
    """Put back the deleted spec-1 ref objects, then remove ``repo``."""
    for key in deleted:
        await storage.put(key, plan.ref_objects[key], "overwrite")
    await storage.delete_many([keys.REPO])
