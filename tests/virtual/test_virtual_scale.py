"""Many virtual refs through ``set_virtual_refs_arr``: columns in, one table, commit, reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

import icechunk as ic
from icechunk import RepositoryConfig, VirtualChunkContainer
from icechunk.credentials import LocalFileSystemAccess
from icechunk.storage import local_filesystem_store


def _run(tmp_path: Path, n: int, files: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    per_file = n // files
    urls = []
    for f in range(files):
        (data / f"g{f:04d}.bin").write_bytes(np.arange(f * per_file, (f + 1) * per_file, dtype="<u8").tobytes())
        urls.append(f"file://{data}/g{f:04d}.bin")
    config = RepositoryConfig.default()
    config.set_virtual_chunk_container(VirtualChunkContainer(f"file://{data}/", local_filesystem_store(str(data))))
    auth = {f"file://{data}/": LocalFileSystemAccess}
    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")), config, authorize_virtual_chunk_access=auth)
    session = repo.writable_session("main")
    rows, cols = 1000, n // 1000
    zarr.create_array(session.store, name="x", shape=(rows, cols), chunks=(1, 1), dtype="<u8", compressors=None, fill_value=0)
    flat = np.arange(n)
    locations = [urls[i // per_file] for i in range(n)]
    # the refs of the last column are left out ("" = no chunk)
    for i in range(cols - 1, n, cols):
        locations[i] = ""
    failed = session.store.set_virtual_refs_arr(
        "x", (rows, cols), locations, (flat % per_file).astype(np.uint64) * 8, np.full(n, 8, dtype=np.uint64)
    )
    assert failed is None
    changes = session._engine.changes.chunks
    assert len(changes) == 1 and len(next(iter(changes.values())).table()) == n - rows
    session.commit(f"{n} refs")

    cold = ic.Repository.open(repo.storage, authorize_virtual_chunk_access=auth)
    ro = cold.readonly_session("main")
    arr = zarr.open_array(ro.store, path="x", mode="r")
    picks = np.random.default_rng(1).choice(n, 1000, replace=False)
    got = arr.get_coordinate_selection((picks // cols, picks % cols))
    expected = np.where(picks % cols == cols - 1, 0, picks).astype(np.uint64)
    np.testing.assert_array_equal(got, expected)
    assert len(set(ro.all_virtual_chunk_locations())) == files


def test_200k_virtual_refs(tmp_path: Path) -> None:
    _run(tmp_path, 200_000, files=200)


@pytest.mark.slow
def test_a_million_virtual_refs(tmp_path: Path) -> None:
    _run(tmp_path, 1_000_000, files=1000)
