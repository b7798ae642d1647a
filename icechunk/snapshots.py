"""Snapshot metadata, diffs and history graphs returned by the public API."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["AncestryGraph", "ChunkStorageStats", "Diff", "ManifestFileInfo", "SnapshotInfo"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def datetime_from_us(us: int) -> datetime:
    """UTC datetime of a microsecond timestamp."""
    found = _DATETIMES.get(us)
    if found is None:
        found = _EPOCH + timedelta(microseconds=us)  # exact, and half the cost of fromtimestamp
        if len(_DATETIMES) >= _DATETIMES_SIZE:
            _DATETIMES.clear()
        _DATETIMES[us] = found
    return found


# datetimes are immutable: a history listed again (ancestry, ops log) reuses its values
_DATETIMES: dict[int, datetime] = {}
_DATETIMES_SIZE = 1 << 16


def us_from_datetime(value: datetime) -> int:
    """Microseconds since the epoch of a datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _html(obj: object) -> str:
    return f"<pre>{html.escape(repr(obj))}</pre>"


@dataclass(frozen=True)
class ManifestFileInfo:
    """A manifest file used by a snapshot."""

    id: str
    size_bytes: int
    num_chunk_refs: int

    def __repr__(self) -> str:
        return (
            f"icechunk.ManifestFileInfo(id={self.id!r}, size_bytes={self.size_bytes}, "
            f"num_chunk_refs={self.num_chunk_refs})"
        )

    _repr_html_ = _html


@dataclass(frozen=True)
class SnapshotInfo:
    """Metadata of one snapshot (commit)."""

    id: str
    parent_id: str | None
    written_at: datetime
    message: str
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)

    def __repr__(self) -> str:
        return (
            f"icechunk.SnapshotInfo(id={self.id!r}, parent_id={self.parent_id!r}, "
            f"written_at={self.written_at.isoformat()!r}, message={self.message!r}, "
            f"metadata={self.metadata!r})"
        )

    _repr_html_ = _html


def snapshot_info(
    sid: str, parent_id: str | None, written_at: datetime, message: str, metadata: dict[str, Any]
) -> SnapshotInfo:
    """``SnapshotInfo(...)`` without the frozen dataclass's per-field ``object.__setattr__``
    (an ancestry walk makes one per snapshot); same object, a third of the cost."""
    info: SnapshotInfo = object.__new__(SnapshotInfo)
    info.__dict__.update(id=sid, parent_id=parent_id, written_at=written_at, message=message, metadata=metadata)
    return info


@dataclass
class Diff:
    """Net changes between two snapshots (or of an uncommitted session)."""

    new_groups: set[str] = field(default_factory=set)
    new_arrays: set[str] = field(default_factory=set)
    deleted_groups: set[str] = field(default_factory=set)
    deleted_arrays: set[str] = field(default_factory=set)
    updated_groups: set[str] = field(default_factory=set)
    updated_arrays: set[str] = field(default_factory=set)
    updated_chunks: dict[str, list[list[int]]] = field(default_factory=dict)
    moved_nodes: list[tuple[str, str]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.new_groups or self.new_arrays or self.deleted_groups or self.deleted_arrays
            or self.updated_groups or self.updated_arrays or self.updated_chunks or self.moved_nodes
        )

    def __repr__(self) -> str:
        parts = []
        for name in (
            "new_groups", "new_arrays", "deleted_groups", "deleted_arrays",
            "updated_groups", "updated_arrays",
        ):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={sorted(value)!r}")
        if self.updated_chunks:
            counts = {k: len(v) for k, v in sorted(self.updated_chunks.items())}
            parts.append(f"updated_chunks={counts!r}")
        if self.moved_nodes:
            parts.append(f"moved_nodes={self.moved_nodes!r}")
        return f"icechunk.Diff({', '.join(parts)})"

    __str__ = __repr__
    _repr_html_ = _html


@dataclass(frozen=True)
class ChunkStorageStats:
    """Bytes used by reachable chunks, by kind."""

    native_bytes: int = 0
    virtual_bytes: int = 0
    inlined_bytes: int = 0

    def non_virtual_bytes(self) -> int:
        return self.native_bytes + self.inlined_bytes

    def total_bytes(self) -> int:
        return self.native_bytes + self.virtual_bytes + self.inlined_bytes

    def __add__(self, other: ChunkStorageStats) -> ChunkStorageStats:
        return ChunkStorageStats(
            self.native_bytes + other.native_bytes,
            self.virtual_bytes + other.virtual_bytes,
            self.inlined_bytes + other.inlined_bytes,
        )


class AncestryGraph:
    """A printable history graph (text with ANSI colours, or SVG)."""

    def __init__(self, lines: list[tuple[str, str, str]], *, plain: bool = False) -> None:
        # (graph prefix, snapshot id, label)
        self._lines = lines
        self._plain = plain

    def __str__(self) -> str:
        out = []
        for graph, sid, label in self._lines:
            sid_text = sid if self._plain else f"\x1b[33m{sid}\x1b[0m"
            out.append(f"{graph} {sid_text} {label}".rstrip())
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"icechunk.AncestryGraph({len(self._lines)} snapshots)"

    def _repr_svg_(self) -> str:
        height = 20 * len(self._lines) + 10
        rows = []
        for i, (graph, sid, label) in enumerate(self._lines):
            y = 20 * i + 15
            fill = "" if self._plain else ' fill="#c60"'
            rows.append(
                f'<text x="5" y="{y}" font-family="monospace" font-size="12">'
                f"{html.escape(graph)} <tspan{fill}>{html.escape(sid)}</tspan> {html.escape(label)}</text>"
            )
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="{height}">{"".join(rows)}</svg>'
