"""Quickstart: a versioned xarray dataset in an Icechunk repository on local disk.

    python examples/quickstart.py [REPO_DIR]

Creates a repository (in REPO_DIR, which must not exist yet, or in a fresh temporary
directory), writes a dataset with ``to_icechunk``, commits, appends, branches, changes data on
the branch, and travels back in time by snapshot id, by tag and by date (``as_of``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import icechunk
from icechunk.xarray import to_icechunk


def week_of_temperatures(start: str, seed: int) -> xr.Dataset:
    """Seven days of a small gridded temperature field (numpy-backed)."""
    rng = np.random.default_rng(seed)
    time_index = pd.date_range(start, periods=7, freq="D")
    lat, lon = np.linspace(40.0, 50.0, 6), np.linspace(0.0, 15.0, 8)
    temperature = 285 + 5 * rng.standard_normal((7, lat.size, lon.size)).astype("f4")
    return xr.Dataset(
        {"temperature": (("time", "lat", "lon"), temperature, {"units": "K"})},
        coords={"time": time_index, "lat": lat, "lon": lon},
        attrs={"title": "quickstart temperatures"},
    )


def step(text: str) -> None:
    print(f"\n== {text}")


def main(repo_dir: Path) -> None:
    step(f"create a repository in {repo_dir}")
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(repo_dir)))
    print("branches:", sorted(repo.list_branches()))

    step("write the first week on main with to_icechunk, then commit")
    first_week = week_of_temperatures("2024-01-01", seed=1)
    session = repo.writable_session("main")
    to_icechunk(first_week, session, encoding={"temperature": {"chunks": (7, 3, 4)}})
    print("uncommitted changes:", session.status())
    first_commit = session.commit("first week of temperatures")
    print("committed snapshot", first_commit)
    repo.create_tag("first-week", first_commit)

    time.sleep(0.05)
    between_commits = datetime.now(UTC)
    time.sleep(0.05)

    step("append the second week along time (one more commit)")
    session = repo.writable_session("main")
    to_icechunk(week_of_temperatures("2024-01-08", seed=2), session, append_dim="time")
    second_commit = session.commit("second week of temperatures")
    on_main = xr.open_zarr(repo.readonly_session(branch="main").store, consolidated=False)
    print(f"main now has {on_main.sizes['time']} days, mean {float(on_main.temperature.mean()):.2f} K")
    assert on_main.sizes["time"] == 14

    step("branch 'bias-corrected' from main and change data only there")
    repo.create_branch("bias-corrected", second_commit)
    session = repo.writable_session("bias-corrected")
    corrected = xr.open_zarr(session.store, consolidated=False).load()
    corrected["temperature"] = corrected["temperature"] - 1.5
    to_icechunk(corrected[["temperature"]].drop_vars(["time", "lat", "lon"]), session, mode="r+")
    session.commit("remove a 1.5 K bias")
    on_branch = xr.open_dataset(repo_dir, engine="icechunk", branch="bias-corrected")
    main_mean = float(on_main.temperature.mean())
    branch_mean = float(on_branch.temperature.mean())
    print(f"mean on main {main_mean:.2f} K, on bias-corrected {branch_mean:.2f} K")
    assert abs((main_mean - branch_mean) - 1.5) < 1e-3

    step("time travel")
    by_id = xr.open_zarr(repo.readonly_session(snapshot_id=first_commit).store, consolidated=False)
    by_tag = xr.open_dataset(repo_dir, engine="icechunk", tag="first-week")
    by_date = xr.open_zarr(
        repo.readonly_session(branch="main", as_of=between_commits).store, consolidated=False
    )
    for label, ds in [("snapshot id", by_id), ("tag 'first-week'", by_tag), (f"as_of {between_commits:%H:%M:%S}", by_date)]:
        print(f"by {label}: {ds.sizes['time']} days, {ds.time.values[0]!s:.10} .. {ds.time.values[-1]!s:.10}")
        xr.testing.assert_identical(ds.load(), first_week)

    step("history of main")
    for info in repo.ancestry(branch="main"):
        print(f"{info.id}  {info.written_at:%Y-%m-%d %H:%M:%S}  {info.message}")
    print(f"\nThe repository is at {repo_dir}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        target = Path(sys.argv[1]).resolve()
        if target.exists() and any(target.iterdir()):
            sys.exit(f"{target} exists and is not empty; pass a new directory")
    else:
        target = Path(tempfile.mkdtemp(prefix="icechunk-quickstart-")) / "repo"
    main(target)
