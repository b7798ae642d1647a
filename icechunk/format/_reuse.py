"""Write a repo-info section by copying byte runs of this thread's previous encoding.

Why: a commit rewrites the whole repo-info file, so every snapshot entry and ops-log update
listed before is written again.  The per-object memo of :class:`FastBuilder` still costs a
few microseconds of Python per object; copying a whole run of objects costs a few numpy
calls per run, so re-encoding after a commit no longer grows with the history.

A *run* is a stretch of items (snapshot entries, ops-log updates) that the previous build
wrote one after the other and that are the very same objects now.  Its bytes are copied as
one block when:

- the block starts at the same position modulo 8 as before: every padding the builder
  writes depends only on the position modulo 8, and inside a block every offset is relative;
- each vtable the block uses is created inside it now exactly when it was before: the key of
  a block's first table with that key must not exist yet if that table created it, and must
  exist (its offsets are then patched) if the table pointed outside the block;
- each snapshot keeps the presence of its parent index (index 0, the schema default, is not
  written), and the parent is still listed; the index itself is patched.

A run that fails a test at some item is copied up to that item, which is then written object
by object.  Positions agree again modulo 8 right after it: a table with a u64 field ends at
a fixed position modulo 8 whatever its start.  Output is byte-identical to writing every
item object by object (tests compare the two on random histories).
"""

from __future__ import annotations

import bisect
import itertools
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from icechunk.format._fastbuilder import FastBuilder

__all__ = [
    "PARENT_FROM_TABLE",
    "IdentityIndex",
    "Remap",
    "RunLayout",
    "identities",
    "patch_i32",
    "write_section",
]

PARENT_FROM_TABLE = 16  # a snapshot table: vtable offset, 12-byte id, then the i32 parent
_I32 = struct.Struct("<i")


class _Codes:
    """Small integer codes for vtable keys, shared by the layouts of one thread."""

    def __init__(self) -> None:
        self.of: dict[Any, int] = {}
        self.keys: list[Any] = []

    def code(self, key: Any) -> int:
        found = self.of.get(key)
        if found is None:
            found = self.of[key] = len(self.keys)
            self.keys.append(key)
        return found


_THREAD = threading.local()


def _codes() -> _Codes:
    codes: _Codes | None = getattr(_THREAD, "codes", None)
    if codes is None:
        codes = _THREAD.codes = _Codes()
    return codes


class RunLayout:
    """Where one build wrote each item of a section; offsets count from the buffer end.

    Per item: ``start``/``end`` (the section is contiguous, so ``end[k] == start[k + 1]``),
    ``obj`` (the offset the section's vector points to), ``parent`` (the i32 written, 0 when
    absent or not applicable) and ``parent_site``, ``wide`` (it wrote an 8-byte scalar), and
    its vtable references ``ref_first[k]:ref_first[k + 1]`` (table offset, vtable offset,
    key code, whether that table created the vtable).  ``items`` holds the objects (None
    for those that may not be copied) and keeps them alive, so that their ``id()`` values,
    indexed in ``index``, identify them.
    """

    __slots__ = (
        "buf",
        "code_count",
        "end",
        "ids",
        "index",
        "items",
        "new_refs",
        "obj",
        "parent",
        "parent_site",
        "ref_code",
        "ref_code_list",
        "ref_first",
        "ref_new",
        "ref_obj",
        "ref_vt",
        "ref_vt_list",
        "size",
        "start",
        "wide",
    )

    def __init__(
        self, buf: bytearray, items: list[Any], ids: list[Any] | None, cols: dict[str, np.ndarray]
    ) -> None:
        self.buf = buf
        self.size = len(buf)
        self.ids = ids
        self.start = cols["start"]
        self.end = cols["end"]
        self.obj = cols["obj"]
        self.parent = cols["parent"]
        self.parent_site = cols["parent_site"]
        self.wide = cols["wide"]
        self.ref_first = np.concatenate(([0], np.cumsum(cols["nrefs"])))
        self.ref_obj = cols["ref_obj"]
        self.ref_vt = cols["ref_vt"]
        self.ref_code = cols["ref_code"]
        self.ref_new = cols["ref_new"]
        # for the vtable tests of a run: references that created a vtable, and per key code
        # the running count of references (is the code used between two references?)
        self.new_refs = np.flatnonzero(self.ref_new).tolist()
        self.ref_code_list = self.ref_code.tolist() if self.new_refs else []
        self.ref_vt_list = self.ref_vt.tolist() if self.new_refs else []
        count = np.zeros((len(_codes().keys), self.ref_code.shape[0] + 1), dtype=np.int64)
        if self.ref_code.shape[0]:
            count[self.ref_code, np.arange(1, self.ref_code.shape[0] + 1)] = 1  # one per column
            np.cumsum(count, axis=1, out=count)
        self.code_count = count
        ok = cols["ok"]
        self.items = items  # kept alive: their id() values identify them
        copyable = np.flatnonzero(ok)
        self.index = IdentityIndex(identities(items)[copyable], copyable)

    def match(self, items: Sequence[Any]) -> np.ndarray:
        """For each of ``items``, its index here when it is the very same object, else -1."""
        return self.index.match(identities(items))


