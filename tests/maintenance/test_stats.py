"""``chunk_storage_stats`` and the deprecated ``total_chunks_storage``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import zarr

import icechunk as ic
from icechunk.format.manifest import ChunkRef, RefKind


def _chunk_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in (root / "chunks").iterdir()) if (root / "chunks").exists() else 0


@pytest.mark.parametrize("spec", [1, 2])
def test_stats_count_each_reachable_chunk_once(tmp_path: Path, spec: int) -> None:
    root = tmp_path / "repo"
    repo = ic.Repository.create(
        ic.local_filesystem_storage(str(root)),
        config=ic.RepositoryConfig(inline_chunk_threshold_bytes=40),
        spec_version=spec,
    )
    assert repo.chunk_storage_stats().total_bytes() == 0
    session = repo.writable_session("main")
    group = zarr.open_group(session.store, mode="a")
    big = group.create_array("big", shape=(40,), chunks=(10,), dtype="f8", fill_value=0, compressors=None)
    big[:] = np.arange(40)  # 4 native chunks of 80 bytes
    small = group.create_array("small", shape=(8,), chunks=(4,), dtype="i4", fill_value=0, compressors=None)
    small[:] = 1  # 2 inline chunks of 16 bytes
    session.commit("one")

    session = repo.writable_session("main")
    zarr.open_array(session.store, path="big")[0:10] = -1  # one more native chunk; the old one stays in history
    session.commit("two")
    repo.create_tag("t", repo.lookup_branch("main"))

    session = repo.writable_session("main")
    # discarded writes leave unreachable chunk objects: not counted
    zarr.open_array(session.store, path="big")[:] = 5
    session.discard_changes()

    stats = repo.chunk_storage_stats()
    assert stats.native_bytes == 5 * 80
    assert stats.inlined_bytes == 2 * 16  # one manifest holds them, reused by both commits
    assert stats.virtual_bytes == 0
    assert stats.non_virtual_bytes() == 5 * 80 + 32
    assert stats.total_bytes() == stats.non_virtual_bytes()
    # independent check: after GC only reachable chunk objects remain
    repo.garbage_collect(datetime.now(UTC) + timedelta(seconds=1))
    assert _chunk_bytes(root) == stats.native_bytes
    with pytest.warns(DeprecationWarning, match="chunk_storage_stats"):
        assert repo.total_chunks_storage() == stats.native_bytes


def test_virtual_refs_are_deduplicated_by_location_offset_length() -> None:
    repo = ic.Repository.create(ic.in_memory_storage())
    session = repo.writable_session("main")
    for name in ("v1", "v2"):
        zarr.create_array(session.store, name=name, shape=(4,), chunks=(1,), dtype="u1", fill_value=0)
    engine = session._engine
    for name in ("v1", "v2"):
        node = engine.get_array(f"/{name}")
        for i in range(4):
            ref = ChunkRef(RefKind.VIRTUAL, location="s3://bucket/file.nc", offset=100 * i, length=50 + i)
            engine.set_chunk_ref(node, (i,), ref)
    session.commit("virtual")
    stats = repo.chunk_storage_stats(max_concurrent_manifest_fetches=1, max_snapshots_in_memory=1)
    assert stats.virtual_bytes == 50 + 51 + 52 + 53
    assert stats.native_bytes == stats.inlined_bytes == 0


def test_stats_follow_branches_and_tags_only(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = ic.Repository.create(
        ic.local_filesystem_storage(str(root)), config=ic.RepositoryConfig(inline_chunk_threshold_bytes=0)
    )
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(4,), chunks=(2,), dtype="i8", fill_value=0, compressors=None)[:] = 1
    base = session.commit("base")
    repo.create_branch("side", base)
    session = repo.writable_session("side")
    zarr.open_array(session.store, path="a")[:] = 2
    session.commit("side")
    assert repo.chunk_storage_stats().native_bytes == 4 * 16
    repo.delete_branch("side")
    assert repo.chunk_storage_stats().native_bytes == 2 * 16
