"""Interop with the reference implementation on spec-1 repositories (icechunk 1.1.21).

Both directions: a repository written by this package is read by the reference with identical
values, refs and history, and vice versa; then each commits on top of the other's repository.
"""

from __future__ import annotations

import pytest

from tests.interop import scripts
from tests.interop.reference import run_reference

pytestmark = pytest.mark.interop
REF = "1.1.21"


def test_reference_reads_our_spec1_repo(tmp_path) -> None:
    path = str(tmp_path / "ours")
    scripts.write_repo(path, spec=1)
    ours = scripts.read_repo(path)
    theirs = run_reference(REF, scripts.READ, path)
    assert theirs == ours
    assert ours["tags"] == ["v1"]
    assert ours["nodes"]["main"]["/g/small"]["values"] == [0, 1, 2, 3, -1, -1]
    # the reference commits on top of our repository; we read its commit
    sid = run_reference(REF, scripts.COMMIT_ON_TOP, path)["sid"]
    after = scripts.read_repo(path)
    assert after["tips"]["main"] == sid
    assert after["ancestry"]["main"][0] == "reference commit on top"
    assert after["nodes"]["main"]["/added_by_reference"]["values"] == [1, 2, 3]
    assert after == run_reference(REF, scripts.READ, path)


def test_we_read_the_reference_spec1_repo(tmp_path) -> None:
    path = str(tmp_path / "theirs")
    ids = run_reference(REF, scripts.WRITE, path, "0")
    theirs = run_reference(REF, scripts.READ, path)
    ours = scripts.read_repo(path)
    assert ours == theirs
    assert ours["ancestry"]["dev"] == ["dev change", "data", "structure", "Repository initialized"]
    assert "/g/small" not in ours["nodes"]["dev"]
    assert ours["tips"]["main"] == ids["second"]
    # we commit on top of the reference's repository; the reference reads our commit
    sid = scripts.commit_on_top(path)
    after = run_reference(REF, scripts.READ, path)
    assert after["tips"]["main"] == sid
    assert after == scripts.read_repo(path)
