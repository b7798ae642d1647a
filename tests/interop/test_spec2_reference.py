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
