"""Every conflict type of API.md §5 and every solver option, through the public API.

"Ours" is the session being rebased; "theirs" is a commit made on the branch after our session
started.  Each test builds the smallest situation producing one conflict type and checks what
ConflictDetector and BasicConflictSolver (with each option) make of it.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable

import numpy as np
import pytest
import zarr
from zarr.core.buffer import cpu
from zarr.core.sync import sync

import icechunk as ic
from icechunk.conflicts import (
    BasicConflictSolver,
    Conflict,
    ConflictDetector,
    ConflictSolver,
    ConflictType,
    VersionSelection,
)

GROUP_JSON = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}).encode()

Edit = Callable[[ic.Session], None]


# ---- helpers --------------------------------------------------------------------------------


def _set_raw(session: ic.Session, key: str, data: bytes) -> None:
    sync(session.store.set(key, cpu.Buffer.from_bytes(data)))


def _delete(session: ic.Session, path: str) -> None:
    sync(session.store.delete(f"{path}/zarr.json"))


def _arr(session: ic.Session, path: str) -> zarr.Array:
    return zarr.open_array(session.store, path=path, mode="a")


def _group(session: ic.Session, path: str = "") -> zarr.Group:
    return zarr.open_group(session.store, path=path, mode="a")


@pytest.fixture
def repo() -> ic.Repository:
    """A repository whose main has ``/g`` (group), ``/g/a`` (4x4, 2x2 chunks) and ``/b`` (4, 2)."""
    repo = ic.Repository.create(ic.in_memory_storage())
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="w")
    g = root.create_group("g")
    g.create_array("a", shape=(4, 4), chunks=(2, 2), dtype="i4", fill_value=0)[:] = 1
    root.create_array("b", shape=(4,), chunks=(2,), dtype="i4", fill_value=0)[:] = 1
    session.commit("base")
    return repo


def _race(repo: ic.Repository, ours: Edit, theirs: Edit) -> tuple[ic.Session, str]:
    """Start our session, let another session commit ``theirs``, then apply ``ours``."""
    session = repo.writable_session("main")
    other = repo.writable_session("main")
    theirs(other)
    their_commit = other.commit("theirs")
    ours(session)
    return session, their_commit


def _conflicts(session: ic.Session, solver: ConflictSolver, their_commit: str) -> list[Conflict]:
    base = session.snapshot_id
    with pytest.raises(ic.RebaseFailedError) as info:
        session.rebase(solver)
    err = info.value
    assert err.kind == "rebase-failed"
    assert err.snapshot == their_commit
    assert all(isinstance(c, Conflict) for c in err.conflicts)
    assert session.snapshot_id == base  # stays at the last commit replayed successfully
    return err.conflicts


def _types(conflicts: list[Conflict]) -> set[tuple[ConflictType, str]]:
    return {(c.conflict_type, c.path) for c in conflicts}


ALL_SOLVERS: list[ConflictSolver] = [
    ConflictDetector(),
    BasicConflictSolver(),
    BasicConflictSolver(on_chunk_conflict=VersionSelection.UseTheirs),
    BasicConflictSolver(on_chunk_conflict=VersionSelection.Fail),
    BasicConflictSolver(fail_on_delete_of_updated_array=True, fail_on_delete_of_updated_group=True),
]

# ---- conflict types no solver can resolve ---------------------------------------------------

UNRESOLVABLE: dict[str, tuple[Edit, Edit, set[tuple[ConflictType, str]]]] = {
    "new-node-vs-existing-group": (
        lambda s: _group(s).create_group("new"),
        lambda s: _group(s).create_group("new"),
        {(ConflictType.NewNodeConflictsWithExistingNode, "/new")},
    ),
    "new-node-vs-existing-array": (
        lambda s: _group(s).create_array("new", shape=(2,), chunks=(1,), dtype="i1"),
        lambda s: _group(s).create_group("new"),
        {(ConflictType.NewNodeConflictsWithExistingNode, "/new")},
    ),
    "new-node-under-array": (
        lambda s: _set_raw(s, "x/y/zarr.json", GROUP_JSON),
        lambda s: _group(s).create_array("x", shape=(2,), chunks=(1,), dtype="i1"),
        {(ConflictType.NewNodeInInvalidGroup, "/x/y")},
    ),
    "new-node-deep-under-array": (
        lambda s: _set_raw(s, "x/y/z/zarr.json", GROUP_JSON),
        lambda s: _group(s).create_array("x", shape=(2,), chunks=(1,), dtype="i1"),
        {(ConflictType.NewNodeInInvalidGroup, "/x/y/z")},
    ),
    "array-metadata-double-update": (
        lambda s: _arr(s, "g/a").attrs.update({"k": "ours"}),
        lambda s: _arr(s, "g/a").attrs.update({"k": "theirs"}),
        {(ConflictType.ZarrMetadataDoubleUpdate, "/g/a")},
    ),
    "group-metadata-double-update": (
        lambda s: _group(s, "g").attrs.update({"k": "ours"}),
        lambda s: _group(s, "g").attrs.update({"other": 1}),
        {(ConflictType.ZarrMetadataDoubleUpdate, "/g")},
    ),
    "resize-vs-attrs": (
        lambda s: _arr(s, "b").resize((6,)),
        lambda s: _arr(s, "b").attrs.update({"units": "m"}),
        {(ConflictType.ZarrMetadataDoubleUpdate, "/b")},
    ),
    "metadata-update-of-deleted-array": (
        lambda s: _arr(s, "b").attrs.update({"k": 1}),
        lambda s: _delete(s, "b"),
        {(ConflictType.ZarrMetadataUpdateOfDeletedArray, "/b")},
    ),
    "metadata-update-of-deleted-group": (
        lambda s: _group(s, "g").attrs.update({"k": 1}),
        lambda s: _delete(s, "g"),
        {(ConflictType.ZarrMetadataUpdateOfDeletedGroup, "/g")},
    ),
    "chunks-into-deleted-array": (
        lambda s: _arr(s, "b").__setitem__(slice(0, 2), 9),
        lambda s: _delete(s, "b"),
        {(ConflictType.ChunksUpdatedInDeletedArray, "/b")},
    ),
    "chunks-into-deleted-group-subtree": (
        lambda s: _arr(s, "g/a").__setitem__((slice(0, 2), slice(0, 2)), 9),
        lambda s: _delete(s, "g"),
        {(ConflictType.ChunksUpdatedInDeletedArray, "/g/a")},
    ),
    "chunks-into-resized-array": (
        lambda s: _arr(s, "b").__setitem__(slice(0, 2), 9),
        lambda s: _arr(s, "b").resize((8,)),
        {(ConflictType.ChunksUpdatedInUpdatedArray, "/b")},
    ),
    "chunks-into-array-with-new-attrs": (
        lambda s: _arr(s, "g/a").__setitem__((slice(2, 4), slice(0, 2)), 9),
        lambda s: _arr(s, "g/a").attrs.update({"k": 1}),
        {(ConflictType.ChunksUpdatedInUpdatedArray, "/g/a")},
    ),
}


@pytest.mark.parametrize("solver", ALL_SOLVERS, ids=repr)
@pytest.mark.parametrize("case", list(UNRESOLVABLE))
def test_unresolvable_conflicts(repo: ic.Repository, case: str, solver: ConflictSolver) -> None:
    ours, theirs, expected = UNRESOLVABLE[case]
    session, their_commit = _race(repo, ours, theirs)
    assert _types(_conflicts(session, solver, their_commit)) == expected
    # the failed rebase left a usable session: drop the clash, rebase and commit
    session.discard_changes()
    session.rebase(solver)
    assert session.snapshot_id == their_commit
    _set_raw(session, "after_failure/zarr.json", GROUP_JSON)
    session.commit("after a failed rebase")
    assert len(list(repo.ancestry(branch="main"))) == 4


def test_conflict_detector_reports_every_conflict_of_a_commit(repo: ic.Repository) -> None:
    """Several conflicts at once are all listed (ConflictDetector resolves nothing)."""

    def ours(s: ic.Session) -> None:
        _arr(s, "g/a")[0:2, 0:2] = 5
        _arr(s, "b").attrs.update({"k": 1})
        _group(s).create_group("new")

    def theirs(s: ic.Session) -> None:
        _arr(s, "g/a")[0:2, :] = 7
        _arr(s, "b").attrs.update({"k": 2})
        _group(s).create_group("new")

    session, their_commit = _race(repo, ours, theirs)
    found = _conflicts(session, ConflictDetector(), their_commit)
    assert _types(found) == {
        (ConflictType.ChunkDoubleUpdate, "/g/a"),
        (ConflictType.ZarrMetadataDoubleUpdate, "/b"),
        (ConflictType.NewNodeConflictsWithExistingNode, "/new"),
    }
    [chunk] = [c for c in found if c.conflict_type == ConflictType.ChunkDoubleUpdate]
    assert chunk.conflicted_chunks == [[0, 0]]
    others = [c for c in found if c.conflict_type != ConflictType.ChunkDoubleUpdate]
    assert all(c.conflicted_chunks is None for c in others)


# ---- chunk double updates -------------------------------------------------------------------


def _chunk_race(repo: ic.Repository) -> tuple[ic.Session, str]:
    def ours(s: ic.Session) -> None:
        a = _arr(s, "g/a")
        a[0:2, 0:2] = 5  # chunk (0, 0): both write
        a[2:4, 2:4] = 6  # chunk (1, 1): only ours
        a[0:2, 2:4] = 5  # chunk (0, 1): both write

    def theirs(s: ic.Session) -> None:
        a = _arr(s, "g/a")
        a[0:2, :] = 7  # chunks (0, 0) and (0, 1)
        a[2:4, 0:2] = 8  # chunk (1, 0): only theirs
        _arr(s, "b")[2:4] = 3

    return _race(repo, ours, theirs)


def test_chunk_double_update_detected(repo: ic.Repository) -> None:
    session, their_commit = _chunk_race(repo)
    for solver in (ConflictDetector(), BasicConflictSolver(on_chunk_conflict=VersionSelection.Fail)):
        [conflict] = _conflicts(session, solver, their_commit)
        assert conflict.conflict_type == ConflictType.ChunkDoubleUpdate
        assert conflict.path == "/g/a"
        assert sorted(conflict.conflicted_chunks) == [[0, 0], [0, 1]]


@pytest.mark.parametrize(
    ("solver", "expected"),
    [
        (BasicConflictSolver(), [[5, 5, 5, 5], [5, 5, 5, 5], [8, 8, 6, 6], [8, 8, 6, 6]]),
        (
            BasicConflictSolver(on_chunk_conflict=VersionSelection.UseOurs),
            [[5, 5, 5, 5], [5, 5, 5, 5], [8, 8, 6, 6], [8, 8, 6, 6]],
        ),
        (
            BasicConflictSolver(on_chunk_conflict=VersionSelection.UseTheirs),
            [[7, 7, 7, 7], [7, 7, 7, 7], [8, 8, 6, 6], [8, 8, 6, 6]],
        ),
    ],
    ids=["default", "UseOurs", "UseTheirs"],
)
def test_chunk_double_update_resolved(repo: ic.Repository, solver: ConflictSolver, expected: list) -> None:
    session, their_commit = _chunk_race(repo)
    session.rebase(solver)
    assert session.snapshot_id == their_commit
    assert session.has_uncommitted_changes
    np.testing.assert_array_equal(_arr(session, "g/a")[:], expected)
    sid = session.commit("resolved")
    committed = repo.readonly_session(snapshot_id=sid)
    np.testing.assert_array_equal(zarr.open_array(committed.store, path="g/a", mode="r")[:], expected)
    np.testing.assert_array_equal(zarr.open_array(committed.store, path="b", mode="r")[:], [1, 1, 3, 3])
    # the transaction log of our commit lists only what we still change
    changed = repo.diff(from_snapshot_id=their_commit, to_snapshot_id=sid).updated_chunks
    if solver.on_chunk_conflict == VersionSelection.UseTheirs:  # type: ignore[attr-defined]
        assert changed == {"/g/a": [[1, 1]]}
    else:
        assert sorted(changed["/g/a"]) == [[0, 0], [0, 1], [1, 1]]


def test_chunk_deletes_count_as_chunk_writes(repo: ic.Repository) -> None:
    """Deleting a chunk both sides touched is a double update; UseOurs keeps the delete."""
    session, their_commit = _race(
        repo,
        lambda s: sync(s.store.delete("b/c/0")),
        lambda s: _arr(s, "b").__setitem__(slice(0, 2), 4),
    )
    [conflict] = _conflicts(session, ConflictDetector(), their_commit)
    assert (conflict.conflict_type, conflict.conflicted_chunks) == (ConflictType.ChunkDoubleUpdate, [[0]])
    session.rebase(BasicConflictSolver())
    np.testing.assert_array_equal(_arr(session, "b")[:], [0, 0, 1, 1])


# ---- deletes of updated nodes ---------------------------------------------------------------


@pytest.mark.parametrize("what", ["metadata", "chunks"])
def test_delete_of_updated_array(repo: ic.Repository, what: str) -> None:
    def theirs(s: ic.Session) -> None:
        if what == "metadata":
            _arr(s, "b").attrs.update({"k": 1})
        else:
            _arr(s, "b")[0:2] = 2
        _arr(s, "g/a")[2:4, 2:4] = 3  # unrelated: must survive our rebase

    session, their_commit = _race(repo, lambda s: _delete(s, "b"), theirs)
    expected = {(ConflictType.DeleteOfUpdatedArray, "/b")}
    assert _types(_conflicts(session, ConflictDetector(), their_commit)) == expected
    failing = BasicConflictSolver(fail_on_delete_of_updated_array=True)
    assert _types(_conflicts(session, failing, their_commit)) == expected
    # the group flag does not cover arrays
    session.rebase(BasicConflictSolver(fail_on_delete_of_updated_group=True))
    assert session.snapshot_id == their_commit
    assert "b" not in _group(session)
    sid = session.commit("delete wins")
    root = zarr.open_group(repo.readonly_session(snapshot_id=sid).store, mode="r")
    assert sorted(root.keys()) == ["g"]
    assert root["g/a"][3, 3] == 3
    assert repo.diff(from_snapshot_id=their_commit, to_snapshot_id=sid).deleted_arrays == {"/b"}


def test_delete_of_updated_group(repo: ic.Repository) -> None:
    def theirs(s: ic.Session) -> None:
        _group(s, "g").attrs.update({"k": 1})
        _arr(s, "b")[0:2] = 2

    session, their_commit = _race(repo, lambda s: _delete(s, "g"), theirs)
    expected = {(ConflictType.DeleteOfUpdatedGroup, "/g")}
    assert _types(_conflicts(session, ConflictDetector(), their_commit)) == expected
    assert _types(_conflicts(session, BasicConflictSolver(fail_on_delete_of_updated_group=True), their_commit)) == expected
    session.rebase(BasicConflictSolver(fail_on_delete_of_updated_array=True))
    sid = session.commit("delete wins")
    root = zarr.open_group(repo.readonly_session(snapshot_id=sid).store, mode="r")
    assert sorted(root.keys()) == ["b"]
    np.testing.assert_array_equal(root["b"][:], [2, 2, 1, 1])


def test_delete_of_group_whose_array_was_updated(repo: ic.Repository) -> None:
    """Deleting a group deletes its arrays: their chunk write to one is a delete-of-updated-array."""
    session, their_commit = _race(
        repo, lambda s: _delete(s, "g"), lambda s: _arr(s, "g/a").__setitem__((0, 0), 9)
    )
    assert _types(_conflicts(session, ConflictDetector(), their_commit)) == {
        (ConflictType.DeleteOfUpdatedArray, "/g/a")
    }
    session.rebase(BasicConflictSolver(fail_on_delete_of_updated_group=True))
    sid = session.commit("deleted")
    assert sorted(zarr.open_group(repo.readonly_session(snapshot_id=sid).store, mode="r").keys()) == ["b"]


# ---- things that are not conflicts ----------------------------------------------------------


def test_delete_then_recreate_is_not_a_new_node_conflict(repo: ic.Repository) -> None:
    def ours(s: ic.Session) -> None:
        _delete(s, "b")
        _group(s).create_array("b", shape=(3,), chunks=(3,), dtype="f8", fill_value=0.5)

    session, _ = _race(repo, ours, lambda s: _arr(s, "g/a").__setitem__((0, 0), 9))
    session.rebase(ConflictDetector())
    sid = session.commit("recreated")
    root = zarr.open_group(repo.readonly_session(snapshot_id=sid).store, mode="r")
    assert root["b"].shape == (3,)
    assert root["g/a"][0, 0] == 9


def test_both_delete_the_same_node(repo: ic.Repository) -> None:
    session, their_commit = _race(repo, lambda s: _delete(s, "b"), lambda s: _delete(s, "b"))
    session.rebase(ConflictDetector())
    assert session.snapshot_id == their_commit
    # nothing left to delete: the rebased change set is empty
    assert not session.has_uncommitted_changes
    assert session.status().deleted_arrays == set()


def test_union_of_disjoint_changes(repo: ic.Repository) -> None:
    """A clean rebase keeps exactly both sides' data: nothing lost, nothing invented."""

    def ours(s: ic.Session) -> None:
        _arr(s, "g/a")[0:2, 0:2] = 5
        _group(s).create_array("mine", shape=(2,), chunks=(1,), dtype="i2", fill_value=0)[:] = [1, 2]
        _group(s, "g").attrs.update({"who": "ours"})
        sync(s.store.delete("b/c/1"))

    def theirs(s: ic.Session) -> None:
        _arr(s, "g/a")[2:4, 2:4] = 7
        _group(s).create_group("theirs").create_array("t", shape=(1,), chunks=(1,), dtype="u1")[:] = 3
        _group(s).attrs.update({"who": "theirs"})
        _arr(s, "b")[0] = 4

    session, their_commit = _race(repo, ours, theirs)
    session.rebase(ConflictDetector())
    assert session.snapshot_id == their_commit
    sid = session.commit("union")
    root = zarr.open_group(repo.readonly_session(snapshot_id=sid).store, mode="r")
    assert sorted(k for k, _ in root.members(max_depth=None)) == ["b", "g", "g/a", "mine", "theirs", "theirs/t"]
    np.testing.assert_array_equal(
        root["g/a"][:], [[5, 5, 1, 1], [5, 5, 1, 1], [1, 1, 7, 7], [1, 1, 7, 7]]
    )
    np.testing.assert_array_equal(root["b"][:], [4, 1, 0, 0])
    np.testing.assert_array_equal(root["mine"][:], [1, 2])
    np.testing.assert_array_equal(root["theirs/t"][:], [3])
    assert dict(root["g"].attrs) == {"who": "ours"}
    assert dict(root.attrs) == {"who": "theirs"}
    history = [s.id for s in repo.ancestry(branch="main")]
    assert history[:2] == [sid, their_commit]


