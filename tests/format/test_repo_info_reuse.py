"""Re-encoding a repo info by copying byte runs of the previous encoding (format/_reuse.py).

Every build is compared with the stock ``flatbuffers.Builder`` output of the same value, over
random histories that hit each reason a run must be cut: inserts at the front, dropped
snapshots (parents re-pointed), entries with metadata (shared strings), tags, status
changes, ops-log truncation and going back to older values.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from typing import Any

import flatbuffers
import pytest

from icechunk._errors import FormatError
from icechunk.format import _reuse
from icechunk.format import repo_info as repo_info_module
from icechunk.format._fastbuilder import FastBuilder
from icechunk.format.ids import SnapshotId
from icechunk.format.repo_info import (
    NewCommit,
    RepoInfo,
    RepoStatusChanged,
    RepoStatusRecord,
    SnapshotEntry,
    TagCreated,
    UpdateEntry,
    _build,
    encode_repo_info,
)


@pytest.fixture(autouse=True)
def _stock_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests compare with the stock builder: keep the append layout out of the way."""
    monkeypatch.setattr(repo_info_module, "APPEND_LAYOUT", False)


def _sid(rng: random.Random, low: bool = False) -> SnapshotId:
    raw = bytes(rng.getrandbits(8) for _ in range(12))
    return SnapshotId(b"\x00" + raw[1:] if low else raw)  # low: sorts first


def _histories(seed: int, steps: int) -> Iterator[RepoInfo]:
    """A repository's successive repo infos: most steps reuse the previous objects (as a
    commit does), some rebuild entries or go back to an older value."""
    rng = random.Random(seed)
    root = _sid(rng)
    info = RepoInfo(
        tags={},
        branches={"main": root},
        deleted_tags=set(),
        snapshots={root: SnapshotEntry(root, None, 1_000, "Repository initialized", {"__icechunk": {"is_root": True}})},
        status=RepoStatusRecord(),
        latest_updates=[],
    )
    seen = [info]
    clock = 2_000
    for i in range(steps):
        clock += rng.randrange(1, 50)
        new = dataclasses.replace(
            info,
            tags=dict(info.tags),
            branches=dict(info.branches),
            snapshots=dict(info.snapshots),
            latest_updates=list(info.latest_updates),
        )
        action = rng.random()
        if action < 0.55 or len(new.snapshots) < 4:
            branch = rng.choice(["main", "main", "dev"])
            parent = new.branches.get(branch, new.branches["main"])
            sid = _sid(rng, low=rng.random() < 0.15)
            metadata: dict[str, Any] = {"author": f"a{i % 3}"} if rng.random() < 0.15 else {}
            message = "é" * rng.randrange(0, 9) + f" commit {i}"
            new.snapshots[sid] = SnapshotEntry(sid, parent, clock, message, metadata)
            new.branches[branch] = sid
            backup = f"overwritten/{i}" if rng.random() < 0.8 else None
            new.latest_updates.insert(0, UpdateEntry(NewCommit(branch, sid), clock, backup))
        elif action < 0.65:
            # expiration-like: drop a snapshot no ref points to, re-point its children
            refs = set(new.branches.values()) | set(new.tags.values())
            victims = [e for e in new.snapshots.values() if e.id not in refs and e.parent_id is not None]
            if victims:
                victim = rng.choice(victims)
                del new.snapshots[victim.id]
                for e in list(new.snapshots.values()):
                    if e.parent_id == victim.id:
                        new.snapshots[e.id] = dataclasses.replace(e, parent_id=victim.parent_id)
        elif action < 0.75:
            name = f"t{i}"
            new.tags[name] = rng.choice(list(new.snapshots))
            new.latest_updates.insert(0, UpdateEntry(TagCreated(name), clock))
        elif action < 0.8:
            status = RepoStatusRecord(set_at=clock, reason=rng.choice([None, "maintenance"]))
            new.latest_updates.insert(0, UpdateEntry(RepoStatusChanged(status), clock))
        elif action < 0.88:
            new.latest_updates = new.latest_updates[: rng.randrange(0, len(new.latest_updates) + 1)]
        elif action < 0.94:
            # the same entries as fresh objects (a decoded file written by another process)
            new.snapshots = {k: dataclasses.replace(e) for k, e in new.snapshots.items()}
        else:
            new = rng.choice(seen)  # back to an older value
        seen.append(new)
        info = new
        yield info


@pytest.mark.parametrize("seed", range(12))
def test_runs_give_the_stock_builders_bytes(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    copied = []
    real = _reuse._copy_run

    def counting(*args: Any) -> int:
        n = real(*args)
        copied.append(n)
        return n

    monkeypatch.setattr(_reuse, "_copy_run", counting)
    items = 0
    for info in _histories(seed, 120):
        assert _build(info, FastBuilder) == _build(info, flatbuffers.Builder)
        items += len(info.snapshots) + len(info.latest_updates)
    assert sum(copied) > items // 3  # runs were really copied, not written object by object


def test_a_parent_missing_now_is_still_an_error_after_a_good_encoding() -> None:
    history = list(_histories(3, 40))
    info = history[-1]
    encode_repo_info(info)  # the layout the next build would copy from
    orphan = next(e for e in info.snapshots.values() if e.parent_id is not None and e.parent_id not in info.branches.values())
    broken = dataclasses.replace(info, snapshots=dict(info.snapshots))
    del broken.snapshots[orphan.parent_id]  # type: ignore[arg-type]
    broken.tags = {k: v for k, v in broken.tags.items() if v != orphan.parent_id}
    broken.branches = {k: v for k, v in broken.branches.items() if v != orphan.parent_id}
    with pytest.raises(FormatError, match="is not listed"):
        encode_repo_info(broken)
    assert _build(info, FastBuilder) == _build(info, flatbuffers.Builder)  # the layout is intact


def test_each_thread_copies_from_its_own_previous_encoding() -> None:
    import threading

    results: dict[int, bool] = {}

    def run(seed: int) -> None:
        results[seed] = all(
            _build(info, FastBuilder) == _build(info, flatbuffers.Builder) for info in _histories(seed, 60)
        )

    threads = [threading.Thread(target=run, args=(s,)) for s in (21, 22, 23)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {21: True, 22: True, 23: True}