def identities(items: Sequence[Any]) -> np.ndarray:
    """The ``id()`` of each object, as uint64."""
    return np.fromiter(map(id, items), dtype=np.uint64, count=len(items))


class IdentityIndex:
    """Positions of objects in a list, looked up by identity (``id()`` keys)."""

    __slots__ = ("keys", "positions")

    def __init__(self, keys: np.ndarray, positions: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.positions = positions[order]

    def match(self, keys: np.ndarray) -> np.ndarray:
        """For each key, the position of the object with that ``id()``, or -1."""
        if not keys.shape[0] or not self.keys.shape[0]:
            return np.full(keys.shape[0], -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.keys, keys), self.keys.shape[0] - 1)
        return np.where(self.keys[at] == keys, self.positions[at], -1)


def patch_i32(buf: bytearray, positions: np.ndarray, values: np.ndarray) -> None:
    """Write the i32 ``values`` at byte ``positions`` of ``buf`` (each 4-aligned from the
    buffer end, as a builder places them)."""
    if len(buf) % 4:  # builder buffers grow by doubling 4 KiB: never, but stay exact anyway
        for position, value in zip(positions.tolist(), values.tolist(), strict=True):
            _I32.pack_into(buf, position, value)
        return
    words = np.frombuffer(buf, dtype="<i4")
    try:
        words[positions >> 2] = values
    finally:
        del words  # the bytearray may grow again once no view is exported


class Remap:
    """New index of each item of the previous snapshot layout (-2: gone), then -1 (so that a
    parent index of -1, no parent, maps to itself); ``clean`` when no parent index can change
    its presence or point to a dropped snapshot (then runs skip that test)."""

    __slots__ = ("clean", "values")

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        inner = values[1:-1]
        self.clean = values.shape[0] < 2 or (int(values[0]) == 0 and bool((inner > 0).all()))

    @classmethod
    def of(cls, previous_ids: list[Any], index: dict[bytes, int]) -> Remap:
        """The remap from ids listed before (in their order) to ``index`` (id -> new index)."""
        return cls(np.array([*map(index.get, previous_ids, itertools.repeat(-2)), -1], dtype=np.int64))


_BOOL_COLUMNS = ("wide", "ref_new", "ok")
_ITEM_COLUMNS = ("start", "end", "obj", "parent", "parent_site", "wide", "nrefs", "ok")
_REF_COLUMNS = ("ref_obj", "ref_vt", "ref_code", "ref_new")


def _dtype(column: str) -> type:
    return bool if column in _BOOL_COLUMNS else np.int64


