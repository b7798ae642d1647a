"""Re-encode a repo info by keeping the previous buffer's tables in place (append layout).

Why: a commit rewrites the whole repo-info file, listing every snapshot and up to a page of
ops-log entries again.  Copying byte runs of the previous encoding (``_reuse.py``) keeps the
stock builder's layout but still costs per-run bookkeeping; this module skips even that for
the common case, where the new state lists the previous entries plus a few new ones.

How: every snapshot and ops-log table of a build lies in the *tail* of its buffer, the last
``tail_size`` bytes, below the vectors and the root that point to them.  Flatbuffer offsets
inside tables are relative, and a builder counts positions from the buffer end, so the next
build starts by copying that tail verbatim to the end of its own buffer: every old table
keeps its offset.  It then writes the tables of new entries, and finally the vectors (whose
elements point to old and new tables alike), the small objects and the root.  The one
absolute value inside an old table is a snapshot's ``parent_offset`` (an index into the
sorted snapshot list), patched in place; a table whose parent index changes between 0 (not
written, the default) and non-zero is written again instead.

Tables of entries no longer listed (an ops-log entry that got its backup path, a page cut,
an expired snapshot) stay in the tail as dead bytes until a full rebuild, which happens when
they outnumber a quarter of the live ones.  The result is a valid flatbuffer with the same
content as the stock build, laid out differently (the reference reads either).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from icechunk.format._fastbuilder import FastBuilder
from icechunk.format._reuse import PARENT_FROM_TABLE, IdentityIndex, Remap, identities, patch_i32

__all__ = ["AppendState", "Listed", "Plan", "place_tail", "plan_append", "previous_state", "remember"]



@dataclass(slots=True)
class AppendState:
    """What one build leaves for the next (per thread: builds are not shared)."""

    payload: bytes  # the finished buffer
    tail_size: int  # its last ``tail_size`` bytes hold every listed table
    tail_minalign: int
    vtables: dict[Any, int]  # vtable key -> offset, every one inside the tail
    snapshots: Listed  # the listed entries, sorted by id
    snapshot_ids: list[bytes]
    snapshot_tables: npt.NDArray[np.int64]  # builder offset of each entry's table
    snapshot_parents: npt.NDArray[np.int64]  # parent index written (-1: root; 0: not written)
    updates: Listed
    update_tables: npt.NDArray[np.int64]
    dead: int  # tables in the tail that nothing lists any more


class Listed:
    """Objects a build listed, found again by identity (kept alive so their ``id()`` stays
    theirs)."""

    __slots__ = ("index", "items")

    def __init__(self, items: list[Any], keys: npt.NDArray[np.uint64] | None = None) -> None:
        self.items = items
        keys = identities(items) if keys is None else keys
        self.index = IdentityIndex(keys, np.arange(len(items), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.items)

    def match(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """For each object (by its ``id()`` in ``keys``), its index here, or -1."""
        return self.index.match(keys)


_STATE = threading.local()


def previous_state() -> AppendState | None:
    """This thread's last build, if any."""
    state: AppendState | None = getattr(_STATE, "last", None)
    return state


def remember(state: AppendState | None) -> None:
    _STATE.last = state


@dataclass(slots=True)
class Plan:
    """Which tables an append build keeps and which it writes."""

    snapshot_old: npt.NDArray[np.int64]  # per listed entry: its index in the previous build, -1: write it
    snapshot_parents: npt.NDArray[np.int64]  # per listed entry: the parent index to write (-1: root)
    update_old: npt.NDArray[np.int64]  # per ops-log entry: its index in the previous build, -1: write it
    dead: int  # dead tables after this build
    snapshot_keys: npt.NDArray[np.uint64]  # identities of the listed entries and ops-log entries
    update_keys: npt.NDArray[np.uint64]


def plan_append(
    state: AppendState, ordered: list[Any], index: dict[bytes, int], updates: list[Any]
) -> Plan | None:
    """Decide which tables to keep; None when a full build is due (or an entry names an
    unlisted parent, which the full build reports)."""
    n = len(ordered)
    snapshot_keys = identities(ordered)
    old = state.snapshots.match(snapshot_keys)
    kept = old >= 0
    remap = Remap.of(state.snapshot_ids, index).values
    parents = np.empty(n, dtype=np.int64)
    old_parents = state.snapshot_parents[old[kept]]
    parents[kept] = remap[old_parents]
    for i in np.flatnonzero(~kept).tolist():
        parent_id = ordered[i].parent_id
        found = -1 if parent_id is None else index.get(bytes(parent_id))
        if found is None:
            return None
        parents[i] = found
    if (parents == -2).any():
        return None
    # a kept table needs the same presence of its parent field (index 0 is not written)
    same_field = (old_parents != 0) == (parents[kept] != 0)
    snapshot_old = old.copy()
    snapshot_old[np.flatnonzero(kept)[~same_field]] = -1
    update_keys = identities(updates)
    update_old = state.updates.match(update_keys)
    reused = int(np.count_nonzero(snapshot_old >= 0)) + int(np.count_nonzero(update_old >= 0))
    live = n + len(updates)
    dead = state.dead + len(state.snapshots) + len(state.updates) - reused
    if reused < live // 2 or dead > live // 4 + 32:
        return None  # mostly new entries, or too much dead space: the stock layout
    return Plan(snapshot_old, parents, update_old, dead, snapshot_keys, update_keys)


def place_tail(builder: FastBuilder, state: AppendState, plan: Plan) -> None:
    """Copy the previous tail to the end of ``builder``'s buffer and patch parent indices."""
    tail = state.tail_size
    if builder.head < tail + 8:
        builder._grow(tail + 8)
    buf = builder.Bytes
    size = len(buf)
    buf[size - tail :] = state.payload[len(state.payload) - tail :]
    builder.head = size - tail
    builder.minalign = max(builder.minalign, state.tail_minalign)
    builder.vtables.update(state.vtables)
    kept = np.flatnonzero(plan.snapshot_old >= 0)
    old = plan.snapshot_old[kept]
    written = plan.snapshot_parents[kept]
    change = written != state.snapshot_parents[old]
    if change.any():
        patch_i32(buf, size - (state.snapshot_tables[old[change]] - PARENT_FROM_TABLE), written[change])
