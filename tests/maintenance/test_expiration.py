"""Snapshot expiration: the pure plan and its effect on spec-2 and spec-1 repositories."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import zarr

import icechunk as ic
from icechunk.core.expiration import plan_expiration
from icechunk.core.reachability import SnapshotGraphNode
from icechunk.format.ids import SnapshotId
from icechunk.format.repo_info import decode_repo_info

# ---- the plan on a hand-made graph ----------------------------------------------------------


def _ids(*names: str) -> dict[str, SnapshotId]:
    return {n: SnapshotId(n.encode().ljust(12, b"_")) for n in names}


S = _ids("root", "a", "b", "c", "d", "x", "y", "z", "t")


def _graph(edges: dict[str, tuple[str | None, int]], pruned: dict[str, tuple[str, ...]] | None = None):
    pruned = pruned or {}
    return {
        S[n]: SnapshotGraphNode(S[p] if p else None, t, tuple(S[q] for q in pruned.get(n, ())))
        for n, (p, t) in edges.items()
    }


def test_plan_reparents_and_fills_pruned_ancestor_tx_logs() -> None:
    # root(0) - a(10) - b(20) - c(30) - d(40)      main -> d
    #                    \- x(25) - y(35)           dev  -> y
    graph = _graph(
        {"root": (None, 0), "a": ("root", 10), "b": ("a", 20), "c": ("b", 30), "d": ("c", 40),
         "x": ("b", 25), "y": ("x", 35)},
        pruned={"a": ("t",)},  # a was re-parented by an earlier expiration
    )
    plan = plan_expiration(graph, {"main": S["d"], "dev": S["y"]}, {}, 30)
    assert plan.reparented == {
        S["c"]: (S["root"], (S["t"], S["a"], S["b"])),
        S["y"]: (S["root"], (S["t"], S["a"], S["b"], S["x"])),
    }
    assert plan.expired == {S["a"], S["b"], S["x"]}
    assert plan.retained == {S["root"], S["c"], S["d"], S["y"]}
    # the bound is exclusive: a snapshot written exactly at the cutoff stays
    plan = plan_expiration(graph, {"main": S["d"]}, {}, 20, young_snapshots_are_heads=False)
    assert S["b"] in plan.retained and S["a"] in plan.expired


def test_plan_tips_roots_and_ref_deletion() -> None:
    graph = _graph({"root": (None, 0), "a": ("root", 10), "b": ("a", 20), "x": ("a", 15), "t": ("a", 12)})
    branches = {"main": S["b"], "old": S["x"]}
    tags = {"v1": S["t"], "at-root": S["root"]}
    plan = plan_expiration(graph, branches, tags, 100)
    # every tip is kept (main included), histories collapse onto the root
    assert plan.retained == {S["root"], S["b"], S["x"], S["t"]}
    assert {sid: parent for sid, (parent, _) in plan.reparented.items()} == {
        S["b"]: S["root"], S["x"]: S["root"], S["t"]: S["root"]
    }
    assert not plan.deleted_branches and not plan.deleted_tags
    plan = plan_expiration(graph, branches, tags, 100, delete_expired_branches=True, delete_expired_tags=True)
    assert plan.deleted_branches == ["old"]  # never main
    assert plan.deleted_tags == ["v1"]  # a tag on the root never expires
    assert plan.retained == {S["root"], S["b"]}
    assert plan.expired == {S["a"], S["x"], S["t"]}


def test_plan_history_goes_on_through_kept_tips() -> None:
    # root - a(10) - b(20) - c(30) - d(50); tags on b and c; cutoff 40
    graph = _graph({"root": (None, 0), "a": ("root", 10), "b": ("a", 20), "c": ("b", 30), "d": ("c", 50)})
    plan = plan_expiration(graph, {"main": S["d"]}, {"tb": S["b"], "tc": S["c"]}, 40)
    # d -> c (a kept tip) -> b (a kept tip) stay; a (old, untagged) is cut off
    assert plan.reparented == {S["b"]: (S["root"], (S["a"],))}
    assert plan.expired == {S["a"]}
    # without the tag on c, d's history is cut at c and tagged b leaves it too
    plan = plan_expiration(graph, {"main": S["d"]}, {"tb": S["b"]}, 40)
    assert plan.reparented == {
        S["d"]: (S["root"], (S["a"], S["b"], S["c"])),
        S["b"]: (S["root"], (S["a"],)),
    }
    assert plan.expired == {S["a"], S["c"]}


def test_plan_keeps_young_detached_snapshots() -> None:
    graph = _graph({"root": (None, 0), "a": ("root", 10), "b": ("a", 20), "z": ("a", 50)})
    plan = plan_expiration(graph, {"main": S["b"]}, {}, 30)
    assert S["z"] in plan.retained  # a fork's anonymous snapshot, say
    assert plan.reparented[S["z"]][0] == S["root"]
    plan = plan_expiration(graph, {"main": S["b"]}, {}, 60)
    assert S["z"] not in plan.retained


# ---- on real repositories ---------------------------------------------------------------------


def _commit(repo: ic.Repository, branch: str, value: int, message: str) -> str:
    session = repo.writable_session(branch)
    root = zarr.open_group(session.store, mode="a")
    arr = root["a"] if "a" in root else root.create_array("a", shape=(4,), chunks=(2,), dtype="i4", fill_value=0)
    arr[:] = value
    sid = session.commit(message)
    time.sleep(0.002)
    return sid


def _now() -> datetime:
    time.sleep(0.002)
    moment = datetime.now(UTC)
    time.sleep(0.002)
    return moment


def test_spec2_expiration_rewrites_only_repo(tmp_path) -> None:
    path = tmp_path / "repo"
    repo = ic.Repository.create(ic.local_filesystem_storage(str(path)))
    first = _commit(repo, "main", 1, "one")
    second = _commit(repo, "main", 2, "two")
    repo.create_tag("keep", first)
    repo.create_branch("feature", first)
    feature = _commit(repo, "feature", 5, "feature work")
    cutoff = _now()
    third = _commit(repo, "main", 3, "three")
    files_before = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}

    expired = repo.expire_snapshots(cutoff, delete_expired_branches=True)
    # dropped from the list; "one" left main's history but is still tagged, so it stays
    assert expired == {second, feature}
    assert repo.lookup_snapshot(first).message == "one"
    assert repo.list_branches() == {"main"}  # the feature tip expired
    assert repo.list_tags() == {"keep"}  # tags are only deleted on request
    assert [s.id for s in repo.ancestry(branch="main")] == [third, "1CECHNKREP0F1RSTCMT0"]
    assert [s.message for s in repo.ancestry(tag="keep")] == ["one", "Repository initialized"]
    with pytest.raises(ic.SnapshotNotFoundError):
        repo.lookup_snapshot(second)
    with pytest.raises(ic.SnapshotNotFoundError):
        repo.readonly_session(snapshot_id=second)
    # only the repo object (and its backup) changed
    files_after = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    new_files = files_after - files_before
    assert len(new_files) == 1 and next(iter(new_files)).startswith("overwritten/repo.")
    updates = list(repo.ops_log())
    assert type(updates[0].kind).__name__ == "ExpirationRan"
    assert not any(type(u.kind).__name__ == "BranchDeleted" for u in updates)
    info = decode_repo_info((path / "repo").read_bytes())
    assert info.snapshots[SnapshotId.parse(third)].pruned_ancestor_tx_logs == (
        SnapshotId.parse(first), SnapshotId.parse(second)
    )
    # the re-parented snapshot still diffs against the root through the pruned logs
    diff = repo.diff(from_snapshot_id="1CECHNKREP0F1RSTCMT0", to_branch="main")
    assert diff.new_arrays == {"/a"} and diff.new_groups == {"/"}
    log = repo.inspect_transaction_log(third)
    assert log["synthetic_composite"]["merged_pruned_ancestor_tx_logs"] == [first, second]
    assert log["synthetic_composite"]["missing_tx_logs"] == []
    assert log["new_arrays"] == [repo.readonly_session("main").get_node_id("/a")]
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session("main").store, path="a")[:], 3)
    # tags deleted on request join deleted_tags
    later = _now()
    repo.expire_snapshots(later, delete_expired_tags=True)
    assert repo.list_tags() == set()
    with pytest.raises(ic.AlreadyExistsError):
        repo.create_tag("keep", third)


def test_expiration_keeps_main_tip_and_root_even_when_old() -> None:
    repo = ic.Repository.create(ic.in_memory_storage())
    for i in range(3):
        _commit(repo, "main", i, f"c{i}")
    tip = repo.lookup_branch("main")
    expired = repo.expire_snapshots(_now() + timedelta(days=1), delete_expired_branches=True)
    assert len(expired) == 2
    assert [s.id for s in repo.ancestry(branch="main")] == [tip, "1CECHNKREP0F1RSTCMT0"]
    assert repo.list_branches() == {"main"}
    # nothing left to expire: a second run is a no-op (but still logged)
    assert repo.expire_snapshots(_now() + timedelta(days=1)) == set()
    assert [type(u.kind).__name__ for u in repo.ops_log()][:2] == ["ExpirationRan", "ExpirationRan"]


def test_expiration_of_unreachable_snapshots_and_async_twin() -> None:
    repo = ic.Repository.create(ic.in_memory_storage())
    _commit(repo, "main", 1, "one")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="a")[:] = 9
    detached = session.flush("detached")
    cutoff = _now()
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="a")[:] = 10
    young = session.flush("young detached")

    expired = asyncio.run(repo.expire_snapshots_async(cutoff))
    assert detached in expired
    with pytest.raises(ic.SnapshotNotFoundError):
        repo.lookup_snapshot(detached)
    # kept (young); its parent is main's tip, which is kept too (as the reference does)
    assert repo.lookup_snapshot(young).parent_id == repo.lookup_branch("main")
    assert repo.lookup_snapshot(repo.lookup_branch("main")).message == "one"
    repo.reset_branch("main", young)  # still adoptable
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session("main").store, path="a")[:], 10)


def test_expiration_refused_when_read_only() -> None:
    repo = ic.Repository.create(ic.in_memory_storage())
    _commit(repo, "main", 1, "one")
    repo.set_status(ic.RepoStatus(ic.RepoAvailability.read_only))
    with pytest.raises(ic.ReadOnlyError):
        repo.expire_snapshots(_now())


def test_spec1_expiration_rewrites_parents(tmp_path) -> None:
    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "v1")), spec_version=1)
    one = _commit(repo, "main", 1, "one")
    _commit(repo, "main", 2, "two")
    repo.create_branch("old", one)
    repo.create_tag("old-tag", one)
    cutoff = _now()
    three = _commit(repo, "main", 3, "three")
    expired = repo.expire_snapshots(cutoff, delete_expired_branches=True, delete_expired_tags=True)
    assert len(expired) == 2
    assert [s.id for s in repo.ancestry(branch="main")] == [three, "1CECHNKREP0F1RSTCMT0"]
    assert repo.list_branches() == {"main"}
    assert repo.list_tags() == set()
    with pytest.raises(ic.AlreadyExistsError):
        repo.create_tag("old-tag", three)  # tombstoned
    reopened = ic.Repository.open(ic.local_filesystem_storage(str(tmp_path / "v1")))
    assert [s.message for s in reopened.ancestry(branch="main")] == ["three", "Repository initialized"]
    np.testing.assert_array_equal(zarr.open_array(reopened.readonly_session("main").store, path="a")[:], 3)