class _Recorder:
    """Collects the new layout: Python lists for items written one by one, numpy chunks for
    copied runs (a list per item would cost as much as the copy saves)."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[np.ndarray]] = {c: [] for c in _ITEM_COLUMNS + _REF_COLUMNS}
        self.pending: dict[str, list[Any]] = {c: [] for c in _ITEM_COLUMNS + _REF_COLUMNS}

    def flush(self) -> None:
        for name, values in self.pending.items():
            if values:
                self.chunks[name].append(np.array(values, dtype=_dtype(name)))
                values.clear()

    def add_run(self, cols: dict[str, np.ndarray]) -> None:
        self.flush()
        for name, values in cols.items():
            self.chunks[name].append(values)

    def columns(self) -> dict[str, np.ndarray]:
        self.flush()
        out = {}
        for name, parts in self.chunks.items():
            out[name] = np.concatenate(parts) if parts else np.zeros(0, dtype=_dtype(name))
        return out

    def fresh(
        self,
        start: int,
        end: int,
        obj: int,
        parent: int,
        wide: bool,
        refs: list[tuple[int, Any, int, bool]],
        codes: _Codes,
        ok: bool,
    ) -> None:
        """Record an item written object by object (``ok``: it may be copied later)."""
        pending = self.pending
        pending["start"].append(start)
        pending["end"].append(end)
        pending["obj"].append(obj)
        pending["parent"].append(parent)
        pending["parent_site"].append(obj - PARENT_FROM_TABLE if parent and ok else 0)
        pending["wide"].append(wide)
        pending["ok"].append(ok)
        if not ok:
            pending["nrefs"].append(0)
            return
        pending["nrefs"].append(len(refs))
        for table, key, vtable, created in refs:
            pending["ref_obj"].append(table)
            pending["ref_vt"].append(vtable)
            pending["ref_code"].append(codes.code(key))
            pending["ref_new"].append(created)


def write_section(
    builder: FastBuilder,
    items: list[Any],
    previous: RunLayout | None,
    write_one: Callable[[int], tuple[int, int, bool]],
    reusable: Callable[[Any], bool],
    *,
    ids: list[Any] | None = None,
    remap: Remap | None = None,
) -> tuple[np.ndarray, RunLayout]:
    """Write ``items`` in order, copying runs of ``previous`` where the bytes would be equal.

    Parameters
    ----------
    items
        The section's items; an item is found in ``previous`` by identity, so items must be
        immutable once encoded.
    write_one
        Writes item ``i`` object by object; returns its vector offset, the parent index it
        wrote (0 when none) and whether it wrote an 8-byte scalar.
    reusable
        Whether an item written object by object may be copied by a later build (False for
        objects that point outside themselves other than through vtables, such as shared
        strings).
    ids
        The items' snapshot ids, kept so that the next build can compute its ``remap``.
    remap
        Snapshot sections: new index of each of ``previous``'s items (-2: gone), followed by
        a trailing -1 so that a parent index of -1 (no parent) maps to itself.

    Returns
    -------
    The vector offset of every item and the layout of this build.
    """
    log: list[tuple[int, Any, int, bool]] = []
    codes = _codes()
    rec = _Recorder()
    offsets: list[np.ndarray] = []
    single: list[int] = []  # offsets of items written one by one since the last run
    n = len(items)
    if previous is None:
        old = np.full(n, -1, dtype=np.int64)
    else:
        old = previous.match(items)
    # segments of items that follow each other in ``previous`` too (or single new items)
    follows = (old[1:] == old[:-1] + 1) & (old[1:] >= 0)
    cuts = np.flatnonzero(~follows) + 1
    bounds = [0, *cuts.tolist(), n] if n else [0]
    old_list = old.tolist()
    builder.vtable_log = log
    try:
        for lo, hi in itertools.pairwise(bounds):
            i = lo
            while i < hi:
                j = old_list[i]
                if j >= 0 and previous is not None:
                    copied = _copy_run(builder, previous, j, hi - i, remap, codes, rec, offsets, single)
                    if copied:
                        i += copied
                        continue
                start = builder.Offset()
                logged = len(log)
                obj, parent, wide = write_one(i)
                single.append(obj)
                ok = j >= 0 or reusable(items[i])
                rec.fresh(start, builder.Offset(), obj, parent, wide, log[logged:], codes, ok)
                i += 1
    finally:
        builder.vtable_log = None
    if single:
        offsets.append(np.array(single, dtype=np.int64))
    all_offsets = np.concatenate(offsets) if offsets else np.zeros(0, dtype=np.int64)
    return all_offsets, RunLayout(builder.Bytes, items, ids, rec.columns())


def _copy_run(
    b: FastBuilder,
    prev: RunLayout,
    j: int,
    r: int,
    remap: Remap | None,
    codes: _Codes,
    rec: _Recorder,
    offsets: list[np.ndarray],
    single: list[int],
) -> int:
    """Copy the longest prefix of ``prev``'s items ``j:j + r`` that passes the tests of the
    module docstring; returns how many items were copied (0: none)."""
    shift = b.Offset() - int(prev.start[j])
    if shift % 8:
        return 0
    stop = r  # items j + stop onward are not copied
    new_parent = None
    if remap is not None:
        old_parent = prev.parent[j : j + r]
        new_parent = remap.values[old_parent]
        if not remap.clean:
            bad = (new_parent == -2) | ((old_parent == 0) != (new_parent == 0))
            if bad.any():
                stop = int(np.argmax(bad))
    # vtables: where each code's vtable is now (-1: the block may not be copied that far)
    r0, r1 = int(prev.ref_first[j]), int(prev.ref_first[j + stop])
    vt_of_code = np.zeros(len(codes.keys), dtype=np.int64)
    inside: list[tuple[int, int]] = []  # (reference, code) of the vtables the block creates
    limit = r1
    for at in prev.new_refs[bisect.bisect_left(prev.new_refs, r0) : bisect.bisect_left(prev.new_refs, r1)]:
        code = prev.ref_code_list[at]
        if codes.keys[code] in b.vtables:  # made earlier now: the fresh path would share it
            limit = min(limit, at)
            break
        inside.append((at, code))
        vt_of_code[code] = prev.ref_vt_list[at] + shift
    present = (prev.code_count[:, r1] - prev.code_count[:, r0]).nonzero()[0].tolist() if r1 > r0 else []
    made_inside = {code for _, code in inside}
    for code in present:
        if code in made_inside:
            continue
        found = b.vtables.get(codes.keys[code])
        if found is None:  # it was made before the block then, it is not now
            first = r0 + int(np.argmax(prev.ref_code[r0:r1] == code))
            limit = min(limit, first)
        else:
            vt_of_code[code] = found
    if limit < r1:
        # cut the run before the item holding reference ``limit``
        stop = int(np.searchsorted(prev.ref_first, limit, side="right")) - 1 - j
        r1 = int(prev.ref_first[j + stop])
    if stop <= 0:
        return 0
    lo_old = prev.size - int(prev.end[j + stop - 1])
    hi_old = prev.size - int(prev.start[j])
    length = hi_old - lo_old
    if b.head < length + 8:
        b._grow(length + 8)
    buf = b.Bytes
    size = len(buf)
    head = b.head
    buf[head - length : head] = prev.buf[lo_old:hi_old]
    b.head = head - length

    run = slice(j, j + stop)
    ref_code = prev.ref_code[r0:r1]
    ref_obj = prev.ref_obj[r0:r1] + shift
    ref_vt = vt_of_code[ref_code]
    parent_site = prev.parent_site[run]
    patch_i32(buf, size - ref_obj, ref_vt - ref_obj)
    if new_parent is not None:
        new_parent = new_parent[:stop]
        has = parent_site != 0
        patch_i32(buf, size - shift - parent_site[has], new_parent[has])
    for at, code in inside:  # vtables created inside the copied block now exist, moved
        if at < r1:
            b.vtables[codes.keys[code]] = int(vt_of_code[code])
    if b.minalign < 8 and bool(prev.wide[run].any()):
        b.minalign = 8
    obj = prev.obj[run] + shift
    if single:
        offsets.append(np.array(single, dtype=np.int64))
        single.clear()
    offsets.append(obj)
    rec.add_run(
        {
            "start": prev.start[run] + shift,
            "end": prev.end[run] + shift,
            "obj": obj,
            "parent": new_parent if new_parent is not None else prev.parent[run],
            "parent_site": np.where(parent_site != 0, parent_site + shift, 0),
            "wide": prev.wide[run],
            "nrefs": np.diff(prev.ref_first[j : j + stop + 1]),
            "ref_obj": ref_obj,
            "ref_vt": ref_vt,
            "ref_code": ref_code,
            "ref_new": prev.ref_new[r0:r1],
            "ok": np.ones(stop, dtype=bool),
        }
    )
    return stop
