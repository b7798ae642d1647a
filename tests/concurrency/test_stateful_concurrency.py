"""A hypothesis state machine: concurrent sessions on a repository versus a small model.

The repository (in memory) holds arrays of 4 one-element chunks at the root.  Sessions on
several branches write chunks, delete chunks, set attributes, create and delete arrays,
commit (plain, or rebasing with ConflictDetector / BasicConflictSolver), rebase, discard,
fork (the fork is pickled), write through forks and merge them back.  Branches are created
and reset; tags are created and deleted.

The model is written independently of the implementation, from API.md §3 and §5: a session
is a base snapshot plus a change set (created/deleted arrays by name, attribute and chunk
edits by node id); a commit's record plays the transaction log.  Conflict detection,
solver outcomes (including the exact conflicts a RebaseFailedError lists), merge rules and
the resulting data are all predicted by the model, and after every step each branch's
history and data must equal the model's.
"""

from __future__ import annotations

import itertools
import pickle
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
import zarr
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from zarr.core.sync import sync

import icechunk as ic
from icechunk.conflicts import BasicConflictSolver, ConflictDetector, ConflictType, VersionSelection

ROOT = "1CECHNKREP0F1RSTCMT0"
NAMES = ["a", "b", "c", "d"]
BRANCHES = ["main", "dev", "exp"]
TAGS = ["t1", "t2", "t3"]
NCHUNKS = 4
FILL = -1
MAX_SESSIONS = 4

SOLVERS = {
    "detector": ConflictDetector(),
    "ours": BasicConflictSolver(),
    "theirs": BasicConflictSolver(on_chunk_conflict=VersionSelection.UseTheirs),
    "fail": BasicConflictSolver(on_chunk_conflict=VersionSelection.Fail),
    "strict-delete": BasicConflictSolver(fail_on_delete_of_updated_array=True),
}


# ---- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arr:
    id: int
    attrs: int | None
    chunks: tuple[int, ...]


State = dict[str, Arr]


@dataclass
class Changes:
    created: dict[str, int] = field(default_factory=dict)  # name -> id of arrays made here
    deleted: dict[str, int] = field(default_factory=dict)  # base name -> id of deleted base arrays
    attrs: dict[int, int] = field(default_factory=dict)  # id -> attribute value
    chunks: dict[int, dict[int, int | None]] = field(default_factory=dict)  # id -> idx -> value (None: deleted)

    def empty(self) -> bool:
        return not (self.created or self.deleted or self.attrs or any(self.chunks.values()))

    def copy(self) -> Changes:
        return Changes(dict(self.created), dict(self.deleted), dict(self.attrs), {k: dict(v) for k, v in self.chunks.items()})


def view(base: State, ch: Changes) -> State:
    out: State = {}
    for name, arr in base.items():
        if ch.deleted.get(name) == arr.id:
            continue
        chunks = list(arr.chunks)
        for idx, value in ch.chunks.get(arr.id, {}).items():
            chunks[idx] = FILL if value is None else value
        out[name] = Arr(arr.id, ch.attrs.get(arr.id, arr.attrs), tuple(chunks))
    for name, nid in ch.created.items():
        chunks = [FILL] * NCHUNKS
        for idx, value in ch.chunks.get(nid, {}).items():
            chunks[idx] = FILL if value is None else value
        out[name] = Arr(nid, ch.attrs.get(nid), tuple(chunks))
    return out


@dataclass
class Record:
    """What a commit changed (the transaction log) and the state it produced."""

    sid: str
    parent: str | None
    after: State
    deleted_ids: set[int] = field(default_factory=set)
    attr_ids: set[int] = field(default_factory=set)
    chunk_ids: dict[int, set[int]] = field(default_factory=dict)


def record_of(sid: str, parent: str, base: State, ch: Changes) -> Record:
    new_ids = set(ch.created.values())
    deleted = set(ch.deleted.values())
    return Record(
        sid,
        parent,
        view(base, ch),
        deleted,
        {i for i in ch.attrs if i not in new_ids},
        {i: set(m) for i, m in ch.chunks.items() if m and i not in deleted},
    )


Conflict = tuple[ConflictType, str, tuple[int, ...] | None]


