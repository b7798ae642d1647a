"""The repo-info file (file type 6, spec 2): refs, snapshot list, status, ops log, config.

FORMAT.md §3.2, §5.3–§5.7.  :class:`RepoInfo` is the decoded, index-free form: snapshots are a
dict keyed by id with parent ids (indices and ``parent_offset`` are a serialization detail,
recomputed on encode).  The pure functions here implement the ops-log paging rule (§5.5) and
the backup-name rule (§5.4) so the core only orchestrates I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import operator
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import flatbuffers
import numpy as np
import numpy.typing as npt

from icechunk._errors import ErrorKind, FormatError, InvalidInputError
from icechunk.format._columns import Columns, check_offsets_vector
from icechunk.format._fastbuilder import (
    BOOL,
    EMPTY_VECTOR,
    OFFSET,
    STRING,
    STRUCT,
    U8,
    U16,
    U32,
    U64,
    FastBuilder,
    add_offsets_vector,
    add_table,
)
from icechunk.format._fastbuilder import I32 as _I32
from icechunk.format._flatbuf import (
    Table,
    create_byte_vector,
    create_struct_vector,
    decoding,
    finish,
    root_table,
)
from icechunk.format._repo_info_append import (
    AppendState,
    Listed,
    Plan,
    place_tail,
    plan_append,
    previous_state,
    remember,
)
from icechunk.format._reuse import Remap, RunLayout, write_section
from icechunk.format.header import (
    IMPLEMENTATION_NAME,
    FileType,
    Header,
    decode_envelope,
    encode_envelope,
)
from icechunk.format.ids import SnapshotId, crockford_encode
from icechunk.format.values import flex_dumps, flex_loads

_T = TypeVar("_T")

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
    "peek_branch_tip",
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
    field was absent.  Feature-flag tuples are None when absent.  In an info returned by
    :func:`decode_repo_info`, ``latest_updates`` is decoded on first access (a corrupt ops log
    raises ``FormatError`` there); it reads, compares and copies like a plain list field.
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


# ``latest_updates`` of a decoded RepoInfo is decoded on first access: only the ops log and
# the next rewrite need it, while opening a repository and walking its history do not.  The
# slot holds either the list or a ``_PendingOpsLog``; the property below swaps in the list, so
# every reader (attribute access, equality, repr, ``dataclasses.replace``, copies) sees a list.
_UPDATES_SLOT: Any = RepoInfo.__dict__["latest_updates"]


class _PendingOpsLog:
    """The not yet decoded ops-log page of a decoded repo info (and the page of the info it
    was decoded after, whose equal entries it reuses, see :func:`decode_repo_info`)."""

    __slots__ = ("name", "previous", "root")

    def __init__(self, root: Table, name: str, previous: list[UpdateEntry] | None) -> None:
        self.root = root
        self.name = name
        self.previous = previous

    def decode(self) -> list[UpdateEntry]:
        with decoding(self.name, "repo info"):
            return _decode_updates(self.root.buf, self.root, self.name, self.previous)


def _get_latest_updates(info: RepoInfo) -> list[UpdateEntry]:
    value = _UPDATES_SLOT.__get__(info, RepoInfo)
    if type(value) is _PendingOpsLog:
        value = value.decode()  # a corrupt page raises FormatError here, every time
        _UPDATES_SLOT.__set__(info, value)
    updates: list[UpdateEntry] = value
    return updates


def _set_latest_updates(info: RepoInfo, value: list[UpdateEntry]) -> None:
    _UPDATES_SLOT.__set__(info, value)


setattr(  # noqa: B010 - replaces the slot descriptor, which a plain assignment would not type-check
    RepoInfo,
    "latest_updates",
    property(_get_latest_updates, _set_latest_updates, doc="The ops-log page, newest first."),
)


# ---- encoding --------------------------------------------------------------------------------

_REPO_SPEC_VERSION = 2  # header byte of every repo-info file
_BACKUP_EPOCH_MS = 32503680000000  # 3000-01-01T00:00:00Z

_UPDATE_TYPES: dict[type, int] = {
    RepoInitialized: 1,
    RepoMigrated: 2,
    ConfigChanged: 3,
    MetadataChanged: 4,
    TagCreated: 5,
    TagDeleted: 6,
    BranchCreated: 7,
    BranchDeleted: 8,
    BranchReset: 9,
    NewCommit: 10,
    CommitAmended: 11,
    NewDetachedSnapshot: 12,
    GCRan: 13,
    ExpirationRan: 14,
    FeatureFlagChanged: 15,
    RepoStatusChanged: 16,
}


_NEW_COMMIT_TYPE = _UPDATE_TYPES[NewCommit]


def _serialization_error(message: str) -> FormatError:
    return FormatError(f"cannot encode repo info: {message}", ErrorKind.SERIALIZATION)


def _offsets_vector(builder: flatbuffers.Builder, offsets: list[int] | np.ndarray) -> int:
    return add_offsets_vector(builder, offsets)


def _u16_vector(builder: flatbuffers.Builder, values: tuple[int, ...]) -> int:
    builder.StartVector(2, len(values), 2)
    for v in reversed(values):
        builder.PrependUint16(v)
    return int(builder.EndVector())


def _metadata_vector(builder: flatbuffers.Builder, metadata: dict[str, Any]) -> int:
    items = []
    for key in sorted(metadata, key=lambda k: k.encode("utf-8")):
        name = builder.CreateSharedString(key)
        value = create_byte_vector(builder, flex_dumps(metadata[key]))
        items.append(add_table(builder, 2, [(OFFSET, 1, value), (OFFSET, 0, name)]))
    return _offsets_vector(builder, items)


def _refs_vector(
    builder: flatbuffers.Builder, refs: dict[str, SnapshotId], index: dict[bytes, int], what: str
) -> int:
    tables = []
    for ref_name in sorted(refs, key=lambda k: k.encode("utf-8")):
        target = index.get(bytes(refs[ref_name]))
        if target is None:
            raise _serialization_error(
                f"{what} {ref_name!r} points to snapshot {refs[ref_name]}, which is not listed"
            )
        tables.append(add_table(builder, 2, [(U32, 1, target), (STRING, 0, ref_name.encode())]))
    return _offsets_vector(builder, tables)


def _status_table(builder: flatbuffers.Builder, status: RepoStatusRecord) -> int:
    reason = status.reason.encode() if status.reason is not None else None
    return add_table(
        builder, 3, [(U64, 1, status.set_at), (STRING, 2, reason), (U8, 0, int(status.availability))]
    )


def _update_member(builder: flatbuffers.Builder, kind: UpdateKind) -> int:
    """The union member table of one ops-log entry (strings and nested tables first)."""
    fields: list[tuple[int, int, Any]]
    if isinstance(kind, (RepoInitialized, ConfigChanged, MetadataChanged, GCRan, ExpirationRan)):
        return add_table(builder, 0, [])
    if isinstance(kind, RepoMigrated):
        return add_table(builder, 2, [(U8, 1, kind.to_version), (U8, 0, kind.from_version)])
    if isinstance(kind, NewCommit):  # the common one first
        fields = [(STRUCT, 1, _id12(kind.new_snap_id)), (STRING, 0, kind.branch.encode())]
        return add_table(builder, 2, fields)
    if isinstance(kind, (TagCreated, BranchCreated)):
        return add_table(builder, 1, [(STRING, 0, kind.name.encode())])
    if isinstance(kind, (TagDeleted, BranchDeleted, BranchReset)):
        fields = [(STRUCT, 1, _id12(kind.previous_snap_id)), (STRING, 0, kind.name.encode())]
        return add_table(builder, 2, fields)
    if isinstance(kind, CommitAmended):
        fields = [
            (STRUCT, 2, _id12(kind.new_snap_id)),
            (STRUCT, 1, _id12(kind.previous_snap_id)),
            (STRING, 0, kind.branch.encode()),
        ]
        return add_table(builder, 3, fields)
    if isinstance(kind, NewDetachedSnapshot):
        return add_table(builder, 1, [(STRUCT, 0, _id12(kind.new_snap_id))])
    if isinstance(kind, FeatureFlagChanged):
        fields = [(U16, 0, kind.id), (BOOL, 2, kind.is_set), (BOOL, 1, kind.new_value)]
        return add_table(builder, 3, fields)
    if isinstance(kind, RepoStatusChanged):
        status = _status_table(builder, kind.status)
        return add_table(builder, 1, [(OFFSET, 0, status)])
    raise _serialization_error(f"unknown ops-log entry {kind!r}")


def _id12(sid: SnapshotId) -> bytes:
    raw = bytes(sid)
    if len(raw) != 12:
        raise _serialization_error(f"a snapshot id must have 12 bytes, not {len(raw)}")
    return raw


def _snapshot_table(
    builder: flatbuffers.Builder, entry: SnapshotEntry, index: dict[bytes, int]
) -> int:
    if entry.parent_id is None:
        parent = -1
    else:
        found = index.get(bytes(entry.parent_id))
        if found is None:
            raise _serialization_error(
                f"the parent {entry.parent_id} of snapshot {entry.id} is not listed"
            )
        parent = found
    message = entry.message.encode()
    if not entry.metadata and not entry.pruned_ancestor_tx_logs:
        # the common entry (a FastBuilder writes it in _fast_snapshot_tables), in one call: empty metadata vector, message, table
        fields = [
            (U64, 2, entry.flushed_at),
            (EMPTY_VECTOR, 4, None),
            (STRING, 3, message),
            (_I32, 1, parent),
            (STRUCT, 0, _id12(entry.id)),
        ]
        return add_table(builder, 6, fields)
    metadata = _metadata_vector(builder, entry.metadata)
    pruned = 0
    if entry.pruned_ancestor_tx_logs:  # never written empty (FORMAT.md §3.7)
        pruned = create_struct_vector(
            builder, [bytes(s) for s in entry.pruned_ancestor_tx_logs], 12, 1
        )
    fields = [
        (U64, 2, entry.flushed_at),
        (OFFSET, 5, pruned),
        (OFFSET, 4, metadata),
        (STRING, 3, message),
        (_I32, 1, parent),
        (STRUCT, 0, _id12(entry.id)),
    ]
    return add_table(builder, 6, fields)


# this thread's last layouts of the two big sections, for copying byte runs (_reuse.py)
_PREVIOUS = threading.local()


def _snapshot_section(
    builder: FastBuilder, ordered: list[SnapshotEntry], index: dict[bytes, int]
) -> np.ndarray:
    """The snapshot tables, copied in runs from this thread's previous encoding where possible
    (a commit re-encodes every snapshot the repository lists)."""
    previous: RunLayout | None = getattr(_PREVIOUS, "snapshots", None)
    remap = None
    if previous is not None and previous.ids is not None:
        remap = Remap.of(previous.ids, index)

    def write_one(k: int) -> tuple[int, int, bool]:
        e = ordered[k]
        parent = -1 if e.parent_id is None else index.get(e.parent_id)
        if not _plain(e) or parent is None:
            return _snapshot_table(builder, e, index), 0, True  # the general path (and errors)
        return _plain_snapshot_table(builder, e, parent), parent, e.flushed_at != 0

    tables, layout = write_section(
        builder, ordered, previous, write_one, _plain, ids=list(index), remap=remap
    )
    _PREVIOUS.snapshots = layout
    return tables


def _plain_snapshot_table(builder: FastBuilder, entry: SnapshotEntry, parent: int) -> int:
    """The table of a :func:`_plain` entry whose parent index is ``parent``, in one call."""
    sid = entry.id if type(entry.id) is SnapshotId else _id12(entry.id)  # a SnapshotId has 12 bytes
    return builder.snapshot_entry(entry.flushed_at, entry.message.encode(), parent, sid)


def _plain(entry: SnapshotEntry) -> bool:
    """No metadata (whose keys are shared strings) and no pruned logs: the common entry."""
    return not entry.metadata and not entry.pruned_ancestor_tx_logs


def _update_table(builder: flatbuffers.Builder, update: UpdateEntry) -> int:
    """One ops-log ``Update`` (its member table first)."""
    kind = update.kind
    if type(kind) is NewCommit and isinstance(builder, FastBuilder):  # the bulk of every log
        path = update.backup_path
        sid = kind.new_snap_id
        return builder.new_commit_update(
            update.updated_at,
            path.encode() if path is not None else None,
            kind.branch.encode(),
            sid if type(sid) is SnapshotId else _id12(sid),
            _NEW_COMMIT_TYPE,
        )
    member = _update_member(builder, kind)
    backup = update.backup_path.encode() if update.backup_path is not None else None
    fields = [
        (U64, 2, update.updated_at),
        (STRING, 3, backup),
        (OFFSET, 1, member),
        (U8, 0, _UPDATE_TYPES[type(kind)]),
    ]
    return add_table(builder, 4, fields)


def _updates_section(builder: FastBuilder, updates: list[UpdateEntry]) -> np.ndarray:
    """The ops-log update tables, copied in runs from this thread's previous encoding."""
    previous: RunLayout | None = getattr(_PREVIOUS, "updates", None)

    def write_one(k: int) -> tuple[int, int, bool]:
        update = updates[k]
        kind = update.kind
        wide = update.updated_at != 0 or (
            type(kind) is RepoStatusChanged and kind.status.set_at != 0
        )
        return _update_table(builder, update), 0, wide

    tables, layout = write_section(builder, updates, previous, write_one, _always)
    _PREVIOUS.updates = layout
    return tables


