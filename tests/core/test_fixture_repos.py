"""The reference-written fixture repositories read back through the public API.

Expected values come from ../shared/fixtures/README.md §1.3.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import icechunk as ic

REPOS = ["test-repo-v1", "test-repo-v2", "test-repo-v2-migrated"]
MAIN = ["set virtual chunk", "fill data", "empty structure", "Repository initialized"]


@pytest.fixture(params=REPOS)
def repo(request: pytest.FixtureRequest, fixture_copy) -> ic.Repository:
    path = fixture_copy(request.param)
    return ic.Repository.open(ic.local_filesystem_storage(str(path)))


def _read(session: ic.Session, path: str) -> np.ndarray:
    return zarr.open_array(session.store, path=path, mode="r")[:]


def test_refs_and_ancestry(repo: ic.Repository) -> None:
    assert repo.list_branches() == {"main", "my-branch"}
    assert repo.list_tags() == {"it works!", "it also works!"}
    assert [s.message for s in repo.ancestry(branch="main")] == MAIN
    assert [s.message for s in repo.ancestry(branch="my-branch")] == ["some more structure", "delete a chunk", *MAIN]
    assert [s.message for s in repo.ancestry(tag="it also works!")] == ["some more structure", "delete a chunk", *MAIN]
    assert [s.message for s in repo.ancestry(tag="it works!")] == ["delete a chunk", *MAIN]
    with pytest.raises(ic.RefNotFoundError):
        repo.lookup_tag("deleted")
    with pytest.raises(ic.RefNotFoundError):
        repo.readonly_session(tag="deleted")


def test_values(repo: ic.Repository) -> None:
    main = repo.readonly_session("main")
    np.testing.assert_array_equal(_read(main, "group1/small_chunks"), [84] * 5)
    assert main.chunk_type("/group1/big_chunks", [0, 0]) == ic.ChunkType.virtual
    for coords in ([0, 1], [1, 0], [1, 1]):
        assert main.chunk_type("/group1/big_chunks", coords) == ic.ChunkType.native
    assert main.chunk_type("/group1/small_chunks", [0]) == ic.ChunkType.inline
    root = zarr.open_group(main.store, mode="r")
    assert "group2" not in root
    assert root["group1"].attrs["this"] == "is a nice group"

    branch = repo.readonly_session("my-branch")
    np.testing.assert_array_equal(_read(branch, "group1/small_chunks"), [84, 84, 84, 84, 8])
    assert np.isnan(_read(branch, "group2/group3/group4/group5/inner")).all()

    works = repo.readonly_session(tag="it works!")
    np.testing.assert_array_equal(_read(works, "group1/small_chunks"), [84, 84, 84, 84, 8])

    snaps = {s.message: s.id for s in repo.ancestry(branch="main")}
    fill = repo.readonly_session(snapshot_id=snaps["fill data"])
    np.testing.assert_array_equal(_read(fill, "group1/big_chunks"), np.full((10, 10), 42.0, dtype="f4"))
    np.testing.assert_array_equal(_read(fill, "group1/small_chunks"), [84] * 5)
    empty = repo.readonly_session(snapshot_id=snaps["empty structure"])
    assert np.isnan(_read(empty, "group1/big_chunks")).all()
    np.testing.assert_array_equal(_read(empty, "group1/small_chunks"), [8] * 5)


def test_listing(repo: ic.Repository) -> None:
    from zarr.core.sync import _collect_aiterator, sync

    store = repo.readonly_session("my-branch").store

    def ls(prefix: str) -> list[str]:
        return sorted(sync(_collect_aiterator(store.list_dir(prefix))))

    assert ls("") == ["group1", "group2", "zarr.json"]
    assert ls("group1") == ["big_chunks", "small_chunks", "zarr.json"]
    assert ls("group2") == ["group3", "zarr.json"]
    assert ls("group2/group3/group4/group5") == ["inner", "zarr.json"]
    assert ls("group2/group3/group4/group5/inner") == ["c", "zarr.json"]


def test_diff(repo: ic.Repository) -> None:
    snaps = {s.message: s.id for s in repo.ancestry(branch="main")}
    diff = repo.diff(from_snapshot_id=snaps["empty structure"], to_branch="main")
    assert not (diff.new_groups or diff.new_arrays or diff.deleted_groups or diff.deleted_arrays)
    assert not (diff.updated_groups or diff.updated_arrays)
    assert diff.updated_chunks == {
        "/group1/big_chunks": [[0, 0], [0, 1], [1, 0], [1, 1]],
        "/group1/small_chunks": [[0], [1], [2], [3], [4]],
    }


def test_commit_on_top_of_a_fixture(repo: ic.Repository) -> None:
    session = repo.writable_session("my-branch")
    arr = zarr.open_array(session.store, path="group1/small_chunks", mode="a")
    arr[4] = 1
    zarr.open_group(session.store, path="group1", mode="a").attrs["edited"] = True
    sid = session.commit("edited on top")
    reopened = ic.Repository.open(repo.storage)
    ro = reopened.readonly_session("my-branch")
    assert ro.snapshot_id == sid
    np.testing.assert_array_equal(_read(ro, "group1/small_chunks"), [84, 84, 84, 84, 1])
    assert zarr.open_group(ro.store, path="group1", mode="r").attrs["edited"] is True
    history = [s.message for s in reopened.ancestry(branch="my-branch")]
    assert history[:3] == ["edited on top", "some more structure", "delete a chunk"]
    # the untouched virtual chunk ref survives the rewrite of the manifest
    assert ro.chunk_type("/group1/big_chunks", [0, 0]) == ic.ChunkType.virtual
