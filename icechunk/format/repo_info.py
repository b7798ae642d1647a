"""The repo-info file (file type 6, spec 2): refs, snapshot list, status, ops log, config.

FORMAT.md §3.2, §5.3–§5.7.  :class:`RepoInfo` is the decoded, index-free form: snapshots are a
dict keyed by id with parent ids (indices and ``parent_offset`` are a serialization detail,
recomputed on encode).  The pure functions here implement the ops-log paging rule (§5.5) and
the backup-name rule (§5.4) so the core only orchestrates I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from icechunk.format.ids import SnapshotId

__all__ = [
    "Availability",
    "BranchCreated",
    "BranchDeleted",
    "BranchReset",
    "CommitAmended",
    "ConfigChanged",
    "ExpirationRan",
    "FeatureFlagChanged",
    "GCRan",
    "MetadataChanged",
    "NewCommit",
    "NewDetachedSnapshot",
    "RepoInfo",
    "RepoInitialized",
    "RepoMigrated",
    "RepoStatusChanged",
    "RepoStatusRecord",
    "SnapshotEntry",
    "TagCreated",
    "TagDeleted",
    "UpdateEntry",
    "UpdateKind",
    "append_update",
    "backup_name",
    "decode_repo_info",
    "encode_repo_info",
]


class Availability(enum.IntEnum):
    ONLINE = 0
    READ_ONLY = 1
    OFFLINE = 2


@dataclass(frozen=True, slots=True)
class RepoStatusRecord:
    availability: Availability = Availability.ONLINE
    set_at: int = 0  # µs
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """A snapshot as listed in the repo info (its parent is an id here, not an index)."""

    id: SnapshotId
    parent_id: SnapshotId | None
    flushed_at: int  # µs
    message: str
    metadata: dict[str, Any]
    pruned_ancestor_tx_logs: tuple[SnapshotId, ...] | None = None


# ---- ops-log update kinds (union discriminant values in comments) --------------------------


@dataclass(frozen=True, slots=True)
class RepoInitialized:  # 1
    pass


@dataclass(frozen=True, slots=True)
class RepoMigrated:  # 2
    from_version: int
    to_version: int


@dataclass(frozen=True, slots=True)
class ConfigChanged:  # 3
    pass


@dataclass(frozen=True, slots=True)
class MetadataChanged:  # 4
    pass


@dataclass(frozen=True, slots=True)
class TagCreated:  # 5
    name: str


@dataclass(frozen=True, slots=True)
class TagDeleted:  # 6
    name: str
    previous_snap_id: SnapshotId


@dataclass(frozen=True, slots=True)
class BranchCreated:  # 7
    name: str


@dataclass(frozen=True, slots=True)
class BranchDeleted:  # 8
    name: str
    previous_snap_id: SnapshotId


@dataclass(frozen=True, slots=True)
class BranchReset:  # 9
    name: str
    previous_snap_id: SnapshotId


@dataclass(frozen=True, slots=True)
class NewCommit:  # 10
    branch: str
    new_snap_id: SnapshotId


@dataclass(frozen=True, slots=True)
class CommitAmended:  # 11
    branch: str
    previous_snap_id: SnapshotId
    new_snap_id: SnapshotId


@dataclass(frozen=True, slots=True)
class NewDetachedSnapshot:  # 12
    new_snap_id: SnapshotId


@dataclass(frozen=True, slots=True)
class GCRan:  # 13
    pass


@dataclass(frozen=True, slots=True)
class ExpirationRan:  # 14
    pass


@dataclass(frozen=True, slots=True)
class FeatureFlagChanged:  # 15
    id: int
    new_value: bool
    is_set: bool


@dataclass(frozen=True, slots=True)
class RepoStatusChanged:  # 16
    status: RepoStatusRecord


UpdateKind = (
    RepoInitialized
    | RepoMigrated
    | ConfigChanged
    | MetadataChanged
    | TagCreated
    | TagDeleted
    | BranchCreated
    | BranchDeleted
    | BranchReset
    | NewCommit
    | CommitAmended
    | NewDetachedSnapshot
    | GCRan
    | ExpirationRan
    | FeatureFlagChanged
    | RepoStatusChanged
)


@dataclass(frozen=True, slots=True)
class UpdateEntry:
    """One ops-log entry."""

    kind: UpdateKind
    updated_at: int  # µs
    backup_path: str | None = None


@dataclass(slots=True)
class RepoInfo:
    """Decoded repo-info file.

    ``config`` is the raw FlexBuffer bytes of the persisted configuration (copied unchanged by
    every rewrite that does not change the config), or None.  ``metadata`` None means the
    field was absent.  Feature-flag tuples are None when absent.
    """

    tags: dict[str, SnapshotId]
    branches: dict[str, SnapshotId]
    deleted_tags: set[str]
    snapshots: dict[SnapshotId, SnapshotEntry]
    status: RepoStatusRecord
    latest_updates: list[UpdateEntry]
    metadata: dict[str, Any] | None = field(default_factory=dict)
    repo_before_updates: str | None = None
    config: bytes | None = None
    enabled_feature_flags: tuple[int, ...] | None = None
    disabled_feature_flags: tuple[int, ...] | None = None
    spec_version: int = 2
    implementation: str | None = field(default=None, compare=False)


def encode_repo_info(
    info: RepoInfo, *, compression_level: int = 3, implementation: str | None = None
) -> bytes:
    """Encode a repo-info file (header + zstd flatbuffer), byte-compatible with the reference."""
    raise NotImplementedError("encode_repo_info is being implemented (issue 2)")


def decode_repo_info(data: bytes | memoryview, name: str = "repo") -> RepoInfo:
    """Decode a repo-info file.

    Raises
    ------
    FormatError
        On any corrupt, truncated or unsupported input.
    """
    raise NotImplementedError("decode_repo_info is being implemented (issue 2)")


def backup_name(now_ms: int, random_suffix: bytes) -> str:
    """The ``overwritten/`` object name for a repo backup taken at ``now_ms`` (§5.4)."""
    raise NotImplementedError


def append_update(
    info: RepoInfo, kind: UpdateKind, updated_at: int, backup: str, page_size: int = 1000
) -> RepoInfo:
    """Return ``info`` with ``kind`` logged as the newest ops-log entry (§5.5 paging rules).

    Raises
    ------
    FormatError
        If ``updated_at`` is not strictly after the newest entry (clock drift).
    """
    raise NotImplementedError