def _always(_: object) -> bool:
    return True


_ENTRY_ID = operator.attrgetter("id")


def _ordered_snapshots(
    snapshots: dict[SnapshotId, SnapshotEntry],
) -> tuple[list[SnapshotEntry], dict[bytes, int]]:
    """Entries sorted by id bytes, and each id's index in that order (C-level loops: this
    runs on every commit, over every snapshot)."""
    entries = list(snapshots.values())
    ids = list(map(_ENTRY_ID, entries))
    if not all(map(operator.is_, snapshots, ids)):  # keys are normally the ids themselves
        for key, entry in snapshots.items():
            if bytes(key) != bytes(entry.id):
                raise _serialization_error(f"snapshot {entry.id} is listed under the key {key}")
    if all(map(isinstance, ids, itertools.repeat(bytes))):
        ordered = sorted(entries, key=_ENTRY_ID)  # ids are bytes: they sort as bytes
        return ordered, dict(zip(map(_ENTRY_ID, ordered), range(len(ordered)), strict=True))
    ordered = sorted(entries, key=lambda e: bytes(e.id))
    return ordered, {bytes(e.id): i for i, e in enumerate(ordered)}


# tests switch it off to compare the stock layout with the builder's
APPEND_LAYOUT = True


def _build(info: RepoInfo, builder_class: type[flatbuffers.Builder] = FastBuilder) -> bytes:
    if "main" not in info.branches:
        raise _serialization_error("the branch 'main' is missing")
    ordered, index = _ordered_snapshots(info.snapshots)
    # the last payload's size: a commit adds a few hundred bytes, and growing copies it all
    size_hint = getattr(_PREVIOUS, "size_hint", 4096)
    state = previous_state() if builder_class is FastBuilder else None
    if APPEND_LAYOUT and state is not None:
        plan = plan_append(state, ordered, index, info.latest_updates)
        if plan is not None:
            return _append_build(FastBuilder(size_hint), info, ordered, index, state, plan)
    builder = builder_class(size_hint)
    tags, branches, deleted = _refs(builder, info, index)
    tables: list[int] | np.ndarray
    if isinstance(builder, FastBuilder):
        tables = _snapshot_section(builder, ordered, index)
    else:
        tables = [_snapshot_table(builder, e, index) for e in ordered]
    snapshots = _offsets_vector(builder, tables)
    extras = _extras(builder, info)
    updates: list[int] | np.ndarray
    if isinstance(builder, FastBuilder):
        updates = _updates_section(builder, info.latest_updates)
    else:
        updates = [_update_table(builder, u) for u in info.latest_updates]
    tail = _Tail.of(builder)
    payload = _root(builder, info, tags, branches, deleted, snapshots, extras, _offsets_vector(builder, updates))
    if isinstance(builder, FastBuilder):
        parents = np.fromiter(
            (-1 if e.parent_id is None else index[bytes(e.parent_id)] for e in ordered),
            dtype=np.int64,
            count=len(ordered),
        )
        tail.remember(
            payload,
            Listed(ordered),
            index,
            np.asarray(tables),
            parents,
            Listed(list(info.latest_updates)),
            np.asarray(updates),
            0,
        )
    return payload


