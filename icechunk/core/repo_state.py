"""Branches, tags and the snapshot list: spec 2 (one ``repo`` object) and spec 1 (ref files).

Both backends offer the same async vocabulary to the engine.  Every spec-2 mutation runs the
conditional-update loop of FORMAT.md §5.3: read ``repo`` with its version, apply the
mutation to a copy, back up the old bytes to ``overwritten/``, compare-and-swap the new bytes;
on a lost race re-read and re-apply (jittered exponential backoff), so concurrent writers
never lose each other's updates.  Spec-1 refs are individual JSON objects updated with a
compare-and-swap (FORMAT.md §5.12).
"""

from __future__ import annotations

import abc
import asyncio
import copy
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from icechunk._errors import (
    AlreadyExistsError,
    ConflictError,
    ErrorKind,
    FormatError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    RefNotFoundError,
    SessionStateError,
    SnapshotNotFoundError,
    StorageError,
)
from icechunk.core.assets import AssetManager, keys
from icechunk.format import refs as refs_format
from icechunk.format.ids import SnapshotId
from icechunk.format.repo_info import (
    Availability,
    BranchCreated,
    BranchDeleted,
    BranchReset,
    RepoInfo,
    SnapshotEntry,
    TagCreated,
    TagDeleted,
    UpdateKind,
    append_update,
    backup_name,
    decode_repo_info,
    peek_branch_tip,
)

__all__ = ["LegacyRefs", "RepoInfoRefs", "RepoState", "now_us"]

FLAG_MOVE_NODE, FLAG_CREATE_TAG, FLAG_DELETE_TAG = 3, 4, 5
KNOWN_FLAGS: dict[str, tuple[int, bool]] = {
    "move_node": (FLAG_MOVE_NODE, True),
    "create_tag": (FLAG_CREATE_TAG, True),
    "delete_tag": (FLAG_DELETE_TAG, True),
}


def now_us() -> int:
    """Current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def validate_ref_name(name: object, what: str = "ref") -> None:
    if not isinstance(name, str) or not name or "/" in name:
        raise InvalidInputError(
            f"invalid {what} name {name!r}: names must be non-empty and contain no '/'",
            ErrorKind.INVALID_REF_NAME,
        )


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential backoff: a few immediate retries, then growing random sleeps."""

    max_tries: int = 100
    initial_ms: int = 50
    max_ms: int = 30_000
    immediate: int = 3

    async def sleep(self, attempt: int) -> None:
        if attempt < self.immediate:
            await asyncio.sleep(0)
            return
        cap = min(self.max_ms, self.initial_ms * 2 ** (attempt - self.immediate))
        await asyncio.sleep(random.uniform(0, cap) / 1000)  # full jitter


