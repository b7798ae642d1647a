"""The append layout of repo-info builds: later builds keep earlier tables in place.

Every build must decode to the state it encodes, whatever mix of new, rebuilt, expired and
re-parented entries a step brings; most builds of a commit-like history must take the
append path; dead tables must not pile up.  The reference reads these files too
(tests/interop/test_spec2_reference.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from icechunk._errors import FormatError
from icechunk.format import _repo_info_append as append_module
from icechunk.format import repo_info as repo_info_module
from icechunk.format.ids import SnapshotId
from icechunk.format.repo_info import (
    NewCommit,
    RepoInfo,
    SnapshotEntry,
    _build,
    append_update,
    decode_repo_info,
    encode_repo_info,
)
from tests.format.test_repo_info_reuse import _histories


def _count_append_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = append_module.place_tail

    def counting(*args: Any) -> None:
        calls.append(1)
        real(*args)

    monkeypatch.setattr(repo_info_module, "place_tail", counting)
    return calls


def _assert_round_trip(info: RepoInfo) -> None:
    again = decode_repo_info(encode_repo_info(info))
    assert again == info
    assert again.latest_updates == info.latest_updates


@pytest.mark.parametrize("seed", range(12))
def test_every_build_decodes_to_its_state(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    append_module.remember(None)  # start from a full build
    appended = _count_append_builds(monkeypatch)
    steps = 0
    for info in _histories(seed, 150):
        _assert_round_trip(info)
        steps += 1
    assert len(appended) > steps // 3  # the append path was really taken


def _commits(count: int, page_size: int = 1000) -> list[RepoInfo]:
    """``count`` commits on main, each sharing the previous state's objects."""
    root = SnapshotId(b"\x80" * 12)
    info = RepoInfo(
        tags={},
        branches={"main": root},
        deleted_tags=set(),
        snapshots={root: SnapshotEntry(root, None, 1, "init", {"__icechunk": {"is_root": True}})},
        status=repo_info_module.RepoStatusRecord(),
        latest_updates=[repo_info_module.UpdateEntry(repo_info_module.RepoInitialized(), 1)],
    )
    out = []
    for i in range(count):
        sid = SnapshotId.random()
        new = dataclasses.replace(info, branches=dict(info.branches), snapshots=dict(info.snapshots))
        new.snapshots[sid] = SnapshotEntry(sid, info.branches["main"], 10 + i, f"commit {i}", {})
        new.branches["main"] = sid
        info = append_update(new, NewCommit("main", sid), 10 + i, f"backup{i}", page_size)
        out.append(info)
    return out


def test_dead_tables_are_dropped_by_a_full_build_now_and_then(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every commit leaves one dead ops-log table (the newest entry gets its backup path) and,
    with a full page, one more (the entry cut off); the buffer stays within twice the size
    of the stock layout."""
    append_module.remember(None)
    appended = _count_append_builds(monkeypatch)
    history = _commits(400, page_size=50)
    full_builds = 0
    for info in history:
        payload = _build(info)
        state = append_module.previous_state()
        assert state is not None
        full_builds += state.dead == 0
        monkeypatch.setattr(repo_info_module, "APPEND_LAYOUT", False)
        stock = _build(info)
        monkeypatch.setattr(repo_info_module, "APPEND_LAYOUT", True)
        append_module.remember(state)  # the stock build above must not replace our state
        assert len(payload) <= 2 * len(stock)
    assert len(appended) > 300
    assert full_builds >= 3


@pytest.mark.parametrize("odd_buffer", [False, True])
def test_a_new_first_snapshot_rewrites_the_tables_whose_parent_index_appears(odd_buffer: bool) -> None:
    """Index 0 is not written: when a snapshot sorting first arrives, the children of the
    old first one need a parent field they did not have (their tables are written again),
    and every other parent index moves up by one (patched in place, also in a buffer whose
    size is not a multiple of 4)."""
    append_module.remember(None)
    history = _commits(30)
    for info in history:
        encode_repo_info(info)
    if odd_buffer:
        repo_info_module._PREVIOUS.size_hint = 3 * 4096 + 3
    last = history[-1]
    first = min(last.snapshots, key=bytes)
    low = SnapshotId(b"\x00" * 11 + b"\x01")
    assert bytes(low) < bytes(first)
    new = dataclasses.replace(last, branches=dict(last.branches), snapshots=dict(last.snapshots))
    new.snapshots[low] = SnapshotEntry(low, last.branches["main"], 99, "sorts first", {})
    new.branches["main"] = low
    new = append_update(new, NewCommit("main", low), 99, "backup-low", 1000)
    _assert_round_trip(new)
    children = [e for e in new.snapshots.values() if e.parent_id == first]
    assert children  # the old first snapshot had a child, now at a parent index of 1


def test_a_missing_parent_is_still_reported_after_append_builds() -> None:
    append_module.remember(None)
    history = _commits(20)
    for info in history:
        encode_repo_info(info)
    last = history[-1]
    broken = dataclasses.replace(last, snapshots=dict(last.snapshots))
    victim = next(e for e in last.snapshots.values() if e.parent_id is not None and e.id != last.branches["main"])
    del broken.snapshots[victim.id]
    with pytest.raises(FormatError, match="is not listed"):
        encode_repo_info(broken)
