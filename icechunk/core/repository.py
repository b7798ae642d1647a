"""The repository engine: creation, opening, configuration, sessions, commits, history.

Async-only core behind :class:`icechunk.Repository`.  Spec differences live in
:mod:`icechunk.core.repo_state`; this module orchestrates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from icechunk._errors import (
    AlreadyExistsError,
    ErrorKind,
    FormatError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    RepositoryNotFoundError,
    SessionStateError,
    SnapshotNotFoundError,
)
from icechunk.config import RepositoryConfig
from icechunk.core.assets import AssetManager, SnapshotIndex, keys
from icechunk.core.commit import PreparedSnapshot, prepare_snapshot
from icechunk.core.effective import EffectiveConfig
from icechunk.core.repo_state import (
    Backoff,
    LegacyRefs,
    RepoInfoRefs,
    RepoState,
    now_us,
    spec2_only,
)
from icechunk.core.session import SessionEngine
from icechunk.core.virtual import VirtualResolver
from icechunk.format import refs as refs_format
from icechunk.format.config_yaml import decode_config_yaml, encode_config_yaml
from icechunk.format.ids import INITIAL_SNAPSHOT_ID, SnapshotId
from icechunk.format.repo_config import decode_repo_config, encode_repo_config
from icechunk.format.repo_info import (
    Availability,
    ConfigChanged,
    RepoInfo,
    RepoInitialized,
    RepoStatusRecord,
    SnapshotEntry,
    UpdateEntry,
)
from icechunk.format.snapshot import Snapshot
from icechunk.format.transaction_log import TransactionLog
from icechunk.storage._abc import Storage

__all__ = ["RepoEngine", "detect_spec_version", "fetch_persisted_config"]

ROOT_METADATA = {"__icechunk": {"is_root": True}}
ROOT_MESSAGE = "Repository initialized"


async def detect_spec_version(storage: Storage) -> int | None:
    """2 when a ``repo`` object exists, 1 when a spec-1 main ref exists, else None."""
    repo_head, main_head = await asyncio.gather(
        storage.head(keys.REPO), storage.head(refs_format.branch_key("main"))
    )
    if repo_head is not None:
        data = await storage.get(keys.REPO)
        from icechunk.format.repo_info import decode_repo_info

        return decode_repo_info(data, keys.REPO).spec_version or 2
    if main_head is not None:
        return 1
    return None


async def _read_repo_object(storage: Storage) -> tuple[bytes, RepoInfo] | None:
    """The spec-2 ``repo`` object (bytes and decoded), or None when there is none."""
    from icechunk.format.repo_info import decode_repo_info

    try:
        data = await storage.get(keys.REPO)
    except NotFoundError:
        return None
    return data, decode_repo_info(data, keys.REPO)


async def fetch_persisted_config(storage: Storage, spec_version: int) -> RepositoryConfig | None:
    """The configuration stored in the repository, or None."""
    if spec_version >= 2:
        from icechunk.format.repo_info import decode_repo_info

        info = decode_repo_info(await storage.get(keys.REPO), keys.REPO)
        if info.config is None:
            return None
        return RepositoryConfig.from_serde(decode_repo_config(info.config))
    try:
        data = await storage.get(keys.CONFIG_YAML)
    except NotFoundError:
        return None
    return RepositoryConfig.from_serde(decode_config_yaml(data))


@dataclass
class RepoEngine:
    """One open repository: storage, effective config, assets and ref state."""

    storage: Storage
    config: RepositoryConfig
    spec_version: int
    authorizations: dict[str, Any] = field(default_factory=dict)
    default_commit_metadata: dict[str, Any] = field(default_factory=dict)
    effective: EffectiveConfig = field(init=False)
    assets: AssetManager = field(init=False)
    state: RepoState = field(init=False)
    virtual: VirtualResolver = field(init=False)

    def __post_init__(self) -> None:
        self.effective = EffectiveConfig.of(self.config)
        # checks that authorized credentials fit their containers (StorageError otherwise)
        self.virtual = VirtualResolver(self.config.virtual_chunk_containers, self.authorizations)
        self.storage = self.storage.with_settings(self.config.storage)
        self.assets = AssetManager(
            self.storage,
            spec_version=self.spec_version,
            compression_level=self.effective.compression_level,
            num_snapshot_nodes=self.effective.num_snapshot_nodes,
            num_chunk_refs=self.effective.num_chunk_refs,
            location_compression=self.effective.location_compression,
        )
        backoff = Backoff(
            self.effective.repo_update_max_tries,
            self.effective.repo_update_initial_backoff_ms,
            self.effective.repo_update_max_backoff_ms,
        )
        if self.spec_version >= 2:
            self.state = RepoInfoRefs(self.assets, backoff, self.effective.num_updates_per_repo_info_file)
        else:
            self.state = LegacyRefs(self.assets, backoff)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_engine,
            (self.storage, self.config, self.spec_version, self.authorizations, self.default_commit_metadata),
        )

    def virtual_fetcher(self) -> Any:
        """The coroutine sessions use to read virtual chunks (authorization, checksums)."""
        return self.virtual.fetch

    # ---- creation and opening ---------------------------------------------------------------

    @staticmethod
    async def create(
        storage: Storage,
        config: RepositoryConfig | None,
        *,
        spec_version: int = 2,
        check_clean_root: bool = True,
        authorizations: dict[str, Any] | None = None,
    ) -> RepoEngine:
        if spec_version not in (1, 2):
            raise InvalidInputError(f"unsupported spec version {spec_version}", ErrorKind.UNSUPPORTED_SPEC_VERSION)
        if storage.read_only:
            raise ReadOnlyError("cannot create a repository on read-only storage", ErrorKind.READ_ONLY_STORAGE)
        if not storage.can_write_to_root:
            raise InvalidInputError(
                "refusing to create a repository at the root of a bucket (empty prefix); use a prefix",
                ErrorKind.EMPTY_PREFIX_CREATION,
            )
        if check_clean_root:
            async for _ in storage.list_prefix(""):
                raise InvalidInputError(
                    "cannot create a repository: the storage location is not empty "
                    "(pass check_clean_root=False to skip this check)",
                    ErrorKind.PARENT_DIRECTORY_NOT_CLEAN,
                )
        persisted: RepositoryConfig | None = None
        if config is not None and config != RepositoryConfig():
            from icechunk.config import StorageSettings

            persisted = RepositoryConfig(storage=storage.default_settings()).merge(config)
            if persisted.storage is None:
                persisted.storage = StorageSettings()
        engine = RepoEngine(storage, config or RepositoryConfig(), spec_version, dict(authorizations or {}))
        now = now_us()
        root = Snapshot(
            id=INITIAL_SNAPSHOT_ID,
            parent_id=None,
            flushed_at=now,
            message=ROOT_MESSAGE,
            metadata=dict(ROOT_METADATA),
            manifest_files=(),
            nodes=(),
            spec_version=spec_version,
        )
        writes = [engine.assets.write_snapshot(root)]
        if spec_version >= 2:
            writes.append(engine.assets.write_transaction_log(TransactionLog(INITIAL_SNAPSHOT_ID, moved_nodes=[])))
        await asyncio.gather(*writes)
        if spec_version >= 2:
            info = RepoInfo(
                tags={},
                branches={"main": INITIAL_SNAPSHOT_ID},
                deleted_tags=set(),
                snapshots={
                    INITIAL_SNAPSHOT_ID: SnapshotEntry(
                        INITIAL_SNAPSHOT_ID, None, now, ROOT_MESSAGE, dict(ROOT_METADATA)
                    )
                },
                status=RepoStatusRecord(Availability.ONLINE, now),
                latest_updates=[UpdateEntry(RepoInitialized(), now)],
                metadata={},
                config=encode_repo_config(persisted.to_serde()) if persisted else None,
            )
            result = await storage.put(keys.REPO, engine.assets.encode_repo_info(info), "create")
            if not result.ok:
                raise AlreadyExistsError("a repository already exists at this location", ErrorKind.NOT_ALLOWED)
        else:
            if persisted is not None:
                await storage.put(keys.CONFIG_YAML, encode_config_yaml(persisted.to_serde()), "overwrite")
            result = await storage.put(
                refs_format.branch_key("main"), refs_format.encode_ref(INITIAL_SNAPSHOT_ID), "create"
            )
            if not result.ok:
                raise AlreadyExistsError("a repository already exists at this location", ErrorKind.NOT_ALLOWED)
        return engine

    @staticmethod
    async def open(
        storage: Storage,
        config: RepositoryConfig | None,
        *,
        authorizations: dict[str, Any] | None = None,
    ) -> RepoEngine:
        # spec 2: the repo object is read and decoded once, and handed to the ref state
        repo_object = await _read_repo_object(storage)
        if repo_object is not None:
            version: int | None = repo_object[1].spec_version or 2
        else:
            version = await detect_spec_version(storage)
        if version is None:
            raise RepositoryNotFoundError(
                "the repository doesn't exist at this storage location", ErrorKind.REPOSITORY_NOT_FOUND
            )
        if version > 2:
            raise FormatError(
                f"repository spec version {version} is too new for this library; upgrade it",
                ErrorKind.UNSUPPORTED_SPEC_VERSION,
            )
        if repo_object is not None:
            raw = repo_object[1].config
            persisted = RepositoryConfig.from_serde(decode_repo_config(raw)) if raw is not None else None
        else:
            persisted = await fetch_persisted_config(storage, version)
        effective = (persisted or RepositoryConfig()).merge(config)
        engine = RepoEngine(storage, effective, version, dict(authorizations or {}))
        if repo_object is not None and isinstance(engine.state, RepoInfoRefs):
            engine.state.prime(*repo_object)
        return engine

    def reopen(
        self, config: RepositoryConfig | None, authorizations: dict[str, Any] | None
    ) -> RepoEngine:
        new = RepoEngine(
            self.storage,
            self.config.merge(config),
            self.spec_version,
            dict(self.authorizations if authorizations is None else authorizations),
            dict(self.default_commit_metadata),
        )
        return new

    async def save_config(self) -> None:
        """Persist the current config (spec 2: in ``repo`` with a ConfigChanged entry)."""
        persisted = RepositoryConfig(storage=self.storage.default_settings()).merge(self.config)
        if self.spec_version >= 2:
            raw = encode_repo_config(persisted.to_serde())
            state = spec2_only(self.state, "save_config")

            def mutate(info: RepoInfo) -> ConfigChanged:
                info.config = raw
                return ConfigChanged()

            await state.update(mutate)
        else:
            await self.storage.put(keys.CONFIG_YAML, encode_config_yaml(persisted.to_serde()), "overwrite")

    # ---- snapshots and sessions -------------------------------------------------------------

    async def snapshot(self, sid: SnapshotId) -> SnapshotIndex:
        return await self.assets.fetch_snapshot(sid)

    async def resolve(
        self,
        branch: str | None = None,
        tag: str | None = None,
        snapshot_id: str | SnapshotId | None = None,
        as_of: int | None = None,
    ) -> SnapshotId:
        """The snapshot a ref selection names (exactly one of branch, tag, snapshot_id)."""
        given = [x is not None for x in (branch, tag, snapshot_id)]
        if sum(given) != 1:
            raise ValueError("Must provide one of branch, tag, or snapshot_id")
        if as_of is not None and branch is None:
            raise ValueError("as_of requires a branch")
        if branch is not None:
            if as_of is None:
                return await self.state.peek_tip(branch)
            tip = await self.state.lookup_branch(branch)
            async for entry in self.state.ancestry(tip):
                if entry.flushed_at <= as_of:
                    return entry.id
            raise SnapshotNotFoundError(
                f"no snapshot on branch {branch!r} at or before the requested time",
                ErrorKind.NO_SNAPSHOT_AT_TIME,
            )
        if tag is not None:
            return await self.state.lookup_tag(tag)
        sid = snapshot_id if isinstance(snapshot_id, SnapshotId) else SnapshotId.parse(str(snapshot_id))
        if self.spec_version >= 2:
            await self.state.snapshot_entry(sid)  # unknown (or expired) ids raise
        return sid

    def _engine(self, base: SnapshotIndex, branch: str | None, mode: str) -> SessionEngine:
        engine = SessionEngine(
            self.assets,
            self.state,
            self.effective,
            base,
            branch=branch,
            mode=mode,
            virtual_fetch=self.virtual_fetcher(),
            default_metadata=self.default_commit_metadata,
        )
        from icechunk.core.preload import schedule_preload

        schedule_preload(engine, self.config.manifest.preload if self.config.manifest else None)
        return engine

    async def readonly_session(self, sid: SnapshotId) -> SessionEngine:
        return self._engine(await self.snapshot(sid), None, "readonly")

    async def writable_session(self, branch: str, mode: str = "writable") -> SessionEngine:
        tip = await self.state.writable_tip(branch)
        self.storage.expect_writes(keys.COMMIT_PREFIXES)
        return self._engine(await self.snapshot(tip), branch, mode)

    # ---- commits ----------------------------------------------------------------------------

    def _check_can_commit(self, engine: SessionEngine) -> str:
        if engine.mode in ("readonly", "fork") or engine.branch is None:
            raise SessionStateError(
                "commits are not allowed on read-only, finished or forked sessions",
                ErrorKind.COMMIT_NOT_ALLOWED,
            )
        return engine.branch

    async def commit(
        self,
        engine: SessionEngine,
        message: str,
        metadata: dict[str, Any] | None = None,
        *,
        allow_empty: bool = False,
        extra_icechunk_metadata: dict[str, Any] | None = None,
        rewrite_manifests: bool = False,
    ) -> SnapshotId:
        """Write the session's changes as a new commit on its branch.

        Raises
        ------
        ConflictError
            If the branch moved since the session's base (no rebase here).
        """
        branch = self._check_can_commit(engine)
        if engine.changes.is_empty() and not allow_empty and not rewrite_manifests:
            raise SessionStateError("no changes made to the session", ErrorKind.NO_CHANGES_TO_COMMIT)
        # the state read when the session opened or last rebased: the ref update re-checks
        await self.state.ensure_writable(fresh=False)
        if engine.changes.moves:
            await self._require_move_flag()
        props = _with_reserved(metadata, extra_icechunk_metadata)
        base_id = engine.base.id
        prepared = await prepare_snapshot(
            engine, message, props, parent=base_id, rewrite_manifests=rewrite_manifests
        )
        await self.state.commit(branch, prepared.entry, base_id)
        self._finish(engine, prepared)
        return prepared.snapshot.id

    async def amend(
        self, engine: SessionEngine, message: str, metadata: dict[str, Any] | None = None, *, allow_empty: bool = False
    ) -> SnapshotId:
        """Replace the branch tip with a snapshot holding its changes plus the session's."""
        branch = self._check_can_commit(engine)
        state = spec2_only(self.state, "amend")
        if engine.changes.is_empty() and not allow_empty:
            raise SessionStateError("no changes made to the session", ErrorKind.NO_CHANGES_TO_COMMIT)
        await state.ensure_writable()
        return await self._replace_tip(state, engine, branch, message, _with_reserved(metadata, None))

    async def _replace_tip(
        self,
        state: RepoInfoRefs,
        engine: SessionEngine,
        branch: str,
        message: str,
        props: dict[str, Any],
        *,
        rewrite_manifests: bool = False,
    ) -> SnapshotId:
        """The amend itself: the tip (the session's base) replaced by a snapshot with the
        same parent holding its changes plus the session's (no checks of the session)."""
        base_entry = await state.snapshot_entry(engine.base.id)
        if base_entry.parent_id is None:
            raise SessionStateError("the initial commit cannot be amended", ErrorKind.NO_AMEND_FOR_INITIAL_COMMIT)
        prepared = await prepare_snapshot(
            engine,
            message,
            props,
            parent=base_entry.parent_id,
            rewrite_manifests=rewrite_manifests,
            merge_log_of=engine.base.id,
            pruned_ancestor_tx_logs=base_entry.pruned_ancestor_tx_logs,
        )
        await state.commit(branch, prepared.entry, engine.base.id, amend_of=engine.base.id)
        self._finish(engine, prepared)
        return prepared.snapshot.id

    async def flush(self, engine: SessionEngine, message: str, metadata: dict[str, Any] | None = None) -> SnapshotId:
        """Write an anonymous snapshot (parent = base) without moving any branch."""
        if engine.mode == "readonly":
            raise SessionStateError("cannot flush a read-only session", ErrorKind.COMMIT_NOT_ALLOWED)
        if engine.changes.moves:
            await self._require_move_flag()
        prepared = await prepare_snapshot(engine, message, _with_reserved(metadata, None), parent=engine.base.id)
        await self.state.add_detached(prepared.entry)
        self._finish(engine, prepared)
        return prepared.snapshot.id

    def _finish(self, engine: SessionEngine, prepared: PreparedSnapshot) -> None:
        engine.finish(SnapshotIndex(prepared.snapshot))

    async def _require_move_flag(self) -> None:
        from icechunk.core.repo_state import flag_enabled

        state = spec2_only(self.state, "moving nodes")
        if not flag_enabled(await state.info(), "move_node"):
            raise SessionStateError("feature flag 'move_node' is disabled", ErrorKind.FEATURE_FLAG_DISABLED)

    # ---- history ----------------------------------------------------------------------------

    def ancestry(self, sid: SnapshotId) -> AsyncIterator[SnapshotEntry]:
        """Entries from ``sid`` back to the root, newest first (the state's own iterator)."""
        return self.state.ancestry(sid)

    def ancestry_batches(self, sid: SnapshotId) -> AsyncIterator[list[SnapshotEntry]]:
        """:meth:`ancestry` in lists, each a stretch of the chain (for building many results at once)."""
        return self.state.ancestry_batches(sid)

    async def ops_log(self) -> AsyncIterator[UpdateEntry]:
        """Every ops-log entry, newest first, following ``repo_before_updates`` pages."""
        state = spec2_only(self.state, "the ops log")
        info: RepoInfo | None = await state.info()
        from icechunk.format.repo_info import decode_repo_info

        while info is not None:
            for entry in info.latest_updates:
                yield entry
            previous = info.repo_before_updates
            if previous is None:
                return
            try:
                data = await self.storage.get(keys.overwritten(previous))
            except NotFoundError:
                return
            info = decode_repo_info(data, keys.overwritten(previous))

    async def transaction_log(self, sid: SnapshotId) -> TransactionLog:
        try:
            return await self.assets.fetch_transaction_log(sid)
        except NotFoundError:
            raise SnapshotNotFoundError(
                f"transaction log of snapshot {sid} not found", ErrorKind.SNAPSHOT_NOT_FOUND
            ) from None


def _rebuild_engine(
    storage: Storage,
    config: RepositoryConfig,
    spec_version: int,
    authorizations: dict[str, Any],
    default_commit_metadata: dict[str, Any],
) -> RepoEngine:
    return RepoEngine(storage, config, spec_version, authorizations, default_commit_metadata)


def _with_reserved(metadata: dict[str, Any] | None, reserved: dict[str, Any] | None) -> dict[str, Any]:
    props = dict(metadata or {})
    if reserved:
        icechunk_meta = dict(props.get("__icechunk") or {})
        icechunk_meta.update(reserved)
        props["__icechunk"] = icechunk_meta
    return props