class RepoState(abc.ABC):
    """Refs and snapshot metadata of one repository, independent of the spec version."""

    spec_version: int

    def __init__(self, assets: AssetManager, backoff: Backoff) -> None:
        self.assets = assets
        self.backoff = backoff

    # -- reads
    @abc.abstractmethod
    async def branches(self) -> dict[str, SnapshotId]: ...

    @abc.abstractmethod
    async def tags(self) -> dict[str, SnapshotId]: ...

    @abc.abstractmethod
    async def deleted_tags(self) -> set[str]: ...

    async def lookup_branch(self, name: str) -> SnapshotId:
        return branch_tip(await self.branches(), name)

    async def lookup_tag(self, name: str) -> SnapshotId:
        target = (await self.tags()).get(name)
        if target is None:
            raise RefNotFoundError(f"ref not found: tag {name!r}", ErrorKind.TAG_NOT_FOUND)
        return target

    @abc.abstractmethod
    async def snapshot_entry(self, sid: SnapshotId) -> SnapshotEntry: ...

    async def ancestry(self, sid: SnapshotId) -> AsyncIterator[SnapshotEntry]:
        """Entries from ``sid`` back to the root, newest first."""
        current: SnapshotId | None = sid
        while current is not None:
            entry = await self.snapshot_entry(current)
            yield entry
            current = entry.parent_id

    async def ancestry_batches(self, sid: SnapshotId, size: int = 256) -> AsyncIterator[list[SnapshotEntry]]:
        """:meth:`ancestry` in lists of at most ``size`` entries, each list a stretch of the chain."""
        batch: list[SnapshotEntry] = []
        async for entry in self.ancestry(sid):
            batch.append(entry)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    # -- mutations
    @abc.abstractmethod
    async def commit(
        self, branch: str, entry: SnapshotEntry, expected_parent: SnapshotId, *, amend_of: SnapshotId | None = None
    ) -> None:
        """Add ``entry`` and move ``branch`` to it if the branch still points at ``expected_parent``.

        Raises
        ------
        ConflictError
            If the branch moved.
        """

    @abc.abstractmethod
    async def add_detached(self, entry: SnapshotEntry) -> None: ...

    @abc.abstractmethod
    async def create_branch(self, name: str, sid: SnapshotId) -> None: ...

    @abc.abstractmethod
    async def reset_branch(self, name: str, sid: SnapshotId, expected: SnapshotId | None) -> None: ...

    @abc.abstractmethod
    async def delete_branch(self, name: str) -> None: ...

    @abc.abstractmethod
    async def create_tag(self, name: str, sid: SnapshotId) -> None: ...

    @abc.abstractmethod
    async def delete_tag(self, name: str) -> None: ...

    async def ensure_writable(self, *, fresh: bool = True) -> None:  # noqa: B027 - spec 1 has no status
        """Raise ReadOnlyError when the repository status forbids writes (spec 2 only).

        With ``fresh=False`` the last state read is checked (an early exit for callers whose
        write re-checks the status on a fresh read anyway, such as the update loop).
        """

    async def writable_tip(self, branch: str) -> SnapshotId:
        """The tip of ``branch`` after :meth:`ensure_writable` (one read of the state)."""
        await self.ensure_writable()
        return await self.lookup_branch(branch)

    async def peek_tip(self, branch: str, *, writable: bool = False) -> SnapshotId:
        """The tip of ``branch`` for opening a session (:meth:`writable_tip` with ``writable``)."""
        return await (self.writable_tip(branch) if writable else self.lookup_branch(branch))


# ============================================================================================
# spec 2
# ============================================================================================


