"""``commit(rebase_with=..., rebase_tries=...)``, amend and flush next to concurrent commits.

API.md §3.2 (c): the commit loops "try the commit; on a conflict rebase(solver) and retry",
at most ``rebase_tries`` times, then makes one final attempt; an unresolvable rebase raises
RebaseFailedError at once; the attempt number lands in ``__icechunk.rebase_attempts``.

Interleavings are real: :class:`HookStorage` lets a second repository handle commit to the
same storage at a chosen point of our commit (just before our snapshot is written).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from zarr.core.buffer import cpu

import icechunk as ic
from icechunk.conflicts import BasicConflictSolver, ConflictDetector, ConflictType
from icechunk.testing._concurrency import HookStorage

GROUP_JSON = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}).encode()


class Interferer:
    """Commits to main through another handle whenever our session writes a snapshot."""

    def __init__(self, storage: ic.Storage, times: int, *, conflicting: bool = False) -> None:
        self.other = ic.Repository.open(storage)
        self.remaining = times
        self.conflicting = conflicting
        self.commits: list[str] = []
        self.our_snapshot_writes = 0
        self.active = False

    async def __call__(self, key: str) -> None:
        if not (self.active and key.startswith("snapshots/")):
            return
        self.our_snapshot_writes += 1
        if self.remaining <= 0:
            return
        self.remaining -= 1
        session = await self.other.writable_session_async("main")
        if self.conflicting:
            key, data = "g/zarr.json", json.dumps(
                {"zarr_format": 3, "node_type": "group", "attributes": {"n": len(self.commits)}}
            ).encode()
        else:
            key, data = f"other{len(self.commits)}/zarr.json", GROUP_JSON
        await session.store.set(key, cpu.Buffer.from_bytes(data))
        self.commits.append(await session.commit_async(f"interference {len(self.commits)}"))


def _setup(times: int, *, conflicting: bool = False) -> tuple[ic.Repository, Interferer]:
    inner = ic.in_memory_storage()
    base = ic.Repository.create(inner)
    session = base.writable_session("main")
    zarr.open_group(session.store, mode="w").create_group("g")
    session.commit("base")
    interferer = Interferer(inner, times, conflicting=conflicting)
    repo = ic.Repository.open(HookStorage(inner, interferer))
    return repo, interferer


def _ours(repo: ic.Repository) -> ic.Session:
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_group("ours")
    return session


def _rebase_attempts(repo: ic.Repository, sid: str) -> int | None:
    return repo.lookup_snapshot(sid).metadata.get("__icechunk", {}).get("rebase_attempts")


@pytest.mark.parametrize("times", [1, 3])
def test_rebases_and_records_attempts(times: int) -> None:
    repo, interferer = _setup(times)
    session = _ours(repo)
    interferer.active = True
    sid = session.commit("ours", metadata={"user": 1}, rebase_with=ConflictDetector(), rebase_tries=times)
    assert interferer.our_snapshot_writes == times + 1  # one try per rebase plus the final one
    props = repo.lookup_snapshot(sid).metadata
    assert props["user"] == 1
    assert props["__icechunk"] == {"rebase_attempts": times}
    history = [s.id for s in repo.ancestry(branch="main")]
    assert history[: times + 1] == [sid, *reversed(interferer.commits)]
    names = sorted(zarr.open_group(repo.readonly_session("main").store, mode="r").keys())
    assert names == sorted(["g", "ours", *(f"other{i}" for i in range(times))])
    assert session.read_only and session.branch is None and session.snapshot_id == sid


def test_gives_up_after_rebase_tries_plus_one_attempt() -> None:
    repo, interferer = _setup(3)
    session = _ours(repo)
    interferer.active = True
    with pytest.raises(ic.ConflictError) as info:
        session.commit("ours", rebase_with=BasicConflictSolver(), rebase_tries=2)
    assert not isinstance(info.value, ic.RebaseFailedError)
    assert info.value.kind == "commit-conflict"
    assert interferer.our_snapshot_writes == 3  # 2 rebases, 3 attempts
    assert info.value.actual_parent == interferer.commits[-1]
    assert info.value.expected_parent == interferer.commits[-2]  # the session was rebased twice
    # the session is still usable: the next commit (no more interference) lands
    assert session.has_uncommitted_changes and not session.read_only
    sid = session.commit("ours, finally", rebase_with=ConflictDetector())
    assert _rebase_attempts(repo, sid) == 1
    assert repo.lookup_branch("main") == sid


def test_zero_rebase_tries_is_one_plain_attempt() -> None:
    repo, interferer = _setup(1)
    session = _ours(repo)
    interferer.active = True
    with pytest.raises(ic.ConflictError):
        session.commit("ours", rebase_with=ConflictDetector(), rebase_tries=0)
    assert interferer.our_snapshot_writes == 1


def test_no_rebase_no_attempts_recorded() -> None:
    repo, interferer = _setup(0)
    session = _ours(repo)
    interferer.active = True
    sid = session.commit("ours", rebase_with=ConflictDetector())
    assert interferer.our_snapshot_writes == 1
    assert "__icechunk" not in repo.lookup_snapshot(sid).metadata


def test_without_solver_raises_conflict_error() -> None:
    repo, interferer = _setup(1)
    session = _ours(repo)
    base = session.snapshot_id
    interferer.active = True
    with pytest.raises(ic.ConflictError) as info:
        session.commit("ours")
    assert (info.value.expected_parent, info.value.actual_parent) == (base, interferer.commits[0])
    assert info.value.kind == "commit-conflict"
    assert repo.lookup_branch("main") == interferer.commits[0]
    assert session.snapshot_id == base and session.has_uncommitted_changes


def test_branch_moved_before_commit_is_rebased_without_writing_first() -> None:
    """A moved tip is noticed before any manifest or snapshot is written (the cheap pre-check)."""
    repo, interferer = _setup(0)
    session = _ours(repo)
    other = repo.writable_session("main")
    zarr.open_group(other.store, mode="a").create_group("early")
    early = other.commit("early")
    interferer.active = True
    sid = session.commit("ours", rebase_with=ConflictDetector())
    assert interferer.our_snapshot_writes == 1
    assert _rebase_attempts(repo, sid) == 1
    assert repo.lookup_snapshot(sid).parent_id == early


def test_unresolvable_rebase_fails_at_once() -> None:
    repo, interferer = _setup(5, conflicting=True)
    session = repo.writable_session("main")
    zarr.open_group(session.store, path="g", mode="a").attrs["mine"] = True
    interferer.active = True
    with pytest.raises(ic.RebaseFailedError) as info:
        session.commit("ours", rebase_with=BasicConflictSolver(), rebase_tries=100)
    assert interferer.our_snapshot_writes == 1  # no retry after the failed rebase
    assert info.value.snapshot == interferer.commits[0]
    [conflict] = info.value.conflicts
    assert (conflict.conflict_type, conflict.path) == (ConflictType.ZarrMetadataDoubleUpdate, "/g")
    assert repo.lookup_branch("main") == interferer.commits[0]
    # retry by hand after dropping the clash
    session.discard_changes()
    zarr.open_group(session.store, mode="a").create_group("instead")
    interferer.active = False
    sid = session.commit("instead", rebase_with=ConflictDetector())
    assert repo.lookup_snapshot(sid).parent_id == interferer.commits[0]


def test_transaction_forwards_the_solver() -> None:
    repo, interferer = _setup(2)
    interferer.active = True
    with repo.transaction("main", message="tx", rebase_with=ConflictDetector(), rebase_tries=5) as store:
        zarr.open_group(store, mode="a").create_group("tx")
    tip = repo.lookup_branch("main")
    assert _rebase_attempts(repo, tip) == 2
    assert repo.lookup_snapshot(tip).message == "tx"


def test_spec1_commit_with_rebase() -> None:
    inner = ic.in_memory_storage()
    base = ic.Repository.create(inner, spec_version=1)
    session = base.writable_session("main")
    zarr.open_group(session.store, mode="w").create_group("g")
    session.commit("base")
    interferer = Interferer(inner, 2)
    repo = ic.Repository.open(HookStorage(inner, interferer))
    session = _ours(repo)
    interferer.active = True
    sid = session.commit("ours", rebase_with=ConflictDetector())
    assert _rebase_attempts(repo, sid) == 2
    assert [s.id for s in repo.ancestry(branch="main")][:3] == [sid, *reversed(interferer.commits)]


# ---- amend and flush next to concurrent commits ---------------------------------------------


def _array_repo() -> ic.Repository:
    repo = ic.Repository.create(ic.in_memory_storage())
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="w").create_array("a", shape=(4,), chunks=(2,), dtype="i4", fill_value=0)
    session.commit("base")
    return repo


def test_amend_with_stale_base_raises_conflict() -> None:
    repo = _array_repo()
    stale = repo.writable_session("main")
    zarr.open_array(stale.store, path="a", mode="a")[0:2] = 1
    other = repo.writable_session("main")
    zarr.open_array(other.store, path="a", mode="a")[2:4] = 2
    tip = other.commit("concurrent")
    base = stale.snapshot_id
    with pytest.raises(ic.ConflictError) as info:
        stale.amend("amend a commit that is no longer the tip")
    assert (info.value.expected_parent, info.value.actual_parent) == (base, tip)
    assert repo.lookup_branch("main") == tip
    assert [s.message for s in repo.ancestry(branch="main")] == ["concurrent", "base", "Repository initialized"]
    # the stale session still holds its changes: rebase it, then amend the new tip
    stale.rebase(ConflictDetector())
    amended = stale.amend("concurrent + ours")
    assert [s.message for s in repo.ancestry(branch="main")] == ["concurrent + ours", "base", "Repository initialized"]
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session("main").store, path="a", mode="r")[:], [1, 1, 2, 2])
    assert repo.lookup_branch("main") == amended
    # the amended log folds both changes, so a rebase over the amended commit sees both
    late = repo.writable_session("main")
    assert repo.diff(from_snapshot_id=base, to_snapshot_id=amended).updated_chunks == {"/a": [[0], [1]]}
    zarr.open_array(late.store, path="a", mode="a")[0] = 5
    late.commit("late")


def test_amend_is_not_retried_and_concurrent_amends_do_not_both_win() -> None:
    repo = _array_repo()
    first = repo.writable_session("main")
    second = repo.writable_session("main")
    zarr.open_array(first.store, path="a", mode="a")[0] = 1
    zarr.open_array(second.store, path="a", mode="a")[1] = 2
    winner = first.amend("first amend")
    with pytest.raises(ic.ConflictError):
        second.amend("second amend")
    assert repo.lookup_branch("main") == winner
    assert len(list(repo.ancestry(branch="main"))) == 2


def test_flush_moves_no_branch_and_can_be_adopted() -> None:
    repo = _array_repo()
    session = repo.writable_session("main")
    base = session.snapshot_id
    zarr.open_array(session.store, path="a", mode="a")[:] = 7
    concurrent = repo.writable_session("main")
    zarr.open_group(concurrent.store, mode="a").attrs["x"] = 1
    tip = concurrent.commit("concurrent")
    flushed = session.flush("detached")
    assert session.read_only and session.snapshot_id == flushed
    assert repo.lookup_branch("main") == tip  # flush does not touch the branch
    assert repo.lookup_snapshot(flushed).parent_id == base
    kinds = [type(u.kind).__name__ for u in repo.ops_log()][:2]
    assert kinds == ["NewDetachedSnapshot", "NewCommit"]
    # adopt it with a compare-and-swap reset: it fails while the tip is not what we expect
    with pytest.raises(ic.ConflictError) as info:
        repo.reset_branch("main", flushed, from_snapshot_id=base)
    assert info.value.kind == "branch-update-conflict"
    repo.reset_branch("main", flushed, from_snapshot_id=tip)
    assert repo.lookup_branch("main") == flushed
    assert [s.id for s in repo.ancestry(branch="main")][:2] == [flushed, base]
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session("main").store, path="a", mode="r")[:], [7] * 4)
    # the concurrent commit left main's history but still exists
    assert repo.lookup_snapshot(tip).message == "concurrent"
    # a session opened before the reset cannot commit over it
    repo.create_branch("keep", tip)
    stale = repo.writable_session("keep")
    zarr.open_group(stale.store, mode="a").attrs["y"] = 1
    repo.reset_branch("keep", flushed)
    with pytest.raises(ic.ConflictError):
        stale.commit("stale")
    assert repo.lookup_branch("keep") == flushed


def test_backoff_cap_scales_with_the_attempt_and_the_lost_races() -> None:
    from icechunk.core.rebase import BACKOFF_MAX_LOSSES, BACKOFF_MAX_S, backoff_cap

    assert backoff_cap(0.004, 1) == pytest.approx(0.004)
    assert backoff_cap(0.004, 3) == pytest.approx(0.012)
    assert backoff_cap(0.004, 100) == pytest.approx(0.004 * BACKOFF_MAX_LOSSES)
    assert backoff_cap(10.0, 5) == BACKOFF_MAX_S
    assert backoff_cap(-1.0, 1) == 0.0  # a clock step backwards never gives a negative sleep


def test_only_lost_races_back_off_and_the_sleep_follows_the_attempt_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three lost races sleep at most (attempt time x races lost so far); the rebases done by
    the pre-check when the tip already moved do not sleep at all."""
    import asyncio

    import icechunk.core.rebase as rebase_module

    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, *args: object) -> None:
        sleeps.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(rebase_module.asyncio, "sleep", recording_sleep)
    repo, interferer = _setup(3)
    session = _ours(repo)
    interferer.active = True
    session.commit("ours", rebase_with=ConflictDetector(), rebase_tries=10)
    assert len(sleeps) == 3  # one per lost race
    assert all(0 <= s <= 1.0 for s in sleeps)  # an in-memory attempt takes milliseconds

    sleeps.clear()
    other = ic.Repository.open(repo.storage)
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_group("ours again")
    for k in range(3):  # the tip moves three times before we commit: no race is lost
        s = other.writable_session("main")
        zarr.open_group(s.store, mode="a").create_group(f"before{k}")
        s.commit(f"before {k}")
    session.commit("ours again", rebase_with=ConflictDetector())
    assert sleeps == []


def test_commits_with_rebase_hold_the_storage_commit_lock(tmp_path: object) -> None:
    """The tip check, rebase and branch update of ``commit(rebase_with=...)`` happen inside
    ``Storage.commit_lock()``; a plain commit does not take it."""
    import contextlib
    from collections.abc import AsyncIterator

    events: list[str] = []

    class Recording(HookStorage):
        def commit_lock(self) -> contextlib.AbstractAsyncContextManager[object]:
            @contextlib.asynccontextmanager
            async def lock() -> AsyncIterator[None]:
                events.append("lock")
                yield
                events.append("unlock")

            return lock()

        def with_settings(self, settings: ic.StorageSettings | None) -> HookStorage:
            return Recording(self._inner.with_settings(settings), self.hook)

    async def record(key: str) -> None:
        if key == "repo":
            events.append("repo")

    inner = ic.local_filesystem_storage(str(tmp_path))
    ic.Repository.create(inner)
    repo = ic.Repository.open(Recording(inner, record))
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_group("a")
    session.commit("with rebase", rebase_with=ConflictDetector())
    assert events == ["lock", "repo", "unlock"]
    events.clear()
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_group("b")
    session.commit("plain")
    assert events == ["repo"]
