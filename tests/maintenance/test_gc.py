"""Expiration + garbage collection on a repository with a rich history.

The expected set of deleted objects is computed independently of the GC code: from the
decoded ``repo`` object (snapshot list, pruned transaction logs) and the snapshot and
manifest files read straight from disk with the format codecs.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import zarr

import icechunk as ic
from icechunk.format.ids import SnapshotId
from icechunk.format.manifest import RefKind, decode_manifest
from icechunk.format.repo_info import decode_repo_info
from icechunk.format.snapshot import decode_snapshot

PREFIXES = ("chunks/", "manifests/", "snapshots/", "transactions/")


def _listing(root: Path) -> dict[str, bytes]:
    """Every object of a local repository: relative key -> bytes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            out[full.relative_to(root).as_posix()] = full.read_bytes()
    return out


def _chunk_key(raw: bytes) -> str:
    from icechunk.format.ids import ChunkId

    return f"chunks/{ChunkId(raw)}"


def _expected_keep(root: Path) -> set[str]:
    """Keys GC must keep, from the files with the format codecs only: the history of every
    branch and tag (parents from the decoded repo info), what those snapshots use, and the
    transaction logs their pruned_ancestor_tx_logs name."""
    info = decode_repo_info((root / "repo").read_bytes())
    kept = set()
    for tip in [*info.branches.values(), *info.tags.values()]:
        while tip is not None and tip not in kept:
            kept.add(tip)
            tip = info.snapshots[tip].parent_id
    keep: set[str] = set()
    for sid in kept:
        keep.add(f"snapshots/{sid}")
        keep.add(f"transactions/{sid}")
        keep.update(f"transactions/{p}" for p in info.snapshots[sid].pruned_ancestor_tx_logs or ())
        snap = decode_snapshot((root / "snapshots" / str(sid)).read_bytes(), str(sid))
        for mfi in snap.manifest_files:
            keep.add(f"manifests/{mfi.id}")
            manifest = decode_manifest((root / "manifests" / str(mfi.id)).read_bytes(), str(mfi.id))
            for table in manifest.arrays:
                for row in np.flatnonzero(table.kind == RefKind.NATIVE):
                    keep.add(_chunk_key(table.chunk_id[row].tobytes()))
    return keep


def _tick() -> None:
    time.sleep(0.002)  # distinct timestamps on coarse clocks


def _write(repo: ic.Repository, branch: str, values: dict[str, np.ndarray], message: str) -> str:
    session = repo.writable_session(branch)
    root = zarr.open_group(session.store, mode="a")
    for name, data in values.items():
        if name in root:
            arr = root[name]
            if arr.shape != data.shape:
                arr.resize(data.shape)
        else:
            arr = root.create_array(name, shape=data.shape, chunks=(4,), dtype=data.dtype, fill_value=-1)
        arr[:] = data
    sid = session.commit(message)
    _tick()
    return sid


def _read_all(session: ic.Session) -> dict[str, np.ndarray]:
    root = zarr.open_group(session.store, mode="r")
    return {name: arr[:] for name, arr in root.arrays()}


@pytest.fixture
def history(tmp_path: Path):
    """A repository with overwritten chunks, branches, tags, a flush, an amend and a deleted branch.

    Returns (repo, root path, cutoff, expected values per kept ref).
    """
    root = tmp_path / "repo"
    config = ic.RepositoryConfig(inline_chunk_threshold_bytes=0)  # every chunk is an object
    repo = ic.Repository.create(ic.local_filesystem_storage(str(root)), config=config)
    rng = np.random.default_rng(0)

    def data(n: int = 16) -> np.ndarray:
        return rng.integers(0, 1000, n).astype("i8")

    _write(repo, "main", {"x": data(), "y": data(8)}, "m1")
    m2 = _write(repo, "main", {"x": data()}, "m2")
    repo.create_branch("dev", m2)
    _write(repo, "dev", {"y": data(8)}, "d1")
    old_tag_target = _write(repo, "main", {"x": data(), "y": data(8)}, "m3")
    repo.create_tag("old-tag", old_tag_target)
    repo.create_branch("stale", old_tag_target)
    _write(repo, "stale", {"x": data()}, "s1")  # will expire: its tip is old
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="x")[:4] = 7
    session.flush("detached")  # unreachable, old: dropped by expiration
    _write(repo, "main", {"x": data(20)}, "m4")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="y")[:] = 5
    session.amend("m4 amended")  # the replaced tip becomes unreachable
    repo.create_branch("gone", repo.lookup_branch("dev"))
    repo.delete_branch("gone")
    _tick()
    cutoff = datetime.now(UTC)
    _tick()
    _write(repo, "main", {"y": data(8)}, "m5")
    _write(repo, "dev", {"x": data()}, "d2")
    expected = {
        ("branch", "main"): _read_all(repo.readonly_session("main")),
        ("branch", "dev"): _read_all(repo.readonly_session("dev")),
        ("tag", "old-tag"): _read_all(repo.readonly_session(tag="old-tag")),
    }
    return repo, root, cutoff, expected


