"""xr.open_dataset(..., engine="icechunk"): repository versions without building sessions by hand."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from icechunk import Repository, local_filesystem_storage  # noqa: E402
from icechunk.xarray import to_icechunk  # noqa: E402
from icechunk.xarray._backend import IcechunkBackendEntrypoint, storage_for  # noqa: E402


def _ds(value: float) -> xr.Dataset:
    return xr.Dataset(
        {"v": (("x",), np.full(4, value))},
        coords={"x": np.arange(4)},
        attrs={"value": value},
    )


@pytest.fixture
def history(tmp_path: Path) -> dict[str, object]:
    """A repo with main: v=1 then v=2 (tag v1 on the first), branch dev: v=3, a group on main."""
    path = tmp_path / "repo"
    repo = Repository.create(local_filesystem_storage(str(path)))
    session = repo.writable_session("main")
    to_icechunk(_ds(1), session)
    first = session.commit("one")
    repo.create_tag("v1", first)
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    session = repo.writable_session("main")
    to_icechunk(_ds(2), session, mode="w")
    to_icechunk(_ds(20), session, group="sub")
    second = session.commit("two")
    repo.create_branch("dev", second)
    session = repo.writable_session("dev")
    to_icechunk(_ds(3), session, mode="a")
    session.commit("three")
    return {"path": path, "repo": repo, "first": first, "second": second, "between": between}


def _value(ds: xr.Dataset) -> float:
    values = np.unique(ds["v"].values)
    assert len(values) == 1
    return float(values[0])


def test_versions_by_path(history: dict[str, object]) -> None:
    path = history["path"]
    assert _value(xr.open_dataset(path, engine="icechunk")) == 2  # default: main
    assert _value(xr.open_dataset(str(path), engine="icechunk", branch="dev")) == 3
    assert _value(xr.open_dataset(path, engine="icechunk", tag="v1")) == 1
    assert _value(xr.open_dataset(path, engine="icechunk", snapshot_id=history["first"])) == 1
    assert _value(xr.open_dataset(path, engine="icechunk", branch="main", as_of=history["between"])) == 1
    assert _value(xr.open_dataset(f"file://{path}", engine="icechunk")) == 2
    assert _value(xr.open_dataset(path, engine="icechunk", group="sub")) == 20
    ds = xr.open_dataset(path, engine="icechunk", tag="v1")
    xr.testing.assert_identical(ds.load(), _ds(1))


def test_lazy_dask_chunks_and_drop_variables(history: dict[str, object]) -> None:
    pytest.importorskip("dask")
    ds = xr.open_dataset(history["path"], engine="icechunk", chunks={})
    assert ds["v"].chunks is not None
    assert _value(ds.compute()) == 2
    ds = xr.open_dataset(history["path"], engine="icechunk", drop_variables=["v"])
    assert "v" not in ds


def test_objects_and_explicit_storage(history: dict[str, object]) -> None:
    repo: Repository = history["repo"]  # type: ignore[assignment]
    assert _value(xr.open_dataset(repo, engine="icechunk", branch="dev")) == 3
    session = repo.readonly_session(tag="v1")
    assert _value(xr.open_dataset(session, engine="icechunk")) == 1
    assert _value(xr.open_dataset(session.store, engine="icechunk")) == 1
    storage = local_filesystem_storage(str(history["path"]))
    assert _value(xr.open_dataset(storage, engine="icechunk", tag="v1")) == 1
    assert _value(xr.open_dataset("ignored-label", engine="icechunk", storage=storage, branch="dev")) == 3
    with pytest.raises(ValueError, match="cannot be used when opening a Session"):
        xr.open_dataset(session, engine="icechunk", branch="main")


def test_datatree(history: dict[str, object]) -> None:
    tree = xr.open_datatree(history["path"], engine="icechunk")
    assert _value(tree.to_dataset()) == 2
    assert _value(tree["sub"].to_dataset()) == 20


def test_guess_can_open(history: dict[str, object], tmp_path: Path) -> None:
    entry = IcechunkBackendEntrypoint()
    path = history["path"]
    assert entry.guess_can_open(path)
    assert entry.guess_can_open(str(path))
    assert entry.guess_can_open(history["repo"])
    assert not entry.guess_can_open(tmp_path / "nothing")
    assert not entry.guess_can_open("s3://bucket/prefix")
    assert not entry.guess_can_open(42)
    # engine detection without engine=: only icechunk claims the directory
    assert _value(xr.open_dataset(path)) == 2
    # a spec-1 layout is recognized by its main branch ref file
    legacy = tmp_path / "legacy"
    (legacy / "refs" / "branch.main").mkdir(parents=True)
    (legacy / "refs" / "branch.main" / "ref.json").write_text(json.dumps({"snapshot": "x"}))
    assert entry.guess_can_open(legacy)


def test_storage_for_urls(tmp_path: Path) -> None:
    assert storage_for(tmp_path) == local_filesystem_storage(str(tmp_path))
    s3 = storage_for("s3://my-bucket/some/prefix")
    assert "my-bucket" in repr(s3)
    assert "some/prefix" in repr(s3)
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        storage_for("ftp://host/repo")
    with pytest.raises(ValueError, match="no bucket"):
        storage_for("s3:///prefix")


def test_open_dataset_parameters_are_explicit() -> None:
    from xarray.backends.plugins import detect_parameters

    params = detect_parameters(IcechunkBackendEntrypoint.open_dataset)
    for name in ("branch", "tag", "snapshot_id", "as_of", "group", "storage", "drop_variables"):
        assert name in params