def _append_build(
    builder: FastBuilder,
    info: RepoInfo,
    ordered: list[SnapshotEntry],
    index: dict[bytes, int],
    state: AppendState,
    plan: Plan,
) -> bytes:
    """Keep the previous build's tables where they are; write only the new ones, then the
    vectors and the root (see ``_repo_info_append.py``)."""
    place_tail(builder, state, plan)
    old = plan.snapshot_old
    tables = _kept(state.snapshot_tables, old)
    for i in np.flatnonzero(old < 0).tolist():
        entry = ordered[i]
        if _plain(entry):
            tables[i] = _plain_snapshot_table(builder, entry, int(plan.snapshot_parents[i]))
        else:
            tables[i] = _snapshot_table(builder, entry, index)
    updates = info.latest_updates
    update_tables = _kept(state.update_tables, plan.update_old)
    for i in np.flatnonzero(plan.update_old < 0).tolist():
        update_tables[i] = _update_table(builder, updates[i])
    tail = _Tail.of(builder)
    tags, branches, deleted = _refs(builder, info, index)
    snapshots = _offsets_vector(builder, tables)
    extras = _extras(builder, info)
    payload = _root(builder, info, tags, branches, deleted, snapshots, extras, _offsets_vector(builder, update_tables))
    tail.remember(
        payload,
        Listed(ordered, plan.snapshot_keys),
        index,
        tables,
        plan.snapshot_parents,
        Listed(list(updates), plan.update_keys),
        update_tables,
        plan.dead,
    )
    return payload