def detect(ours: Changes, base: State, theirs: Record) -> list[Conflict]:
    now = view(base, ours)
    paths = {a.id: n for n, a in base.items()} | {a.id: n for n, a in now.items()}

    def path(nid: int) -> str:
        return "/" + paths[nid]

    out: list[Conflict] = []
    our_deleted = set(ours.deleted.values())
    new_ids = set(ours.created.values())
    for name in ours.created:
        existing = theirs.after.get(name)
        if existing is not None and existing.id not in our_deleted:
            out.append((ConflictType.NewNodeConflictsWithExistingNode, "/" + name, None))
    for nid in ours.attrs:
        if nid in new_ids:
            continue
        if nid in theirs.attr_ids:
            out.append((ConflictType.ZarrMetadataDoubleUpdate, path(nid), None))
        if nid in theirs.deleted_ids:
            out.append((ConflictType.ZarrMetadataUpdateOfDeletedArray, path(nid), None))
    for nid, edits in ours.chunks.items():
        if not edits or nid in our_deleted:
            continue
        if nid in theirs.deleted_ids:
            out.append((ConflictType.ChunksUpdatedInDeletedArray, path(nid), None))
            continue
        if nid in theirs.attr_ids:
            out.append((ConflictType.ChunksUpdatedInUpdatedArray, path(nid), None))
        common = set(edits) & theirs.chunk_ids.get(nid, set())
        if common:
            out.append((ConflictType.ChunkDoubleUpdate, path(nid), tuple(sorted(common))))
    for name, nid in ours.deleted.items():
        if nid in theirs.attr_ids or nid in theirs.chunk_ids:
            out.append((ConflictType.DeleteOfUpdatedArray, "/" + name, None))
    return out


def unresolved(solver: str, conflicts: list[Conflict]) -> list[Conflict]:
    if solver == "detector":
        return conflicts
    out = []
    for c in conflicts:
        if c[0] == ConflictType.ChunkDoubleUpdate and solver != "fail":
            continue
        if c[0] == ConflictType.DeleteOfUpdatedArray and solver != "strict-delete":
            continue
        out.append(c)
    return out


@dataclass
class ModelSession:
    real: ic.Session
    branch: str
    base: str
    changes: Changes = field(default_factory=Changes)


@dataclass
class ModelFork:
    real: ic.ForkSession
    parent: ModelSession
    base: State
    changes: Changes = field(default_factory=Changes)


class RebaseFails(Exception):
    def __init__(self, at: str, conflicts: list[Conflict]) -> None:
        self.at, self.conflicts = at, conflicts


# ---- the machine ----------------------------------------------------------------------------


class ConcurrencyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ids = itertools.count(1)
        self.values = itertools.count(100)
        self.sessions: list[ModelSession] = []
        self.forks: list[ModelFork] = []
        self.verified: set[tuple[str, str]] = set()

    @initialize()
    def setup(self) -> None:
        self.repo = ic.Repository.create(ic.in_memory_storage())
        session = self.repo.writable_session("main")
        root = zarr.open_group(session.store, mode="w")
        state: State = {}
        for name in ("a", "b"):
            _create(root, name)
            state[name] = Arr(next(self.ids), None, (FILL,) * NCHUNKS)
        sid = session.commit("setup")
        self.records: dict[str, Record] = {ROOT: Record(ROOT, None, {}), sid: Record(sid, ROOT, state)}
        self.branches = {"main": sid}
        self.tags: dict[str, str] = {}
        self.deleted_tags: set[str] = set()
        for _ in range(3):  # concurrent sessions from the start
            self.sessions.append(ModelSession(self.repo.writable_session("main"), "main", sid))

    # -- model helpers

    def state(self, sid: str) -> State:
        return self.records[sid].after

    def ancestry(self, sid: str) -> list[str]:
        out = []
        current: str | None = sid
        while current is not None:
            out.append(current)
            current = self.records[current].parent
        return out

    def replay(self, s: ModelSession, solver: str) -> None:
        """Rebase the model session onto its branch tip (raises RebaseFails like the real one)."""
        tip = self.branches[s.branch]
        if tip == s.base:
            return
        chain = self.ancestry(tip)
        if s.base not in chain:
            raise RebaseFails(tip, [])
        for sid in reversed(chain[: chain.index(s.base)]):
            theirs = self.records[sid]
            conflicts = detect(s.changes, self.state(s.base), theirs)
            left = unresolved(solver, conflicts)
            if left:
                raise RebaseFails(sid, left)
            if solver == "theirs":
                now = view(self.state(s.base), s.changes)
                for kind, path, coords in conflicts:
                    if kind == ConflictType.ChunkDoubleUpdate:
                        edits = s.changes.chunks[now[path[1:]].id]
                        for idx in coords or ():
                            edits.pop(idx, None)
            s.base = sid
            for name, nid in list(s.changes.deleted.items()):
                node = theirs.after.get(name)
                if node is None or node.id != nid:
                    del s.changes.deleted[name]

    def session_view(self, s: ModelSession) -> State:
        return view(self.state(s.base), s.changes)

    def pick(self, items: list, index: int):  # type: ignore[no-untyped-def]
        return items[index % len(items)]

    # -- sessions

    @precondition(lambda self: len(self.sessions) < MAX_SESSIONS)
    @rule(branch=st.sampled_from(BRANCHES))
    def open_session(self, branch: str) -> None:
        if branch not in self.branches:
            return
        real = self.repo.writable_session(branch)
        assert real.snapshot_id == self.branches[branch]
        self.sessions.append(ModelSession(real, branch, self.branches[branch]))

    @precondition(lambda self: self.sessions)
    @rule(i=st.integers(0, 99), name=st.sampled_from(NAMES), idx=st.integers(0, NCHUNKS - 1), delete=st.booleans())
    def write_chunk(self, i: int, name: str, idx: int, delete: bool) -> None:
        s = self.pick(self.sessions, i)
        arr = self.session_view(s).get(name)
        if arr is None:
            return
        if delete:
            sync(s.real.store.delete(f"{name}/c/{idx}"))
            s.changes.chunks.setdefault(arr.id, {})[idx] = None
        else:
            value = next(self.values)
            zarr.open_array(s.real.store, path=name, mode="a")[idx] = value
            s.changes.chunks.setdefault(arr.id, {})[idx] = value

    @precondition(lambda self: self.sessions)
    @rule(i=st.integers(0, 99), name=st.sampled_from(NAMES))
    def set_attrs(self, i: int, name: str) -> None:
        s = self.pick(self.sessions, i)
        arr = self.session_view(s).get(name)
        if arr is None:
            return
        value = next(self.values)
        zarr.open_array(s.real.store, path=name, mode="a").attrs["v"] = value
        s.changes.attrs[arr.id] = value

    @precondition(lambda self: self.sessions)
    @rule(i=st.integers(0, 99), name=st.sampled_from(NAMES))
    def create_array(self, i: int, name: str) -> None:
        s = self.pick(self.sessions, i)
        if name in self.session_view(s):
            return
        _create(zarr.open_group(s.real.store, mode="a"), name)
        s.changes.created[name] = next(self.ids)

    @precondition(lambda self: self.sessions)
    @rule(i=st.integers(0, 99), name=st.sampled_from(NAMES))
    def delete_array(self, i: int, name: str) -> None:
        s = self.pick(self.sessions, i)
        arr = self.session_view(s).get(name)
        if arr is None:
            return
        sync(s.real.store.delete(f"{name}/zarr.json"))
        ch = s.changes
        if ch.created.get(name) == arr.id:
            del ch.created[name]
        else:
            ch.deleted[name] = arr.id
        ch.attrs.pop(arr.id, None)
        ch.chunks.pop(arr.id, None)

    @precondition(lambda self: self.sessions)
    @rule(i=st.integers(0, 99))
    def discard(self, i: int) -> None:
        s = self.pick(self.sessions, i)
        s.real.discard_changes()
        s.changes = Changes()
        for fork in [f for f in self.forks if f.parent is s]:
            self.forks.remove(fork)  # a fork of discarded work is dropped too

    @precondition(lambda self: self.sessions)
    @rule(i=st.integers(0, 99))
    def commit(self, i: int) -> None:
        self._commit(self.pick(self.sessions, i), None)

    @precondition(lambda self: self.sessions)
    @rule(i=st.integers(0, 99), solver=st.sampled_from(list(SOLVERS)))
    def commit_rebasing(self, i: int, solver: str) -> None:
        self._commit(self.pick(self.sessions, i), solver)

    def _commit(self, s: ModelSession, solver: str | None) -> None:
        real_solver = None if solver is None else SOLVERS[solver]
        base_before = s.base
        if solver is None:
            if s.changes.empty():
                with pytest.raises(ic.SessionStateError, match="no changes"):
                    s.real.commit("c")
                event("commit: nothing to commit")
                return
            if self.branches[s.branch] != s.base:
                with pytest.raises(ic.ConflictError) as info:
                    s.real.commit("c")
                assert not isinstance(info.value, ic.RebaseFailedError)
                assert (info.value.expected_parent, info.value.actual_parent) == (s.base, self.branches[s.branch])
                event("commit: conflict error")
                return
        else:
            try:
                self.replay(s, solver)
            except RebaseFails as fail:
                self._expect_rebase_failure(s, fail, lambda: s.real.commit("c", rebase_with=real_solver))
                event(f"commit: rebase failed ({len(fail.conflicts)} conflicts)")
                return
            if s.changes.empty():
                with pytest.raises(ic.SessionStateError, match="no changes"):
                    s.real.commit("c", rebase_with=real_solver)
                assert s.real.snapshot_id == s.base
                return
        sid = s.real.commit("c", rebase_with=real_solver)
        event(f"commit: ok{' after rebase' if s.base != base_before else ''}")
        props = self.repo.lookup_snapshot(sid).metadata
        if s.base != base_before:
            assert props["__icechunk"] == {"rebase_attempts": 1}
        else:
            assert "__icechunk" not in props
        self.records[sid] = record_of(sid, s.base, self.state(s.base), s.changes)
        self.branches[s.branch] = sid
        self._close(s)

    def _expect_rebase_failure(self, s: ModelSession, fail: RebaseFails, call) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(ic.RebaseFailedError) as info:
            call()
        err = info.value
        assert err.snapshot == fail.at
        got = sorted(
            (c.conflict_type.value, c.path, tuple(sorted(map(tuple, c.conflicted_chunks))) if c.conflicted_chunks else None)
            for c in err.conflicts
        )
        want = sorted((t.value, p, tuple((x,) for x in coords) if coords else None) for t, p, coords in fail.conflicts)
        assert got == want
        assert s.real.snapshot_id == s.base  # the model stopped at the same commit

    @precondition(lambda self: self.sessions)
    @rule(i=st.integers(0, 99), solver=st.sampled_from(list(SOLVERS)))
    def rebase(self, i: int, solver: str) -> None:
        s = self.pick(self.sessions, i)
        try:
            self.replay(s, solver)
        except RebaseFails as fail:
            self._expect_rebase_failure(s, fail, lambda: s.real.rebase(SOLVERS[solver]))
            event("rebase: failed")
            for kind, _, _ in fail.conflicts:
                event(f"conflict: {kind.name}")
            return
        moved = s.real.snapshot_id != s.base
        s.real.rebase(SOLVERS[solver])
        event(f"rebase: ok{' (moved)' if moved else ''}")
        assert s.real.snapshot_id == s.base
        self._check_session(s)

    def _close(self, s: ModelSession) -> None:
        self.sessions.remove(s)
        for fork in [f for f in self.forks if f.parent is s]:
            self.forks.remove(fork)

    def _check_session(self, s: ModelSession) -> None:
        assert read_state(s.real) == summarize(self.session_view(s))
        assert s.real.has_uncommitted_changes == (not s.changes.empty())

    # -- forks

    @precondition(lambda self: self.sessions and len(self.forks) < 3)
    @rule(i=st.integers(0, 99))
    def fork(self, i: int) -> None:
        s = self.pick(self.sessions, i)
        real = pickle.loads(pickle.dumps(s.real.fork()))
        assert isinstance(real, ic.ForkSession)
        self.forks.append(ModelFork(real, s, self.session_view(s)))

    @precondition(lambda self: self.forks)
    @rule(i=st.integers(0, 99), name=st.sampled_from(NAMES), idx=st.integers(0, NCHUNKS - 1), attrs=st.booleans())
    def write_fork(self, i: int, name: str, idx: int, attrs: bool) -> None:
        f = self.pick(self.forks, i)
        arr = view(f.base, f.changes).get(name)
        if arr is None:
            return
        value = next(self.values)
        if attrs:
            zarr.open_array(f.real.store, path=name, mode="a").attrs["v"] = value
            f.changes.attrs[arr.id] = value
        else:
            zarr.open_array(f.real.store, path=name, mode="a")[idx] = value
            f.changes.chunks.setdefault(arr.id, {})[idx] = value

    @precondition(lambda self: self.forks)
    @rule(i=st.integers(0, 99))
    def merge(self, i: int) -> None:
        f = self.pick(self.forks, i)
        self.forks.remove(f)
        s = f.parent
        target = s.changes
        live = {a.id for a in self.session_view(s).values()}
        touched = {nid for nid, m in f.changes.chunks.items() if m} | set(f.changes.attrs)
        clash = any(nid in target.attrs or nid in target.created.values() for nid in f.changes.attrs)
        if clash or not touched <= live:
            before = s.real.status()
            with pytest.raises(ic.SessionStateError) as info:
                s.real.merge(f.real)
            assert info.value.kind == "merge-failed"
            assert s.real.status() == before
            event("merge: failed")
            return
        s.real.merge(f.real)
        event("merge: ok")
        for nid, value in f.changes.attrs.items():
            target.attrs[nid] = value
        for nid, edits in f.changes.chunks.items():
            target.chunks.setdefault(nid, {}).update(edits)
        self._check_session(s)

    # -- refs

    @rule(name=st.sampled_from(BRANCHES[1:]), source=st.sampled_from(BRANCHES))
    def create_branch(self, name: str, source: str) -> None:
        if source not in self.branches:
            return
        if name in self.branches:
            with pytest.raises(ic.AlreadyExistsError):
                self.repo.create_branch(name, self.branches[source])
            return
        self.repo.create_branch(name, self.branches[source])
        self.branches[name] = self.branches[source]

    @rule(branch=st.sampled_from(BRANCHES), i=st.integers(0, 999), guarded=st.booleans())
    def reset_branch(self, branch: str, i: int, guarded: bool) -> None:
        if branch not in self.branches:
            return
        # any snapshot but the root one (it has no root group, which the model does not track)
        # (in creation order: ids are random, and the draws must not depend on them)
        targets = [sid for sid in self.records if sid != ROOT]
        target = targets[i % len(targets)]
        if guarded:
            self.repo.reset_branch(branch, target, from_snapshot_id=self.branches[branch])
        else:
            self.repo.reset_branch(branch, target)
        self.branches[branch] = target

    @rule(tag=st.sampled_from(TAGS), branch=st.sampled_from(BRANCHES))
    def create_tag(self, tag: str, branch: str) -> None:
        if branch not in self.branches:
            return
        if tag in self.tags or tag in self.deleted_tags:
            with pytest.raises(ic.AlreadyExistsError):
                self.repo.create_tag(tag, self.branches[branch])
            return
        self.repo.create_tag(tag, self.branches[branch])
        self.tags[tag] = self.branches[branch]

    @precondition(lambda self: self.tags)
    @rule(i=st.integers(0, 99))
    def delete_tag(self, i: int) -> None:
        tag = self.pick(sorted(self.tags), i)
        self.repo.delete_tag(tag)
        del self.tags[tag]
        self.deleted_tags.add(tag)

    def teardown(self) -> None:
        if hasattr(self, "repo"):
            event(f"commits per example: {min(len(self.records) - 2, 10)}+")

    # -- invariants

    @invariant()
    def refs_match(self) -> None:
        if not hasattr(self, "repo"):
            return
        assert self.repo.list_branches() == set(self.branches)
        assert self.repo.list_tags() == set(self.tags)
        for tag, sid in self.tags.items():
            assert self.repo.lookup_tag(tag) == sid

    @invariant()
    def branches_match(self) -> None:
        if not hasattr(self, "repo"):
            return
        for branch, tip in self.branches.items():
            assert self.repo.lookup_branch(branch) == tip
            assert [s.id for s in self.repo.ancestry(branch=branch)] == self.ancestry(tip)
            if (branch, tip) in self.verified:
                continue  # snapshots are immutable: data checked once per (branch, tip)
            assert read_state(self.repo.readonly_session(branch)) == summarize(self.state(tip))
            self.verified.add((branch, tip))


def _create(root: zarr.Group, name: str) -> None:
    root.create_array(name, shape=(NCHUNKS,), chunks=(1,), dtype="i8", fill_value=FILL)


def read_state(session: ic.Session) -> dict[str, tuple[int | None, tuple[int, ...]]]:
    root = zarr.open_group(session.store, mode="r")
    return {
        name: (arr.attrs.get("v"), tuple(int(x) for x in arr[:]))  # type: ignore[union-attr]
        for name, arr in root.arrays()
    }


def summarize(state: State) -> dict[str, tuple[int | None, tuple[int, ...]]]:
    return {name: (arr.attrs, arr.chunks) for name, arr in state.items()}


ConcurrencyMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
test_concurrency_machine = ConcurrencyMachine.TestCase


class SlowConcurrencyMachine(ConcurrencyMachine):
    pass


SlowConcurrencyMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=80, deadline=None, suppress_health_check=list(HealthCheck)
)
test_concurrency_machine_slow = pytest.mark.slow(SlowConcurrencyMachine.TestCase)
