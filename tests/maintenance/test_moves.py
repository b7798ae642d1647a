"""Rearrange sessions and ``Session.move`` (API.md §3.2, FORMAT.md §3.5 moved_nodes)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import icechunk as ic


@pytest.fixture
def repo() -> ic.Repository:
    repo = ic.Repository.create(ic.in_memory_storage())
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="a")
    group = root.create_group("group", attributes={"kind": "group"})
    sub = group.create_group("sub")
    group.create_array("temp", shape=(6,), chunks=(2,), dtype="i4", fill_value=0)[:] = np.arange(6)
    sub.create_array("deep", shape=(2, 2), chunks=(1, 1), dtype="f4", fill_value=0)[:] = [[1, 2], [3, 4]]
    root.create_group("other")
    root.create_array("arr", shape=(3,), chunks=(3,), dtype="i1", fill_value=0)[:] = [7, 8, 9]
    session.commit("layout")
    return repo


def _run(coro):
    from icechunk._sync import run

    return run(coro)


def _values(session: ic.Session, path: str) -> np.ndarray:
    return zarr.open_array(session.store, path=path, mode="r")[:]


def test_rename_group_moves_its_arrays(repo: ic.Repository) -> None:
    ids_before = {p: repo.readonly_session("main").get_node_id(p) for p in ("/group", "/group/temp", "/group/sub/deep")}
    session = repo.rearrange_session("main")
    assert session.mode == ic.SessionMode.rearrange
    session.move("/group", "/renamed")
    # the session already sees the new layout
    np.testing.assert_array_equal(_values(session, "renamed/temp"), np.arange(6))
    assert session.get_node_id("/renamed/sub/deep") == ids_before["/group/sub/deep"]
    with pytest.raises(ic.NodeNotFoundError):
        session.get_node_id("/group")
    status = session.status()
    assert ("/group", "/renamed") in status.moved_nodes
    sid = session.commit("rename")

    after = repo.readonly_session("main")
    np.testing.assert_array_equal(_values(after, "renamed/temp"), np.arange(6))
    np.testing.assert_array_equal(_values(after, "renamed/sub/deep"), [[1, 2], [3, 4]])
    assert zarr.open_group(after.store, path="renamed", mode="r").attrs["kind"] == "group"
    root = zarr.open_group(after.store, mode="r")
    assert sorted(root.group_keys()) == ["other", "renamed"]
    assert "group" not in root
    assert not _run(after.store.exists("group/zarr.json"))
    assert _run(after.store.exists("renamed/sub/deep/c/1/1"))
    assert after.get_node_id("/renamed/temp") == ids_before["/group/temp"]

    log = repo.inspect_transaction_log(sid)
    moved = [(m["from"], m["to"]) for m in log["moved_nodes"]]
    assert moved == [
        ("/group", "/renamed"),
        ("/group/sub", "/renamed/sub"),
        ("/group/sub/deep", "/renamed/sub/deep"),
        ("/group/temp", "/renamed/temp"),
    ]
    diff = repo.diff(from_snapshot_id=list(repo.ancestry(branch="main"))[1].id, to_branch="main")
    assert ("/group", "/renamed") in diff.moved_nodes
    assert not (diff.new_groups or diff.deleted_groups or diff.new_arrays or diff.deleted_arrays)
    assert [type(u.kind).__name__ for u in repo.ops_log()][0] == "NewCommit"


def test_chained_moves_collapse_and_sort_segment_wise(repo: ic.Repository) -> None:
    session = repo.rearrange_session("main")
    session.move("/arr", "/tmp_name")
    session.move("/tmp_name", "/other/arr")  # A -> B -> C recorded as A -> C
    session.move("/group/temp", "/a-b")
    session.move("/other", "/a")
    session.move("/group", "/aa")
    session.move("/aa", "/group")  # identity overall: omitted
    sid = session.commit("shuffle")
    moves = [(m["from"], m["to"]) for m in repo.inspect_transaction_log(sid)["moved_nodes"]]
    assert moves == [
        ("/other", "/a"),
        ("/arr", "/a/arr"),
        ("/group/temp", "/a-b"),
    ]
    after = repo.readonly_session("main")
    np.testing.assert_array_equal(_values(after, "a/arr"), [7, 8, 9])
    np.testing.assert_array_equal(_values(after, "a-b"), np.arange(6))
    np.testing.assert_array_equal(_values(after, "group/sub/deep"), [[1, 2], [3, 4]])


def test_move_errors(repo: ic.Repository) -> None:
    writable = repo.writable_session("main")
    with pytest.raises(ic.SessionStateError) as info:
        writable.move("/group", "/x")
    assert info.value.kind == "non-rearrange-session"
    with pytest.raises(ic.SessionStateError) as info:
        repo.readonly_session("main").move("/group", "/x")
    assert info.value.kind == "non-rearrange-session"

    session = repo.rearrange_session("main")
    cases = [
        (("/group", "/missing/x"), ic.SessionStateError, "move-destination-parent-missing"),
        (("/group", "/arr/x"), ic.SessionStateError, "move-destination-parent-not-group"),
        (("/group", "/group/sub/x"), ic.SessionStateError, "move-into-self-or-descendant"),
        (("/group", "/group"), ic.SessionStateError, "move-into-self-or-descendant"),
        (("/group", "/other"), ic.AlreadyExistsError, "move-wont-overwrite"),
        (("/arr", "/group/temp"), ic.AlreadyExistsError, "move-wont-overwrite"),
        (("/nothing", "/x"), ic.NodeNotFoundError, "node-not-found"),
    ]
    for (src, dst), cls, kind in cases:
        with pytest.raises(cls) as info:
            session.move(src, dst)
        assert info.value.kind == kind, (src, dst)
    assert not session.has_uncommitted_changes
    # data writes are refused in a rearrange session
    with pytest.raises(ic.SessionStateError) as info:
        zarr.open_array(session.store, path="arr")[:] = 0
    assert info.value.kind == "rearrange-session-only"
    with pytest.raises(ic.SessionStateError) as info:
        session.shift_array("/arr", [1])
    assert info.value.kind == "rearrange-session-only"
    with pytest.raises(ic.SessionStateError):
        zarr.open_group(session.store, mode="a").create_group("new")


def test_moves_need_spec2_and_the_flag(repo: ic.Repository, tmp_path) -> None:
    repo.set_feature_flag("move_node", False)
    with pytest.raises(ic.SessionStateError) as info:
        repo.rearrange_session("main")
    assert info.value.kind == "feature-flag-disabled"
    repo.set_feature_flag("move_node", None)
    session = repo.rearrange_session("main")
    session.move("/arr", "/moved")
    repo.set_feature_flag("move_node", False)
    with pytest.raises(ic.SessionStateError) as info:
        session.commit("moves while disabled")
    assert info.value.kind == "feature-flag-disabled"

    v1 = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "v1")), spec_version=1)
    with pytest.raises(ic.FormatError) as info:
        v1.rearrange_session("main")
    assert info.value.kind == "unsupported-spec-version"


def test_move_then_status_lists_applied_moves(repo: ic.Repository) -> None:
    session = repo.rearrange_session("main")
    session.move("/arr", "/other/arr")
    session.move("/other", "/renamed_other")
    assert session.has_uncommitted_changes
    status = session.status()
    assert ("/other", "/renamed_other") in status.moved_nodes
    assert ("/arr", "/renamed_other/arr") in status.moved_nodes
    session.discard_changes()
    assert not session.has_uncommitted_changes
    np.testing.assert_array_equal(_values(session, "arr"), [7, 8, 9])