def test_rebase_over_several_commits_stops_at_the_failing_one(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    _arr(session, "g/a")[0:2, 0:2] = 5
    first = repo.writable_session("main")
    _arr(first, "b")[:] = 2
    c1 = first.commit("clean")
    second = repo.writable_session("main")
    _arr(second, "g/a")[0, 0] = 7
    c2 = second.commit("conflicting")
    third = repo.writable_session("main")
    _arr(third, "g/a")[3, 3] = 9
    c3 = third.commit("clean again")

    with pytest.raises(ic.RebaseFailedError) as info:
        session.rebase(ConflictDetector())
    assert info.value.snapshot == c2
    assert session.snapshot_id == c1  # c1 replayed cleanly
    np.testing.assert_array_equal(_arr(session, "b")[:], [2, 2, 2, 2])  # sees c1's data
    assert _arr(session, "g/a")[0, 0] == 5  # our change set is intact
    # retry with another solver: continues from c1 over c2 and c3
    session.rebase(BasicConflictSolver())
    assert session.snapshot_id == c3
    sid = session.commit("ours wins")
    data = zarr.open_array(repo.readonly_session(snapshot_id=sid).store, path="g/a", mode="r")[:]
    np.testing.assert_array_equal(data, [[5, 5, 1, 1], [5, 5, 1, 1], [1, 1, 1, 1], [1, 1, 1, 9]])
    assert [s.id for s in repo.ancestry(branch="main")][:4] == [sid, c3, c2, c1]


# ---- moves ----------------------------------------------------------------------------------


def _commit_with_move(repo: ic.Repository, src: str, dst: str) -> str:
    session = repo.rearrange_session("main")
    session.move(src, dst)
    return session.commit(f"move {src} -> {dst}")


def test_move_cannot_be_rebased(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    _arr(session, "g/a")[0, 0] = 5  # unrelated to the moved node
    moved = _commit_with_move(repo, "/b", "/g/b2")
    assert "b2" in zarr.open_group(repo.readonly_session("main").store, path="g", mode="r")
    for solver in ALL_SOLVERS:
        [conflict] = _conflicts(session, solver, moved)
        assert conflict.conflict_type == ConflictType.MoveOperationCannotBeRebased
        assert conflict.conflicted_chunks is None
    with pytest.raises(ic.RebaseFailedError):
        session.commit("cannot land", rebase_with=BasicConflictSolver())
    # even a session that touched nothing near the move cannot be rebased over it
    other = repo.writable_session("main")
    later = _commit_with_move(repo, "/g/b2", "/b3")
    _group(other).attrs.update({"x": 1})
    with pytest.raises(ic.RebaseFailedError) as info:
        other.rebase(ConflictDetector())
    assert info.value.snapshot == later
    assert other.snapshot_id == moved


# ---- rebase edge cases ----------------------------------------------------------------------


def test_rebase_noop_when_branch_unchanged_or_deleted(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    _arr(session, "b")[0] = 3
    base = session.snapshot_id
    session.rebase(ConflictDetector())
    assert session.snapshot_id == base
    repo.create_branch("side", base)
    side = repo.writable_session("side")
    _arr(side, "b")[0] = 4
    repo.delete_branch("side")
    side.rebase(ConflictDetector())
    assert side.snapshot_id == base and side.has_uncommitted_changes


def test_rebase_not_allowed_without_branch(repo: ic.Repository) -> None:
    ro = repo.readonly_session("main")
    with pytest.raises(ic.SessionStateError) as info:
        ro.rebase(ConflictDetector())
    assert info.value.kind == "commit-not-allowed"
    session = repo.writable_session("main")
    _arr(session, "b")[0] = 3
    session.commit("done")
    with pytest.raises(ic.SessionStateError):
        session.rebase(ConflictDetector())  # finished sessions have no branch
    fork = repo.writable_session("main").fork()
    with pytest.raises(ic.SessionStateError) as info:
        fork.rebase(ConflictDetector())
    assert info.value.kind == "commit-not-allowed"


def test_rebase_after_branch_reset_to_unrelated_history(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    _arr(session, "b")[0] = 3
    repo.reset_branch("main", "1CECHNKREP0F1RSTCMT0")
    other = repo.writable_session("main")
    _group(other).create_group("fresh")
    other.commit("new history")
    with pytest.raises(ic.RebaseFailedError) as info:
        session.rebase(ConflictDetector())
    assert info.value.conflicts == []
    assert "not in the history" in str(info.value)


def test_unsupported_solver_is_refused(repo: ic.Repository) -> None:
    class Mine(ConflictSolver):
        pass

    session = repo.writable_session("main")
    _arr(session, "b")[0] = 3
    with pytest.raises(TypeError, match="ConflictDetector or BasicConflictSolver"):
        session.rebase(Mine())
    with pytest.raises(TypeError):
        BasicConflictSolver(on_chunk_conflict="ours")  # type: ignore[arg-type]


# ---- public values --------------------------------------------------------------------------


def test_public_values() -> None:
    assert [(t.name, t.value) for t in ConflictType][:3] == [
        ("NewNodeConflictsWithExistingNode", 1),
        ("NewNodeInInvalidGroup", 2),
        ("ZarrMetadataDoubleUpdate", 3),
    ]
    assert ConflictType.MoveOperationCannotBeRebased.value == 11
    assert len(ConflictType) == 11
    assert {v.name: v.value for v in VersionSelection} == {"Fail": 0, "UseOurs": 1, "UseTheirs": 2}
    assert pickle.loads(pickle.dumps(VersionSelection.UseTheirs)) is VersionSelection.UseTheirs
    c = Conflict(ConflictType.ChunkDoubleUpdate, "/a", [[0, 1]])
    assert (c.conflict_type, c.path, c.conflicted_chunks) == (ConflictType.ChunkDoubleUpdate, "/a", [[0, 1]])
    assert pickle.loads(pickle.dumps(c)) == c
    assert Conflict(ConflictType.DeleteOfUpdatedGroup, "/g").conflicted_chunks is None
    default = BasicConflictSolver()
    assert default.on_chunk_conflict == VersionSelection.UseOurs
    assert not default.fail_on_delete_of_updated_array and not default.fail_on_delete_of_updated_group
    with pytest.raises(TypeError):
        BasicConflictSolver(VersionSelection.UseOurs)  # type: ignore[misc]
    assert isinstance(ConflictDetector(), ConflictSolver)
    assert ic.ConflictDetector is ConflictDetector and ic.BasicConflictSolver is BasicConflictSolver
    err = ic.RebaseFailedError("SNAP", [c])
    again = pickle.loads(pickle.dumps(err))
    assert (again.snapshot, again.conflicts, again.kind) == ("SNAP", [c], "rebase-failed")
    assert isinstance(err, ic.ConflictError)


@pytest.mark.parametrize("creates_a_node", [False, True])
def test_rebase_reads_only_the_snapshots_it_needs(
    repo: ic.Repository, monkeypatch: pytest.MonkeyPatch, creates_a_node: bool
) -> None:
    """A change set that only writes chunks is checked against each commit's log; only the
    new base's snapshot is read.  One that creates a node needs every snapshot (a later
    commit may have created the same path)."""
    from icechunk.core.repository import RepoEngine

    session = repo.writable_session("main")
    _arr(session, "g/a")[0, 0] = 5
    if creates_a_node:
        _group(session).create_group("ours")
    theirs = []
    for k in range(3):
        other = repo.writable_session("main")
        _arr(other, "b")[k] = 10 + k
        theirs.append(other.commit(f"theirs {k}"))
    read: list[str] = []
    original = RepoEngine.snapshot

    async def recording(self: RepoEngine, sid: object) -> object:
        read.append(str(sid))
        return await original(self, sid)  # type: ignore[arg-type]

    monkeypatch.setattr(RepoEngine, "snapshot", recording)
    session.rebase(ConflictDetector())
    assert session.snapshot_id == theirs[-1]
    assert read == (theirs if creates_a_node else theirs[-1:])
    sid = session.commit("ours")
    data = zarr.open_array(repo.readonly_session(snapshot_id=sid).store, path="b", mode="r")[:]
    np.testing.assert_array_equal(data[:3], [10, 11, 12])
    ours = zarr.open_array(repo.readonly_session(snapshot_id=sid).store, path="g/a", mode="r")
    assert ours[0, 0] == 5
