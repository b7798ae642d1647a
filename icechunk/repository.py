"""Repository: the entry point — create/open repositories, manage refs, make sessions."""

from __future__ import annotations

import contextlib
import html
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from icechunk._errors import ErrorKind, InvalidInputError
from icechunk._sync import AsyncCloseableIterator, BatchedIterator, blocking, run
from icechunk._types import RepoAvailability, SpecVersion
from icechunk.config import FeatureFlag, RepositoryConfig, StorageSettings
from icechunk.core.repo_state import KNOWN_FLAGS, spec2_only
from icechunk.core.repository import RepoEngine, detect_spec_version, fetch_persisted_config
from icechunk.format.ids import ManifestId, SnapshotId, crockford_encode_ids12
from icechunk.format.repo_info import Availability, SnapshotEntry
from icechunk.ops import GCSummary, Update
from icechunk.session import Session
from icechunk.snapshots import (
    AncestryGraph,
    ChunkStorageStats,
    Diff,
    ManifestFileInfo,
    SnapshotInfo,
    datetime_from_us,
    snapshot_info,
    us_from_datetime,
)
from icechunk.storage._abc import Storage

if TYPE_CHECKING:
    from icechunk.conflicts import ConflictSolver
    from icechunk.store import IcechunkStore

__all__ = ["RepoStatus", "Repository"]


class RepoStatus:
    """Repository availability: online, or read-only with an optional reason."""

    def __init__(
        self,
        availability: RepoAvailability,
        set_at: datetime | None = None,
        limited_availability_reason: str | None = None,
    ) -> None:
        from datetime import UTC

        self.availability = availability
        self.set_at = set_at or datetime.now(UTC)
        self.limited_availability_reason = limited_availability_reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RepoStatus) and (
            self.availability, self.limited_availability_reason
        ) == (other.availability, other.limited_availability_reason)

    def __repr__(self) -> str:
        return (
            f"icechunk.RepoStatus(availability={self.availability.name}, set_at={self.set_at.isoformat()!r}, "
            f"limited_availability_reason={self.limited_availability_reason!r})"
        )


RepoStatus.__module__ = "icechunk"


def _snapshot_info(entry: SnapshotEntry) -> SnapshotInfo:
    """The public form of ``entry``."""
    return _snapshot_infos([entry])[0]


def _snapshot_infos(chain: list[SnapshotEntry]) -> list[SnapshotInfo]:
    """The public form of a stretch of an ancestry chain (entry ``k + 1`` is the parent of
    entry ``k``): the id texts are encoded together, and each once."""
    texts = crockford_encode_ids12([e.id for e in chain])
    last = chain[-1].parent_id
    parents = [*texts[1:], str(last) if last is not None else None]
    return [
        snapshot_info(text, parent, datetime_from_us(e.flushed_at), e.message, dict(e.metadata))
        for e, text, parent in zip(chain, texts, parents, strict=True)
    ]


def _sid(value: str) -> SnapshotId:
    return SnapshotId.parse(value)


def _status_to_public(record: Any) -> RepoStatus:
    availability = RepoAvailability.read_only if record.availability == Availability.READ_ONLY else RepoAvailability.online
    return RepoStatus(availability, datetime_from_us(record.set_at), record.reason)