def test_expire_then_gc_deletes_exactly_the_unreachable_objects(history) -> None:
    repo, root, cutoff, expected = history
    messages_before = {s.message for s in repo.ancestry(branch="main")}
    expired = repo.expire_snapshots(cutoff, delete_expired_branches=True)
    assert repo.list_branches() == {"main", "dev"}  # "stale" had an expired tip
    assert repo.list_tags() == {"old-tag"}
    # main keeps its young commits, re-parented onto the root
    assert [s.message for s in repo.ancestry(branch="main")] == ["m5", "Repository initialized"]
    assert [s.message for s in repo.ancestry(branch="dev")] == ["d2", "Repository initialized"]
    assert [s.message for s in repo.ancestry(tag="old-tag")] == ["m3", "Repository initialized"]
    assert len(expired) >= len(messages_before) - 3
    for sid in expired:
        if sid != repo.lookup_tag("old-tag"):
            with pytest.raises(ic.SnapshotNotFoundError):
                repo.lookup_snapshot(sid)

    before = _listing(root)
    keep = _expected_keep(root)
    gc_cutoff = datetime.now(UTC) + timedelta(seconds=1)
    doomed = {k for k in before if k.startswith(PREFIXES) and k not in keep}
    assert doomed, "the scenario must leave garbage behind"

    dry = repo.garbage_collect(gc_cutoff, dry_run=True)
    assert _listing(root) == before  # a dry run deletes nothing
    summary = repo.garbage_collect(gc_cutoff)
    after = _listing(root)

    assert set(before) - set(after) == doomed
    assert dry == summary
    by_kind = {p: {k for k in doomed if k.startswith(p)} for p in PREFIXES}
    assert summary.chunks_deleted == len(by_kind["chunks/"]) > 0
    assert summary.manifests_deleted == len(by_kind["manifests/"]) > 0
    assert summary.snapshots_deleted == len(by_kind["snapshots/"]) > 0
    assert summary.transaction_logs_deleted == len(by_kind["transactions/"]) > 0
    assert summary.bytes_deleted == sum(len(before[k]) for k in doomed)
    assert summary.attributes_deleted == 0
    # transaction logs of pruned ancestors are kept
    info = decode_repo_info((root / "repo").read_bytes())
    pruned = {p for e in info.snapshots.values() for p in e.pruned_ancestor_tx_logs or ()}
    assert pruned and all(f"transactions/{p}" in after for p in pruned)
    assert all(k in after for k in before if k.startswith("overwritten/"))

    reopened = ic.Repository.open(ic.local_filesystem_storage(str(root)))
    for (kind, name), values in expected.items():
        session = reopened.readonly_session(name) if kind == "branch" else reopened.readonly_session(tag=name)
        got = _read_all(session)
        assert got.keys() == values.keys()
        for array, data in values.items():
            np.testing.assert_array_equal(got[array], data)
    ops = [type(u.kind).__name__ for u in reopened.ops_log()]
    assert ops[:2] == ["GCRan", "ExpirationRan"]
    # a second collection finds nothing
    assert reopened.garbage_collect(gc_cutoff) == ic.GCSummary()


def test_gc_never_deletes_objects_younger_than_the_cutoff(history) -> None:
    repo, root, _, _ = history
    repo.expire_snapshots(datetime.now(UTC) + timedelta(seconds=1))
    _tick()
    gc_cutoff = datetime.now(UTC)
    _tick()
    # a session still running: its chunk objects are unreachable but young
    existing = {k for k in _listing(root) if k.startswith("chunks/")}
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="x")[:] = 123
    young = {k for k in _listing(root) if k.startswith("chunks/")} - existing
    assert young
    summary = repo.garbage_collect(gc_cutoff)
    assert summary.chunks_deleted > 0  # older garbage went
    assert young <= set(_listing(root))
    session.commit("late commit of an old session")  # its chunks survived
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session("main").store, path="x")[:], 123)


