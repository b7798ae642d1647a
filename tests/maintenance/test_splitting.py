"""Manifest splitting on commit (FORMAT.md §6.2-§6.4) and ``rewrite_manifests``."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import icechunk as ic
from icechunk import ManifestSplitCondition as Cond
from icechunk import ManifestSplitDimCondition as Dim


def _splitting(rules: dict) -> ic.RepositoryConfig:
    return ic.RepositoryConfig(
        manifest=ic.ManifestConfig(splitting=ic.ManifestSplittingConfig.from_dict(rules))
    )


FORMAT_EXAMPLE = {Cond.name_matches("split_*"): {Dim.Axis(0): 1, Dim.DimensionName("latitude"): 1, Dim.Any(): 3}}
LONGITUDE = {Cond.name_matches("split_*"): {Dim.Axis(0): 1, Dim.DimensionName("longitude"): 1, Dim.Any(): 3}}
DATA = np.arange(100, dtype="f8").reshape(10, 10)


def _manifest_refs(repo: ic.Repository, sid: str, path: str) -> list[tuple[str, list[list[int]]]]:
    for node in repo.inspect_snapshot(sid)["nodes"]:
        if node["path"] == path:
            return [(m["id"], m["extents"]) for m in node["manifest_refs"]]
    raise KeyError(path)


def _create(repo: ic.Repository) -> str:
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="a")
    for name in ("split_arr", "other"):
        arr = root.create_array(
            name, shape=(10, 10), chunks=(3, 3), dtype="f8", fill_value=np.nan,
            dimension_names=("latitude", "longitude"),
        )
        arr[:] = DATA
    return session.commit("data")


def _read(repo: ic.Repository, name: str, **ref) -> np.ndarray:
    session = repo.readonly_session(**(ref or {"branch": "main"}))
    return zarr.open_array(session.store, path=name, mode="r")[:]


def test_format_example_then_rewrite(tmp_path) -> None:
    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    repo = ic.Repository.create(storage, config=_splitting(FORMAT_EXAMPLE))
    sid = _create(repo)
    refs = _manifest_refs(repo, sid, "/split_arr")
    assert [e for _, e in refs] == [
        [[r, r + 1], c] for r in range(4) for c in ([0, 3], [3, 4])
    ]
    assert len({m for m, _ in refs}) == 8
    assert len(_manifest_refs(repo, sid, "/other")) == 1  # the condition does not match
    assert len(repo.list_manifest_files(sid)) == 9
    np.testing.assert_array_equal(_read(repo, "split_arr"), DATA)

    # change the config, persist it, rewrite: one chunk per manifest, same data
    repo = repo.reopen(config=_splitting(LONGITUDE))
    repo.save_config()
    again = ic.Repository.open(storage)
    new_sid = again.rewrite_manifests("rewrite", branch="main", metadata={"who": "me"})
    refs = _manifest_refs(again, new_sid, "/split_arr")
    assert len(refs) == 16
    assert [e for _, e in refs] == [[[r, r + 1], [c, c + 1]] for r in range(4) for c in range(4)]
    assert len(_manifest_refs(again, new_sid, "/other")) == 1
    np.testing.assert_array_equal(_read(again, "split_arr"), DATA)
    np.testing.assert_array_equal(_read(again, "other"), DATA)
    info = again.lookup_snapshot(new_sid)
    assert info.message == "rewrite"
    assert info.metadata["who"] == "me"
    assert info.metadata["__icechunk"]["splitting_config"] == {
        "split_sizes": [
            [
                {"name_matches": {"regex": "split_*"}},
                [
                    {"condition": {"Axis": 0}, "num_chunks": 1},
                    {"condition": {"DimensionName": "longitude"}, "num_chunks": 1},
                    {"condition": "Any", "num_chunks": 3},
                ],
            ]
        ]
    }
    assert [s.message for s in again.ancestry(branch="main")][:2] == ["rewrite", "data"]
    assert again.diff(from_snapshot_id=sid, to_snapshot_id=new_sid).is_empty()


def test_untouched_split_manifests_are_reused() -> None:
    repo = ic.Repository.create(ic.in_memory_storage(), config=_splitting(FORMAT_EXAMPLE))
    first = _manifest_refs(repo, _create(repo), "/split_arr")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="split_arr")[0, 0] = -1.0  # chunk (0, 0): split 0
    second = _manifest_refs(repo, session.commit("one chunk"), "/split_arr")
    assert len(second) == 8
    assert [e for _, e in second] == [e for _, e in first]
    assert second[0][0] != first[0][0]
    assert second[1:] == first[1:]
    expected = DATA.copy()
    expected[0, 0] = -1.0
    np.testing.assert_array_equal(_read(repo, "split_arr"), expected)


def test_coarser_split_reuses_the_finer_manifests_inside_it() -> None:
    storage = ic.in_memory_storage()
    fine = {Cond.AnyArray(): {Dim.Any(): 1}}
    coarse = {Cond.AnyArray(): {Dim.Any(): 2}}
    repo = ic.Repository.create(storage, config=_splitting(fine))
    sid = _create(repo)
    fine_refs = _manifest_refs(repo, sid, "/split_arr")
    assert len(fine_refs) == 16
    repo = repo.reopen(config=_splitting(coarse))
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="split_arr")[0, 0] = -1.0
    refs = _manifest_refs(repo, session.commit("coarse"), "/split_arr")
    # the touched 2x2 split is rewritten as one manifest, the 12 fine ones elsewhere are kept
    assert len(refs) == 13
    assert sum(1 for r in refs if r in fine_refs) == 12
    assert [[0, 2], [0, 2]] in [e for _, e in refs]
    expected = DATA.copy()
    expected[0, 0] = -1.0
    np.testing.assert_array_equal(_read(repo, "split_arr"), expected)
    np.testing.assert_array_equal(_read(repo, "other"), DATA)  # untouched array kept as-is
    assert _manifest_refs(repo, repo.lookup_branch("main"), "/other") == _manifest_refs(repo, sid, "/other")


def test_finer_split_rewrites_partially_overlapping_manifests() -> None:
    repo = ic.Repository.create(ic.in_memory_storage(), config=_splitting({Cond.AnyArray(): {Dim.Any(): 2}}))
    sid = _create(repo)
    coarse_refs = _manifest_refs(repo, sid, "/split_arr")
    assert len(coarse_refs) == 4
    repo = repo.reopen(config=_splitting({Cond.AnyArray(): {Dim.Any(): 1}}))
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="split_arr")[9, 9] = -1.0
    refs = _manifest_refs(repo, session.commit("fine"), "/split_arr")
    assert len(refs) == 16
    assert not set(m for m, _ in refs) & set(m for m, _ in coarse_refs)
    extents = [e for _, e in refs]
    for i, a in enumerate(extents):  # extents of one array never overlap
        for b in extents[i + 1 :]:
            assert not all(x[0] < y[1] and y[0] < x[1] for x, y in zip(a, b, strict=True))
    expected = DATA.copy()
    expected[9, 9] = -1.0
    np.testing.assert_array_equal(_read(repo, "split_arr"), expected)


def test_rewrite_manifests_amend_and_errors(tmp_path) -> None:
    repo = ic.Repository.create(ic.in_memory_storage())
    sid = _create(repo)
    repo = repo.reopen(config=_splitting({Cond.path_matches("^/split"): {Dim.Any(): 2}}))
    amended = repo.rewrite_manifests("amended", branch="main", commit_method="amend")
    assert [s.message for s in repo.ancestry(branch="main")] == ["amended", "Repository initialized"]
    assert len(_manifest_refs(repo, amended, "/split_arr")) == 4
    assert [type(u.kind).__name__ for u in repo.ops_log()][0] == "CommitAmended"
    np.testing.assert_array_equal(_read(repo, "split_arr"), DATA)
    assert sid != amended
    with pytest.raises(ValueError):
        repo.rewrite_manifests("x", branch="main", commit_method="rebase")
    with pytest.raises(ic.RefNotFoundError):
        repo.rewrite_manifests("x", branch="nope")

    v1 = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "v1")), spec_version=1)
    _create(v1)
    with pytest.raises(ic.FormatError) as info:
        v1.rewrite_manifests("x", branch="main", commit_method="amend")
    assert info.value.kind == "unsupported-operation-for-version"
    v1 = v1.reopen(config=_splitting({Cond.AnyArray(): {Dim.Any(): 2}}))
    v1_sid = v1.rewrite_manifests("split v1", branch="main")
    assert len(_manifest_refs(v1, v1_sid, "/other")) == 4
    np.testing.assert_array_equal(_read(v1, "other"), DATA)


def test_commit_reads_only_the_manifests_of_touched_splits() -> None:
    from icechunk.testing._wrappers import _Wrapper

    class CountingStorage(_Wrapper):
        def __init__(self, inner) -> None:
            super().__init__(inner)
            self.manifest_reads: list[str] = []

        async def get(self, key, byte_range=None):
            if key.startswith("manifests/"):
                self.manifest_reads.append(key)
            return await self._inner.get(key, byte_range)

        def with_settings(self, settings):
            return self

        def __eq__(self, other: object) -> bool:
            return self is other

        def __hash__(self) -> int:
            return id(self)

    inner = ic.in_memory_storage()
    repo = ic.Repository.create(inner, config=_splitting({Cond.AnyArray(): {Dim.Any(): 1}}))
    first = _create(repo)
    counting = CountingStorage(inner)
    repo = ic.Repository.open(counting)  # fresh caches
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="split_arr")[4, 4] = -1.0  # chunk (1, 1) only
    second = session.commit("one chunk")
    touched = [m for m, e in _manifest_refs(repo, first, "/split_arr") if e == [[1, 2], [1, 2]]]
    assert counting.manifest_reads == [f"manifests/{touched[0]}"]
    before, after = _manifest_refs(repo, first, "/split_arr"), _manifest_refs(repo, second, "/split_arr")
    assert sum(a == b for a, b in zip(before, after, strict=True)) == 15
