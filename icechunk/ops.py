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