def test_gc_read_only_status_raises(history) -> None:
    repo, *_ = history
    repo.set_status(ic.RepoStatus(ic.RepoAvailability.read_only))
    with pytest.raises(ic.ReadOnlyError):
        repo.garbage_collect(datetime.now(UTC))
    repo.set_status(ic.RepoStatus(ic.RepoAvailability.online))
    repo.garbage_collect(datetime.now(UTC), dry_run=True)


def test_gc_memory_bounds_do_not_change_the_result(history) -> None:
    repo, root, cutoff, _ = history
    repo.expire_snapshots(cutoff)
    gc_cutoff = datetime.now(UTC) + timedelta(seconds=1)
    wide = repo.garbage_collect(gc_cutoff, dry_run=True)
    narrow = repo.garbage_collect(
        gc_cutoff,
        dry_run=True,
        max_snapshots_in_memory=1,
        max_compressed_manifest_mem_bytes=1,
        max_concurrent_manifest_fetches=1,
    )
    assert wide == narrow
    assert wide.snapshots_deleted > 0


def test_gc_drops_unreachable_listed_snapshots_and_reparents_young_ones(tmp_path: Path) -> None:
    """What the reference (2.2) does: an old detached snapshot no ref reaches is deleted and
    dropped from the repo info; a young snapshot built on it is re-parented onto the nearest
    kept ancestor with the dropped one in its pruned_ancestor_tx_logs (whose log stays)."""
    root = tmp_path / "repo"
    repo = ic.Repository.create(
        ic.local_filesystem_storage(str(root)), config=ic.RepositoryConfig(inline_chunk_threshold_bytes=0)
    )
    one = _write(repo, "main", {"x": np.arange(8)}, "one")  # two chunks
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="x")[:] = 7
    det = session.flush("det")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="x")[:] = 8
    alone = session.flush("det alone")
    _tick()
    cutoff = datetime.now(UTC)
    _tick()
    repo.create_branch("tmp", det)
    session = repo.writable_session("tmp")
    zarr.open_array(session.store, path="x")[0:4] = 9  # keeps chunk 1 of "det"
    young = session.commit("young on det")
    repo.delete_branch("tmp")
    before = _listing(root)

    dry = repo.garbage_collect(cutoff, dry_run=True)
    assert _listing(root) == before
    summary = repo.garbage_collect(cutoff)
    assert summary == dry
    assert (summary.snapshots_deleted, summary.transaction_logs_deleted) == (2, 1)
    assert summary.chunks_deleted == 3 and summary.manifests_deleted == 2
    after = _listing(root)
    assert f"snapshots/{det}" not in after and f"transactions/{det}" in after
    assert f"snapshots/{alone}" not in after and f"transactions/{alone}" not in after
    info = decode_repo_info((root / "repo").read_bytes())
    assert {str(s) for s in info.snapshots} == {one, young, "1CECHNKREP0F1RSTCMT0"}
    entry = info.snapshots[SnapshotId.parse(young)]
    assert str(entry.parent_id) == one
    assert [str(p) for p in entry.pruned_ancestor_tx_logs] == [det]
    np.testing.assert_array_equal(
        zarr.open_array(repo.readonly_session(snapshot_id=young).store, path="x")[:], [9] * 4 + [7] * 4
    )
    assert type(next(iter(repo.ops_log())).kind).__name__ == "GCRan"


