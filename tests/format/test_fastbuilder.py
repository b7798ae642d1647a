"""FastBuilder writes exactly the bytes of the stock ``flatbuffers.Builder``.

Random programs of builder calls (strings, byte/struct/offset/u16 vectors, tables with every
scalar kind, shared strings, nested offsets) run on both builders must give identical buffers,
and so must whole repo-info files.  The codecs' fixture round-trip tests then prove the same
for snapshots, transaction logs and manifests.
"""

from __future__ import annotations

from typing import Any

import flatbuffers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from icechunk.format import _fastbuilder as fb
from icechunk.format import _flatbuf
from icechunk.format import repo_info as repo_info_module
from icechunk.format._fastbuilder import FastBuilder
from icechunk.format.ids import SnapshotId
from icechunk.format.repo_info import (
    NewCommit,
    RepoInfo,
    RepoInitialized,
    RepoStatusRecord,
    SnapshotEntry,
    TagCreated,
    UpdateEntry,
    _build,
)
from tests.format.test_repo_info import repo_infos

_SCALARS = {
    "bool": ("PrependBoolSlot", st.booleans()),
    "u8": ("PrependUint8Slot", st.integers(0, 255)),
    "u16": ("PrependUint16Slot", st.integers(0, 2**16 - 1)),
    "i16": ("PrependInt16Slot", st.integers(-(2**15), 2**15 - 1)),
    "u32": ("PrependUint32Slot", st.integers(0, 2**32 - 1)),
    "i32": ("PrependInt32Slot", st.integers(-(2**31), 2**31 - 1)),
    "u64": ("PrependUint64Slot", st.integers(0, 2**64 - 1)),
    "i64": ("PrependInt64Slot", st.integers(-(2**63), 2**63 - 1)),
}

_field = st.one_of(
    *(st.tuples(st.just(kind), values | st.just(0)) for kind, (_, values) in _SCALARS.items()),
    st.tuples(st.just("offset"), st.integers(0, 1000)),
    st.tuples(st.just("struct"), st.binary(min_size=12, max_size=12)),
    st.tuples(st.just("struct8"), st.binary(min_size=16, max_size=16)),
)

_TABLE_KINDS = {
    fb.U8: st.integers(0, 255),
    fb.BOOL: st.booleans(),
    fb.U16: st.integers(0, 2**16 - 1),
    fb.U32: st.integers(0, 2**32 - 1),
    fb.I32: st.integers(-(2**31), 2**31 - 1),
    fb.U64: st.integers(0, 2**64 - 1),
    fb.OFFSET: st.integers(0, 1000),
    fb.STRUCT: st.binary(min_size=12, max_size=12),
    fb.STRING: st.none() | st.binary(max_size=20),
    fb.EMPTY_VECTOR: st.none(),
}
_table_field = st.one_of(
    *(
        st.tuples(st.just(k), v | st.just(0) if k < fb.STRUCT else v)
        for k, v in _TABLE_KINDS.items()
    )
)

_op = st.one_of(
    st.tuples(
        st.just("add_table"),
        st.integers(0, 8),
        st.lists(st.tuples(st.integers(0, 7), _table_field), max_size=8),
    ),
    st.tuples(st.just("add_offsets"), st.lists(st.integers(0, 1000), max_size=6)),
    st.tuples(st.just("string"), st.text(max_size=30)),
    st.tuples(st.just("shared"), st.sampled_from(["a", "bb", "name", "ccc"])),
    st.tuples(st.just("bytes"), st.binary(max_size=40)),
    st.tuples(st.just("u16s"), st.lists(st.integers(0, 2**16 - 1), max_size=7)),
    st.tuples(st.just("structs"), st.lists(st.binary(min_size=12, max_size=12), max_size=5)),
    st.tuples(st.just("offsets"), st.lists(st.integers(0, 1000), max_size=6)),
    st.tuples(
        st.just("table"),
        st.integers(0, 8),
        st.lists(st.tuples(st.integers(0, 7), _field), max_size=8),
    ),
)


