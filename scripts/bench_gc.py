"""GC / chunk-stats benchmark: millions of native chunk refs, many unreferenced chunk objects.

Usage: python scripts/bench_gc.py [n_refs] [n_objects]
Prints build, dry-run GC, GC and stats timings and peak traced Python memory.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import numpy as np
import zarr

import icechunk as ic
from icechunk._sync import run
from icechunk.format.manifest import ArrayManifest, RefKind


def main(n_refs: int, n_objects: int) -> None:
    storage = ic.in_memory_storage()
    repo = ic.Repository.create(storage, config=ic.RepositoryConfig(
        manifest=ic.ManifestConfig(splitting=ic.ManifestSplittingConfig.from_dict(
            {ic.ManifestSplitCondition.AnyArray(): {ic.ManifestSplitDimCondition.Any(): 100}}
        ))
    ))
    side = int(np.ceil(np.sqrt(n_refs)))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(side, side), chunks=(1, 1), dtype="i1", fill_value=0)
    engine = session._engine
    node = engine.get_array("/a")
    t = time.perf_counter()
    coords = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:n_refs]
    ids = np.frombuffer(os.urandom(12 * n_refs), dtype=np.uint8).reshape(-1, 12)
    engine.set_chunk_table(node, ArrayManifest.from_columns(node.id, coords, RefKind.NATIVE, chunk_id=ids, length=1))
    session.commit("refs")
    # chunk objects: half referenced, half garbage
    half = n_objects // 2
    referenced = ids[:half]
    garbage = np.frombuffer(os.urandom(12 * (n_objects - half)), dtype=np.uint8).reshape(-1, 12)
    from icechunk.format.ids import ChunkId

    async def put_all() -> None:
        for raw in (*referenced, *garbage):
            await storage.put(f"chunks/{ChunkId(raw.tobytes())}", b"x")

    run(put_all())
    print(f"build: {time.perf_counter() - t:.1f}s ({n_refs} refs, {n_objects} chunk objects)")
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    tracemalloc.start()
    t = time.perf_counter()
    dry = repo.garbage_collect(cutoff, dry_run=True)
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    print(f"gc dry run: {dt:.1f}s, peak traced {peak / 2**20:.0f} MiB, {dry}")
    tracemalloc.reset_peak()
    t = time.perf_counter()
    stats = repo.chunk_storage_stats()
    print(f"chunk_storage_stats: {time.perf_counter() - t:.1f}s, peak {tracemalloc.get_traced_memory()[1] / 2**20:.0f} MiB, {stats}")
    tracemalloc.stop()
    t = time.perf_counter()
    summary = repo.garbage_collect(cutoff)
    print(f"gc: {time.perf_counter() - t:.1f}s, {summary}")
    assert summary.chunks_deleted == n_objects - half, summary
    assert stats.native_bytes == n_refs


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