@pytest.mark.parametrize("spec", [1, 2])
def test_gc_without_expiration_keeps_every_listed_snapshot(tmp_path: Path, spec: int) -> None:
    root = tmp_path / "repo"
    repo = ic.Repository.create(
        ic.local_filesystem_storage(str(root)),
        config=ic.RepositoryConfig(inline_chunk_threshold_bytes=0),
        spec_version=spec,
    )
    _write(repo, "main", {"x": np.arange(16)}, "a")
    _write(repo, "main", {"x": np.arange(16) * 2}, "b")
    # an uncommitted session leaves orphan chunks
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="x")[:] = 1
    orphans = {k for k in _listing(root) if k.startswith("chunks/")}
    session.discard_changes()
    _tick()
    summary = repo.garbage_collect(datetime.now(UTC) + timedelta(seconds=1))
    assert summary.chunks_deleted == 4  # the discarded session's four chunk objects
    assert summary.snapshots_deleted == summary.manifests_deleted == 0
    assert len({k for k in _listing(root) if k.startswith("chunks/")}) == len(orphans) - 4
    messages = [s.message for s in repo.ancestry(branch="main")]
    assert messages == ["b", "a", "Repository initialized"]
    for snap in list(repo.ancestry(branch="main"))[:-1]:
        assert "x" in _read_all(repo.readonly_session(snapshot_id=snap.id))


def test_gc_spec1_after_expiration(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = ic.Repository.create(
        ic.local_filesystem_storage(str(root)),
        config=ic.RepositoryConfig(inline_chunk_threshold_bytes=0),
        spec_version=1,
    )
    for i in range(3):
        _write(repo, "main", {"x": np.arange(16) + i}, f"c{i}")
    cutoff = datetime.now(UTC)
    _tick()
    _write(repo, "main", {"x": np.arange(16) + 10}, "young")
    expired = repo.expire_snapshots(cutoff)
    assert len(expired) == 3
    assert [s.message for s in repo.ancestry(branch="main")] == ["young", "Repository initialized"]
    summary = repo.garbage_collect(datetime.now(UTC) + timedelta(seconds=1))
    assert summary.snapshots_deleted == 3
    assert summary.transaction_logs_deleted == 3
    assert summary.chunks_deleted == 12
    np.testing.assert_array_equal(
        zarr.open_array(repo.readonly_session("main").store, path="x")[:], np.arange(16) + 10
    )
    with pytest.raises(ic.FormatError):
        list(repo.ops_log())


def _bulk_repo(n_refs: int, n_objects: int):
    """In-memory repo: one array with ``n_refs`` native refs (random ids) and ``n_objects``
    chunk objects, half of them referenced."""
    import os as _os

    from icechunk._sync import run
    from icechunk.format.ids import ChunkId
    from icechunk.format.manifest import ArrayManifest

    storage = ic.in_memory_storage()
    repo = ic.Repository.create(storage)
    side = int(np.ceil(np.sqrt(n_refs)))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(side, side), chunks=(1, 1), dtype="i1", fill_value=0)
    engine = session._engine
    node = engine.get_array("/a")
    coords = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:n_refs]
    ids = np.frombuffer(_os.urandom(12 * n_refs), dtype=np.uint8).reshape(-1, 12)
    engine.set_chunk_table(node, ArrayManifest.from_columns(node.id, coords, RefKind.NATIVE, chunk_id=ids, length=1))
    session.commit("refs")
    half = n_objects // 2
    garbage = np.frombuffer(_os.urandom(12 * (n_objects - half)), dtype=np.uint8).reshape(-1, 12)

    async def put_all() -> None:
        for raw in (*ids[:half], *garbage):
            await storage.put(f"chunks/{ChunkId(raw.tobytes())}", b"xy")

    run(put_all())
    return repo, storage, {f"chunks/{ChunkId(r.tobytes())}" for r in ids[:half]}


def test_gc_many_objects_in_batches() -> None:
    repo, storage, referenced = _bulk_repo(60_000, 24_000)  # > one listing batch, many delete batches
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    summary = repo.garbage_collect(cutoff, max_concurrent_manifest_fetches=2)
    assert summary.chunks_deleted == 12_000
    assert summary.bytes_deleted == 24_000
    left = {o.key for o in storage.list_objects_metadata(prefix="chunks/")}
    assert left == referenced
    assert repo.chunk_storage_stats().native_bytes == 60_000


@pytest.mark.slow
def test_gc_million_refs_benchmark() -> None:
    import time as _time

    repo, storage, referenced = _bulk_repo(1_000_000, 200_000)
    start = _time.perf_counter()
    summary = repo.garbage_collect(datetime.now(UTC) + timedelta(seconds=1))
    elapsed = _time.perf_counter() - start
    assert summary.chunks_deleted == 100_000
    assert {o.key for o in storage.list_objects_metadata(prefix="chunks/")} == referenced
    print(f"GC over 1M refs / 200k chunk objects: {elapsed:.1f}s")
