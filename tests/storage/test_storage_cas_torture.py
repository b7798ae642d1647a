"""Compare-and-swap torture: 4 spawned processes x 100 increments of one counter object.

Every increment is read-with-version, +1, conditional put, retried on conflict.  The final
count must be exactly 400 and the log must hold each increment exactly once: no lost update.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from icechunk.storage import Storage, local_filesystem_storage
from icechunk.testing._cas import run_cas_torture
from icechunk.testing.moto import MotoS3Server

PROCESSES = 4
INCREMENTS = 100


def _check(storage: Storage) -> dict:
    result = run_cas_torture(storage, processes=PROCESSES, increments=INCREMENTS)
    doc = result["doc"]
    assert doc["count"] == PROCESSES * INCREMENTS
    counts = Counter(doc["log"])
    expected = {f"{w}:{i}" for w in range(PROCESSES) for i in range(INCREMENTS)}
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values())
    assert sum(s["successes"] for s in result["stats"]) == PROCESSES * INCREMENTS
    return result


def test_cas_torture_local_disk(tmp_path: Path) -> None:
    result = _check(local_filesystem_storage(tmp_path / "repo"))
    # contention really happened (otherwise the test proves little)
    assert sum(s["conflicts"] for s in result["stats"]) > 0


def test_cas_torture_local_disk_with_fsync(tmp_path: Path) -> None:
    _check(local_filesystem_storage(tmp_path / "repo", fsync=True))


def test_cas_torture_s3_on_moto(moto_server: MotoS3Server) -> None:
    _check(moto_server.storage())  # a fresh random prefix
