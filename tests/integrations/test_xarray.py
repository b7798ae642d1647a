"""icechunk.xarray.to_icechunk with numpy- and dask-backed data (threaded/synchronous dask)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

xr = pytest.importorskip("xarray")
da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

from icechunk import ForkSession, Repository, SessionStateError  # noqa: E402
from icechunk.xarray import to_icechunk  # noqa: E402

NT = 12


def make_dataset(start: int = 0, nt: int = NT, *, dask: bool = True) -> xr.Dataset:
    """Coordinates (pandas and cftime times), attrs, numpy and dask variables of several dtypes."""
    rng = np.random.default_rng(start)
    temp = rng.standard_normal((nt, 4, 6)).astype("f4")
    count = np.arange(start, start + nt, dtype="i4")
    return xr.Dataset(
        {
            "temperature": (
                ("time", "lat", "lon"),
                da.from_array(temp, chunks=(3, 2, 3)) if dask else temp,
                {"units": "K", "long_name": "air temperature"},
            ),
            "pressure": (("time", "lat", "lon"), rng.standard_normal((nt, 4, 6))),
            "count": (("time",), da.from_array(count, chunks=3) if dask else count),
            "mask": (("lat", "lon"), np.arange(24).reshape(4, 6) % 3 == 0),
            "label": (("lat",), np.array(["a", "bb", "ccc", "dddd"], dtype=object)),
        },
        coords={
            "time": pd.date_range("2020-01-01", periods=nt, freq="D") + pd.Timedelta(days=start),
            "lat": np.linspace(-45.0, 45.0, 4),
            "lon": np.arange(6.0),
            "ctime": (
                ("time",),
                xr.date_range("2000-01-01", periods=nt + start, calendar="noleap", use_cftime=True)[start:],
            ),
        },
        attrs={"title": "icechunk test", "version": 3, "levels": [1, 2, 3]},
    )


ENCODING = {
    "temperature": {
        "chunks": (3, 2, 3),
        "compressors": [zarr.codecs.ZstdCodec(level=5)],
        "fill_value": -999.0,
    },
    "count": {"chunks": (3,), "fill_value": -1},
    "ctime": {"units": "days since 2000-01-01", "calendar": "noleap"},
    "time": {"units": "hours since 2020-01-01", "dtype": "int64"},
}


def read(repo: Repository, **kwargs: object) -> xr.Dataset:
    session = repo.readonly_session(**kwargs) if kwargs else repo.readonly_session(branch="main")
    return xr.open_zarr(session.store, consolidated=False).load()


def test_round_trip_numpy_and_dask_with_encodings(repo: Repository) -> None:
    ds = make_dataset()
    session = repo.writable_session("main")
    to_icechunk(ds, session, encoding=ENCODING)
    assert session.has_uncommitted_changes  # written, but not committed
    assert repo.lookup_branch("main") == session.snapshot_id
    session.commit("write")

    back = xr.open_zarr(repo.readonly_session(branch="main").store, consolidated=False)
    assert isinstance(back["temperature"].data, da.Array)
    xr.testing.assert_identical(back.load(), ds.load())
    enc = back["temperature"].encoding
    assert enc["chunks"] == (3, 2, 3)
    assert enc["compressors"][0].level == 5
    assert enc["fill_value"] == -999.0
    assert back["count"].encoding["fill_value"] == -1
    assert back["ctime"].encoding["calendar"] == "noleap"
    assert back["ctime"].encoding["units"] == "days since 2000-01-01"
    assert back["time"].encoding["units"] == "hours since 2020-01-01"
    # the zarr metadata is format 3 and nothing was consolidated
    group = zarr.open_group(repo.readonly_session(branch="main").store, mode="r")
    assert group.metadata.zarr_format == 3
    assert group.metadata.consolidated_metadata is None


def test_open_dataset_engine_zarr_on_any_session(repo: Repository) -> None:
    ds = make_dataset(dask=False)
    session = repo.writable_session("main")
    to_icechunk(ds, session)
    # uncommitted data is readable through the writable session itself
    xr.testing.assert_identical(
        xr.open_dataset(session.store, engine="zarr", consolidated=False).load(), ds
    )
    sid = session.commit("one")
    for s in (repo.readonly_session(branch="main"), repo.readonly_session(snapshot_id=sid)):
        xr.testing.assert_identical(xr.open_dataset(s.store, engine="zarr", consolidated=False).load(), ds)
        xr.testing.assert_identical(xr.open_zarr(s.store, consolidated=False).load(), ds)


def test_dataarray_naming(repo: Repository) -> None:
    session = repo.writable_session("main")
    values = np.arange(6.0).reshape(2, 3)
    unnamed = xr.DataArray(values, dims=("y", "x"), attrs={"units": "m"})
    to_icechunk(unnamed, session, group="unnamed")
    named = xr.DataArray(da.from_array(values, chunks=(1, 3)), dims=("y", "x"), name="depth")
    to_icechunk(named, session, group="named")
    clash = xr.DataArray(np.arange(3.0), dims=("x",), coords={"x": np.arange(3.0)}, name="x")
    to_icechunk(clash, session, group="clash")
    session.commit("arrays")
    store = repo.readonly_session(branch="main").store

    ds = xr.open_zarr(store, group="unnamed", consolidated=False)
    assert list(ds.data_vars) == ["__xarray_dataarray_variable__"]
    back = xr.open_dataarray(store, engine="zarr", group="unnamed", consolidated=False)
    xr.testing.assert_identical(back.load(), unnamed)

    back = xr.open_dataarray(store, engine="zarr", group="named", consolidated=False)
    xr.testing.assert_identical(back.load(), named.load())

    ds = xr.open_zarr(store, group="clash", consolidated=False)
    assert ds.attrs["__xarray_dataarray_name__"] == "x"
    assert "__xarray_dataarray_variable__" in ds.data_vars
    back = xr.open_dataarray(store, engine="zarr", group="clash", consolidated=False)
    assert back.name == "x"
    np.testing.assert_array_equal(back.values, clash.values)


@pytest.mark.parametrize("dask", [True, False], ids=["dask", "numpy"])
def test_append_along_time(repo: Repository, dask: bool) -> None:
    first, second, third = make_dataset(0, dask=dask), make_dataset(NT, dask=dask), make_dataset(2 * NT, 6, dask=dask)
    session = repo.writable_session("main")
    to_icechunk(first, session, encoding=ENCODING)
    session.commit("first")
    session = repo.writable_session("main")
    to_icechunk(second, session, append_dim="time")  # mode defaults to "a"
    # a second append (another resize) in the same session before one commit
    to_icechunk(third, session, append_dim="time", mode="a")
    session.commit("appends")
    expected = xr.concat([first, second, third], dim="time", data_vars="minimal", coords="minimal")
    xr.testing.assert_identical(read(repo), expected.load())


def test_append_mode_a_minus_keeps_variables_without_the_dim(repo: Repository) -> None:
    first = make_dataset(0)
    session = repo.writable_session("main")
    to_icechunk(first, session)
    second = make_dataset(NT)
    second["mask"] = ~second["mask"]  # no time dimension: "a-" must not overwrite it
    to_icechunk(second, session, append_dim="time", mode="a-")
    back = xr.open_zarr(session.store, consolidated=False).load()
    np.testing.assert_array_equal(back["mask"].values, first["mask"].values)
    assert back.sizes["time"] == 2 * NT
    # with "a" the same variable is overwritten
    third = make_dataset(2 * NT)
    third["mask"] = ~third["mask"]
    to_icechunk(third, session, append_dim="time", mode="a")
    back = xr.open_zarr(session.store, consolidated=False).load()
    np.testing.assert_array_equal(back["mask"].values, third["mask"].values)


def test_region_explicit_and_auto(repo: Repository) -> None:
    ds = make_dataset()
    session = repo.writable_session("main")
    to_icechunk(ds, session, encoding=ENCODING)
    session.commit("base")

    session = repo.writable_session("main")
    part = ds.isel(time=slice(3, 9)).drop_vars(["mask", "label"])  # every var has "time"
    part = part.copy(deep=True)
    part["temperature"] = part["temperature"] + 100
    part["count"] = part["count"] * 0 + 7
    # explicit slices (indexes of the region dims are dropped, as xarray requires)
    to_icechunk(part.drop_vars(["time", "lat", "lon", "ctime"]), session, region={"time": slice(3, 9)})
    session.commit("explicit region")
    expected = ds.copy(deep=True).load()
    expected["temperature"][3:9] = part["temperature"].values
    expected["count"][3:9] = 7
    xr.testing.assert_identical(read(repo), expected)

    session = repo.writable_session("main")
    part2 = ds.isel(time=slice(6, 12)).drop_vars(["mask", "label"]).copy(deep=True)
    part2["temperature"] = part2["temperature"] - 50
    to_icechunk(part2, session, region="auto")  # mode defaults to r+
    session.commit("auto region")
    expected["temperature"][6:12] = part2["temperature"].values
    expected["count"][6:12] = part2["count"].values
    xr.testing.assert_identical(read(repo), expected)


def test_region_auto_with_mode_a_and_dict(repo: Repository) -> None:
    ds = make_dataset(dask=False)
    session = repo.writable_session("main")
    to_icechunk(ds, session)
    part = ds.isel(time=slice(0, 4)).drop_vars(["mask", "label", "lat", "lon"]).copy(deep=True)
    part["pressure"] = part["pressure"] * 0
    to_icechunk(part, session, region={"time": "auto"}, mode="a")
    back = xr.open_zarr(session.store, consolidated=False).load()
    assert (back["pressure"].values[:4] == 0).all()
    np.testing.assert_array_equal(back["pressure"].values[4:], ds["pressure"].values[4:])


def test_region_errors(repo: Repository) -> None:
    ds = make_dataset(dask=False)
    session = repo.writable_session("main")
    to_icechunk(ds, session)
    part = ds.isel(time=slice(0, 4)).drop_vars(["time", "lat", "lon", "ctime"])
    with pytest.raises(ValueError, match="dimension in common"):  # "mask" has no time dim
        to_icechunk(part, session, region={"time": slice(0, 4)})
    with pytest.raises(ValueError, match="both"):
        to_icechunk(part.drop_vars(["mask", "label"]), session, region={"time": slice(0, 4)},
                    append_dim="time", mode="a")
    new_var = ds.isel(time=slice(0, 4))[["pressure"]].rename(pressure="new").drop_vars(
        ["time", "lat", "lon", "ctime"]
    )
    with pytest.raises(ValueError, match="non-pre-existing variables"):
        to_icechunk(new_var, session, region={"time": slice(0, 4)}, mode="r+")
    shifted = ds.isel(time=slice(0, 2)).drop_vars(["mask", "label"]).assign_coords(
        time=pd.date_range("1990-01-01", periods=2)
    )
    with pytest.raises(KeyError, match="Not all values"):
        to_icechunk(shifted, session, region="auto")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "w", "append_dim": "time"}, "append_dim"),
        ({"mode": "r+", "append_dim": "time"}, "append_dim"),
        ({"mode": "w", "region": {"time": slice(0, 2)}}, "region"),
        ({"mode": "w-", "region": "auto"}, "region"),
        ({"mode": "r"}, "mode"),
        ({"mode": "x"}, "mode"),
    ],
)
def test_mode_violations(repo: Repository, kwargs: dict[str, object], match: str) -> None:
    session = repo.writable_session("main")
    with pytest.raises(ValueError, match=match):
        to_icechunk(make_dataset(), session, **kwargs)  # type: ignore[arg-type]
    assert not session.has_uncommitted_changes  # rejected before anything was written


def test_mode_semantics(repo: Repository) -> None:
    ds = make_dataset(dask=False)
    session = repo.writable_session("main")
    to_icechunk(ds, session)  # default "w-"
    with pytest.raises(FileExistsError):
        to_icechunk(ds, session)
    with pytest.raises(FileExistsError):
        to_icechunk(ds, session, mode="w-")
    # "w" replaces everything
    small = xr.Dataset({"only": (("z",), np.arange(3))})
    to_icechunk(small, session, mode="w")
    xr.testing.assert_identical(xr.open_zarr(session.store, consolidated=False).load(), small)
    # "a" adds a variable and overwrites an existing one
    to_icechunk(xr.Dataset({"other": (("z",), np.ones(3))}), session, mode="a")
    to_icechunk(xr.Dataset({"only": (("z",), np.arange(3) * 10)}), session, mode="a")
    back = xr.open_zarr(session.store, consolidated=False).load()
    assert set(back.data_vars) == {"only", "other"}
    np.testing.assert_array_equal(back["only"].values, [0, 10, 20])
    # encodings for existing variables are refused in append modes
    with pytest.raises(ValueError, match="already exists, but encoding was provided"):
        to_icechunk(small, session, mode="a", encoding={"only": {"chunks": (1,)}})
    # "r+" may not change shapes
    with pytest.raises(ValueError):
        to_icechunk(xr.Dataset({"only": (("z",), np.arange(5))}), session, mode="r+")
    # append to a dimension that does not exist
    with pytest.raises(ValueError, match="append_dim"):
        to_icechunk(small, session, append_dim="nope")


def test_groups(repo: Repository) -> None:
    session = repo.writable_session("main")
    a, b = make_dataset(0), make_dataset(5)
    to_icechunk(a, session, group="one")
    to_icechunk(b, session, group="deep/two")
    session.commit("groups")
    store = repo.readonly_session(branch="main").store
    xr.testing.assert_identical(xr.open_zarr(store, group="one", consolidated=False).load(), a.load())
    xr.testing.assert_identical(xr.open_zarr(store, group="deep/two", consolidated=False).load(), b.load())


def test_unaligned_dask_chunks(repo: Repository) -> None:
    values = np.arange(40.0).reshape(10, 4)
    unaligned = xr.Dataset({"v": (("t", "x"), da.from_array(values, chunks=(3, 4)))})
    session = repo.writable_session("main")
    with pytest.raises(ValueError, match="align_chunks=True"):
        to_icechunk(unaligned, session, encoding={"v": {"chunks": (5, 4)}})
    session.discard_changes()  # the failed call may leave metadata behind, as to_zarr does

    to_icechunk(unaligned, session, encoding={"v": {"chunks": (5, 4)}}, align_chunks=True, group="aligned")
    # safe_chunks=False: the user takes responsibility; one thread writes every block in turn
    to_icechunk(unaligned, session, encoding={"v": {"chunks": (5, 4)}}, safe_chunks=False, group="unsafe",
                chunkmanager_store_kwargs={"scheduler": "synchronous"})
    session.commit("chunks")
    store = repo.readonly_session(branch="main").store
    for group in ("aligned", "unsafe"):
        back = xr.open_zarr(store, group=group, consolidated=False)
        assert back["v"].encoding["chunks"] == (5, 4)
        np.testing.assert_array_equal(back["v"].values, values)


def test_partial_chunk_region_in_r_plus_needs_safe_chunks_off(repo: Repository) -> None:
    base = xr.Dataset({"v": (("t",), np.zeros(10))})
    session = repo.writable_session("main")
    to_icechunk(base, session, encoding={"v": {"chunks": (5,)}})
    part = xr.Dataset({"v": (("t",), da.ones(3, chunks=3))})
    with pytest.raises(ValueError, match="safe_chunks=False"):
        to_icechunk(part, session, region={"t": slice(2, 5)}, mode="r+")
    to_icechunk(part, session, region={"t": slice(2, 5)}, mode="r+", safe_chunks=False)
    back = xr.open_zarr(session.store, consolidated=False).load()
    np.testing.assert_array_equal(back["v"].values, [0, 0, 1, 1, 1, 0, 0, 0, 0, 0])


def test_many_chunks_small_split_every_and_scheduler_kwargs(repo: Repository, chunk_coords) -> None:
    values = np.arange(64 * 8, dtype="i8").reshape(64, 8)
    ds = xr.Dataset({"v": (("t", "x"), da.from_array(values, chunks=(2, 4)))})
    session = repo.writable_session("main")
    to_icechunk(ds, session, split_every=2, chunkmanager_store_kwargs={"scheduler": "threads"})
    session.commit("64 chunks")
    readonly = repo.readonly_session(branch="main")
    assert chunk_coords(readonly, "/v") == {(i, j) for i in range(32) for j in range(2)}
    np.testing.assert_array_equal(xr.open_zarr(readonly.store, consolidated=False)["v"].values, values)


def test_chunkmanager_store_kwargs_reserved(repo: Repository) -> None:
    session = repo.writable_session("main")
    ds = xr.Dataset({"v": (("t",), da.arange(4, chunks=2))})
    with pytest.raises(ValueError, match="compute"):
        to_icechunk(ds, session, chunkmanager_store_kwargs={"compute": False})
    session.discard_changes()
    # return_stored / load_stored are overridden, not errors
    to_icechunk(ds, session, chunkmanager_store_kwargs={"return_stored": False, "load_stored": True})
    np.testing.assert_array_equal(xr.open_zarr(session.store, consolidated=False)["v"].values, np.arange(4))


def test_requires_an_icechunk_session(tmp_path) -> None:
    ds = make_dataset(dask=False)
    with pytest.raises(ValueError, match="Please pass in an icechunk.Session"):
        to_icechunk(ds, zarr.storage.LocalStore(str(tmp_path / "plain")))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Please pass in an icechunk.Session"):
        to_icechunk(ds, object())  # type: ignore[arg-type]


def test_read_only_session_refuses(repo: Repository) -> None:
    session = repo.readonly_session(branch="main")
    with pytest.raises(ValueError):
        to_icechunk(make_dataset(dask=False), session, mode="w")


def test_into_a_fork_then_merge(repo: Repository) -> None:
    ds = make_dataset()
    session = repo.writable_session("main")
    to_icechunk(ds, session, encoding=ENCODING)
    fork = session.fork()
    assert isinstance(fork, ForkSession)
    part = ds.isel(time=slice(0, 6)).drop_vars(["mask", "label"]).copy(deep=True)
    part["temperature"] = part["temperature"] * 2
    to_icechunk(part, fork, region="auto")  # values only: the fork forks again and merges
    with pytest.raises(SessionStateError):
        fork.commit("forks cannot commit")
    session.merge(fork)
    session.commit("merged")
    expected = ds.copy(deep=True).load()
    expected["temperature"][:6] = expected["temperature"][:6] * 2
    xr.testing.assert_identical(read(repo), expected)


def test_time_travel_reads(repo: Repository) -> None:
    ds = make_dataset(dask=False)
    session = repo.writable_session("main")
    to_icechunk(ds, session)
    first = session.commit("first")
    between = datetime.now(UTC)
    session = repo.writable_session("main")
    to_icechunk(make_dataset(NT, dask=False), session, append_dim="time")
    session.commit("second")
    assert read(repo).sizes["time"] == 2 * NT
    xr.testing.assert_identical(read(repo, snapshot_id=first), ds)
    xr.testing.assert_identical(read(repo, branch="main", as_of=between), ds)
