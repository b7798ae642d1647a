"""The fast repo-info decode against a field-by-field oracle; the lazily decoded ops log.

The snapshot list is read column-wise with numpy and the ops log is decoded on first access of
``latest_updates``.  The oracle below reads every table through :class:`Table`, one field at a
time, as the decoder once did, so a wrong gather, vtable grouping or laziness shows as a
difference.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from icechunk._errors import ErrorKind, FormatError
from icechunk.format import repo_info as ri
from icechunk.format._flatbuf import root_table
from icechunk.format.header import FileType, decode_envelope, encode_envelope
from icechunk.format.ids import SnapshotId
from icechunk.format.repo_info import (
    NewCommit,
    RepoInfo,
    RepoStatusRecord,
    SnapshotEntry,
    UpdateEntry,
    decode_repo_info,
    encode_repo_info,
)
from icechunk.format.values import flex_loads
from tests.format.test_repo_info import _info, _kinds, _metadata, _names, _status, repo_infos

NAME = "prefix/repo"


def _oracle(data: bytes) -> tuple[dict[SnapshotId, SnapshotEntry], list[UpdateEntry]]:
    """Snapshots and ops log read table by table through :class:`Table`."""
    buf = decode_envelope(data, NAME, FileType.REPO_INFO)[1]
    root = root_table(buf)
    tables = root.tables(4)
    raw_ids = [t.struct_bytes(0, 12) for t in tables]
    ids = [SnapshotId(r) for r in raw_ids if r is not None]
    snapshots = {}
    for t, sid in zip(tables, ids, strict=True):
        parent = t.i32(1)
        metadata: dict[str, Any] = {}
        for item in t.tables(4):
            key, value = item.string(0), item.bytes(1)
            assert key is not None and value is not None
            metadata[key] = flex_loads(value)
        pruned = tuple(SnapshotId(r) for r in t.struct_vector(5, 12)) if t.has(5) else None
        message = t.string(3)
        assert message is not None
        snapshots[sid] = SnapshotEntry(
            sid, ids[parent] if parent >= 0 else None, t.u64(2), message, metadata, pruned
        )
    updates = []
    for u in root.tables(7):
        member = u.table(1)
        assert member is not None
        updates.append(UpdateEntry(ri._decode_update_kind(u.u8(0), member, NAME), u.u64(2), u.string(3)))
    return snapshots, updates


def _check(data: bytes) -> RepoInfo:
    snapshots, updates = _oracle(data)
    info = decode_repo_info(data, NAME)
    assert _pending(info)  # nothing has touched the ops log yet
    assert info.snapshots == snapshots
    assert [type(sid) for sid in info.snapshots] == [SnapshotId] * len(snapshots)
    for sid, entry in info.snapshots.items():
        assert type(entry) is SnapshotEntry
        assert entry.id is sid  # the key and the entry share one id object
    assert info.latest_updates == updates
    assert not _pending(info)
    return info


def _pending(info: RepoInfo) -> bool:
    return type(ri._UPDATES_SLOT.__get__(info, RepoInfo)) is ri._PendingOpsLog


# ---- fixtures --------------------------------------------------------------------------------


def _fixture_repo_infos(fixtures_dir: Path) -> list[Path]:
    found = []
    for repo in ("test-repo-v2", "test-repo-v2-migrated"):
        found.append(fixtures_dir / repo / "repo")
        found.extend(sorted((fixtures_dir / repo / "overwritten").glob("repo.*")))
    return found


def test_fixture_repo_infos_match_the_oracle(fixtures_dir: Path) -> None:
    paths = _fixture_repo_infos(fixtures_dir)
    assert len(paths) > 10
    for path in paths:
        info = _check(path.read_bytes())
        assert info.snapshots  # every repo info lists at least the initial snapshot


# ---- generated repo infos --------------------------------------------------------------------

_ids = st.binary(min_size=12, max_size=12).map(SnapshotId)
# 0 is the default value: the builder may leave such a field out, giving another vtable
_times = st.sampled_from([0, 1, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)


@st.composite
def _long_repo_infos(draw: st.DrawFn) -> RepoInfo:
    """Many snapshots in a forest, mixing the entry shapes (and so the vtables)."""
    ids = draw(st.lists(_ids, min_size=1, max_size=60, unique=True))
    snapshots = {}
    for i, sid in enumerate(ids):
        parent = None if i == 0 else draw(st.none() | st.sampled_from(ids[:i]))
        shape = draw(st.sampled_from(["plain", "plain", "metadata", "pruned"]))
        metadata = draw(_metadata) if shape == "metadata" else {}
        pruned = draw(st.lists(_ids, min_size=1, max_size=3).map(tuple)) if shape == "pruned" else None
        message = draw(st.sampled_from(["", "commit", "é ☃ 𝄞"]) | st.text(max_size=12))
        snapshots[sid] = SnapshotEntry(sid, parent, draw(_times), message, metadata, pruned)
    updates = draw(
        st.lists(st.builds(UpdateEntry, _kinds(ids), _times, st.none() | _names), min_size=1, max_size=30)
    )
    return RepoInfo(
        tags={},
        branches={"main": draw(st.sampled_from(ids))},
        deleted_tags=set(),
        snapshots=dict(reversed(list(snapshots.items()))),  # any order: encode sorts by id
        status=draw(_status),
        latest_updates=updates,
    )


@settings(max_examples=60)
@given(_long_repo_infos())
def test_generated_long_repo_infos_match_the_oracle(info: RepoInfo) -> None:
    data = encode_repo_info(info)
    decoded = _check(data)
    assert decoded == info
    assert encode_repo_info(decoded) == data


@settings(max_examples=40)
@given(repo_infos())
def test_generated_repo_infos_match_the_oracle(info: RepoInfo) -> None:
    decoded = _check(encode_repo_info(info))
    assert decoded == info


def test_many_snapshots_match_the_oracle() -> None:
    """Thousands of snapshots, one chain plus side branches, some with metadata."""
    rng = random.Random(7)
    ids = [SnapshotId(rng.randbytes(12)) for _ in range(3000)]
    snapshots = {}
    for i, sid in enumerate(ids):
        parent = None if i == 0 else ids[i - 1] if i % 10 else ids[rng.randrange(i)]
        metadata = {"n": i, "who": "me"} if i % 97 == 0 else {}
        snapshots[sid] = SnapshotEntry(sid, parent, 1_700_000_000_000_000 + i, f"commit {i}", metadata)
    updates = [UpdateEntry(NewCommit("main", ids[-1 - k]), 10_000 - k, f"b{k}" if k else None) for k in range(500)]
    info = RepoInfo({}, {"main": ids[-1]}, set(), snapshots, RepoStatusRecord(), updates)
    assert _check(encode_repo_info(info)) == info


# ---- the lazy ops log behaves like a plain field -----------------------------------------------


@pytest.fixture(scope="module")
def encoded() -> tuple[bytes, RepoInfo]:
    ids = [SnapshotId(bytes([i]) * 12) for i in range(1, 6)]
    snapshots = {
        sid: SnapshotEntry(sid, ids[i - 1] if i else None, 100 + i, f"m{i}", {}) for i, sid in enumerate(ids)
    }
    updates = [UpdateEntry(NewCommit("main", ids[-1 - k]), 50 - k, f"bk{k}" if k else None) for k in range(5)]
    info = RepoInfo({"t": ids[0]}, {"main": ids[-1]}, {"gone"}, snapshots, RepoStatusRecord(), updates)
    return encode_repo_info(info), info


def test_lazy_info_equality_repr_replace_copy_pickle(encoded: tuple[bytes, RepoInfo]) -> None:
    data, eager = encoded
    assert decode_repo_info(data) == eager
    assert eager == decode_repo_info(data)
    lazy = decode_repo_info(data)
    assert repr(lazy) == repr(dataclasses.replace(eager, implementation=lazy.implementation))
    assert dataclasses.replace(decode_repo_info(data), config=b"x") == dataclasses.replace(eager, config=b"x")
    for clone in (copy.copy(decode_repo_info(data)), copy.deepcopy(decode_repo_info(data))):
        assert clone == eager
        assert type(clone.latest_updates) is list
    assert pickle.loads(pickle.dumps(decode_repo_info(data))) == eager
    as_dict = dataclasses.asdict(decode_repo_info(data))
    assert as_dict == dataclasses.asdict(dataclasses.replace(eager, implementation=as_dict["implementation"]))
    lazy = decode_repo_info(data)
    assert len(lazy.latest_updates) == 5
    assert list(iter(lazy.latest_updates)) == eager.latest_updates
    assert lazy.latest_updates is lazy.latest_updates  # decoded once, then the same list


def test_assigning_the_ops_log_replaces_the_pending_one(encoded: tuple[bytes, RepoInfo]) -> None:
    data, _ = encoded
    info = decode_repo_info(data)
    mine = [UpdateEntry(NewCommit("main", SnapshotId(b"\x09" * 12)), 99)]
    info.latest_updates = mine
    assert info.latest_updates is mine
    assert not _pending(info)


def _update_member_offset(payload: bytes) -> int:
    update = root_table(payload).tables(7)[1]
    return update.field(1)


def test_corrupt_ops_log_raises_format_error_on_access(encoded: tuple[bytes, RepoInfo]) -> None:
    data, eager = encoded
    payload = bytearray(decode_envelope(data, NAME, FileType.REPO_INFO)[1])
    struct.pack_into("<I", payload, _update_member_offset(bytes(payload)), 0x7FFFFFF0)
    bad = encode_envelope(bytes(payload), FileType.REPO_INFO, 2)
    info = decode_repo_info(bad, NAME)  # snapshots and refs are fine
    assert info.snapshots == eager.snapshots
    assert info.branches == eager.branches
    for _ in range(2):
        with pytest.raises(FormatError) as err:
            _ = info.latest_updates
        assert err.value.kind == ErrorKind.DESERIALIZATION
        assert NAME in str(err.value)
    with pytest.raises(FormatError):
        _ = info == eager


def test_ops_log_vector_out_of_bounds_raises_at_decode(encoded: tuple[bytes, RepoInfo]) -> None:
    data, _ = encoded
    payload = bytearray(decode_envelope(data, NAME, FileType.REPO_INFO)[1])
    vec = root_table(bytes(payload)).vector(7)
    assert vec is not None
    struct.pack_into("<I", payload, vec[0] - 4, 10**6)  # the length of the ops-log vector
    with pytest.raises(FormatError):
        decode_repo_info(encode_envelope(bytes(payload), FileType.REPO_INFO, 2), NAME)


# ---- checks on the snapshot columns ------------------------------------------------------------


def _first_cyclic_by_walking(parents: list[int]) -> int | None:
    """The first start whose parent chain never reaches -1 (the plain walk)."""
    for start in range(len(parents)):
        seen = set()
        i = start
        while i != -1 and i not in seen:
            seen.add(i)
            i = parents[i]
        if i != -1:
            return start
    return None


@given(st.lists(st.integers(-1, 29), min_size=1, max_size=30))
def test_cycle_check_names_the_first_snapshot_reaching_a_cycle(raw: list[int]) -> None:
    parents = [p if p < len(raw) and p != i else -1 for i, p in enumerate(raw)]
    ids = [SnapshotId(i.to_bytes(12, "big")) for i in range(len(parents))]
    expected = _first_cyclic_by_walking(parents)
    array = np.array(parents, dtype=np.int64)
    if expected is None:
        ri._check_acyclic(array, ids, NAME)
    else:
        with pytest.raises(FormatError, match=str(ids[expected])):
            ri._check_acyclic(array, ids, NAME)


def test_long_chain_is_not_a_cycle() -> None:
    n = 5000
    parents = np.arange(-1, n - 1, dtype=np.int64)
    ids = [SnapshotId(i.to_bytes(12, "big")) for i in range(n)]
    ri._check_acyclic(parents, ids, NAME)
    parents[0] = n - 1  # now everything is on one big cycle
    with pytest.raises(FormatError, match=str(ids[0])):
        ri._check_acyclic(parents, ids, NAME)


def test_fast_entries_equal_constructed_ones() -> None:
    sid, parent = SnapshotId(b"a" * 12), SnapshotId(b"b" * 12)
    args = (sid, parent, 5, "msg", {"k": 1}, (parent,))
    fast, slow = ri._make_entry(*args), SnapshotEntry(*args)
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert dataclasses.replace(fast, message="x") == dataclasses.replace(slow, message="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.message = "changed"  # type: ignore[misc]


# ---- decoding after an earlier state: equal entries are the earlier objects ------------------


@settings(max_examples=60, deadline=None)
@given(repo_infos(), repo_infos(), st.randoms(use_true_random=False))
def test_decoding_with_previous_reuses_the_entries_still_listed(
    before: RepoInfo, other: RepoInfo, rnd: random.Random
) -> None:
    """A later state of the same repository: the earlier entries it still lists (same id,
    parent and flush time; ops-log entries by time and new snapshot id, the newest one now
    with its backup path) come back as the earlier objects, every value as decoded without
    the earlier state."""
    assume(not set(before.snapshots) & set(other.snapshots))
    previous = decode_repo_info(encode_repo_info(before))
    kept = dict(previous.snapshots)
    dropped = {e.id for e in rnd.sample(list(kept.values()), k=len(kept) // 3)}
    for sid in dropped:  # expired: children move to the root
        del kept[sid]
    for sid, entry in kept.items():
        if entry.parent_id in dropped:
            kept[sid] = dataclasses.replace(entry, parent_id=None)
    if kept:  # same id, another flush time: not the earlier entry
        first = next(iter(kept))
        kept[first] = dataclasses.replace(kept[first], flushed_at=(kept[first].flushed_at + 1) % 2**64)
    snapshots = {**other.snapshots, **kept}
    top = max((u.updated_at for u in previous.latest_updates), default=0)
    assume(top + len(other.latest_updates) < 2**64)
    newer = [dataclasses.replace(u, updated_at=top + 1 + k) for k, u in enumerate(other.latest_updates)]
    older = list(previous.latest_updates)
    if older and older[0].backup_path is None:
        older[0] = dataclasses.replace(older[0], backup_path="repo.backup")
    after = dataclasses.replace(other, snapshots=snapshots)
    after.latest_updates = sorted(newer + older, key=lambda u: -u.updated_at)
    data = encode_repo_info(after)

    plain = decode_repo_info(data)
    reused = decode_repo_info(data, previous=previous)
    assert reused == plain
    assert reused.latest_updates == plain.latest_updates
    for sid, entry in reused.snapshots.items():
        earlier = previous.snapshots.get(sid)
        assert (entry is earlier) == (earlier is not None and earlier == entry)
    earlier_updates = {u.updated_at: u for u in previous.latest_updates}
    for update in reused.latest_updates:
        earlier_update = earlier_updates.get(update.updated_at)
        same = earlier_update is not None and earlier_update == update
        assert (update is earlier_update) == (same and isinstance(update.kind, NewCommit))


def test_an_undecoded_earlier_ops_log_is_not_decoded_for_reuse() -> None:
    data = encode_repo_info(_info([UpdateEntry(NewCommit("main", SnapshotId(bytes(12))), 5)]))
    info = decode_repo_info(data)
    again = decode_repo_info(data, previous=info)
    assert type(ri._UPDATES_SLOT.__get__(info, RepoInfo)) is ri._PendingOpsLog  # still lazy
    assert again.latest_updates == info.latest_updates


def test_an_undecoded_ops_log_in_between_still_passes_on_the_earlier_entries() -> None:
    """A state read for its tip alone (ops log never decoded) sits between two whose ops logs
    are read: the later decode reuses the earlier decoded entries all the same (the encoder
    keeps the tables of entries it finds by identity)."""

    def commit(k: int) -> UpdateEntry:
        return UpdateEntry(NewCommit("main", SnapshotId(bytes([k]) * 12)), 10 + k, f"backup-{k}")

    states = [_info([commit(k) for k in reversed(range(n))]) for n in (3, 4, 5)]
    first = decode_repo_info(encode_repo_info(states[0]))
    earlier = list(first.latest_updates)  # read
    middle = decode_repo_info(encode_repo_info(states[1]), previous=first)  # never read
    last = decode_repo_info(encode_repo_info(states[2]), previous=middle)
    assert last.latest_updates == states[2].latest_updates
    kept = {u.updated_at: u for u in earlier}
    assert all(kept[u.updated_at] is u for u in last.latest_updates if u.updated_at in kept)
    assert len(kept) == 3
    assert type(ri._UPDATES_SLOT.__get__(middle, RepoInfo)) is ri._PendingOpsLog  # still lazy
