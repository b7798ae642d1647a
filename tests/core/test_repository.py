"""Repository lifecycle: create/open, refs, history, metadata, status, flags, errors."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import zarr

import icechunk as ic


@pytest.fixture(params=["memory", "local"])
def storage(request: pytest.FixtureRequest, tmp_path):
    if request.param == "memory":
        return ic.in_memory_storage()
    return ic.local_filesystem_storage(str(tmp_path / "repo"))


@pytest.fixture(params=[2, 1], ids=["spec2", "spec1"])
def spec(request: pytest.FixtureRequest) -> int:
    return request.param


def _commit_array(repo: ic.Repository, branch: str, value: float, message: str) -> str:
    session = repo.writable_session(branch)
    root = zarr.open_group(session.store, mode="a")
    if "a" in root:
        arr = root["a"]
    else:
        arr = root.create_array("a", shape=(4,), chunks=(2,), dtype="f8", fill_value=-1.0)
    arr[:] = value
    return session.commit(message)


def test_create_open_exists(storage, spec) -> None:
    assert not ic.Repository.exists(storage)
    assert ic.Repository.fetch_spec_version(storage) is None
    repo = ic.Repository.create(storage, spec_version=spec)
    assert repo.spec_version == spec
    assert ic.Repository.exists(storage)
    assert ic.Repository.fetch_spec_version(storage) == spec
    again = ic.Repository.open(storage)
    assert again.list_branches() == {"main"}
    [root] = list(again.ancestry(branch="main"))
    assert root.id == "1CECHNKREP0F1RSTCMT0"
    assert root.message == "Repository initialized"
    assert root.parent_id is None


def test_open_missing_repository_raises(storage) -> None:
    with pytest.raises(ic.RepositoryNotFoundError, match="the repository doesn't exist"):
        ic.Repository.open(storage)
    with pytest.raises(KeyError):
        ic.Repository.open(storage)
    with pytest.raises(ic.RepositoryNotFoundError):
        ic.Repository.fetch_config(storage)


def test_create_refuses_non_empty_location(tmp_path) -> None:
    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    ic.Repository.create(storage)
    with pytest.raises(ic.InvalidInputError) as info:
        ic.Repository.create(storage)
    assert info.value.kind == "parent-directory-not-clean"
    # the existing repository is untouched
    assert ic.Repository.open(storage).list_branches() == {"main"}


def test_open_or_create(storage) -> None:
    repo = ic.Repository.open_or_create(storage)
    sid = _commit_array(repo, "main", 1.0, "first")
    repo2 = ic.Repository.open_or_create(storage)
    assert repo2.lookup_branch("main") == sid


def test_commit_and_read_back(storage, spec) -> None:
    repo = ic.Repository.create(storage, spec_version=spec)
    first = _commit_array(repo, "main", 1.0, "first")
    second = _commit_array(repo, "main", 2.0, "second")
    reopened = ic.Repository.open(storage)
    tip = reopened.readonly_session("main")
    assert tip.snapshot_id == second
    np.testing.assert_array_equal(zarr.open_array(tip.store, path="a", mode="r")[:], [2.0] * 4)
    old = reopened.readonly_session(snapshot_id=first)
    np.testing.assert_array_equal(zarr.open_array(old.store, path="a", mode="r")[:], [1.0] * 4)
    messages = [s.message for s in reopened.ancestry(branch="main")]
    assert messages == ["second", "first", "Repository initialized"]


def test_commit_metadata_and_default_metadata(storage) -> None:
    repo = ic.Repository.create(storage)
    repo.set_default_commit_metadata({"author": "me", "team": "x"})
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="w")
    sid = session.commit("with metadata", metadata={"team": "y", "n": [1, 2.5, None]})
    info = repo.lookup_snapshot(sid)
    assert info.metadata == {"author": "me", "team": "y", "n": [1, 2.5, None]}
    assert repo.default_commit_metadata() == {"author": "me", "team": "x"}


def test_branches_and_tags(storage, spec) -> None:
    repo = ic.Repository.create(storage, spec_version=spec)
    first = _commit_array(repo, "main", 1.0, "first")
    repo.create_branch("dev", first)
    assert repo.list_branches() == {"main", "dev"}
    dev_tip = _commit_array(repo, "dev", 5.0, "on dev")
    assert repo.lookup_branch("dev") == dev_tip
    assert repo.lookup_branch("main") == first
    repo.create_tag("v1", first)
    assert repo.list_tags() == {"v1"}
    assert repo.lookup_tag("v1") == first
    session = repo.readonly_session(tag="v1")
    assert session.snapshot_id == first
    with pytest.raises(ic.AlreadyExistsError) as info:
        repo.create_branch("dev", first)
    assert info.value.kind == "branch-already-exists"
    with pytest.raises(ic.AlreadyExistsError):
        repo.create_tag("v1", dev_tip)
    repo.delete_tag("v1")
    assert repo.list_tags() == set()
    with pytest.raises(ic.RefNotFoundError):
        repo.lookup_tag("v1")
    with pytest.raises(ic.AlreadyExistsError) as info:
        repo.create_tag("v1", first)
    assert info.value.kind == "tag-previously-deleted"
    with pytest.raises(ic.SessionStateError) as info:
        repo.delete_branch("main")
    assert info.value.kind == "cannot-delete-main"
    repo.delete_branch("dev")
    assert repo.list_branches() == {"main"}
    with pytest.raises(ic.RefNotFoundError):
        repo.lookup_branch("dev")
    # nothing was lost on main
    assert repo.lookup_branch("main") == first


def test_invalid_names_and_ids(storage) -> None:
    repo = ic.Repository.create(storage)
    tip = repo.lookup_branch("main")
    with pytest.raises(ic.InvalidInputError):
        repo.create_branch("a/b", tip)
    with pytest.raises(ic.InvalidInputError):
        repo.create_branch("", tip)
    with pytest.raises(ic.InvalidInputError) as info:
        repo.readonly_session(snapshot_id="not-an-id")
    assert info.value.kind == "invalid-snapshot-id"
    with pytest.raises(ic.SnapshotNotFoundError):
        repo.create_branch("x", "0" * 20)
    with pytest.raises(ic.RefNotFoundError):
        repo.writable_session("nope")
    with pytest.raises(ValueError, match="Must provide one of branch, tag, or snapshot_id"):
        repo.readonly_session()
    with pytest.raises(ValueError):
        repo.readonly_session("main", tag="x")
    assert repo.list_branches() == {"main"}


def test_reset_branch_compare_and_swap(storage, spec) -> None:
    repo = ic.Repository.create(storage, spec_version=spec)
    first = _commit_array(repo, "main", 1.0, "first")
    second = _commit_array(repo, "main", 2.0, "second")
    with pytest.raises(ic.ConflictError, match="branch update conflict"):
        repo.reset_branch("main", first, from_snapshot_id=first)
    assert repo.lookup_branch("main") == second
    repo.reset_branch("main", first, from_snapshot_id=second)
    assert repo.lookup_branch("main") == first
    assert [s.message for s in repo.ancestry(branch="main")] == ["first", "Repository initialized"]


def test_as_of_time_travel(storage) -> None:
    repo = ic.Repository.create(storage)
    first = _commit_array(repo, "main", 1.0, "first")
    t_first = repo.lookup_snapshot(first).written_at
    second = _commit_array(repo, "main", 2.0, "second")
    assert repo.readonly_session("main", as_of=t_first).snapshot_id == first
    assert repo.readonly_session("main", as_of=datetime.now(UTC) + timedelta(days=1)).snapshot_id == second
    with pytest.raises(ic.SnapshotNotFoundError) as info:
        repo.readonly_session("main", as_of=datetime(2000, 1, 1, tzinfo=UTC))
    assert info.value.kind == "no-snapshot-at-time"
    with pytest.raises(ValueError):
        repo.readonly_session(tag="x", as_of=t_first)


def test_empty_commit_and_read_only_session_errors(storage) -> None:
    repo = ic.Repository.create(storage)
    session = repo.writable_session("main")
    with pytest.raises(ic.SessionStateError, match="no changes made to the session"):
        session.commit("nothing")
    sid = session.commit("allowed", allow_empty=True)
    assert repo.lookup_branch("main") == sid
    assert session.read_only and session.branch is None
    with pytest.raises(ic.SessionStateError) as info:
        session.commit("again", allow_empty=True)
    assert info.value.kind == "commit-not-allowed"
    ro = repo.readonly_session("main")
    with pytest.raises(ValueError, match="read-only"):
        zarr.open_group(ro.store, mode="w")
    from zarr.core.buffer import cpu
    from zarr.core.sync import sync

    with pytest.raises(ic.ReadOnlyError):
        sync(ro.store.with_read_only(False).set("zarr.json", cpu.Buffer.from_bytes(b"{}")))
    assert repo.lookup_branch("main") == sid


def test_conflict_error_when_branch_moved(storage, spec) -> None:
    repo = ic.Repository.create(storage, spec_version=spec)
    a = repo.writable_session("main")
    b = repo.writable_session("main")
    zarr.open_group(a.store, mode="a").create_group("from_a")
    zarr.open_group(b.store, mode="a").create_group("from_b")
    base = a.snapshot_id
    won = a.commit("a wins")
    with pytest.raises(ic.ConflictError) as info:
        b.commit("b loses")
    assert info.value.expected_parent == base
    assert info.value.actual_parent == won
    assert repo.lookup_branch("main") == won


def test_diff_and_status(storage) -> None:
    repo = ic.Repository.create(storage)
    s1 = repo.writable_session("main")
    root = zarr.open_group(s1.store, mode="w")
    root.create_group("g")
    arr = root.create_array("g/x", shape=(4,), chunks=(2,), dtype="i4", fill_value=0)
    arr[:2] = 7
    status = s1.status()
    assert status.new_groups == {"/", "/g"}
    assert status.new_arrays == {"/g/x"}
    assert status.updated_chunks == {"/g/x": [[0]]}
    first = s1.commit("one")
    s2 = repo.writable_session("main")
    zarr.open_array(s2.store, path="g/x", mode="a")[2:] = 3
    zarr.open_group(s2.store, mode="a").attrs["k"] = "v"
    second = s2.commit("two")
    diff = repo.diff(from_snapshot_id=first, to_branch="main")
    assert diff.updated_chunks == {"/g/x": [[1]]}
    assert diff.updated_groups == {"/"}
    assert not diff.new_arrays
    full = repo.diff(from_snapshot_id="1CECHNKREP0F1RSTCMT0", to_snapshot_id=second)
    assert full.new_arrays == {"/g/x"}
    assert full.updated_chunks == {"/g/x": [[0], [1]]}
    with pytest.raises(ic.InvalidInputError, match="doesn't include") as info:
        repo.diff(from_snapshot_id=second, to_snapshot_id=first)
    assert info.value.kind == "bad-snapshot-chain-for-diff"


def test_ops_log_metadata_status_flags(tmp_path) -> None:
    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    repo = ic.Repository.create(storage)
    sid = _commit_array(repo, "main", 1.0, "c1")
    repo.create_branch("b", sid)
    repo.create_tag("t", sid)
    assert repo.get_metadata() == {}
    repo.set_metadata({"owner": "me"})
    assert repo.update_metadata({"x": 1}) == {"owner": "me", "x": 1}
    assert repo.metadata == {"owner": "me", "x": 1}
    kinds = [type(u.kind).__name__ for u in repo.ops_log()]
    assert kinds == [
        "MetadataChanged", "MetadataChanged", "TagCreated", "BranchCreated", "NewCommit", "RepoInitialized"
    ]
    # every backup named in the log exists in overwritten/
    backups = [u.backup_path for u in repo.ops_log() if u.backup_path]
    assert len(backups) == 5
    for name in backups:
        assert (tmp_path / "repo" / "overwritten" / name).is_file()

    flags = {f.name: f.enabled for f in repo.feature_flags()}
    assert flags == {"move_node": True, "create_tag": True, "delete_tag": True}
    repo.set_feature_flag("create_tag", False)
    with pytest.raises(ic.SessionStateError) as info:
        repo.create_tag("t2", sid)
    assert info.value.kind == "feature-flag-disabled"
    repo.set_feature_flag("create_tag", None)
    repo.create_tag("t2", sid)
    with pytest.raises(ic.InvalidInputError):
        repo.set_feature_flag("nope", True)

    repo.set_status(ic.RepoStatus(ic.RepoAvailability.read_only, limited_availability_reason="maintenance"))
    assert repo.status.availability == ic.RepoAvailability.read_only
    with pytest.raises(ic.ReadOnlyError, match="repository status is read-only"):
        repo.writable_session("main")
    with pytest.raises(ic.ReadOnlyError):
        repo.create_branch("c", sid)
    assert repo.readonly_session("main").snapshot_id == sid  # reads still work
    repo.set_status(ic.RepoStatus(ic.RepoAvailability.online))
    repo.create_branch("c", sid)


def test_read_only_set_by_another_handle_stops_a_commit(tmp_path) -> None:
    """A session opened while the repository was online cannot commit once another handle
    made it read-only: the ref update re-reads the status, and the branch stays put."""
    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    repo = ic.Repository.create(storage)
    sid = _commit_array(repo, "main", 1.0, "c1")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="a", mode="a")[0] = 5.0
    ic.Repository.open(storage).set_status(ic.RepoStatus(ic.RepoAvailability.read_only))
    with pytest.raises(ic.ReadOnlyError, match="repository status is read-only"):
        session.commit("too late")
    assert ic.Repository.open(storage).lookup_branch("main") == sid


def test_session_open_and_commit_read_the_repo_object_once_each(tmp_path) -> None:
    """The spec-2 ``repo`` object is read once to open a writable session (status and tip
    together) and once to commit (by the conditional update itself)."""
    from icechunk.storage._local import LocalFileSystemStorage

    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")))
    _commit_array(repo, "main", 1.0, "c1")
    reads: list[str] = []
    original_versioned, original_get = LocalFileSystemStorage.get_with_version, LocalFileSystemStorage.get

    async def versioned(self, key):  # type: ignore[no-untyped-def]
        reads.append(f"{key} (versioned)")
        return await original_versioned(self, key)

    async def plain(self, key, byte_range=None):  # type: ignore[no-untyped-def]
        if key == "repo":
            reads.append(key)
        return await original_get(self, key, byte_range)

    LocalFileSystemStorage.get_with_version = versioned  # type: ignore[method-assign]
    LocalFileSystemStorage.get = plain  # type: ignore[method-assign]
    try:
        session = repo.writable_session("main")
        opened = list(reads)
        zarr.open_array(session.store, path="a", mode="a")[0] = 5.0
        del reads[:]
        session.commit("c2")
    finally:
        LocalFileSystemStorage.get_with_version = original_versioned  # type: ignore[method-assign]
        LocalFileSystemStorage.get = original_get  # type: ignore[method-assign]
    # opening needs no version (nothing is written from that read, so it is not hashed);
    # the commit's conditional update does
    assert opened == ["repo"]
    assert reads == ["repo (versioned)"]


def test_sessions_open_on_a_changed_repo_object_without_decoding_it(tmp_path, monkeypatch) -> None:
    """After another handle committed, opening a session reads the branch tip and status
    straight from the new ``repo`` object (no full decode, whatever the history's length);
    a commit and a rebase still decode it."""
    import icechunk.core.repo_state as repo_state

    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    repo = ic.Repository.create(storage)
    _commit_array(repo, "main", 1.0, "c1")
    other = ic.Repository.open(storage)
    theirs = _commit_array(other, "main", 2.0, "c2")
    decoded: list[int] = []
    original = repo_state.decode_repo_info

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        decoded.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(repo_state, "decode_repo_info", counting)
    session = repo.writable_session("main")
    assert session.snapshot_id == theirs
    assert repo.readonly_session(branch="main").snapshot_id == theirs
    assert decoded == []
    zarr.open_array(session.store, path="a", mode="a")[0] = 5.0
    ours = session.commit("c3")
    assert decoded  # the ref update decodes what it rewrites
    assert [s.id for s in other.ancestry(branch="main")][:2] == [ours, theirs]
    # the peeked facts still raise like the decoded ones
    _commit_array(other, "main", 3.0, "c4")
    with pytest.raises(ic.IcechunkError, match="ref not found: branch 'nope'"):
        repo.writable_session("nope")
    other.set_status(ic.RepoStatus(ic.RepoAvailability.read_only))
    with pytest.raises(ic.ReadOnlyError, match="repository status is read-only"):
        repo.writable_session("main")
    assert repo.readonly_session(branch="main").snapshot_id != theirs  # reading is allowed


def test_spec1_refuses_spec2_operations(storage) -> None:
    repo = ic.Repository.create(storage, spec_version=1)
    with pytest.raises(ic.FormatError) as info:
        repo.set_metadata({"a": 1})
    assert info.value.kind == "unsupported-spec-version"
    with pytest.raises(ic.FormatError):
        list(repo.ops_log())
    _commit_array(repo, "main", 1.0, "c1")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="a", mode="a")[:] = 3.0
    with pytest.raises(ic.FormatError):
        session.amend("amended")


def test_config_persistence(storage) -> None:
    config = ic.RepositoryConfig(inline_chunk_threshold_bytes=12)
    repo = ic.Repository.create(storage, config=config)
    assert repo.config.inline_chunk_threshold_bytes == 12
    persisted = ic.Repository.fetch_config(storage)
    assert persisted is not None and persisted.inline_chunk_threshold_bytes == 12
    reopened = ic.Repository.open(storage, config=ic.RepositoryConfig(get_partial_values_concurrency=3))
    assert reopened.config.inline_chunk_threshold_bytes == 12
    assert reopened.config.get_partial_values_concurrency == 3
    cfg = reopened.config
    cfg.compression = ic.CompressionConfig(level=5)
    changed = reopened.reopen(config=cfg)
    changed.save_config()
    assert ic.Repository.fetch_config(storage).compression.level == 5


def test_pickling_repository_and_sessions(storage) -> None:
    repo = ic.Repository.create(storage)
    sid = _commit_array(repo, "main", 4.0, "c")
    repo2 = pickle.loads(pickle.dumps(repo))
    assert repo2.lookup_branch("main") == sid
    ro = repo.readonly_session("main")
    ro2 = pickle.loads(pickle.dumps(ro))
    assert ro2.read_only and ro2.snapshot_id == sid
    if isinstance(storage, type(ic.in_memory_storage())):
        return  # an unpickled in-memory storage is a copy; reading it still works below
    np.testing.assert_array_equal(zarr.open_array(ro2.store, path="a", mode="r")[:], [4.0] * 4)
    writable = repo.writable_session("main")
    with pytest.raises(ValueError, match="fork"):
        pickle.dumps(writable)
    with pytest.raises(ValueError, match="to_icechunk"):
        pickle.dumps(writable.store)


def test_amend_and_flush(storage) -> None:
    repo = ic.Repository.create(storage)
    first = _commit_array(repo, "main", 1.0, "first")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="a", mode="a")[:2] = 9.0
    amended = session.amend("first, amended")
    assert amended != first
    history = [s.message for s in repo.ancestry(branch="main")]
    assert history == ["first, amended", "Repository initialized"]
    data = zarr.open_array(repo.readonly_session("main").store, path="a", mode="r")[:]
    np.testing.assert_array_equal(data, [9.0, 9.0, 1.0, 1.0])
    stale = repo.writable_session("main")
    repo.reset_branch("main", "1CECHNKREP0F1RSTCMT0")
    # flush writes a detached snapshot, moves no branch
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="w").create_group("tmp")
    detached = session.flush("detached")
    assert repo.lookup_branch("main") == "1CECHNKREP0F1RSTCMT0"
    assert repo.lookup_snapshot(detached).parent_id == "1CECHNKREP0F1RSTCMT0"
    repo.reset_branch("main", detached)
    assert "tmp" in zarr.open_group(repo.readonly_session("main").store, mode="r")
    kinds = [type(u.kind).__name__ for u in repo.ops_log()][:4]
    assert kinds == ["BranchReset", "NewDetachedSnapshot", "BranchReset", "CommitAmended"]
    repo.reset_branch("main", "1CECHNKREP0F1RSTCMT0")
    with pytest.raises(ic.ConflictError):  # the branch moved since `stale` started
        stale.amend("stale", allow_empty=True)
    with pytest.raises(ic.SessionStateError) as info:
        repo.writable_session("main").amend("cannot amend the root", allow_empty=True)
    assert info.value.kind == "no-amend-for-initial-commit"


@pytest.mark.parametrize("spec_version", [2, 1])
def test_ancestry_chains_parents_in_batches(tmp_path, spec_version: int) -> None:
    """Every ancestry entry's parent is the next entry, whichever way the history is read
    (spec 2: one in-memory list; spec 1: snapshot files, in batches of any size)."""
    from icechunk._sync import iterate, run

    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")), spec_version=spec_version)
    for k in range(5):
        _commit_array(repo, "main", float(k), f"c{k}")
    infos = list(repo.ancestry(branch="main"))
    assert [i.message for i in infos][:5] == ["c4", "c3", "c2", "c1", "c0"]
    assert [i.parent_id for i in infos] == [i.id for i in infos[1:]] + [None]
    assert infos[0].written_at > infos[-1].written_at
    state = repo._engine.state
    tip = run(state.lookup_branch("main"))
    batches = list(iterate(state.ancestry_batches(tip, size=2)))
    assert [str(e.id) for batch in batches for e in batch] == [i.id for i in infos]
    assert all(len(b) <= (2 if spec_version == 1 else len(infos)) for b in batches)
