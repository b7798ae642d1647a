"""The operations log and garbage-collection summaries."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["GCSummary", "Update", "UpdateType"]


@dataclass(frozen=True)
class GCSummary:
    """What a garbage collection deleted (or would delete, in a dry run)."""

    bytes_deleted: int = 0
    chunks_deleted: int = 0
    manifests_deleted: int = 0
    snapshots_deleted: int = 0
    attributes_deleted: int = 0
    transaction_logs_deleted: int = 0


class UpdateType:
    """Kinds of repository updates; test with ``isinstance(update.kind, UpdateType.X)``."""

    @dataclass(frozen=True)
    class RepoInitialized:
        pass

    @dataclass(frozen=True)
    class RepoMigrated:
        from_version: int
        to_version: int

    @dataclass(frozen=True)
    class ConfigChanged:
        pass

    @dataclass(frozen=True)
    class MetadataChanged:
        pass

    @dataclass(frozen=True)
    class RepoStatusChanged:
        status: Any

    @dataclass(frozen=True)
    class FeatureFlagChanged:
        id: int
        new_value: bool | None

    @dataclass(frozen=True)
    class NewCommit:
        branch: str
        new_snap_id: str

    @dataclass(frozen=True)
    class CommitAmended:
        branch: str
        previous_snap_id: str
        new_snap_id: str

    @dataclass(frozen=True)
    class NewDetachedSnapshot:
        new_snap_id: str

    @dataclass(frozen=True)
    class BranchCreated:
        name: str

    @dataclass(frozen=True)
    class BranchDeleted:
        name: str
        previous_snap_id: str

    @dataclass(frozen=True)
    class BranchReset:
        name: str
        previous_snap_id: str

    @dataclass(frozen=True)
    class TagCreated:
        name: str

    @dataclass(frozen=True)
    class TagDeleted:
        name: str
        previous_snap_id: str

    @dataclass(frozen=True)
    class GCRan:
        pass

    @dataclass(frozen=True)
    class ExpirationRan:
        pass


@dataclass(frozen=True)
class Update:
    """One entry of the repository's operations log."""

    kind: Any
    updated_at: datetime
    backup_path: str | None = None

    def __repr__(self) -> str:
        return f"icechunk.Update(kind={self.kind!r}, updated_at={self.updated_at.isoformat()!r})"

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"


def update_from_entry(entry: Any, status_factory: Any) -> Update:
    """The public :class:`Update` of a decoded ops-log entry."""
    from icechunk.format import repo_info as ri
    from icechunk.snapshots import datetime_from_us

    k = entry.kind
    kind: Any
    if isinstance(k, ri.RepoInitialized):
        kind = UpdateType.RepoInitialized()
    elif isinstance(k, ri.RepoMigrated):
        kind = UpdateType.RepoMigrated(k.from_version, k.to_version)
    elif isinstance(k, ri.ConfigChanged):
        kind = UpdateType.ConfigChanged()
    elif isinstance(k, ri.MetadataChanged):
        kind = UpdateType.MetadataChanged()
    elif isinstance(k, ri.RepoStatusChanged):
        kind = UpdateType.RepoStatusChanged(status_factory(k.status))
    elif isinstance(k, ri.FeatureFlagChanged):
        kind = UpdateType.FeatureFlagChanged(k.id, k.new_value if k.is_set else None)
    elif isinstance(k, ri.NewCommit):
        kind = UpdateType.NewCommit(k.branch, str(k.new_snap_id))
    elif isinstance(k, ri.CommitAmended):
        kind = UpdateType.CommitAmended(k.branch, str(k.previous_snap_id), str(k.new_snap_id))
    elif isinstance(k, ri.NewDetachedSnapshot):
        kind = UpdateType.NewDetachedSnapshot(str(k.new_snap_id))
    elif isinstance(k, ri.BranchCreated):
        kind = UpdateType.BranchCreated(k.name)
    elif isinstance(k, ri.BranchDeleted):
        kind = UpdateType.BranchDeleted(k.name, str(k.previous_snap_id))
    elif isinstance(k, ri.BranchReset):
        kind = UpdateType.BranchReset(k.name, str(k.previous_snap_id))
    elif isinstance(k, ri.TagCreated):
        kind = UpdateType.TagCreated(k.name)
    elif isinstance(k, ri.TagDeleted):
        kind = UpdateType.TagDeleted(k.name, str(k.previous_snap_id))
    elif isinstance(k, ri.GCRan):
        kind = UpdateType.GCRan()
    else:
        kind = UpdateType.ExpirationRan()
    return Update(kind, datetime_from_us(entry.updated_at), entry.backup_path)
