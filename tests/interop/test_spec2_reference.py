"""Interop with the reference implementation on spec-2 repositories (icechunk 2.2.0, Python 3.12).

Both directions, plus commits on top of each other's repositories.  Skipped with a reason when
Python 3.12 or the package index is unavailable.
"""

from __future__ import annotations

import pytest

from tests.interop import scripts
from tests.interop.reference import run_reference

pytestmark = pytest.mark.interop
REF = "2.2.0"


def test_reference_reads_our_spec2_repo(tmp_path) -> None:
    path = str(tmp_path / "ours")
    scripts.write_repo(path, spec=2)
    ours = scripts.read_repo(path)
    theirs = run_reference(REF, scripts.READ, path)
    assert theirs == ours
    sid = run_reference(REF, scripts.COMMIT_ON_TOP, path)["sid"]
    after = scripts.read_repo(path)
    assert after["tips"]["main"] == sid
    assert after["nodes"]["main"]["/added_by_reference"]["values"] == [1, 2, 3]
    assert after == run_reference(REF, scripts.READ, path)


def test_we_read_the_reference_spec2_repo(tmp_path) -> None:
    path = str(tmp_path / "theirs")
    ids = run_reference(REF, scripts.WRITE, path, "2")
    theirs = run_reference(REF, scripts.READ, path)
    ours = scripts.read_repo(path)
    assert ours == theirs
    assert ours["tips"]["main"] == ids["second"]
    sid = scripts.commit_on_top(path)
    after = run_reference(REF, scripts.READ, path)
    assert after["tips"]["main"] == sid
    assert after == scripts.read_repo(path)


def test_reference_reads_a_repo_info_in_the_append_layout(tmp_path, monkeypatch) -> None:
    """Many commits in one process: the repo object is re-encoded keeping earlier tables in
    place (with dead tables and parent-index patches) and the reference still reads it."""
    import numpy as np
    import zarr

    import icechunk as ic
    from icechunk.format import _repo_info_append
    from icechunk.format import repo_info as repo_info_module

    appended: list[int] = []
    real = _repo_info_append.place_tail

    def counting(*args: object) -> None:
        appended.append(1)
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(repo_info_module, "place_tail", counting)
    path = str(tmp_path / "append")
    repo = ic.Repository.create(ic.local_filesystem_storage(path))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="x", shape=(60,), chunks=(1,), dtype="int32", fill_value=0)
    zarr.create_array(session.store, name="g/big", shape=(60, 40), chunks=(10, 10), dtype="f8", fill_value=0)
    session.commit("arrays")
    for i in range(60):
        if i == 20:
            repo.create_branch("dev", repo.lookup_branch("main"))
        if i == 40:
            repo.create_tag("v40", repo.lookup_branch("main"))
        session = repo.writable_session("dev" if i % 5 == 0 and i > 20 else "main")
        zarr.open_array(session.store, path="x", mode="a")[i] = i + 1
        session.commit(f"commit {i}", metadata={"i": i} if i % 7 == 0 else None)
    assert len(appended) > 40
    ours = scripts.read_repo(path)
    assert ours == run_reference(REF, scripts.READ, path)
    assert np.count_nonzero(ours["nodes"]["main"]["/x"]["values"]) > 40
    sid = run_reference(REF, scripts.COMMIT_ON_TOP, path)["sid"]
    assert scripts.read_repo(path)["tips"]["main"] == sid
