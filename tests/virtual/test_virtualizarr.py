"""Acceptance: a catalog of NetCDF4 / HDF5 files becomes a repository through VirtualiZarr.

Real files are written with h5netcdf and h5py (several variables and dtypes, chunked,
contiguous and compressed datasets), opened with VirtualiZarr's HDF parser, written with its
``to_icechunk`` accessor (which calls ``IcechunkStore.set_virtual_refs``), committed, and
read back -- in a fresh process -- with ``xr.open_zarr``: the values must be identical to
``xr.open_dataset`` of the original files, without any chunk having been copied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import icechunk as ic
from icechunk import ErrorKind, RepositoryConfig, StorageError, VirtualChunkContainer
from icechunk.credentials import LocalFileSystemAccess
from icechunk.storage import local_filesystem_store

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")
h5py = pytest.importorskip("h5py")
virtualizarr = pytest.importorskip("virtualizarr")
pytestmark = pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")

NT = 3  # time steps per file


def _write_netcdf(path: Path, t0: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ds = xr.Dataset(
        {
            "temp": (("time", "y", "x"), rng.random((NT, 4, 6)).astype("f4"), {"units": "K"}),
            "precip": (("time", "y", "x"), rng.random((NT, 4, 6))),
            "flag": (("time", "y"), rng.integers(-5, 5, (NT, 4)).astype("i2")),
            "mask": (("y", "x"), (np.arange(24).reshape(4, 6) % 3).astype("u1")),
        },
        coords={
            "time": ("time", np.arange(t0, t0 + NT, dtype="f8"), {"units": "days since 2000-01-01"}),
            "y": np.arange(4.0),
            "x": np.arange(6.0),
        },
        attrs={"title": "virtual catalog test"},
    )
    ds.to_netcdf(
        path,
        engine="h5netcdf",
        encoding={
            "temp": {"chunksizes": (1, 4, 6)},  # one chunk per time step
            "precip": {"contiguous": True},  # one contiguous block
            "flag": {"chunksizes": (1, 2), "zlib": True, "shuffle": True, "complevel": 4},
            "mask": {"chunksizes": (2, 3)},
        },
    )


def _write_hdf5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "values", data=np.arange(60, dtype="<i8").reshape(6, 10), chunks=(3, 5),
            compression="gzip", shuffle=True,
        )
        f.create_dataset("plain", data=np.linspace(0, 1, 6).astype(">f8"))  # big-endian, contiguous


def _open_virtual(path: Path):  # type: ignore[no-untyped-def]
    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import LocalStore
    from virtualizarr import open_virtual_dataset
    from virtualizarr.parsers import HDFParser

    registry = ObjectStoreRegistry({"file://": LocalStore()})
    return open_virtual_dataset(f"file://{path}", registry=registry, parser=HDFParser())


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    data = tmp_path / "catalog"
    data.mkdir()
    _write_netcdf(data / "day1.nc", 0, seed=1)
    _write_netcdf(data / "day2.nc", NT, seed=2)
    _write_hdf5(data / "raw.h5")
    return data


def _create_repo(tmp_path: Path, catalog: Path) -> ic.Repository:
    config = RepositoryConfig.default()
    config.set_virtual_chunk_container(
        VirtualChunkContainer(f"file://{catalog}/", local_filesystem_store(str(catalog)))
    )
    return ic.Repository.create(
        ic.local_filesystem_storage(str(tmp_path / "repo")),
        config,
        authorize_virtual_chunk_access={f"file://{catalog}/": LocalFileSystemAccess},
    )


_READER = textwrap.dedent(
    """
    import json, sys, warnings
    import xarray as xr
    import icechunk as ic
    from icechunk.credentials import LocalFileSystemAccess

    repo_path, catalog, group, files = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    repo = ic.Repository.open(
        ic.local_filesystem_storage(repo_path),
        authorize_virtual_chunk_access={f"file://{catalog}/": LocalFileSystemAccess},
    )
    got = xr.open_zarr(
        repo.readonly_session("main").store, group=group or None, consolidated=False, zarr_format=3
    ).load()
    originals = [xr.open_dataset(f, engine="h5netcdf", phony_dims="access").load() for f in files]
    expected = originals[0] if len(originals) == 1 else xr.concat(originals, dim="time", data_vars="minimal")
    xr.testing.assert_identical(got, expected)
    print("IDENTICAL", sorted(got.data_vars), dict(got.sizes))
    """
)


def _check_in_fresh_process(repo_path: Path, catalog: Path, files: list[Path], group: str = "") -> str:
    import icechunk

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(icechunk.__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", _READER, str(repo_path), str(catalog), group, json.dumps([str(f) for f in files])],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_netcdf_catalog_to_repository_and_append(tmp_path: Path, catalog: Path) -> None:
    repo = _create_repo(tmp_path, catalog)
    session = repo.writable_session("main")
    _open_virtual(catalog / "day1.nc").vz.to_icechunk(session.store)
    first = session.commit("day 1")

    # no chunk bytes were copied: every data variable chunk is a virtual ref into the file
    ro = repo.readonly_session(snapshot_id=first)
    for name, nchunks in (("temp", NT), ("precip", 1), ("flag", NT * 2), ("mask", 4)):
        batches = list(ro.store.array_chunk_iterator(name))
        kinds = np.concatenate([b[1] for b in batches])
        assert kinds.tolist() == [ic.ChunkType.virtual.value] * nchunks, name
        assert {p for b in batches for p in b[2]} == {f"file://{catalog}/day1.nc"}
    assert set(ro.all_virtual_chunk_locations()) == {f"file://{catalog}/day1.nc"}
    chunk_objects = tmp_path / "repo" / "chunks"
    assert not chunk_objects.exists() or not any(chunk_objects.iterdir())

    # append the second file's refs along time
    session = repo.writable_session("main")
    _open_virtual(catalog / "day2.nc").vz.to_icechunk(session.store, append_dim="time")
    session.commit("day 2")
    assert sorted(set(repo.readonly_session("main").all_virtual_chunk_locations())) == [
        f"file://{catalog}/day1.nc", f"file://{catalog}/day2.nc"
    ]

    stdout = _check_in_fresh_process(tmp_path / "repo", catalog, [catalog / "day1.nc", catalog / "day2.nc"])
    assert "IDENTICAL" in stdout and "'time': 6" in stdout
    # the first snapshot still shows one file
    day1 = xr.open_zarr(repo.readonly_session(snapshot_id=first).store, consolidated=False, zarr_format=3)
    assert day1.sizes["time"] == NT


def test_plain_hdf5_file_in_a_group(tmp_path: Path, catalog: Path) -> None:
    repo = _create_repo(tmp_path, catalog)
    session = repo.writable_session("main")
    _open_virtual(catalog / "raw.h5").vz.to_icechunk(session.store, group="raw")
    session.commit("hdf5")
    stdout = _check_in_fresh_process(tmp_path / "repo", catalog, [catalog / "raw.h5"], group="raw")
    assert "IDENTICAL" in stdout and "'plain', 'values'" in stdout


def test_source_rewritten_after_the_refs_were_written(tmp_path: Path, catalog: Path) -> None:
    repo = _create_repo(tmp_path, catalog)
    session = repo.writable_session("main")
    _open_virtual(catalog / "day1.nc").vz.to_icechunk(session.store)  # last_updated_at = now + 1 s
    session.commit("day 1")
    target = catalog / "day1.nc"
    later = os.stat(target).st_mtime + 120
    os.utime(target, (later, later))  # the file changed after the refs were recorded
    ds = xr.open_zarr(repo.readonly_session("main").store, consolidated=False, zarr_format=3)
    with pytest.raises(StorageError) as err:
        ds["temp"].values  # noqa: B018
    assert err.value.kind == ErrorKind.VIRTUAL_CHUNK_MODIFIED


def test_to_icechunk_validates_containers(tmp_path: Path, catalog: Path) -> None:
    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")))
    session = repo.writable_session("main")
    with pytest.raises(ValueError, match="Virtual Chunk Container"):
        _open_virtual(catalog / "day1.nc").vz.to_icechunk(session.store)
