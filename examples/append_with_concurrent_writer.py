"""Append along time while another process commits to the same branch; rebase resolves it.

    python examples/append_with_concurrent_writer.py [REPO_DIR]

Writer A (this process) appends a new day of observations (dask-backed) along ``time``.
While A's session is still open, writer B, a separate process with its own session, corrects
the static ``elevation`` field and commits first.  A's plain commit would now fail with a
ConflictError (its base is no longer the branch tip); ``commit(rebase_with=ConflictDetector())``
replays A's changes on top of B's commit, because they touch different arrays, and commits.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

import icechunk
from icechunk.xarray import to_icechunk

NY, NX = 16, 16


def day(start: str, value: float, *, chunked: bool) -> xr.Dataset:
    """One day of hourly observations; ``chunked`` makes the data dask-backed."""
    values = np.full((24, NY, NX), value, dtype="f4")
    data = da.from_array(values, chunks=(6, NY // 2, NX // 2)) if chunked else values
    return xr.Dataset(
        {"obs": (("time", "y", "x"), data, {"units": "mm"})},
        coords={"time": pd.date_range(start, periods=24, freq="h")},
    )


def writer_b(repo_dir: str) -> None:
    """The concurrent writer: fix the elevation field, commit to main."""
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(repo_dir))
    session = repo.writable_session("main")
    corrected = xr.Dataset({"elevation": (("y", "x"), np.full((NY, NX), 105.0))})
    to_icechunk(corrected, session, mode="r+")  # values only: no metadata changes
    sid = session.commit("writer B: corrected elevation")
    print(f"[B] committed {sid} (pid {multiprocessing.current_process().pid})")


def main(repo_dir: Path) -> None:
    print(f"repository: {repo_dir}")
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(repo_dir)))
    first = day("2024-03-01", 1.0, chunked=False)
    first["elevation"] = (("y", "x"), np.full((NY, NX), 100.0))
    session = repo.writable_session("main")
    to_icechunk(first, session, encoding={"obs": {"chunks": (6, NY // 2, NX // 2)}})
    print("[A] initial commit", session.commit("day 1"))

    # A starts appending day 2 ("a-": only variables with the time dimension are touched)
    session_a = repo.writable_session("main")
    to_icechunk(day("2024-03-02", 2.0, chunked=True), session_a, append_dim="time", mode="a-")
    print(f"[A] appended day 2 in a session based on {session_a.snapshot_id}; not committed yet")

    # meanwhile, B (another process) commits to main
    process = multiprocessing.get_context("spawn").Process(target=writer_b, args=(str(repo_dir),))
    process.start()
    process.join()
    assert process.exitcode == 0, "writer B failed"

    try:
        session_a.commit("day 2", rebase_with=None)
    except icechunk.ConflictError as err:
        print(f"[A] plain commit refused: {type(err).__name__}: the branch moved")
    else:
        raise AssertionError("B committed first, so a plain commit must conflict")
    sid = session_a.commit("writer A: day 2", rebase_with=icechunk.ConflictDetector())
    attempts = repo.lookup_snapshot(sid).metadata.get("__icechunk", {})
    print(f"[A] committed {sid} after rebasing onto B's commit ({attempts})")

    ds = xr.open_dataset(repo_dir, engine="icechunk", branch="main")
    print(f"main: {ds.sizes['time']} hours, obs days {np.unique(ds.obs.values).tolist()}, "
          f"elevation {np.unique(ds.elevation.values).tolist()}")
    assert ds.sizes["time"] == 48
    assert np.unique(ds.obs.values).tolist() == [1.0, 2.0]
    assert np.unique(ds.elevation.values).tolist() == [105.0]
    print("history:", [info.message for info in repo.ancestry(branch="main")])


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="icechunk-append-")) / "repo"
    main(target)