def _kept(previous_tables: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Table offsets of the kept items (``old >= 0``); the others are filled in later."""
    if not previous_tables.shape[0]:
        return np.zeros(old.shape[0], dtype=np.int64)
    kept: np.ndarray = previous_tables[np.maximum(old, 0)]
    return kept


@dataclass(slots=True)
class _Tail:
    """The builder's state right after its last table: what the next append build keeps."""

    size: int
    minalign: int
    vtables: dict[Any, int]

    @classmethod
    def of(cls, builder: flatbuffers.Builder) -> _Tail:
        size = builder.Offset()
        return cls(size, builder.minalign, {k: v for k, v in builder.vtables.items() if v <= size})

    def remember(
        self,
        payload: bytes,
        snapshots: Listed,
        index: dict[bytes, int],
        tables: np.ndarray,
        parents: np.ndarray,
        updates: Listed,
        update_tables: np.ndarray,
        dead: int,
    ) -> None:
        remember(
            AppendState(
                payload,
                self.size,
                self.minalign,
                self.vtables,
                snapshots,
                list(index),
                tables.astype(np.int64, copy=False),
                parents,
                updates,
                update_tables.astype(np.int64, copy=False),
                dead,
            )
        )
        _PREVIOUS.size_hint = min(-(-(len(payload) + 4096) // 4096) * 4096, 1 << 30)


def _refs(builder: flatbuffers.Builder, info: RepoInfo, index: dict[bytes, int]) -> tuple[int, int, int]:
    """The tags, branches and deleted-tags vectors."""
    tags = _refs_vector(builder, info.tags, index, "tag")
    branches = _refs_vector(builder, info.branches, index, "branch")
    deleted = _offsets_vector(
        builder,
        [builder.CreateString(t) for t in sorted(info.deleted_tags, key=lambda t: t.encode("utf-8"))],
    )
    return tags, branches, deleted


def _extras(builder: flatbuffers.Builder, info: RepoInfo) -> tuple[int, int | None, int | None, int | None]:
    """The status table, metadata vector and feature-flag vectors."""
    status = _status_table(builder, info.status)
    metadata = _metadata_vector(builder, info.metadata) if info.metadata is not None else None
    enabled = (
        _u16_vector(builder, tuple(sorted(info.enabled_feature_flags)))
        if info.enabled_feature_flags is not None
        else None
    )
    disabled = (
        _u16_vector(builder, tuple(sorted(info.disabled_feature_flags)))
        if info.disabled_feature_flags is not None
        else None
    )
    return status, metadata, enabled, disabled


def _root(
    builder: flatbuffers.Builder,
    info: RepoInfo,
    tags: int,
    branches: int,
    deleted: int,
    snapshots: int,
    extras: tuple[int, int | None, int | None, int | None],
    updates_vec: int,
) -> bytes:
    """The last strings, the root table, and the finished buffer."""
    status, metadata, enabled, disabled = extras
    before = (
        builder.CreateString(info.repo_before_updates)
        if info.repo_before_updates is not None
        else None
    )
    config = create_byte_vector(builder, info.config) if info.config is not None else None
    builder.StartObject(13)
    if disabled is not None:
        builder.PrependUOffsetTRelativeSlot(11, disabled, 0)
    if enabled is not None:
        builder.PrependUOffsetTRelativeSlot(10, enabled, 0)
    if config is not None:
        builder.PrependUOffsetTRelativeSlot(9, config, 0)
    if before is not None:
        builder.PrependUOffsetTRelativeSlot(8, before, 0)
    builder.PrependUOffsetTRelativeSlot(7, updates_vec, 0)
    if metadata is not None:
        builder.PrependUOffsetTRelativeSlot(6, metadata, 0)
    builder.PrependUOffsetTRelativeSlot(5, status, 0)
    builder.PrependUOffsetTRelativeSlot(4, snapshots, 0)
    builder.PrependUOffsetTRelativeSlot(3, deleted, 0)
    builder.PrependUOffsetTRelativeSlot(2, branches, 0)
    builder.PrependUOffsetTRelativeSlot(1, tags, 0)
    builder.PrependUint8Slot(0, info.spec_version, 0)
    return finish(builder, builder.EndObject())


def encode_repo_info(
    info: RepoInfo, *, compression_level: int = 3, implementation: str | None = None
) -> bytes:
    """Encode a repo-info file (header + zstd flatbuffer), byte-compatible with the reference.

    Snapshot indices and ``parent_offset`` values are recomputed (snapshots sorted by id
    bytes, refs by name bytes, deleted tags sorted), following the build order of FORMAT.md
    §2.6.  An empty ``pruned_ancestor_tx_logs`` is written as absent.

    Parameters
    ----------
    info
        The repository state to write.
    compression_level
        zstd level (the repository config's ``compression.level``, default 3).
    implementation
        Name written in the header; this library's name when None.

    Raises
    ------
    FormatError
        If the value cannot be represented: a ref or parent naming an unlisted snapshot, no
        ``main`` branch, an unknown update kind, or an out-of-range number.
    """
    try:
        payload = _build(info)
    except FormatError:
        raise
    except (TypeError, ValueError, OverflowError, struct.error, KeyError) as err:
        raise _serialization_error(f"{type(err).__name__}: {err}") from None
    return encode_envelope(
        payload,
        FileType.REPO_INFO,
        _REPO_SPEC_VERSION,
        level=compression_level,
        implementation=implementation if implementation is not None else IMPLEMENTATION_NAME,
    )


# ---- decoding --------------------------------------------------------------------------------


def _corrupt(name: str, message: str) -> FormatError:
    return FormatError(f"cannot decode repo info {name}: {message}", ErrorKind.DESERIALIZATION)


def _required(value: _T | None, name: str, what: str) -> _T:
    if value is None:
        raise _corrupt(name, f"required field {what} is missing")
    return value


def _snapshot_id(table: Table, slot: int, name: str, what: str) -> SnapshotId:
    return SnapshotId(_required(table.struct_bytes(slot, 12), name, what))


def _decode_metadata(table: Table, slot: int, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in table.tables(slot):
        key = _required(item.string(0), name, "MetadataItem.name")
        raw = _required(item.bytes(1), name, "MetadataItem.value")
        try:
            out[key] = flex_loads(raw)
        except Exception as err:  # the FlexBuffers library raises anything on garbage
            raise _corrupt(name, f"bad metadata value for {key!r} ({type(err).__name__})") from None
    return out


def _decode_status(table: Table) -> RepoStatusRecord:
    return RepoStatusRecord(
        availability=Availability(table.u8(0)),
        set_at=table.u64(1),
        reason=table.string(2),
    )


def _decode_update_kind(type_id: int, member: Table, name: str) -> UpdateKind:
    def text(slot: int, what: str) -> str:
        return _required(member.string(slot), name, what)

    def sid(slot: int, what: str) -> SnapshotId:
        return _snapshot_id(member, slot, name, what)

    match type_id:
        case 1:
            return RepoInitialized()
        case 2:
            return RepoMigrated(member.u8(0), member.u8(1))
        case 3:
            return ConfigChanged()
        case 4:
            return MetadataChanged()
        case 5:
            return TagCreated(text(0, "TagCreatedUpdate.name"))
        case 6:
            return TagDeleted(text(0, "TagDeletedUpdate.name"), sid(1, "previous_snap_id"))
        case 7:
            return BranchCreated(text(0, "BranchCreatedUpdate.name"))
        case 8:
            return BranchDeleted(text(0, "BranchDeletedUpdate.name"), sid(1, "previous_snap_id"))
        case 9:
            return BranchReset(text(0, "BranchResetUpdate.name"), sid(1, "previous_snap_id"))
        case 10:
            return NewCommit(text(0, "NewCommitUpdate.branch"), sid(1, "new_snap_id"))
        case 11:
            return CommitAmended(
                text(0, "CommitAmendedUpdate.branch"),
                sid(1, "previous_snap_id"),
                sid(2, "new_snap_id"),
            )
        case 12:
            return NewDetachedSnapshot(sid(0, "new_snap_id"))
        case 13:
            return GCRan()
        case 14:
            return ExpirationRan()
        case 15:
            return FeatureFlagChanged(member.u16(0), member.bool(1), member.bool(2))
        case 16:
            status = _required(member.table(0), name, "RepoStatusChangedUpdate.status")
            return RepoStatusChanged(_decode_status(status))
    raise _corrupt(name, f"unknown ops-log entry type {type_id}")


def _decode_refs(
    root: Table, slot: int, ids: list[SnapshotId], name: str, what: str
) -> dict[str, SnapshotId]:
    if not root.has(slot):
        raise _corrupt(name, f"required field {what} is missing")
    refs: dict[str, SnapshotId] = {}
    for table in root.tables(slot):
        ref_name = _required(table.string(0), name, f"{what} name")
        index = table.u32(1)
        if index >= len(ids):
            raise _corrupt(name, f"{what} {ref_name!r} has snapshot index {index} out of range")
        if ref_name in refs:
            raise _corrupt(name, f"{what} {ref_name!r} is listed twice")
        refs[ref_name] = ids[index]
    return refs


def _u16s(root: Table, slot: int) -> tuple[int, ...] | None:
    vec = root.vector(slot)
    if vec is None:
        return None
    start, n = vec
    if start + 2 * n > len(root.buf):
        raise IndexError("u16 vector out of bounds")
    return struct.unpack_from(f"<{n}H", root.buf, start)


def _check_acyclic(parents: npt.NDArray[np.int64], ids: list[SnapshotId], name: str) -> None:
    """Raise unless every parent chain ends at a root (-1).

    Pointer doubling: after ``k`` rounds ``anc[i]`` is the ``2**k``-th ancestor of ``i`` (or
    -1), and an acyclic chain is shorter than the number of snapshots, so whatever has not
    reached -1 after ``bit_length(n)`` rounds reaches a cycle.  The snapshot named is the
    first one (in file order) whose ancestry contains the cycle.
    """
    anc = parents
    for _ in range(len(parents).bit_length() + 1):
        alive = anc >= 0
        if not alive.any():
            return
        anc = np.where(alive, anc[anc], -1)
    start = int(np.flatnonzero(anc >= 0)[0])
    raise _corrupt(name, f"the ancestry of snapshot {ids[start]} contains a cycle")


def _snapshot_ids(raws: list[bytes]) -> list[SnapshotId]:
    """Ids from raw strings known to be 12 bytes long (skips the constructor's length check)."""
    return list(map(bytes.__new__, itertools.repeat(SnapshotId), raws))


def _entry_factory() -> Callable[..., SnapshotEntry]:
    """A positional ``SnapshotEntry`` constructor that fills the slots directly.

    The generated ``__init__`` of a frozen dataclass sets each field through
    ``object.__setattr__``; the slot descriptors are a third cheaper, which counts when a
    long-lived repository lists tens of thousands of snapshots.  Should the class ever get a
    ``__post_init__`` or other fields, the real constructor is used.
    """
    names = tuple(f.name for f in dataclasses.fields(SnapshotEntry))
    expected = ("id", "parent_id", "flushed_at", "message", "metadata", "pruned_ancestor_tx_logs")
    if names != expected or hasattr(SnapshotEntry, "__post_init__"):
        return SnapshotEntry
    s0, s1, s2, s3, s4, s5 = (getattr(SnapshotEntry, n).__set__ for n in names)
    new = object.__new__

    def make(
        sid: SnapshotId,
        parent_id: SnapshotId | None,
        flushed_at: int,
        message: str,
        metadata: dict[str, Any],
        pruned: tuple[SnapshotId, ...] | None,
    ) -> SnapshotEntry:
        entry: SnapshotEntry = new(SnapshotEntry)
        s0(entry, sid)
        s1(entry, parent_id)
        s2(entry, flushed_at)
        s3(entry, message)
        s4(entry, metadata)
        s5(entry, pruned)
        return entry

    return make


_make_entry = _entry_factory()


@dataclass(slots=True)
class _SnapshotColumns:
    """The snapshot list's fixed-size fields, decoded for every entry at once."""

    buf: bytes
    cols: Columns
    ids: list[SnapshotId]
    parents: npt.NDArray[np.int64]  # raw parent_offset values (-1 = root), not yet checked
    flushed_at: list[int]

    def details(
        self, rows: list[int], name: str
    ) -> tuple[list[str], list[dict[str, Any]], list[tuple[SnapshotId, ...] | None]]:
        """Messages, metadata and pruned logs of the entries ``rows``.

        Entries with metadata or pruned transaction logs (rare) have those two fields read
        per entry through :class:`Table`.
        """
        cols, buf = self.cols, self.buf
        index = np.array(rows, dtype=np.int64)
        messages = cols.strings(cols.field(3)[index])
        metadata: list[dict[str, Any]] = [{} for _ in rows]
        pruned: list[tuple[SnapshotId, ...] | None] = [None] * len(rows)
        f_metadata = cols.field(4)[index]
        with_metadata = np.flatnonzero(f_metadata)
        if len(with_metadata):
            lengths = cols.vector_lengths(f_metadata[with_metadata])
            for k in with_metadata[lengths != 0].tolist():
                metadata[k] = _decode_metadata(Table(buf, int(cols.pos[rows[k]])), 4, name)
        for k in np.flatnonzero(cols.field(5)[index]).tolist():
            raws = Table(buf, int(cols.pos[rows[k]])).struct_vector(5, 12)
            pruned[k] = tuple(SnapshotId(raw) for raw in raws)
        return messages, metadata, pruned


def _decode_snapshot_columns(buf: bytes, root: Table, name: str) -> _SnapshotColumns:
    """Every snapshot of the list, field by field for all of them at once (numpy gathers)."""
    start, n = _required(root.vector(4), name, "snapshots")
    cols = Columns.of_vector(buf, start, n, 6)
    f_id, f_message = cols.field(0), cols.field(3)
    missing = (f_id == 0) | (f_message == 0)
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        what = "id" if f_id[first] == 0 else "message"
        raise _corrupt(name, f"required field SnapshotInfo.{what} is missing")
    ids = _snapshot_ids(cols.raw12(f_id))
    parents = cols.scalar_field(1, "<i4")
    flushed_at = cols.scalar_field(2, "<u8").tolist()
    return _SnapshotColumns(buf, cols, ids, parents, flushed_at)


def _snapshot_entries(
    cols: _SnapshotColumns,
    parent_ids: list[SnapshotId | None],
    previous: dict[SnapshotId, SnapshotEntry] | None,
    name: str,
) -> list[SnapshotEntry]:
    """The entries, taking those of ``previous`` with the same id, parent and flush time.

    A snapshot's message and metadata never change once it is listed (an amend makes a new
    snapshot), so those three fields identify an entry of the same repository; only the
    other entries' strings and metadata are decoded.
    """
    ids, flushed_at = cols.ids, cols.flushed_at
    entries: list[SnapshotEntry | None]
    if previous:
        entries = list(map(previous.get, ids))
        rows = [
            i
            for i, (old, parent, flushed) in enumerate(zip(entries, parent_ids, flushed_at, strict=True))
            if old is None or old.parent_id != parent or old.flushed_at != flushed
        ]
    else:
        entries = [None] * len(ids)
        rows = list(range(len(ids)))
    if rows:
        for i, message, metadata, pruned in zip(rows, *cols.details(rows, name), strict=True):
            entries[i] = _make_entry(ids[i], parent_ids[i], flushed_at[i], message, metadata, pruned)
    return entries  # type: ignore[return-value]  # every None was replaced


def _decode_updates(
    buf: bytes, root: Table, name: str, previous: list[UpdateEntry] | None = None
) -> list[UpdateEntry]:
    """The ops-log page, column-wise; NewCommit members (nearly all of them) too.

    With ``previous`` (an earlier page of the same repository), a NewCommit entry with the
    same time, new snapshot id and presence of a backup path is that page's object: an entry
    never changes once written, except that the newest one gets its backup path when the
    next update lands; only the other entries' strings are decoded.
    """
    start, n = _required(root.vector(7), name, "latest_updates")
    cols = Columns.of_vector(buf, start, n, 4)
    f_member = cols.field(1)
    if not f_member.all():
        raise _corrupt(name, "required field Update.update_type is missing")
    type_ids = cols.scalar_field(0, "u1")
    members = cols.targets(f_member)
    updated_at = cols.scalar_field(2, "<u8").tolist()
    f_backup = cols.field(3)
    out: list[UpdateEntry | None] = [None] * n
    kinds: list[Any] = [None] * n
    commits = np.flatnonzero(type_ids == 10)
    if len(commits):
        member_cols = Columns(buf, members[commits], 2)
        f_branch, f_new = member_cols.field(0), member_cols.field(1)
        if not f_branch.all():
            raise _corrupt(name, "required field NewCommitUpdate.branch is missing")
        if not f_new.all():
            raise _corrupt(name, "required field new_snap_id is missing")
        rows = commits.tolist()
        new_ids = _snapshot_ids(member_cols.raw12(f_new))
        fresh = list(range(len(rows)))
        if previous:
            by_time = {u.updated_at: u for u in previous}
            has_backup = (f_backup != 0).tolist()
            fresh = []
            for k, (i, sid) in enumerate(zip(rows, new_ids, strict=True)):
                old = by_time.get(updated_at[i])
                kind = old.kind if old is not None else None
                if (
                    type(kind) is NewCommit
                    and kind.new_snap_id == sid
                    and (old.backup_path is not None) == has_backup[i]  # type: ignore[union-attr]
                ):
                    out[i] = old
                else:
                    fresh.append(k)
        branches = member_cols.strings(f_branch[fresh]) if fresh else []
        for k, branch in zip(fresh, branches, strict=True):
            kinds[rows[k]] = NewCommit(branch, new_ids[k])
    for i in np.flatnonzero(type_ids != 10).tolist():
        kinds[i] = _decode_update_kind(int(type_ids[i]), Table(buf, int(members[i])), name)
    todo = [i for i in range(n) if out[i] is None]
    backups: dict[int, str] = {}
    with_backup = [i for i in todo if f_backup[i]]
    if with_backup:
        backups = dict(zip(with_backup, cols.strings(f_backup[with_backup]), strict=True))
    for i in todo:
        out[i] = UpdateEntry(kinds[i], updated_at[i], backups.get(i))
    return out  # type: ignore[return-value]  # every None was replaced


def _root_of(buf: bytes, name: str) -> Table:
    """The root table, after checking the repository spec version it gives."""
    root = root_table(buf)
    spec_version = root.u8(0)
    if spec_version > _REPO_SPEC_VERSION:
        raise FormatError(
            f"cannot read {name}: repository spec version {spec_version} is not supported "
            "(this library reads 1 and 2); upgrade your library",
            ErrorKind.UNSUPPORTED_SPEC_VERSION,
        )
    return root


def _decode(buf: bytes, name: str, previous: RepoInfo | None) -> RepoInfo:
    root = _root_of(buf, name)
    spec_version = root.u8(0)
    if not root.has(4):
        raise _corrupt(name, "required field snapshots is missing")
    cols = _decode_snapshot_columns(buf, root, name)
    ids = cols.ids
    n = len(ids)
    if len(set(ids)) != n:
        raise _corrupt(name, "a snapshot id is listed twice")
    parents = cols.parents
    bad = (parents < -1) | (parents >= n) | (parents == np.arange(n))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _corrupt(name, f"snapshot {ids[i]} has parent_offset {int(parents[i])} out of range")
    _check_acyclic(parents, ids, name)
    with_root: list[SnapshotId | None] = [*ids, None]  # index -1 is the root's "parent"
    parent_ids = [with_root[p] for p in parents.tolist()]
    entries = _snapshot_entries(cols, parent_ids, previous.snapshots if previous is not None else None, name)
    snapshots: dict[SnapshotId, SnapshotEntry] = dict(zip(ids, entries, strict=True))
    tags = _decode_refs(root, 1, ids, name, "tag")
    branches = _decode_refs(root, 2, ids, name, "branch")
    if not root.has(3):
        raise _corrupt(name, "required field deleted_tags is missing")
    status = _decode_status(_required(root.table(5), name, "status"))
    updates = root.vector(7)
    if updates is None:
        raise _corrupt(name, "required field latest_updates is missing")
    check_offsets_vector(buf, *updates)  # its entries are decoded on first access
    info = RepoInfo(
        tags=tags,
        branches=branches,
        deleted_tags=set(root.strings(3)),
        snapshots=snapshots,
        status=status,
        latest_updates=[],
        metadata=_decode_metadata(root, 6, name) if root.has(6) else None,
        repo_before_updates=root.string(8),
        config=root.bytes(9),
        enabled_feature_flags=_u16s(root, 10),
        disabled_feature_flags=_u16s(root, 11),
        spec_version=spec_version,
    )
    previous_updates = _UPDATES_SLOT.__get__(previous, RepoInfo) if previous is not None else None
    if type(previous_updates) is _PendingOpsLog:  # never decoded: reuse what it would have
        previous_updates = previous_updates.previous
    if type(previous_updates) is not list:
        previous_updates = None
    _UPDATES_SLOT.__set__(info, _PendingOpsLog(root, name, previous_updates))
    return info


def decode_repo_info(
    data: bytes | memoryview, name: str = "repo", *, previous: RepoInfo | None = None
) -> RepoInfo:
    """Decode a repo-info file.

    Parameters
    ----------
    data
        The whole object as stored (header and zstd payload).
    name
        The object's key, used in error messages.
    previous
        An earlier state of the same repository: its snapshot entries and ops-log entries
        that the file still lists are returned instead of new objects (recognized by their
        ids, times and parents; their strings are not decoded again).  The encoder copies
        the bytes of entries it wrote before by identity, so a commit over a repo object that
        another writer changed re-encodes in about a quarter of the time.

    Raises
    ------
    FormatError
        On any corrupt, truncated or unsupported input, including broken invariants (an index
        or ``parent_offset`` out of range, a duplicate snapshot id or ref, a parent cycle).
        The ops-log entries themselves are decoded, and checked, when ``latest_updates`` is
        first read.
    """
    header, buf = _open_envelope(data, name)
    with decoding(name, "repo info"):
        info = _decode(buf, name, previous)
    info.implementation = header.implementation
    return info


def _open_envelope(data: bytes | memoryview, name: str) -> tuple[Header, bytes]:
    """Header and flatbuffer of a repo-info file (always spec 2 in its header)."""
    header, buf = decode_envelope(data, name, FileType.REPO_INFO)
    if header.spec_version < _REPO_SPEC_VERSION:
        raise FormatError(
            f"cannot read {name}: repo-info files are spec 2, the header says spec "
            f"{header.spec_version}",
            ErrorKind.INVALID_FILE_FORMAT,
        )
    return header, buf


def peek_branch_tip(
    data: bytes | memoryview, branch: str, name: str = "repo"
) -> tuple[SnapshotId | None, Availability]:
    """The tip of ``branch`` (None when there is no such branch) and the repository's
    availability, read from a repo-info file without decoding the rest.

    Opening a session needs only these two facts, and a full decode costs time in
    proportion to the history (every snapshot entry) whenever another writer changed the
    file.

    Raises
    ------
    FormatError
        As :func:`decode_repo_info`, for what it reads.
    """
    _, buf = _open_envelope(data, name)
    with decoding(name, "repo info"):
        root = _root_of(buf, name)
        status = _decode_status(_required(root.table(5), name, "status"))
        if not root.has(2):
            raise _corrupt(name, "required field branch is missing")
        _, n = _required(root.vector(4), name, "snapshots")
        for ref in root.tables(2):
            if ref.string(0) != branch:
                continue
            index = ref.u32(1)
            if index >= n:
                raise _corrupt(name, f"branch {branch!r} has snapshot index {index} out of range")
            raw = _required(root.table_at(4, index).struct_bytes(0, 12), name, "SnapshotInfo.id")
            return SnapshotId(raw), status.availability
        return None, status.availability


# ---- pure helpers for the update protocol ----------------------------------------------------


def backup_name(now_ms: int, random_suffix: bytes, *, prefix: str = "repo") -> str:
    """The ``overwritten/`` object name for a backup taken at ``now_ms`` (FORMAT.md §5.4).

    Newer backups sort first.  ``prefix="config.yaml"`` names spec-1 config backups.

    Examples
    --------
    At 1775664957464 ms with the suffix bytes whose Crockford form is
    ``PTXGHH5DYGZ1JY7JBK70`` the name is ``repo.30728015042536.PTXGHH5DYGZ1JY7JBK70``.
    """
    if len(random_suffix) != 12:
        raise InvalidInputError(
            f"a backup suffix has 12 bytes, got {len(random_suffix)}", ErrorKind.INVALID_KEY
        )
    remaining = _BACKUP_EPOCH_MS - now_ms
    if not 0 <= remaining < 10**14:
        raise InvalidInputError(
            f"time {now_ms} ms is outside the backup-name range", ErrorKind.INVALID_KEY
        )
    return f"{prefix}.{remaining:014d}.{crockford_encode(bytes(random_suffix))}"


def append_update(
    info: RepoInfo, kind: UpdateKind, updated_at: int, backup: str, page_size: int = 1000
) -> RepoInfo:
    """Return ``info`` with ``kind`` logged as the newest ops-log entry (§5.5 paging rules).

    The previous newest entry gets ``backup`` (the name of the copy of the current ``repo``
    in ``overwritten/``) as its backup path.  When the new page already holds ``page_size``
    entries, it is cut at the next entry that has a backup path, and ``repo_before_updates``
    becomes that path; entries without a backup path (synthetic migration history) are never
    a cut point.  The returned value is a shallow copy: its other fields are shared with
    ``info``.

    Raises
    ------
    FormatError
        If ``updated_at`` is not strictly after the newest entry (clock drift).
    """
    updates = info.latest_updates
    if updates and updated_at <= updates[0].updated_at:
        raise FormatError(
            f"cannot log an update at {updated_at} µs: the newest ops-log entry is at "
            f"{updates[0].updated_at} µs (clock drift?)",
            ErrorKind.SNAPSHOT_TIMESTAMP,
        )
    candidates = [UpdateEntry(kind, updated_at)]
    if updates:
        candidates.append(dataclasses.replace(updates[0], backup_path=backup))
        candidates.extend(updates[1:])
    page: list[UpdateEntry] = []
    before = info.repo_before_updates
    for entry in candidates:
        if len(page) >= page_size and entry.backup_path is not None:
            before = entry.backup_path
            break
        page.append(entry)
    return dataclasses.replace(info, latest_updates=page, repo_before_updates=before)