@pytest.fixture(autouse=True)
def _stock_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests compare with the stock builder: keep the append layout out of the way."""
    monkeypatch.setattr(repo_info_module, "APPEND_LAYOUT", False)


def _run(builder: flatbuffers.Builder, program: list[tuple[Any, ...]]) -> bytes:
    made: list[int] = []  # offsets of finished objects, for references

    def ref(i: int) -> int:
        return made[i % len(made)] if made else 0

    for op in program:
        kind = op[0]
        if kind == "string":
            made.append(builder.CreateString(op[1]))
        elif kind == "shared":
            made.append(builder.CreateSharedString(op[1]))
        elif kind == "bytes":
            made.append(builder.CreateByteVector(op[1]))
        elif kind == "u16s":
            builder.StartVector(2, len(op[1]), 2)
            for v in reversed(op[1]):
                builder.PrependUint16(v)
            made.append(builder.EndVector())
        elif kind == "structs":
            made.append(_flatbuf.create_struct_vector(builder, op[1], 12, 1))
        elif kind == "add_offsets":
            made.append(fb.add_offsets_vector(builder, [ref(i) for i in op[1]] if made else []))
        elif kind == "add_table":
            _, nfields, raw = op
            fields, used = [], set()
            for slot, (ftype, value) in raw:
                if slot < nfields and slot not in used:
                    used.add(slot)
                    if ftype == fb.OFFSET:
                        value = ref(value) if made else 0
                    fields.append((ftype, slot, value))
            made.append(fb.add_table(builder, nfields, fields))
        elif kind == "offsets":
            refs = [ref(i) for i in op[1]] if made else []
            builder.StartVector(4, len(refs), 4)
            for r in reversed(refs):
                builder.PrependUOffsetTRelative(r)
            made.append(builder.EndVector())
        else:
            _, nfields, fields = op
            used: set[int] = set()
            builder.StartObject(nfields)
            for slot, (ftype, value) in fields:
                if slot >= nfields or slot in used:
                    continue
                used.add(slot)
                if ftype == "offset":
                    if made:
                        builder.PrependUOffsetTRelativeSlot(slot, ref(value), 0)
                elif ftype == "struct":
                    _flatbuf.prepend_struct_slot(builder, slot, value)
                elif ftype == "struct8":
                    _flatbuf.prepend_struct_slot(builder, slot, value, 8)
                else:
                    getattr(builder, _SCALARS[ftype][0])(slot, value, 0)
            made.append(builder.EndObject())
    root = made[-1] if made else builder.CreateString("")
    return _flatbuf.finish(builder, root)


@given(st.lists(_op, max_size=40), st.sampled_from([1, 16, 1024]))
def test_random_programs_give_identical_bytes(program, initial_size) -> None:
    assert _run(FastBuilder(initial_size), program) == _run(
        flatbuffers.Builder(initial_size), program
    )


@given(repo_infos())
def test_repo_info_bytes_are_identical(info: RepoInfo) -> None:
    assert _build(info, FastBuilder) == _build(info, flatbuffers.Builder)


def test_reused_builder_still_matches() -> None:
    program = [("string", "hello"), ("table", 3, [(0, ("u64", 7)), (2, ("offset", 0))])]
    fast = FastBuilder(16)
    _run(fast, program)
    fast.Clear()
    assert _run(fast, program) == _run(flatbuffers.Builder(16), program)


def _commit_history(n: int, seed: int) -> list[RepoInfo]:
    """The repo infos of ``n`` commits on main and a few on other branches, tags and messages
    of varied lengths (so entries start at either 8-byte alignment), as a repository sees them."""
    import random

    rng = random.Random(seed)
    root = SnapshotId(bytes(rng.getrandbits(8) for _ in range(12)))
    snapshots = {root: SnapshotEntry(root, None, 1_000, "Repository initialized", {})}
    updates = [UpdateEntry(RepoInitialized(), 1_000)]
    branches = {"main": root}
    tags: dict[str, SnapshotId] = {}
    infos = []
    for i in range(n):
        branch = rng.choice(["main", "main", "main", "dev"])
        parent = branches.get(branch, branches["main"])
        sid = SnapshotId(bytes(rng.getrandbits(8) for _ in range(12)))
        message = "m" * rng.randrange(0, 11) + f" commit {i}"
        snapshots[sid] = SnapshotEntry(sid, parent, 2_000 + i, message, {})
        branches[branch] = sid
        backup = f"overwritten/{i:04d}" if i % 3 else None
        updates.insert(0, UpdateEntry(NewCommit(branch, sid), 2_000 + i, backup))
        if i % 7 == 3:
            tags[f"t{i}"] = sid
            updates.insert(0, UpdateEntry(TagCreated(f"t{i}"), 2_000 + i))
        infos.append(
            RepoInfo(
                tags=dict(tags),
                branches=dict(branches),
                deleted_tags=set(),
                snapshots=dict(snapshots),
                status=RepoStatusRecord(),
                latest_updates=list(updates),
            )
        )
    return infos


def test_memoized_entries_give_identical_bytes_commit_after_commit() -> None:
    """Every commit re-encodes the previous entries from memoized blocks (shifted parent
    indices, both alignments, shared vtables created in a different order): still the stock
    builder's bytes, and the memo is really used."""
    fb._SNAPSHOT_BLOCKS.clear()
    fb._UPDATE_BLOCKS.clear()
    infos = _commit_history(60, seed=7)
    for info in infos:
        assert _build(info, FastBuilder) == _build(info, flatbuffers.Builder)
    assert len(fb._SNAPSHOT_BLOCKS) >= 60 and len(fb._UPDATE_BLOCKS) >= 55
    # the last one again, from a fully warm memo, and the first ones after it (cold vtables)
    for info in (infos[-1], infos[0], infos[1]):
        assert _build(info, FastBuilder) == _build(info, flatbuffers.Builder)


def test_memo_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(fb, "_MAX_BLOCKS", 10)
    fb._SNAPSHOT_BLOCKS.clear()
    for info in _commit_history(30, seed=3)[-3:]:
        assert _build(info, FastBuilder) == _build(info, flatbuffers.Builder)
    assert len(fb._SNAPSHOT_BLOCKS) <= 10
