"""``Session.shift_array`` and ``Session.reindex_array`` (API.md §3.2): only chunk refs move."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import icechunk as ic


def _make(shape=(8, 6), chunks=(2, 3), spec=2, path=None) -> tuple[ic.Repository, np.ndarray]:
    storage = ic.in_memory_storage() if path is None else ic.local_filesystem_storage(str(path))
    repo = ic.Repository.create(storage, spec_version=spec, config=ic.RepositoryConfig(inline_chunk_threshold_bytes=0))
    session = repo.writable_session("main")
    data = np.arange(np.prod(shape), dtype="i4").reshape(shape)
    arr = zarr.create_array(session.store, name="a", shape=shape, chunks=chunks, dtype="i4", fill_value=-1)
    arr[:] = data
    session.commit("data")
    return repo, data


def _read(session: ic.Session) -> np.ndarray:
    return zarr.open_array(session.store, path="a", mode="r")[:]


def _chunk_ids(session: ic.Session) -> set[str]:
    from icechunk._sync import run

    engine = session._engine
    refs = run(engine.current_refs(engine.get_array("/a")))
    return {bytes(r).hex() for r in refs.chunk_id}


def test_shift_moves_chunks_and_drops_out_of_bounds() -> None:
    repo, data = _make()
    session = repo.writable_session("main")
    before_ids = _chunk_ids(session)
    session.shift_array("/a", [1, -1])  # +1 chunk along rows (2 elements), -1 along cols (3)
    expected = np.full_like(data, -1)
    expected[2:, 0:3] = data[:-2, 3:6]
    np.testing.assert_array_equal(_read(session), expected)
    assert _chunk_ids(session) <= before_ids  # no chunk was rewritten, only refs moved
    status = session.status()
    assert "/a" in status.updated_chunks
    session.commit("shift")
    np.testing.assert_array_equal(_read(repo.readonly_session("main")), expected)


def test_shift_noop_and_errors(tmp_path) -> None:
    repo, data = _make()
    session = repo.writable_session("main")
    session.shift_array("/a", (0, 0))
    assert not session.has_uncommitted_changes
    with pytest.raises(ic.InvalidInputError):
        session.shift_array("/a", [1])
    with pytest.raises(ic.ReadOnlyError):
        repo.readonly_session("main").shift_array("/a", [1, 0])
    with pytest.raises(ic.NodeNotFoundError):
        session.shift_array("/missing", [1, 0])
    session.shift_array("/a", [100, 0])  # everything falls off the grid
    np.testing.assert_array_equal(_read(session), np.full_like(data, -1))


def test_shift_rejects_rectilinear_grids() -> None:
    import json

    repo = ic.Repository.create(ic.in_memory_storage())
    session = repo.writable_session("main")
    meta = {
        "zarr_format": 3, "node_type": "array", "shape": [6], "data_type": "int32",
        "chunk_grid": {"name": "rectilinear", "configuration": {"chunk_shapes": [[2, 4]]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {},
    }
    session._engine.set_metadata("/r", json.dumps(meta).encode())
    with pytest.raises(ic.InvalidInputError):
        session.shift_array("/r", [1])
    with pytest.raises(ic.InvalidInputError):
        session.reindex_array("/r", lambda idx: idx)


def test_reindex_without_backward_keeps_stale_chunks() -> None:
    repo, data = _make(shape=(8,), chunks=(2,))
    session = repo.writable_session("main")
    session.reindex_array("/a", lambda idx: [idx[0] + 1] if idx[0] < 3 else None)
    # chunk i -> i + 1 for i < 3; chunk 0 keeps its stale data, chunk 3 was overwritten
    expected = np.concatenate([data[0:2], data[0:2], data[2:4], data[4:6]])
    np.testing.assert_array_equal(_read(session), expected)


def test_reindex_with_backward_clears_positions_without_preimage() -> None:
    repo, data = _make(shape=(8,), chunks=(2,))
    session = repo.writable_session("main")

    def forward(idx):
        return [idx[0] + 1] if idx[0] + 1 < 4 else None

    def backward(idx):
        return [idx[0] - 1] if idx[0] >= 1 else None

    session.reindex_array("/a", forward, backward)
    expected = np.concatenate([[-1, -1], data[0:2], data[2:4], data[4:6]])
    np.testing.assert_array_equal(_read(session), expected)
    session.commit("reindex")
    np.testing.assert_array_equal(_read(repo.readonly_session("main")), expected)


def test_reindex_swaps_and_errors() -> None:
    repo, data = _make(shape=(4, 4), chunks=(2, 2))
    session = repo.writable_session("main")
    session.reindex_array("/a", lambda idx: [idx[1], idx[0]])  # transpose the chunk grid
    got = _read(session)
    np.testing.assert_array_equal(got[0:2, 2:4], data[2:4, 0:2])
    np.testing.assert_array_equal(got[2:4, 0:2], data[0:2, 2:4])
    np.testing.assert_array_equal(got[0:2, 0:2], data[0:2, 0:2])
    with pytest.raises(ic.InvalidInputError) as info:
        session.reindex_array("/a", lambda idx: [idx[0] + 2, idx[1]])
    assert info.value.kind == "invalid-chunk-index"
    np.testing.assert_array_equal(_read(session), got)  # a failed reindex changes nothing


@pytest.mark.parametrize("spec", [1, 2])
def test_shift_large_array_is_vectorized(spec: int, tmp_path) -> None:
    """40 000 chunk refs (written as one table, not through zarr) shift in numpy time."""
    import time

    from icechunk._sync import run
    from icechunk.format.manifest import ArrayManifest, RefKind

    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "r")), spec_version=spec)
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(400, 400), chunks=(2, 2), dtype="i1", fill_value=0)
    engine = session._engine
    node = engine.get_array("/a")
    grid = np.stack(np.meshgrid(np.arange(200), np.arange(200), indexing="ij"), axis=-1).reshape(-1, 2)
    payload = [bytes([i % 251, 1, 2, 3]) for i in range(len(grid))]
    engine.set_chunk_table(node, ArrayManifest.from_columns(node.id, grid, RefKind.INLINE, inline=payload))
    session.commit("refs")
    session = repo.writable_session("main")
    start = time.perf_counter()
    session.shift_array("/a", [-3, 5])
    elapsed = time.perf_counter() - start
    session.commit("shift")
    after = repo.readonly_session("main")._engine
    refs = run(after.current_refs(after.get_array("/a")))
    source = grid + [3, -5]
    keep = np.all((source >= 0) & (source < 200), axis=1)
    assert len(refs) == int(keep.sum())
    np.testing.assert_array_equal(refs.coords, grid[keep])
    by_coord = {tuple(c): p for c, p in zip(grid.tolist(), payload, strict=True)}
    assert refs.inline.tolist() == [by_coord[tuple(c)] for c in source[keep].tolist()]
    assert elapsed < 2, elapsed  # numpy work, not one Python call per chunk
