"""Forks (API.md §3.2-3.4), merging them back, and ``icechunk.distributed`` (§14, §18.1)."""

from __future__ import annotations

import multiprocessing
import pickle
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import zarr
from zarr.core.buffer import cpu
from zarr.core.sync import sync

import icechunk as ic
from icechunk.distributed import extract_session, merge_sessions
from icechunk.format.manifest import ArrayManifest, RefKind
from icechunk.session import ForkSession
from icechunk.testing._concurrency import fork_worker


@pytest.fixture
def repo(tmp_path) -> ic.Repository:
    """Local storage (forks in other processes must see the same chunk objects) with ``/x`` (8x4)."""
    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "repo")))
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="w")
    root.create_array("x", shape=(8, 4), chunks=(2, 4), dtype="f8", fill_value=np.nan)
    session.commit("create x")
    return repo


def _x(session: ic.Session) -> zarr.Array:
    return zarr.open_array(session.store, path="x", mode="a")


def test_fork_basics(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    base = session.snapshot_id
    clean = session.fork()
    assert isinstance(clean, ForkSession)
    assert clean.snapshot_id == base  # nothing uncommitted: no anonymous snapshot needed
    _x(session)[0:2] = 1.0
    zarr.open_group(session.store, mode="a").create_array("y", shape=(2,), chunks=(1,), dtype="i4", fill_value=0)
    fork = session.fork()
    assert fork.snapshot_id != base
    assert repo.lookup_snapshot(fork.snapshot_id).parent_id == base
    assert type(next(iter(repo.ops_log())).kind).__name__ == "NewDetachedSnapshot"
    assert repo.lookup_branch("main") == base  # forking moves no branch
    assert not fork.read_only and fork.branch is None and not fork.has_uncommitted_changes
    assert fork.mode == ic.SessionMode.readonly  # documented quirk (§19.7)
    # the fork sees the parent's uncommitted state; the parent keeps its changes
    np.testing.assert_array_equal(_x(fork)[0:2], np.ones((2, 4)))
    assert "y" in zarr.open_group(fork.store, mode="r")
    assert session.has_uncommitted_changes and session.snapshot_id == base
    assert isinstance(fork.store.session, ForkSession)
    # a read-only session cannot fork
    with pytest.raises(ic.SessionStateError, match="cannot fork a read-only session") as info:
        repo.readonly_session("main").fork()
    assert info.value.kind == "cannot-fork-read-only-session"


def test_fork_refuses_commit_amend_rebase(repo: ic.Repository) -> None:
    fork = repo.writable_session("main").fork()
    _x(fork)[0:2] = 2.0
    for call in (
        lambda: fork.commit("no"),
        lambda: fork.commit("no", rebase_with=ic.ConflictDetector()),
        lambda: fork.amend("no"),
        lambda: fork.rebase(ic.ConflictDetector()),
    ):
        with pytest.raises(ic.SessionStateError, match="not allowed") as info:
            call()
        assert info.value.kind == "commit-not-allowed"
    assert fork.has_uncommitted_changes  # still usable
    copy = pickle.loads(pickle.dumps(fork))
    with pytest.raises(ic.SessionStateError):
        copy.commit("no")


def test_pickling_rules(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    for obj in (session, session.store):
        with pytest.raises(ValueError, match="fork") as info:
            pickle.dumps(obj)
        assert "to_icechunk" in str(info.value) and "read-only" in str(info.value)
    rearrange = repo.rearrange_session("main")
    with pytest.raises(ValueError):
        pickle.dumps(rearrange)
    fork = session.fork()
    _x(fork)[2:4] = 3.0
    copy = pickle.loads(pickle.dumps(fork))
    assert isinstance(copy, ForkSession) and not copy.read_only
    np.testing.assert_array_equal(_x(copy)[2:4], np.full((2, 4), 3.0))
    store_copy = pickle.loads(pickle.dumps(fork.store))
    assert isinstance(store_copy.session, ForkSession) and not store_copy.read_only
    np.testing.assert_array_equal(_x(store_copy.session)[2:4], np.full((2, 4), 3.0))
    # each unpickled copy is an independent change set
    _x(copy)[4:6] = 4.0
    assert np.isnan(_x(fork)[4, 0]) and np.isnan(_x(store_copy.session)[4, 0])
    ro = pickle.loads(pickle.dumps(repo.readonly_session("main")))
    assert ro.read_only
    with pytest.raises(ic.ReadOnlyError):
        sync(ro.store.set("x/c/0/0", cpu.Buffer.from_bytes(b"12345678")))


def test_merge_forks_in_process(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    forks = [pickle.loads(pickle.dumps(session.fork())) for _ in range(4)]
    for i, fork in enumerate(forks):
        _x(fork)[2 * i : 2 * i + 2] = float(i)
    session.merge(*forks)
    expected = np.repeat(np.arange(4.0), 8).reshape(8, 4)
    np.testing.assert_array_equal(_x(session)[:], expected)
    assert session.status().updated_chunks == {"/x": [[0, 0], [1, 0], [2, 0], [3, 0]]}
    sid = session.commit("merged")
    np.testing.assert_array_equal(zarr.open_array(repo.readonly_session(snapshot_id=sid).store, path="x")[:], expected)


def test_merge_sessions_helper(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    forks = [session.fork() for _ in range(4)]
    for i, fork in enumerate(forks):
        _x(fork)[2 * i : 2 * i + 2] = 10.0 + i
    merged = merge_sessions(forks[0], [forks[1], [forks[2]]], [[forks[3]]])
    assert merged is forks[0]
    session.merge(merged)
    np.testing.assert_array_equal(_x(session)[:, 0], np.repeat(10.0 + np.arange(4), 2))
    with pytest.raises(TypeError, match="Received 'Session'") as info:
        merge_sessions(forks[0], session)
    assert "Session.merge" in str(info.value)
    array = zarr.open_array(forks[1].store, path="x", mode="r")
    assert extract_session(array, axis=0, keepdims=True) == forks[1]


def test_later_merge_wins_on_chunks(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    first, second = session.fork(), session.fork()
    _x(first)[0:2] = 1.0
    _x(second)[0:2] = 2.0
    session.merge(first, second)
    assert _x(session)[0, 0] == 2.0
    other = repo.writable_session("main")
    a, b = other.fork(), other.fork()
    _x(a)[0:2] = 1.0
    _x(b)[0:2] = 2.0
    other.merge(b, a)
    assert _x(other)[0, 0] == 1.0


def test_merge_direction_and_receivers(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    fork = session.fork()
    with pytest.raises(ic.SessionStateError) as info:
        fork.merge(session)
    assert info.value.kind == "merge-not-allowed"
    other = session.fork()
    _x(other)[0:2] = 5.0
    fork.merge(other)  # fork <- fork is fine
    assert _x(fork)[0, 0] == 5.0
    with pytest.raises(ic.ReadOnlyError):
        repo.readonly_session("main").merge(fork)
    rearrange = repo.rearrange_session("main")
    with pytest.raises(ic.SessionStateError) as info:
        rearrange.merge(fork)
    assert info.value.kind == "rearrange-session-only"


def test_forks_of_forks(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    _x(session)[0:2] = 0.0
    level1 = session.fork()
    _x(level1)[2:4] = 1.0
    level2 = pickle.loads(pickle.dumps(level1.fork()))
    assert level2.snapshot_id not in (level1.snapshot_id, session.snapshot_id)
    np.testing.assert_array_equal(_x(level2)[0:4, 0], [0, 0, 1, 1])  # sees both ancestors' state
    _x(level2)[4:6] = 2.0
    level3 = level2.fork()
    _x(level3)[6:8] = 3.0
    level2.merge(level3)
    level1.merge(level2)
    session.merge(level1)
    sid = session.commit("three levels")
    data = zarr.open_array(repo.readonly_session(snapshot_id=sid).store, path="x", mode="r")[:, 0]
    np.testing.assert_array_equal(data, [0, 0, 1, 1, 2, 2, 3, 3])
    assert [s.id for s in repo.ancestry(branch="main")][1] != level1.snapshot_id  # anon snapshots stay off the branch


# ---- merge conflicts ------------------------------------------------------------------------


def test_merge_conflicting_metadata_fails_and_leaves_session_usable(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    good, left, right = session.fork(), session.fork(), session.fork()
    _x(good)[0:2] = 1.0
    _x(left).attrs["units"] = "m"
    _x(left)[2:4] = 2.0
    _x(right).attrs["units"] = "km"
    session.merge(good, left)
    before = session.status()
    with pytest.raises(ic.SessionStateError, match="metadata") as info:
        session.merge(right)
    assert info.value.kind == "merge-failed"
    assert session.status() == before  # the failed merge changed nothing
    assert dict(_x(session).attrs) == {"units": "m"}
    # still usable: commit what was merged
    sid = session.commit("merged what could be")
    committed = zarr.open_array(repo.readonly_session(snapshot_id=sid).store, path="x", mode="r")
    np.testing.assert_array_equal(committed[0:4, 0], [1, 1, 2, 2])
    assert dict(committed.attrs) == {"units": "m"}


def test_merge_same_metadata_is_fine(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    a, b = session.fork(), session.fork()
    for i, fork in enumerate((a, b)):
        root = zarr.open_group(fork.store, mode="a")
        root.create_group("shared", attributes={"v": 1})
        root.create_array("shared/arr", shape=(4,), chunks=(2,), dtype="i4", fill_value=0)[2 * i : 2 * i + 2] = i + 1
        _x(fork).attrs["same"] = True
    session.merge(a, b)
    root = zarr.open_group(session.store, mode="r")
    np.testing.assert_array_equal(root["shared/arr"][:], [1, 1, 2, 2])
    assert dict(root["x"].attrs) == {"same": True}
    status = session.status()
    assert status.new_groups == {"/shared"} and status.new_arrays == {"/shared/arr"}
    session.commit("merged")


def test_merge_new_nodes_with_different_metadata_fail(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    a, b = session.fork(), session.fork()
    zarr.open_group(a.store, mode="a").create_array("new", shape=(4,), chunks=(2,), dtype="i4")
    zarr.open_group(b.store, mode="a").create_array("new", shape=(6,), chunks=(2,), dtype="i4")
    session.merge(a)
    with pytest.raises(ic.SessionStateError) as info:
        session.merge(b)
    assert info.value.kind == "merge-failed"
    c = session.fork()
    zarr.open_group(c.store, mode="a").create_group("new2")
    d = session.fork()
    zarr.open_group(d.store, mode="a").create_array("new2", shape=(1,), chunks=(1,), dtype="i1")
    session.merge(c)
    with pytest.raises(ic.SessionStateError):
        session.merge(d)  # a group and an array at the same path


def test_merge_delete_vs_change_fails(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    deleter, writer = session.fork(), session.fork()
    sync(deleter.store.delete("x/zarr.json"))
    _x(writer)[0:2] = 1.0
    session.merge(writer)
    with pytest.raises(ic.SessionStateError) as info:
        session.merge(deleter)
    assert info.value.kind == "merge-failed"
    other = repo.writable_session("main")
    d2, w2 = other.fork(), other.fork()
    sync(d2.store.delete("x/zarr.json"))
    _x(w2).attrs["k"] = 1
    other.merge(d2)
    with pytest.raises(ic.SessionStateError):
        other.merge(w2)
    # deleting a node that only the receiver created (it sits in the fork's base) is a clash too
    third = repo.writable_session("main")
    zarr.open_group(third.store, mode="a").create_group("made_here")
    fork = third.fork()
    sync(fork.store.delete("made_here/zarr.json"))
    with pytest.raises(ic.SessionStateError):
        third.merge(fork)
    assert "made_here" in zarr.open_group(third.store, mode="r")


def test_merge_delete_alone_applies(repo: ic.Repository) -> None:
    session = repo.writable_session("main")
    fork = session.fork()
    sync(fork.store.delete("x/zarr.json"))
    session.merge(fork)
    assert "x" not in zarr.open_group(session.store, mode="r")
    assert session.status().deleted_arrays == {"/x"}


# ---- across processes -----------------------------------------------------------------------


def test_fork_merge_across_processes(repo: ic.Repository) -> None:
    """4 spawned workers write disjoint regions through a pickled fork (then through a pickled
    fork store); the coordinator merges the returned forks in one commit."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=ctx) as pool:
        for round_, pickled in enumerate(["fork", "store"]):
            session = repo.writable_session("main")
            zarr.open_group(session.store, mode="a").attrs["made_by"] = pickled  # uncommitted
            base = session.snapshot_id
            fork = session.fork()
            payload = pickle.dumps(fork if pickled == "fork" else fork.store)
            value = 100.0 * (round_ + 1)
            futures = [
                pool.submit(fork_worker, payload, "x", (2 * i, 2 * i + 2), value + i) for i in range(4)
            ]
            returned = [pickle.loads(f.result(timeout=120)) for f in futures]
            forks = [r if isinstance(r, ForkSession) else r.session for r in returned]
            assert all(isinstance(f, ForkSession) for f in forks)
            if pickled == "fork":
                session.merge(*forks)
            else:
                session.merge(merge_sessions(forks))
            sid = session.commit(f"four workers ({pickled})")
            snap = repo.readonly_session(snapshot_id=sid)
            data = zarr.open_array(snap.store, path="x", mode="r")[:]
            np.testing.assert_array_equal(data, np.repeat(value + np.arange(4), 8).reshape(8, 4))
            assert dict(zarr.open_group(snap.store, mode="r").attrs) == {"made_by": pickled}
            assert repo.lookup_snapshot(sid).parent_id == base


def _write_100k(fork: ForkSession, how: str) -> None:
    if how == "store":  # one zarr key at a time (~6 s)
        store = fork.store

        async def write() -> None:
            for i in range(N_BIG):
                await store.set(f"big/c/{i}", cpu.Buffer.from_bytes(np.int64(i).tobytes()))

        sync(write())
        return
    # the bulk path (what set_virtual_refs_arr and the dask integration use): one table
    engine = fork._engine
    node = engine.get_array("/big")
    inline = np.empty(N_BIG, dtype=object)
    inline[:] = [np.int64(i).tobytes() for i in range(N_BIG)]
    engine.set_chunk_table(
        node,
        ArrayManifest(
            node_id=node.id,
            coords=np.arange(N_BIG, dtype=np.uint32).reshape(-1, 1),
            kind=np.full(N_BIG, RefKind.INLINE, dtype=np.uint8),
            chunk_id=np.zeros((N_BIG, 12), dtype=np.uint8),
            offset=np.zeros(N_BIG, dtype=np.uint64),
            length=np.full(N_BIG, 8, dtype=np.uint64),
            inline=inline,
            location=np.full(N_BIG, None, dtype=object),
            etag=np.full(N_BIG, None, dtype=object),
            last_modified=np.zeros(N_BIG, dtype=np.uint32),
        ),
    )


N_BIG = 100_000


@pytest.mark.parametrize("how", ["bulk", pytest.param("store", marks=pytest.mark.slow)])
def test_fork_pickle_is_compact_for_100k_chunk_writes(repo: ic.Repository, how: str) -> None:
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_array(
        "big", shape=(N_BIG,), chunks=(1,), dtype="i8", fill_value=0, compressors=None
    )
    fork = session.fork()
    _write_100k(fork, how)
    best_dump = best_load = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        payload = pickle.dumps(fork)
        best_dump = min(best_dump, time.perf_counter() - start)
        start = time.perf_counter()
        copy = pickle.loads(payload)
        best_load = min(best_load, time.perf_counter() - start)
    print(f"\n100k chunk writes ({how}): fork pickle {len(payload)} bytes, dump {best_dump:.3f}s, load {best_load:.3f}s")
    assert len(payload) < 1_000_000  # ~4 bytes per chunk write (5.1 MB before the columns were compacted)
    assert best_dump < 2.0 and best_load < 2.0
    session.merge(copy)
    assert len(session.status().updated_chunks["/big"]) == N_BIG
    sid = session.commit("100k chunks")
    [info] = [i for i in repo.list_manifest_files(sid) if i.num_chunk_refs == N_BIG]
    assert repo.inspect_manifest(info.id)["total_inline"] == N_BIG
    array = zarr.open_array(repo.readonly_session(snapshot_id=sid).store, path="big", mode="r")
    sample = np.random.default_rng(0).choice(N_BIG, 50, replace=False)
    for i in sample.tolist():
        assert array[i] == i


# ---- the change-set wire format -------------------------------------------------------------


def test_change_set_round_trip_every_column() -> None:
    """Native, virtual (etag / last-modified), inline and deleted rows survive msgpack+zstd."""
    from icechunk.core.changeset import TOMBSTONE, ChangeSet, ChunkChanges
    from icechunk.core.fork import dump_changes, load_changes
    from icechunk.core.metadata import parse_metadata
    from icechunk.format.ids import ChunkId, NodeId

    nid, other = NodeId.random(), NodeId.random()
    table = ArrayManifest.from_columns(
        nid,
        np.array([[0, 0], [0, 1], [1, 0], [1, 1], [7, 3]], dtype=np.uint32),
        np.array([RefKind.NATIVE, RefKind.VIRTUAL, RefKind.INLINE, TOMBSTONE, RefKind.VIRTUAL], dtype=np.uint8),
        chunk_id=[bytes(ChunkId.random()), b"\0" * 12, b"\0" * 12, b"\0" * 12, b"\0" * 12],
        offset=np.array([0, 10, 0, 0, 2**40], dtype=np.uint64),
        length=np.array([100, 20, 3, 0, 5], dtype=np.uint64),
        inline=[None, None, b"\x00\xffz", None, None],
        location=[None, "s3://bucket/ü/file.nc", None, None, "vcc://c/x"],
        etag=[None, '"etag"', None, None, None],
        last_modified=np.array([0, 0, 0, 0, 1_700_000_000], dtype=np.uint32),
    )
    changes = ChunkChanges(nid, 2)
    changes.add_table(table)
    array_json = (
        b'{"zarr_format":3,"node_type":"array","shape":[16,8],"data_type":"int8",'
        b'"chunk_grid":{"name":"regular","configuration":{"chunk_shape":[2,2]}},'
        b'"chunk_key_encoding":{"name":"default","configuration":{"separator":"/"}},'
        b'"fill_value":0,"codecs":[{"name":"bytes"}],"attributes":{"a":1}}'
    )
    original = ChangeSet(
        new_groups={"/g": (NodeId.random(), b'{"zarr_format":3,"node_type":"group"}')},
        new_arrays={"/g/x": (nid, parse_metadata(array_json))},
        updated_groups={other: b'{"zarr_format":3,"node_type":"group","attributes":{"b":2}}'},
        deleted_arrays={"/old": NodeId.random()},
        chunks={nid: changes},
    )
    payload = dump_changes(original)
    back = load_changes(payload)
    assert back.new_groups == original.new_groups
    assert back.new_arrays["/g/x"][0] == nid
    assert back.new_arrays["/g/x"][1].user_data == array_json
    assert back.updated_groups == original.updated_groups
    assert back.deleted_arrays == original.deleted_arrays
    assert back.chunks[nid].table() == table
    assert back.chunks[nid].get((1, 1)) == (True, None)  # the tombstone
    with pytest.raises(ic.SessionStateError) as info:
        load_changes(payload[:-7])
    assert info.value.kind == "pickle"
    with pytest.raises(ic.SessionStateError):
        load_changes(b"\x01" + payload[1:])  # an unknown format version


def test_chunk_changes_keep_newest_edit_across_overlay_batches_and_merges() -> None:
    """Scalar edits, queued batches and merged change sets: the newest edit of a chunk wins.

    Random sequences of the four ways edits arrive are checked against a plain dict, reading
    back both point lookups (before and after folding) and the folded table.
    """
    from icechunk.core.changeset import TOMBSTONE, ChunkChanges
    from icechunk.format.ids import ChunkId, NodeId
    from icechunk.format.manifest import ChunkRef

    rng = np.random.default_rng(7)
    nid = NodeId.random()
    ids = [ChunkId.random() for _ in range(4)]

    def random_edits(n: int) -> dict[tuple[int, ...], ChunkRef | None]:
        edits: dict[tuple[int, ...], ChunkRef | None] = {}
        for _ in range(n):
            coords = (int(rng.integers(6)), int(rng.integers(3)))
            if rng.random() < 0.2:
                edits[coords] = None
            else:
                edits[coords] = ChunkRef(kind=RefKind.NATIVE, chunk_id=ids[int(rng.integers(4))], length=int(rng.integers(1, 99)))
        return edits

    def as_table(edits: dict[tuple[int, ...], ChunkRef | None]) -> ArrayManifest:
        rows = {c: (r if r is not None else ChunkRef(kind=TOMBSTONE)) for c, r in edits.items()}  # type: ignore[arg-type]
        return ArrayManifest.from_refs(nid, 2, rows)

    for _ in range(60):
        changes, model = ChunkChanges(nid, 2), {}
        for _ in range(int(rng.integers(1, 9))):
            edits = random_edits(int(rng.integers(1, 7)))
            how = int(rng.integers(4))
            if how == 0:  # scalar writes and deletes
                for c, r in edits.items():
                    changes.set(c, r)
            elif how == 1:  # a columnar batch
                changes.add_table(as_table(edits))
            else:  # merging another change set: scalar-only (in-process fork) or a table (unpickled)
                other = ChunkChanges(nid, 2)
                if how == 2:
                    for c, r in edits.items():
                        other.set(c, r)
                else:
                    other.add_table(as_table(edits))
                changes.merge_from(other)
            model.update(edits)
            if rng.random() < 0.3:
                probe = (int(rng.integers(6)), int(rng.integers(3)))
                assert changes.get(probe) == ((True, model[probe]) if probe in model else (False, None))
        assert not changes.is_empty()
        table = changes.table()
        assert sorted(map(tuple, table.coords.tolist())) == sorted(model)
        for row, coords in enumerate(map(tuple, table.coords.tolist())):
            expected = model[coords]
            if expected is None:
                assert int(table.kind[row]) == TOMBSTONE
            else:
                assert table.ref(row) == expected
        for coords, ref in model.items():
            assert changes.get(coords) == (True, ref)