class RepoInfoRefs(RepoState):
    """Spec-2 state: everything lives in the ``repo`` object."""

    spec_version = 2

    def __init__(self, assets: AssetManager, backoff: Backoff, page_size: int = 1000) -> None:
        super().__init__(assets, backoff)
        self.page_size = page_size
        self._info: RepoInfo | None = None
        # the last repo object seen (bytes, decoded): an unchanged object is not decoded again
        self._decoded: tuple[bytes, RepoInfo] | None = None

    def prime(self, data: bytes, info: RepoInfo) -> None:
        """Seed the decode cache with a repo object just read (saves decoding it again)."""
        self._decoded = (bytes(data), info)

    async def info(self, *, refresh: bool = True) -> RepoInfo:
        """The repo info (re-read from storage unless ``refresh`` is False and one is cached)."""
        if refresh or self._info is None:
            fetched = await self._fetch()
            self._info = fetched[0]
        return self._info

    async def _read(self) -> tuple[bytes, Any]:
        try:
            return await self.assets.storage.get_with_version(keys.REPO)
        except NotFoundError:
            raise _repo_object_gone() from None

    async def _read_bytes(self) -> bytes:
        """The repo object without its version (which local storage computes by hashing it)."""
        try:
            return await self.assets.storage.get(keys.REPO)
        except NotFoundError:
            raise _repo_object_gone() from None

    def _last_decoded(self, data: bytes) -> RepoInfo | None:
        """The decoded info of ``data`` when it is the repo object last seen."""
        cached = self._decoded
        return cached[1] if cached is not None and cached[0] == data else None

    async def _fetch(self) -> tuple[RepoInfo, bytes, Any]:
        data, version = await self._read()
        # decoded infos are never mutated in place (``update`` edits a copy), so one is shared
        known = self._last_decoded(data)
        if known is not None:
            return known, data, version
        previous = self._decoded[1] if self._decoded is not None else None
        info = decode_repo_info(data, keys.REPO, previous=previous)
        self._decoded = (bytes(data), info)
        return info, data, version

    async def branches(self) -> dict[str, SnapshotId]:
        return dict((await self.info()).branches)

    async def tags(self) -> dict[str, SnapshotId]:
        return dict((await self.info()).tags)

    async def deleted_tags(self) -> set[str]:
        return set((await self.info()).deleted_tags)

    async def snapshot_entry(self, sid: SnapshotId) -> SnapshotEntry:
        info = self._info if self._info is not None and sid in self._info.snapshots else await self.info()
        entry = info.snapshots.get(sid)
        if entry is None:
            raise SnapshotNotFoundError(f"snapshot {sid} not found", ErrorKind.SNAPSHOT_NOT_FOUND)
        return entry

    async def ancestry(self, sid: SnapshotId) -> AsyncIterator[SnapshotEntry]:
        for entry in _walk(await self.info(), sid):
            yield entry

    async def ancestry_batches(self, sid: SnapshotId, size: int = 256) -> AsyncIterator[list[SnapshotEntry]]:
        yield list(_walk(await self.info(), sid))  # the whole history is in memory already

    async def ensure_writable(self, *, fresh: bool = True) -> None:
        _require_writable(await self.info(refresh=fresh))

    async def writable_tip(self, branch: str) -> SnapshotId:
        return await self.peek_tip(branch, writable=True)

    async def peek_tip(self, branch: str, *, writable: bool = False) -> SnapshotId:
        """The tip of ``branch`` from a fresh read; a repo object that changed is not decoded
        (opening a session needs the tip alone, and ``peek_branch_tip`` reads it directly,
        whatever the length of the history).

        Raises
        ------
        RefNotFoundError
            When the branch does not exist.
        ReadOnlyError
            With ``writable``, when the repository status is read-only.
        """
        data = await self._read_bytes()  # no version: nothing is written from this read
        known = self._last_decoded(data)
        if known is not None:
            self._info = known
            if writable:
                _require_writable(known)
            return branch_tip(known.branches, branch)
        tip, availability = peek_branch_tip(data, branch, keys.REPO)
        if writable:
            _require_available(availability)
        if tip is None:
            raise _no_branch(branch)
        return tip

    # -- the conditional update loop ----------------------------------------------------------

    async def update(
        self,
        mutate: Callable[[RepoInfo], UpdateKind | None],
        *,
        allow_when_read_only: bool = False,
    ) -> RepoInfo:
        """Apply ``mutate`` to a fresh copy of the repo info and write it conditionally.

        ``mutate`` edits the copy in place and returns the ops-log entry to record (None to
        leave the log untouched).  It runs again after every lost race, so it must validate
        against the info it receives (raising ends the loop).
        """
        storage = self.assets.storage
        for attempt in range(self.backoff.max_tries):
            info, old_bytes, version = await self._fetch()
            if not allow_when_read_only:
                _require_writable(info)
            new = _copy_info(info)
            kind = mutate(new)
            if kind is None:
                encoded = self.assets.encode_repo_info(new)
                result = await storage.put(keys.REPO, encoded, version)
            else:
                newest = info.latest_updates[0].updated_at if info.latest_updates else 0
                backup = backup_name(now_us() // 1000, os.urandom(12))
                new = append_update(new, kind, max(now_us(), newest + 1), backup, self.page_size)
                encoded = self.assets.encode_repo_info(new)
                # the old bytes are kept, under the name its newest entry now points to
                result = await storage.put_with_backup(
                    keys.REPO, encoded, version, keys.overwritten(backup), old_bytes
                )
            if result.ok:
                self._info = new
                self._decoded = (encoded, new)
                return new
            await self.backoff.sleep(attempt)
        raise ConflictError(
            message="could not update the repository: too many concurrent updates",
            kind=ErrorKind.UPDATE_ATTEMPTS_EXHAUSTED,
        )

    # -- mutations ----------------------------------------------------------------------------

    async def commit(
        self, branch: str, entry: SnapshotEntry, expected_parent: SnapshotId, *, amend_of: SnapshotId | None = None
    ) -> None:
        from icechunk.format.repo_info import CommitAmended, NewCommit

        def mutate(info: RepoInfo) -> UpdateKind:
            tip = branch_tip(info.branches, branch)
            if tip != expected_parent:
                raise ConflictError(str(expected_parent), str(tip))
            if entry.id in info.snapshots:
                raise FormatError(f"snapshot id {entry.id} already exists", ErrorKind.DUPLICATE_SNAPSHOT_ID)
            info.snapshots[entry.id] = entry
            info.branches[branch] = entry.id
            if amend_of is not None:
                return CommitAmended(branch, amend_of, entry.id)
            return NewCommit(branch, entry.id)

        await self.update(mutate)

    async def add_detached(self, entry: SnapshotEntry) -> None:
        from icechunk.format.repo_info import NewDetachedSnapshot

        def mutate(info: RepoInfo) -> UpdateKind:
            info.snapshots[entry.id] = entry
            return NewDetachedSnapshot(entry.id)

        await self.update(mutate)

    async def create_branch(self, name: str, sid: SnapshotId) -> None:
        validate_ref_name(name, "branch")

        def mutate(info: RepoInfo) -> UpdateKind:
            if name in info.branches:
                raise AlreadyExistsError(f"branch {name!r} already exists", ErrorKind.BRANCH_ALREADY_EXISTS)
            _require_snapshot(info, sid)
            info.branches[name] = sid
            return BranchCreated(name)

        await self.update(mutate)

    async def reset_branch(self, name: str, sid: SnapshotId, expected: SnapshotId | None) -> None:
        def mutate(info: RepoInfo) -> UpdateKind:
            tip = branch_tip(info.branches, name)
            if expected is not None and tip != expected:
                raise ConflictError(
                    str(expected), str(tip),
                    message=f"branch update conflict: branch {name!r} is at {tip}, expected {expected}",
                    kind=ErrorKind.BRANCH_UPDATE_CONFLICT,
                )
            _require_snapshot(info, sid)
            info.branches[name] = sid
            return BranchReset(name, tip)

        await self.update(mutate)

    async def delete_branch(self, name: str) -> None:
        if name == "main":
            raise SessionStateError("cannot delete branch 'main'", ErrorKind.CANNOT_DELETE_MAIN)

        def mutate(info: RepoInfo) -> UpdateKind:
            tip = branch_tip(info.branches, name)
            del info.branches[name]
            return BranchDeleted(name, tip)

        await self.update(mutate)

    async def create_tag(self, name: str, sid: SnapshotId) -> None:
        validate_ref_name(name, "tag")

        def mutate(info: RepoInfo) -> UpdateKind:
            _require_flag(info, "create_tag")
            if name in info.tags:
                raise AlreadyExistsError(f"tag {name!r} already exists", ErrorKind.TAG_ALREADY_EXISTS)
            if name in info.deleted_tags:
                raise AlreadyExistsError(
                    f"tag {name!r} was deleted and can never be re-created",
                    ErrorKind.TAG_PREVIOUSLY_DELETED,
                )
            _require_snapshot(info, sid)
            info.tags[name] = sid
            return TagCreated(name)

        await self.update(mutate)

    async def delete_tag(self, name: str) -> None:
        def mutate(info: RepoInfo) -> UpdateKind:
            _require_flag(info, "delete_tag")
            target = info.tags.pop(name, None)
            if target is None:
                raise RefNotFoundError(f"ref not found: tag {name!r}", ErrorKind.TAG_NOT_FOUND)
            info.deleted_tags.add(name)
            return TagDeleted(name, target)

        await self.update(mutate)


def _copy_info(info: RepoInfo) -> RepoInfo:
    new = copy.copy(info)
    new.tags = dict(info.tags)
    new.branches = dict(info.branches)
    new.deleted_tags = set(info.deleted_tags)
    new.snapshots = dict(info.snapshots)
    new.latest_updates = list(info.latest_updates)
    new.metadata = dict(info.metadata) if info.metadata is not None else None
    return new


def _walk(info: RepoInfo, sid: SnapshotId) -> Iterator[SnapshotEntry]:
    """Entries of ``info`` from ``sid`` back to the root, newest first."""
    _require_snapshot(info, sid)
    snapshots = info.snapshots
    current: SnapshotId | None = sid
    while current is not None:
        entry = snapshots[current]
        yield entry
        current = entry.parent_id


def branch_tip(branches: dict[str, SnapshotId], name: str) -> SnapshotId:
    """The snapshot ``branches`` gives for ``name``; RefNotFoundError when there is none."""
    tip = branches.get(name)
    if tip is None:
        raise _no_branch(name)
    return tip


def _repo_object_gone() -> StorageError:
    return StorageError("the repo object disappeared", ErrorKind.OBJECT_NOT_FOUND)


def _no_branch(name: str) -> RefNotFoundError:
    return RefNotFoundError(f"ref not found: branch {name!r}", ErrorKind.BRANCH_NOT_FOUND)


def _require_writable(info: RepoInfo) -> None:
    _require_available(info.status.availability)


def _require_available(availability: Availability) -> None:
    if availability == Availability.READ_ONLY:
        raise ReadOnlyError("repository status is read-only", ErrorKind.READ_ONLY_REPOSITORY)


def _require_snapshot(info: RepoInfo, sid: SnapshotId) -> None:
    if sid not in info.snapshots:
        raise SnapshotNotFoundError(f"snapshot {sid} not found", ErrorKind.SNAPSHOT_NOT_FOUND)


def flag_enabled(info: RepoInfo, name: str) -> bool:
    flag_id, default = KNOWN_FLAGS[name]
    if flag_id in (info.enabled_feature_flags or ()):
        return True
    if flag_id in (info.disabled_feature_flags or ()):
        return False
    return default


def _require_flag(info: RepoInfo, name: str) -> None:
    if not flag_enabled(info, name):
        raise SessionStateError(
            f"feature flag {name!r} is disabled in this repository", ErrorKind.FEATURE_FLAG_DISABLED
        )


# ============================================================================================
# spec 1
# ============================================================================================


class LegacyRefs(RepoState):
    """Spec-1 state: one JSON object per ref, parents inside snapshot files."""

    spec_version = 1

    async def _list_refs(self) -> tuple[dict[str, SnapshotId], dict[str, SnapshotId], set[str]]:
        listed = [info.key async for info in self.assets.storage.list_prefix("refs/")]
        listing = refs_format.parse_ref_listing(listed)
        branch_names, tag_names, deleted = sorted(listing.branches), sorted(listing.tags), listing.deleted_tags

        async def read(key: str) -> SnapshotId | None:
            try:
                return refs_format.decode_ref(await self.assets.storage.get(key), key)
            except NotFoundError:
                return None

        branch_ids = await asyncio.gather(*(read(refs_format.branch_key(n)) for n in branch_names))
        tag_ids = await asyncio.gather(*(read(refs_format.tag_key(n)) for n in tag_names))
        branches = {n: s for n, s in zip(branch_names, branch_ids, strict=True) if s is not None}
        tags = {n: s for n, s in zip(tag_names, tag_ids, strict=True) if s is not None}
        return branches, tags, set(deleted)

    async def branches(self) -> dict[str, SnapshotId]:
        return (await self._list_refs())[0]

    async def tags(self) -> dict[str, SnapshotId]:
        return (await self._list_refs())[1]

    async def deleted_tags(self) -> set[str]:
        return (await self._list_refs())[2]

    async def lookup_branch(self, name: str) -> SnapshotId:
        key = refs_format.branch_key(name)
        try:
            return refs_format.decode_ref(await self.assets.storage.get(key), key)
        except NotFoundError:
            raise RefNotFoundError(f"ref not found: branch {name!r}", ErrorKind.BRANCH_NOT_FOUND) from None

    async def lookup_tag(self, name: str) -> SnapshotId:
        storage = self.assets.storage
        if await storage.head(refs_format.tag_tombstone_key(name)) is not None:
            raise RefNotFoundError(f"ref not found: tag {name!r} was deleted", ErrorKind.TAG_NOT_FOUND)
        key = refs_format.tag_key(name)
        try:
            return refs_format.decode_ref(await storage.get(key), key)
        except NotFoundError:
            raise RefNotFoundError(f"ref not found: tag {name!r}", ErrorKind.TAG_NOT_FOUND) from None

    async def snapshot_entry(self, sid: SnapshotId) -> SnapshotEntry:
        snap = (await self.assets.fetch_snapshot(sid)).snapshot
        return SnapshotEntry(snap.id, snap.parent_id, snap.flushed_at, snap.message, dict(snap.metadata))

    async def commit(
        self, branch: str, entry: SnapshotEntry, expected_parent: SnapshotId, *, amend_of: SnapshotId | None = None
    ) -> None:
        if amend_of is not None:
            raise FormatError("amend needs a spec-2 repository", ErrorKind.UNSUPPORTED_SPEC_VERSION)
        key = refs_format.branch_key(branch)
        storage = self.assets.storage
        try:
            data, version = await storage.get_with_version(key)
        except NotFoundError:
            raise RefNotFoundError(f"ref not found: branch {branch!r}", ErrorKind.BRANCH_NOT_FOUND) from None
        tip = refs_format.decode_ref(data, key)
        if tip != expected_parent:
            raise ConflictError(str(expected_parent), str(tip))
        result = await storage.put(key, refs_format.encode_ref(entry.id), version)
        if not result.ok:
            tip = await self.lookup_branch(branch)
            raise ConflictError(str(expected_parent), str(tip))

    async def add_detached(self, entry: SnapshotEntry) -> None:
        """Nothing to record: a spec-1 snapshot file is self-describing."""

    async def _require_snapshot(self, sid: SnapshotId) -> None:
        if await self.assets.storage.head(keys.snapshot(sid)) is None:
            raise SnapshotNotFoundError(f"snapshot {sid} not found", ErrorKind.SNAPSHOT_NOT_FOUND)

    async def create_branch(self, name: str, sid: SnapshotId) -> None:
        validate_ref_name(name, "branch")
        await self._require_snapshot(sid)
        result = await self.assets.storage.put(refs_format.branch_key(name), refs_format.encode_ref(sid), "create")
        if not result.ok:
            raise AlreadyExistsError(f"branch {name!r} already exists", ErrorKind.BRANCH_ALREADY_EXISTS)

    async def reset_branch(self, name: str, sid: SnapshotId, expected: SnapshotId | None) -> None:
        await self._require_snapshot(sid)
        key = refs_format.branch_key(name)
        storage = self.assets.storage
        for attempt in range(self.backoff.max_tries):
            try:
                data, version = await storage.get_with_version(key)
            except NotFoundError:
                raise RefNotFoundError(f"ref not found: branch {name!r}", ErrorKind.BRANCH_NOT_FOUND) from None
            tip = refs_format.decode_ref(data, key)
            if expected is not None and tip != expected:
                raise ConflictError(
                    str(expected), str(tip),
                    message=f"branch update conflict: branch {name!r} is at {tip}, expected {expected}",
                    kind=ErrorKind.BRANCH_UPDATE_CONFLICT,
                )
            if (await storage.put(key, refs_format.encode_ref(sid), version)).ok:
                return
            await self.backoff.sleep(attempt)
        raise ConflictError(message="too many concurrent ref updates", kind=ErrorKind.UPDATE_ATTEMPTS_EXHAUSTED)

    async def delete_branch(self, name: str) -> None:
        if name == "main":
            raise SessionStateError("cannot delete branch 'main'", ErrorKind.CANNOT_DELETE_MAIN)
        await self.lookup_branch(name)
        await self.assets.storage.delete_many([refs_format.branch_key(name)])

    async def create_tag(self, name: str, sid: SnapshotId) -> None:
        validate_ref_name(name, "tag")
        storage = self.assets.storage
        if await storage.head(refs_format.tag_tombstone_key(name)) is not None:
            raise AlreadyExistsError(
                f"tag {name!r} was deleted and can never be re-created", ErrorKind.TAG_PREVIOUSLY_DELETED
            )
        await self._require_snapshot(sid)
        result = await storage.put(refs_format.tag_key(name), refs_format.encode_ref(sid), "create")
        if not result.ok:
            raise AlreadyExistsError(f"tag {name!r} already exists", ErrorKind.TAG_ALREADY_EXISTS)

    async def delete_tag(self, name: str) -> None:
        await self.lookup_tag(name)
        result = await self.assets.storage.put(refs_format.tag_tombstone_key(name), b"", "create")
        if not result.ok:
            raise RefNotFoundError(f"ref not found: tag {name!r} was already deleted", ErrorKind.TAG_NOT_FOUND)


def spec2_only(state: RepoState, what: str) -> RepoInfoRefs:
    """The spec-2 state, or a FormatError naming the operation."""
    if isinstance(state, RepoInfoRefs):
        return state
    raise FormatError(
        f"{what} needs a spec-2 repository (this one is spec 1; upgrade it first)",
        ErrorKind.UNSUPPORTED_SPEC_VERSION,
    )


__all__ += ["Backoff", "KNOWN_FLAGS", "flag_enabled", "spec2_only", "validate_ref_name"]
