"""Across processes: no lost commits under contention, and crash safety (SIGKILL mid-commit).

Writers are ``spawn``-ed processes (the worker functions live in
:mod:`icechunk.testing._concurrency`).  CI runs small counts; the full sizes are ``slow``
tests and ``benchmarks/soak_commits.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr

import icechunk as ic
from icechunk.testing._concurrency import (
    make_crash_repo,
    run_crash_trial,
    run_writers,
    verify_repository,
)
from icechunk.testing.moto import MotoS3Server


def _storage(kind: str, tmp_path: Path, moto: MotoS3Server | None) -> ic.Storage:
    if kind == "local":
        return ic.local_filesystem_storage(str(tmp_path / "repo"))
    assert moto is not None
    return moto.storage()


@pytest.fixture(params=["local", "s3"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def storage(storage_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> ic.Storage:
    moto = request.getfixturevalue("moto_server") if storage_kind == "s3" else None
    return _storage(storage_kind, tmp_path, moto)


def _check_writers(storage: ic.Storage, writers: int, commits: int, solver: str) -> None:
    report = run_writers(storage, writers, commits, solver=solver)
    print("\n" + report.summary())
    assert report.errors == []
    assert len(report.reported) == writers * commits
    assert report.lost == []
    assert report.wrong_chunks == []
    # every commit is on main exactly once, on top of the two setup snapshots
    assert len(report.history) == writers * commits + 2
    assert set(report.history) >= {sid for _, sid, _ in report.reported}
    verify_repository(storage)


@pytest.mark.parametrize("solver", ["detector", "basic"])
def test_no_lost_commits(storage: ic.Storage, solver: str) -> None:
    _check_writers(storage, 4, 8, solver)


@pytest.mark.slow
def test_no_lost_commits_full_size(storage: ic.Storage) -> None:
    _check_writers(storage, 8, 25, "detector")


def _crash_trials(storage: ic.Storage, tmp_path: Path, trials: int, seed: int) -> None:
    make_crash_repo(storage, trials)
    rng = np.random.default_rng(seed)
    outcomes = []
    for trial in range(trials):
        mode = "timer" if trial % 2 == 0 else "write"
        outcomes.append(run_crash_trial(storage, trial, mode, rng, str(tmp_path)))
    assert all(o.exit_code == -9 for o in outcomes)  # each child really died of SIGKILL
    print("\n" + ", ".join(f"{o.mode}@{o.kill_at:.3g}: {len(o.reported)}+{o.unreported_commits}" for o in outcomes))


def test_crash_safety(storage: ic.Storage, storage_kind: str, tmp_path: Path) -> None:
    _crash_trials(storage, tmp_path, 6 if storage_kind == "local" else 2, seed=5)


@pytest.mark.slow
def test_crash_safety_soak(storage: ic.Storage, tmp_path: Path) -> None:
    _crash_trials(storage, tmp_path, 50, seed=7)


# ---- damaged repositories give typed errors and lose nothing else ---------------------------


def _two_commits(path: Path) -> tuple[ic.Repository, str, str]:
    repo = ic.Repository.create(ic.local_filesystem_storage(str(path)))
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="w")
    root.create_array("a", shape=(4,), chunks=(2,), dtype="i8", fill_value=0)[:] = 3
    c1 = session.commit("one")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="a", mode="a")[:2] = 4
    c2 = session.commit("two")
    return repo, c1, c2


def _objects(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in path.rglob("*")
        if p.is_file() and p.name != "repo" and not p.parts[-2] == "overwritten"
    }


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (lambda data: data[: len(data) // 2], "deserialization"),
        (lambda data: b"not an icechunk file at all, just some bytes", "invalid-file-format"),
        (lambda data: b"", "invalid-file-format"),
        (lambda data: data[:39], None),
    ],
    ids=["truncated", "garbage", "empty", "header-only"],
)
def test_damaged_repo_object(tmp_path: Path, damage, kind: str | None) -> None:
    path = tmp_path / "repo"
    _, c1, c2 = _two_commits(path)
    objects = _objects(path)
    (path / "repo").write_bytes(damage((path / "repo").read_bytes()))
    with pytest.raises(ic.FormatError, match="repo") as info:
        ic.Repository.open(ic.local_filesystem_storage(str(path)))
    if kind is not None:
        assert info.value.kind == kind
    assert _objects(path) == objects  # opening touched nothing
    # the previous state of `repo` is in overwritten/: restoring it brings back the history
    # up to the update before the damaged one, with every object still readable
    backups = sorted((path / "overwritten").iterdir())  # newest first by construction
    (path / "repo").write_bytes(backups[0].read_bytes())
    repo = ic.Repository.open(ic.local_filesystem_storage(str(path)))
    assert repo.lookup_branch("main") == c1
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session("main").store, path="a")[:], [3] * 4)
    assert (path / "snapshots" / c2).is_file()
    verify_repository(repo.storage)


def test_missing_snapshot_file(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo, c1, c2 = _two_commits(path)
    (path / "snapshots" / c2).unlink()
    repo = ic.Repository.open(ic.local_filesystem_storage(str(path)))
    assert [s.id for s in repo.ancestry(branch="main")] == [c2, c1, "1CECHNKREP0F1RSTCMT0"]
    with pytest.raises(ic.SnapshotNotFoundError, match=c2) as info:
        repo.readonly_session("main")
    assert info.value.kind == "snapshot-not-found"
    with pytest.raises(ic.SnapshotNotFoundError):
        repo.writable_session("main")
    # older commits are intact and the branch can be moved back onto them
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session(snapshot_id=c1).store, path="a")[:], [3] * 4)
    repo.reset_branch("main", c1)
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="a", mode="a")[2:] = 5
    session.commit("repaired")
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session("main").store, path="a")[:], [3, 3, 5, 5])


def test_truncated_snapshot_and_missing_manifest(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo, c1, c2 = _two_commits(path)
    snapshot = path / "snapshots" / c2
    snapshot.write_bytes(snapshot.read_bytes()[:60])
    with pytest.raises(ic.FormatError, match=c2):
        ic.Repository.open(ic.local_filesystem_storage(str(path))).readonly_session("main")
    [manifest] = ic.Repository.open(ic.local_filesystem_storage(str(path))).list_manifest_files(c1)
    os.unlink(path / "manifests" / manifest.id)
    fresh = ic.Repository.open(ic.local_filesystem_storage(str(path)))
    array = zarr.open_array(fresh.readonly_session(snapshot_id=c1).store, path="a", mode="r")
    with pytest.raises(ic.StorageError, match="missing") as info:
        array[:]
    assert info.value.kind == "object-not-found"


def test_missing_transaction_log_stops_a_rebase_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo, _, c2 = _two_commits(path)
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="a", mode="a")[0] = 9
    other = ic.Repository.open(ic.local_filesystem_storage(str(path))).writable_session("main")
    zarr.open_array(other.store, path="a", mode="a")[3] = 8
    c3 = other.commit("three")
    (path / "transactions" / c3).unlink()
    with pytest.raises(ic.SnapshotNotFoundError, match="transaction log"):
        session.rebase(ic.ConflictDetector())
    assert session.snapshot_id == c2 and session.has_uncommitted_changes


@pytest.mark.slow
def test_soak_script_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/soak_commits.py`` itself (small sizes; the full sizes are the tests above)."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "soak_commits.py"
    spec = importlib.util.spec_from_file_location("soak_commits", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--writers", "3", "--commits", "4", "--trials", "2", "--naive"]) == 0
    out = capsys.readouterr().out
    assert "lost 0" in out and out.strip().endswith("OK")