class Repository:
    """A handle on an Icechunk repository: refs, history, configuration and sessions.

    Get one with :meth:`create`, :meth:`open` or :meth:`open_or_create`.
    """

    def __init__(self, engine: RepoEngine) -> None:
        self._engine = engine

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    async def create_async(
        cls,
        storage: Storage,
        config: RepositoryConfig | None = None,
        authorize_virtual_chunk_access: dict[str, Any] | None = None,
        spec_version: SpecVersion | int | None = None,
        check_clean_root: bool = True,
    ) -> Self:
        """Create a new repository (spec 2 unless ``spec_version=1``).

        Raises
        ------
        InvalidInputError
            The location is not empty (``check_clean_root``) or is a bucket root.
        """
        engine = await RepoEngine.create(
            storage,
            config,
            spec_version=int(spec_version or SpecVersion.current()),
            check_clean_root=check_clean_root,
            authorizations=_authorizations(authorize_virtual_chunk_access),
        )
        return cls(engine)

    @classmethod
    def create(
        cls,
        storage: Storage,
        config: RepositoryConfig | None = None,
        authorize_virtual_chunk_access: dict[str, Any] | None = None,
        spec_version: SpecVersion | int | None = None,
        check_clean_root: bool = True,
    ) -> Self:
        """Blocking :meth:`create_async`."""
        return run(cls.create_async(storage, config, authorize_virtual_chunk_access, spec_version, check_clean_root))

    @classmethod
    async def open_async(
        cls,
        storage: Storage,
        config: RepositoryConfig | None = None,
        authorize_virtual_chunk_access: dict[str, Any] | None = None,
    ) -> Self:
        """Open an existing repository; ``config`` is merged over the persisted one.

        Raises
        ------
        RepositoryNotFoundError
            When there is no repository at the location.
        """
        engine = await RepoEngine.open(
            storage, config, authorizations=_authorizations(authorize_virtual_chunk_access)
        )
        return cls(engine)

    @classmethod
    def open(
        cls,
        storage: Storage,
        config: RepositoryConfig | None = None,
        authorize_virtual_chunk_access: dict[str, Any] | None = None,
    ) -> Self:
        """Blocking :meth:`open_async`."""
        return run(cls.open_async(storage, config, authorize_virtual_chunk_access))

    @classmethod
    async def open_or_create_async(
        cls,
        storage: Storage,
        config: RepositoryConfig | None = None,
        authorize_virtual_chunk_access: dict[str, Any] | None = None,
        create_version: SpecVersion | int | None = None,
        check_clean_root: bool = True,
    ) -> Self:
        """Open the repository if it exists, otherwise create it."""
        if await detect_spec_version(storage) is not None:
            return await cls.open_async(storage, config, authorize_virtual_chunk_access)
        return await cls.create_async(
            storage, config, authorize_virtual_chunk_access, create_version, check_clean_root
        )

    @classmethod
    def open_or_create(
        cls,
        storage: Storage,
        config: RepositoryConfig | None = None,
        authorize_virtual_chunk_access: dict[str, Any] | None = None,
        create_version: SpecVersion | int | None = None,
        check_clean_root: bool = True,
    ) -> Self:
        """Blocking :meth:`open_or_create_async`."""
        return run(
            cls.open_or_create_async(
                storage, config, authorize_virtual_chunk_access, create_version, check_clean_root
            )
        )

    @staticmethod
    async def exists_async(storage: Storage, storage_settings: StorageSettings | None = None) -> bool:
        """Whether a (spec 1 or 2) repository exists at the location."""
        return await detect_spec_version(storage.with_settings(storage_settings)) is not None

    @staticmethod
    def exists(storage: Storage, storage_settings: StorageSettings | None = None) -> bool:
        """Blocking :meth:`exists_async`."""
        return run(Repository.exists_async(storage, storage_settings))

    @staticmethod
    async def fetch_spec_version_async(
        storage: Storage, storage_settings: StorageSettings | None = None
    ) -> SpecVersion | None:
        """The spec version of the repository at the location, or None."""
        version = await detect_spec_version(storage.with_settings(storage_settings))
        return None if version is None else SpecVersion(version)

    @staticmethod
    def fetch_spec_version(storage: Storage, storage_settings: StorageSettings | None = None) -> SpecVersion | None:
        """Blocking :meth:`fetch_spec_version_async`."""
        return run(Repository.fetch_spec_version_async(storage, storage_settings))

    @staticmethod
    async def fetch_config_async(storage: Storage) -> RepositoryConfig | None:
        """The persisted configuration, or None when none was saved.

        Raises
        ------
        RepositoryNotFoundError
            When there is no repository at the location.
        """
        from icechunk._errors import RepositoryNotFoundError

        version = await detect_spec_version(storage)
        if version is None:
            raise RepositoryNotFoundError(
                "the repository doesn't exist at this storage location", ErrorKind.REPOSITORY_NOT_FOUND
            )
        return await fetch_persisted_config(storage, version)

    @staticmethod
    def fetch_config(storage: Storage) -> RepositoryConfig | None:
        """Blocking :meth:`fetch_config_async`."""
        return run(Repository.fetch_config_async(storage))

    # ---- configuration ----------------------------------------------------------------------

    @property
    def config(self) -> RepositoryConfig:
        """A copy of the effective configuration."""
        return self._engine.config.merge(None)

    @property
    def storage(self) -> Storage:
        """The storage this repository lives in."""
        return self._engine.storage

    @property
    def spec_version(self) -> SpecVersion:
        return SpecVersion(self._engine.spec_version)

    @property
    def authorized_virtual_container_prefixes(self) -> set[str]:
        """Url prefixes of the virtual chunk containers this handle may read."""
        return set(self._engine.authorizations)

    async def reopen_async(
        self,
        config: RepositoryConfig | None = None,
        authorize_virtual_chunk_access: dict[str, Any] | None = None,
    ) -> Self:
        """A new handle with ``config`` merged over the current one (nothing is written)."""
        auth = None if authorize_virtual_chunk_access is None else _authorizations(authorize_virtual_chunk_access)
        return type(self)(self._engine.reopen(config, auth))

    def reopen(
        self,
        config: RepositoryConfig | None = None,
        authorize_virtual_chunk_access: dict[str, Any] | None = None,
    ) -> Self:
        """Blocking :meth:`reopen_async`."""
        return run(self.reopen_async(config, authorize_virtual_chunk_access))

    async def save_config_async(self) -> None:
        """Persist the current configuration in the repository."""
        await self._engine.save_config()

    save_config = blocking(save_config_async)

    def set_default_commit_metadata(self, metadata: dict[str, Any]) -> None:
        """Properties merged into every commit of sessions created after this call."""
        self._engine.default_commit_metadata = dict(metadata)

    def default_commit_metadata(self) -> dict[str, Any]:
        return dict(self._engine.default_commit_metadata)

    # ---- repository metadata, status, feature flags (spec 2) -------------------------------

    async def get_metadata_async(self) -> dict[str, Any]:
        """Repository-level metadata."""
        info = await spec2_only(self._engine.state, "repository metadata").info()
        return dict(info.metadata or {})

    get_metadata = blocking(get_metadata_async)

    @property
    def metadata(self) -> dict[str, Any]:
        return self.get_metadata()

    async def set_metadata_async(self, metadata: dict[str, Any]) -> None:
        """Replace the repository metadata."""
        from icechunk.format.repo_info import MetadataChanged

        state = spec2_only(self._engine.state, "repository metadata")
        new = dict(metadata)

        def mutate(info: Any) -> MetadataChanged:
            info.metadata = new
            return MetadataChanged()

        await state.update(mutate)

    set_metadata = blocking(set_metadata_async)

    async def update_metadata_async(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Shallow-merge into the repository metadata; returns the result."""
        from icechunk.format.repo_info import MetadataChanged

        state = spec2_only(self._engine.state, "repository metadata")
        result: dict[str, Any] = {}

        def mutate(info: Any) -> MetadataChanged:
            info.metadata = {**(info.metadata or {}), **metadata}
            result.clear()
            result.update(info.metadata)
            return MetadataChanged()

        await state.update(mutate)
        return result

    update_metadata = blocking(update_metadata_async)

    async def get_status_async(self) -> RepoStatus:
        info = await spec2_only(self._engine.state, "repository status").info()
        return _status_to_public(info.status)

    get_status = blocking(get_status_async)

    @property
    def status(self) -> RepoStatus:
        return self.get_status()

    async def set_status_async(self, status: RepoStatus) -> None:
        """Set the availability (``read_only`` blocks writes for every client)."""
        from icechunk.core.repo_state import now_us
        from icechunk.format.repo_info import RepoStatusChanged, RepoStatusRecord

        state = spec2_only(self._engine.state, "repository status")
        availability = Availability.READ_ONLY if status.availability == RepoAvailability.read_only else Availability.ONLINE
        record = RepoStatusRecord(availability, now_us(), status.limited_availability_reason)

        def mutate(info: Any) -> RepoStatusChanged:
            info.status = record
            return RepoStatusChanged(record)

        await state.update(mutate, allow_when_read_only=True)

    set_status = blocking(set_status_async)

    async def feature_flags_async(self) -> list[FeatureFlag]:
        """Every known feature flag with its state."""
        info = await spec2_only(self._engine.state, "feature flags").info()
        enabled, disabled = set(info.enabled_feature_flags or ()), set(info.disabled_feature_flags or ())
        out = []
        for name, (fid, default) in KNOWN_FLAGS.items():
            setting = True if fid in enabled else False if fid in disabled else None
            out.append(FeatureFlag(fid, name, default, setting))
        return out

    feature_flags = blocking(feature_flags_async)

    async def enabled_feature_flags_async(self) -> list[FeatureFlag]:
        return [f for f in await self.feature_flags_async() if f.enabled]

    enabled_feature_flags = blocking(enabled_feature_flags_async)

    async def disabled_feature_flags_async(self) -> list[FeatureFlag]:
        return [f for f in await self.feature_flags_async() if not f.enabled]

    disabled_feature_flags = blocking(disabled_feature_flags_async)

    async def set_feature_flag_async(self, name: str, setting: bool | None) -> None:
        """Force a flag on/off, or reset it to its default with None."""
        from icechunk.format.repo_info import FeatureFlagChanged

        if name not in KNOWN_FLAGS:
            raise InvalidInputError(f"unknown feature flag {name!r}", ErrorKind.INVALID_FEATURE_FLAG)
        fid, default = KNOWN_FLAGS[name]
        state = spec2_only(self._engine.state, "feature flags")

        def mutate(info: Any) -> FeatureFlagChanged:
            enabled = set(info.enabled_feature_flags or ()) - {fid}
            disabled = set(info.disabled_feature_flags or ()) - {fid}
            if setting is True:
                enabled.add(fid)
            elif setting is False:
                disabled.add(fid)
            info.enabled_feature_flags = tuple(sorted(enabled))
            info.disabled_feature_flags = tuple(sorted(disabled))
            return FeatureFlagChanged(fid, default if setting is None else setting, setting is not None)

        await state.update(mutate)

    set_feature_flag = blocking(set_feature_flag_async)

    # ---- sessions ---------------------------------------------------------------------------

    async def readonly_session_async(
        self,
        branch: str | None = None,
        *,
        tag: str | None = None,
        snapshot_id: str | None = None,
        as_of: datetime | None = None,
    ) -> Session:
        """A read-only session on a branch tip, a tag, a snapshot, or a branch at a time."""
        sid = await self._engine.resolve(
            branch, tag, snapshot_id, None if as_of is None else us_from_datetime(as_of)
        )
        return Session(await self._engine.readonly_session(sid), self._engine)

    readonly_session = blocking(readonly_session_async)

    async def writable_session_async(self, branch: str) -> Session:
        """A session that can write and commit to ``branch`` (based on its tip now)."""
        return Session(await self._engine.writable_session(branch), self._engine)

    writable_session = blocking(writable_session_async)

    async def rearrange_session_async(self, branch: str) -> Session:
        """A session that can only move nodes (spec 2, flag ``move_node``)."""
        state = spec2_only(self._engine.state, "rearrange sessions")
        from icechunk._errors import SessionStateError
        from icechunk.core.repo_state import flag_enabled

        if not flag_enabled(await state.info(), "move_node"):
            raise SessionStateError("feature flag 'move_node' is disabled", ErrorKind.FEATURE_FLAG_DISABLED)
        return Session(await self._engine.writable_session(branch, mode="rearrange"), self._engine)

    rearrange_session = blocking(rearrange_session_async)

    @contextlib.contextmanager
    def transaction(
        self,
        branch: str,
        *,
        message: str,
        metadata: dict[str, Any] | None = None,
        rebase_with: ConflictSolver | None = None,
        rebase_tries: int = 1000,
    ) -> Iterator[IcechunkStore]:
        """Yield the store of a writable session; commit it when the block exits normally."""
        session = self.writable_session(branch)
        yield session.store
        session.commit(message=message, metadata=metadata, rebase_with=rebase_with, rebase_tries=rebase_tries)

    # ---- branches and tags ------------------------------------------------------------------

    async def create_branch_async(self, branch: str, snapshot_id: str) -> None:
        """Create a branch pointing at a snapshot."""
        await self._engine.state.ensure_writable()
        await self._engine.state.create_branch(branch, _sid(snapshot_id))

    create_branch = blocking(create_branch_async)

    async def list_branches_async(self) -> set[str]:
        return set(await self._engine.state.branches())

    list_branches = blocking(list_branches_async)

    async def lookup_branch_async(self, branch: str) -> str:
        """The tip snapshot id of a branch."""
        return str(await self._engine.state.lookup_branch(branch))

    lookup_branch = blocking(lookup_branch_async)

    async def reset_branch_async(self, branch: str, snapshot_id: str, *, from_snapshot_id: str | None = None) -> None:
        """Point a branch at another snapshot (only if it is at ``from_snapshot_id``, if given)."""
        expected = None if from_snapshot_id is None else _sid(from_snapshot_id)
        await self._engine.state.reset_branch(branch, _sid(snapshot_id), expected)

    reset_branch = blocking(reset_branch_async)

    async def delete_branch_async(self, branch: str) -> None:
        """Delete a branch (``main`` cannot be deleted); no data is deleted."""
        await self._engine.state.delete_branch(branch)

    delete_branch = blocking(delete_branch_async)

    async def create_tag_async(self, tag: str, snapshot_id: str) -> None:
        """Create an immutable tag (a deleted tag's name can never be reused)."""
        await self._engine.state.ensure_writable()
        await self._engine.state.create_tag(tag, _sid(snapshot_id))

    create_tag = blocking(create_tag_async)

    async def list_tags_async(self) -> set[str]:
        return set(await self._engine.state.tags())

    list_tags = blocking(list_tags_async)

    async def lookup_tag_async(self, tag: str) -> str:
        return str(await self._engine.state.lookup_tag(tag))

    lookup_tag = blocking(lookup_tag_async)

    async def delete_tag_async(self, tag: str) -> None:
        """Delete a tag, leaving a permanent tombstone."""
        await self._engine.state.delete_tag(tag)

    delete_tag = blocking(delete_tag_async)

    # ---- history ----------------------------------------------------------------------------

    async def _ref_snapshot(self, branch: str | None, tag: str | None, snapshot_id: str | None) -> SnapshotId:
        return await self._engine.resolve(branch, tag, snapshot_id)

    def async_ancestry(
        self, *, branch: str | None = None, tag: str | None = None, snapshot_id: str | None = None
    ) -> AsyncCloseableIterator[SnapshotInfo]:
        """Snapshots from the given ref back to the root, newest first (async iterator)."""

        async def batches() -> AsyncIterator[list[SnapshotInfo]]:
            sid = await self._ref_snapshot(branch, tag, snapshot_id)
            async for chain in self._engine.ancestry_batches(sid):
                yield _snapshot_infos(chain)

        return BatchedIterator(batches())

    def ancestry(
        self, *, branch: str | None = None, tag: str | None = None, snapshot_id: str | None = None
    ) -> AsyncCloseableIterator[SnapshotInfo]:
        """Snapshots from the given ref back to the root, newest first (``for`` or ``async for``)."""
        if sum(x is not None for x in (branch, tag, snapshot_id)) != 1:
            raise ValueError("Must provide one of branch, tag, or snapshot_id")
        return self.async_ancestry(branch=branch, tag=tag, snapshot_id=snapshot_id)

    async def ancestry_graph_async(
        self,
        *,
        branch: str | None = None,
        tag: str | None = None,
        snapshot_id: str | None = None,
        plain: bool = False,
    ) -> AncestryGraph:
        """A printable history: one ref's line, or a tree of every branch."""
        lines: list[tuple[str, str, str]] = []
        if any(x is not None for x in (branch, tag, snapshot_id)):
            sid = await self._ref_snapshot(branch, tag, snapshot_id)
            async for entry in self._engine.ancestry(sid):
                lines.append(("*", str(entry.id), entry.message))
            return AncestryGraph(lines, plain=plain)
        branches = await self._engine.state.branches()
        seen: set[SnapshotId] = set()
        for name in sorted(branches, key=lambda b: (b != "main", b)):
            first = True
            async for entry in self._engine.ancestry(branches[name]):
                if entry.id in seen:
                    lines.append(("|", "", f"(joins at {entry.id})"))
                    break
                seen.add(entry.id)
                label = f"({name}) {entry.message}" if first else entry.message
                lines.append(("*", str(entry.id), label))
                first = False
        return AncestryGraph(lines, plain=plain)

    ancestry_graph = blocking(ancestry_graph_async)

    def ops_log_async(self) -> AsyncCloseableIterator[Update]:
        """Every repository update, newest first (spec 2)."""

        async def gen() -> AsyncIterator[Update]:
            from icechunk.ops import update_from_entry

            async for entry in self._engine.ops_log():
                yield update_from_entry(entry, _status_to_public)

        return AsyncCloseableIterator(gen())

    def ops_log(self) -> AsyncCloseableIterator[Update]:
        """Every repository update, newest first (spec 2)."""
        return self.ops_log_async()

    async def lookup_snapshot_async(self, snapshot_id: str) -> SnapshotInfo:
        """Metadata of one snapshot."""
        return _snapshot_info(await self._engine.state.snapshot_entry(_sid(snapshot_id)))

    lookup_snapshot = blocking(lookup_snapshot_async)

    async def list_manifest_files_async(self, snapshot_id: str) -> list[ManifestFileInfo]:
        """The manifest files a snapshot uses."""
        snap = (await self._engine.snapshot(_sid(snapshot_id))).snapshot
        return [ManifestFileInfo(str(i.id), i.size_bytes, i.num_chunk_refs) for i in snap.manifest_files]

    list_manifest_files = blocking(list_manifest_files_async)

    async def diff_async(
        self,
        *,
        from_branch: str | None = None,
        from_tag: str | None = None,
        from_snapshot_id: str | None = None,
        to_branch: str | None = None,
        to_tag: str | None = None,
        to_snapshot_id: str | None = None,
    ) -> Diff:
        """Net changes from one snapshot to a descendant."""
        from icechunk.core.diff import snapshot_diff
        from icechunk.session import _public_diff

        if sum(x is not None for x in (from_branch, from_tag, from_snapshot_id)) != 1:
            raise ValueError("Must provide exactly one of from_branch, from_tag, or from_snapshot_id")
        if sum(x is not None for x in (to_branch, to_tag, to_snapshot_id)) != 1:
            raise ValueError("Must provide exactly one of to_branch, to_tag, or to_snapshot_id")
        start = await self._engine.resolve(from_branch, from_tag, from_snapshot_id)
        end = await self._engine.resolve(to_branch, to_tag, to_snapshot_id)
        return _public_diff(await snapshot_diff(self._engine, start, end))

    diff = blocking(diff_async)

    # ---- inspection and maintenance --------------------------------------------------------

    async def inspect_snapshot_async(self, snapshot_id: str) -> dict[str, Any]:
        """A debug view of a snapshot (structure not stable)."""
        from icechunk.core.inspect import inspect_snapshot

        return await inspect_snapshot(self._engine, _sid(snapshot_id))

    inspect_snapshot = blocking(inspect_snapshot_async)

    async def inspect_manifest_async(self, manifest_id: str) -> dict[str, Any]:
        """A debug view of a manifest: ref counts per array and kind."""
        from icechunk.core.inspect import inspect_manifest

        return await inspect_manifest(self._engine, ManifestId.parse(manifest_id))

    inspect_manifest = blocking(inspect_manifest_async)

    async def inspect_repo_info_async(self) -> dict[str, Any]:
        """A debug view of the repo-info object (spec 2)."""
        from icechunk.core.inspect import inspect_repo_info

        return await inspect_repo_info(self._engine)

    inspect_repo_info = blocking(inspect_repo_info_async)

    async def inspect_transaction_log_async(self, snapshot_id: str) -> dict[str, Any]:
        """What one commit changed, as node ids."""
        from icechunk.core.inspect import inspect_transaction_log

        return await inspect_transaction_log(self._engine, _sid(snapshot_id))

    inspect_transaction_log = blocking(inspect_transaction_log_async)

    # ---- maintenance ------------------------------------------------------------------------

    async def expire_snapshots_async(
        self,
        older_than: datetime,
        *,
        delete_expired_branches: bool = False,
        delete_expired_tags: bool = False,
    ) -> set[str]:
        """Remove snapshots written strictly before ``older_than`` from history.

        Refs are visited tags first, then branches, each in lexicographic order.  The root
        snapshot and the tip of ``main`` never expire; other tips are kept unless
        ``delete_expired_branches`` / ``delete_expired_tags`` ask to delete refs whose tip
        expired (``main`` never is).  The surviving history of each ref is re-parented onto
        the root.  Spec 2 rewrites only the repo info (ops log: ``ExpirationRan``); spec 1
        rewrites the parent of re-parented snapshot files, as Icechunk 1.x did.

        Returns
        -------
        set[str]
            The expired snapshot ids (some may still be the tip of a kept ref, so they are
            not necessarily collectable).  Run :meth:`garbage_collect` to free storage.
        """
        from icechunk.core.expiration import expire_snapshots

        await self._engine.state.ensure_writable()
        expired = await expire_snapshots(
            self._engine.state,
            us_from_datetime(older_than),
            delete_expired_branches=delete_expired_branches,
            delete_expired_tags=delete_expired_tags,
        )
        return {str(s) for s in expired}

    expire_snapshots = blocking(expire_snapshots_async)

    async def garbage_collect_async(
        self,
        delete_object_older_than: datetime,
        *,
        dry_run: bool = False,
        max_snapshots_in_memory: int = 50,
        max_compressed_manifest_mem_bytes: int = 512 * 1024 * 1024,
        max_concurrent_manifest_fetches: int = 500,
    ) -> GCSummary:
        """Delete chunks, manifests, snapshots and transaction logs nothing references.

        Only objects created strictly before ``delete_object_older_than`` are deleted, so
        concurrent writers are safe as long as the cutoff is older than any session still
        running.  ``dry_run`` only reports.  A progress bar is shown on interactive terminals
        when ``tqdm`` is installed.

        Raises
        ------
        ReadOnlyError
            When the repository status is read-only.
        """
        from icechunk.core.gc import garbage_collect

        result = await garbage_collect(
            self._engine,
            delete_object_older_than,
            dry_run=dry_run,
            max_snapshots_in_memory=max_snapshots_in_memory,
            max_compressed_manifest_mem_bytes=max_compressed_manifest_mem_bytes,
            max_concurrent_manifest_fetches=max_concurrent_manifest_fetches,
        )
        return GCSummary(
            bytes_deleted=result.bytes_deleted,
            chunks_deleted=result.chunks_deleted,
            manifests_deleted=result.manifests_deleted,
            snapshots_deleted=result.snapshots_deleted,
            attributes_deleted=0,
            transaction_logs_deleted=result.transaction_logs_deleted,
        )

    garbage_collect = blocking(garbage_collect_async)

    async def rewrite_manifests_async(
        self,
        message: str,
        *,
        branch: str,
        metadata: dict[str, Any] | None = None,
        commit_method: str = "new_commit",
    ) -> str:
        """Rewrite every array's manifests per the current splitting config and commit.

        The data is unchanged.  ``commit_method="amend"`` replaces the branch tip instead of
        adding a commit (spec 2 only).  Returns the new snapshot id.
        """
        from icechunk.core.rewrite import rewrite_manifests

        sid = await rewrite_manifests(
            self._engine, message, branch=branch, metadata=metadata, commit_method=commit_method
        )
        return str(sid)

    rewrite_manifests = blocking(rewrite_manifests_async)

    async def chunk_storage_stats_async(
        self,
        *,
        max_snapshots_in_memory: int = 50,
        max_compressed_manifest_mem_bytes: int = 512 * 1024 * 1024,
        max_concurrent_manifest_fetches: int = 500,
    ) -> ChunkStorageStats:
        """Bytes of the chunks reachable from branches and tags, by kind (each chunk once)."""
        from icechunk.core.stats import chunk_storage_stats

        stats = await chunk_storage_stats(
            self._engine,
            max_snapshots_in_memory=max_snapshots_in_memory,
            max_compressed_manifest_mem_bytes=max_compressed_manifest_mem_bytes,
            max_concurrent_manifest_fetches=max_concurrent_manifest_fetches,
        )
        return ChunkStorageStats(stats.native_bytes, stats.virtual_bytes, stats.inlined_bytes)

    chunk_storage_stats = blocking(chunk_storage_stats_async)

    async def total_chunks_storage_async(
        self,
        *,
        max_snapshots_in_memory: int = 50,
        max_compressed_manifest_mem_bytes: int = 512 * 1024 * 1024,
        max_concurrent_manifest_fetches: int = 500,
    ) -> int:
        """Native chunk bytes reachable from branches and tags.

        .. deprecated:: use :meth:`chunk_storage_stats` (this returns its ``native_bytes``).
        """
        import warnings

        warnings.warn(
            "total_chunks_storage is deprecated; use chunk_storage_stats().native_bytes",
            DeprecationWarning,
            stacklevel=2,
        )
        stats = await self.chunk_storage_stats_async(
            max_snapshots_in_memory=max_snapshots_in_memory,
            max_compressed_manifest_mem_bytes=max_compressed_manifest_mem_bytes,
            max_concurrent_manifest_fetches=max_concurrent_manifest_fetches,
        )
        return stats.native_bytes

    def total_chunks_storage(
        self,
        *,
        max_snapshots_in_memory: int = 50,
        max_compressed_manifest_mem_bytes: int = 512 * 1024 * 1024,
        max_concurrent_manifest_fetches: int = 500,
    ) -> int:
        """Blocking :meth:`total_chunks_storage_async` (deprecated)."""
        import warnings

        warnings.warn(
            "total_chunks_storage is deprecated; use chunk_storage_stats().native_bytes",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.chunk_storage_stats(
            max_snapshots_in_memory=max_snapshots_in_memory,
            max_compressed_manifest_mem_bytes=max_compressed_manifest_mem_bytes,
            max_concurrent_manifest_fetches=max_concurrent_manifest_fetches,
        ).native_bytes

    # ---- pickling and reprs -----------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"engine": self._engine}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._engine = state["engine"]

    def __repr__(self) -> str:
        return f"icechunk.Repository(storage={self._engine.storage!r}, spec_version={self._engine.spec_version})"

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"


def _authorizations(value: dict[str, Any] | None) -> dict[str, Any]:
    """Normalize the authorization map (trailing ``/``; None values warn, API.md §2.1)."""
    from icechunk.core.virtual import normalize_authorizations

    return normalize_authorizations(value)
