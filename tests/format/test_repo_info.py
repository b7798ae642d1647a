"""Repo-info codec: fixture byte identity, decoded values, ops-log paging, robustness."""

from __future__ import annotations

import dataclasses
import random
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icechunk._errors import ErrorKind, FormatError, InvalidInputError
from icechunk.format._flatbuf import root_table
from icechunk.format.header import FileType, decode_envelope, encode_envelope
from icechunk.format.ids import SnapshotId, crockford_decode
from icechunk.format.repo_info import (
    Availability,
    BranchCreated,
    BranchDeleted,
    BranchReset,
    CommitAmended,
    ConfigChanged,
    ExpirationRan,
    FeatureFlagChanged,
    GCRan,
    MetadataChanged,
    NewCommit,
    NewDetachedSnapshot,
    RepoInfo,
    RepoInitialized,
    RepoMigrated,
    RepoStatusChanged,
    RepoStatusRecord,
    SnapshotEntry,
    TagCreated,
    TagDeleted,
    UpdateEntry,
    append_update,
    backup_name,
    decode_repo_info,
    encode_repo_info,
    peek_branch_tip,
)
from tests.format.strategies import json_values, map_keys

S = SnapshotId.parse
OVERWRITTEN = [  # oldest state first (a larger number is an older backup)
    "repo.30728015042554.27T6D6NFTPCQXTJBEFCG",
    "repo.30728015042549.YZX1GC44MRM1V795DZDG",
    "repo.30728015042547.4HHF7R3WV2A6VT6NK6A0",
    "repo.30728015042546.0RN1RXP968Q9Y64SA4CG",
    "repo.30728015042545.9P66Q5YJD1265B993420",
    "repo.30728015042544.BCH3H8Z5S23WBECWG040",
    "repo.30728015042543.A7JKCWTTZ8FJZMYWYAV0",
    "repo.30728015042542.2RR5M7076E66RAT55TJG",
    "repo.30728015042537.BGYNXZ3QHQFXYJHRPF6G",
    "repo.30728015042536.PTXGHH5DYGZ1JY7JBK70",
]
REPO_FILES = [
    "test-repo-v2/repo",
    "test-repo-v2-migrated/repo",
    *(f"test-repo-v2/overwritten/{name}" for name in OVERWRITTEN),
]


def _read(fixtures_dir: Path, rel: str) -> bytes:
    return (fixtures_dir / rel).read_bytes()


# ---- fixtures: byte identity and decoded values ----------------------------------------------


@pytest.mark.parametrize("rel", REPO_FILES)
def test_fixture_reencodes_byte_for_byte(fixtures_dir: Path, rel: str) -> None:
    raw = _read(fixtures_dir, rel)
    info = decode_repo_info(raw, rel)
    assert info.implementation == "ic-2.0.0-alpha.7"
    assert encode_repo_info(info, implementation=info.implementation) == raw


def test_default_implementation_name_is_ours(fixtures_dir: Path) -> None:
    info = decode_repo_info(_read(fixtures_dir, "test-repo-v2/repo"))
    out = encode_repo_info(info)
    assert out[12:36].rstrip(b" ").decode().startswith("ic-py-")
    assert decode_repo_info(out) == info


def test_test_repo_v2_values(fixtures_dir: Path) -> None:
    info = decode_repo_info(_read(fixtures_dir, "test-repo-v2/repo"))
    assert info.spec_version == 2
    assert info.branches == {
        "main": S("2768FV3XW5ZXYM84XNNG"),
        "my-branch": S("H7T8YA6KR5TH32F3PS10"),
    }
    assert info.tags == {
        "it also works!": S("H7T8YA6KR5TH32F3PS10"),
        "it works!": S("QTP2RTYS5YQW8RPSQ93G"),
    }
    assert info.deleted_tags == {"deleted"}
    assert info.status == RepoStatusRecord(Availability.ONLINE, 1775664957441354, None)
    assert info.metadata == {}
    assert info.repo_before_updates is None
    assert info.enabled_feature_flags is None
    assert info.disabled_feature_flags is None
    assert info.config is not None
    assert len(info.config) == 934

    expected = {  # id: (parent, flushed_at, message)
        "1CECHNKREP0F1RSTCMT0": (None, 1775664957441284, "Repository initialized"),
        "7T7DSS71H2JNBBZQ9M8G": ("1CECHNKREP0F1RSTCMT0", 1775664957445952, "empty structure"),
        "ZA24GZGPNK3GH682Q1R0": ("7T7DSS71H2JNBBZQ9M8G", 1775664957451322, "fill data"),
        "2768FV3XW5ZXYM84XNNG": ("ZA24GZGPNK3GH682Q1R0", 1775664957453095, "set virtual chunk"),
        "QTP2RTYS5YQW8RPSQ93G": ("2768FV3XW5ZXYM84XNNG", 1775664957455715, "delete a chunk"),
        "H7T8YA6KR5TH32F3PS10": ("QTP2RTYS5YQW8RPSQ93G", 1775664957463413, "some more structure"),
    }
    assert {str(k) for k in info.snapshots} == set(expected)
    for sid, (parent, flushed_at, message) in expected.items():
        entry = info.snapshots[S(sid)]
        assert entry.id == S(sid)
        assert entry.parent_id == (S(parent) if parent else None)
        assert (entry.flushed_at, entry.message) == (flushed_at, message)
        assert entry.pruned_ancestor_tx_logs is None
        want_meta = {"__icechunk": {"is_root": True}} if parent is None else {}
        assert entry.metadata == want_meta

    kinds = [u.kind for u in info.latest_updates]
    assert kinds == [
        TagCreated("it also works!"),
        NewCommit("my-branch", S("H7T8YA6KR5TH32F3PS10")),
        TagDeleted("deleted", S("QTP2RTYS5YQW8RPSQ93G")),
        TagCreated("deleted"),
        TagCreated("it works!"),
        NewCommit("my-branch", S("QTP2RTYS5YQW8RPSQ93G")),
        BranchCreated("my-branch"),
        NewCommit("main", S("2768FV3XW5ZXYM84XNNG")),
        NewCommit("main", S("ZA24GZGPNK3GH682Q1R0")),
        NewCommit("main", S("7T7DSS71H2JNBBZQ9M8G")),
        RepoInitialized(),
    ]
    assert [u.backup_path for u in info.latest_updates] == [None, *reversed(OVERWRITTEN)]
    times = [u.updated_at for u in info.latest_updates]
    assert times[0] == 1775664957464916
    assert times[-1] == 1775664957441366
    assert times == sorted(times, reverse=True)
    assert len(set(times)) == len(times)


def test_test_repo_v2_migrated_values(fixtures_dir: Path) -> None:
    info = decode_repo_info(_read(fixtures_dir, "test-repo-v2-migrated/repo"))
    assert info.branches == {
        "main": S("NXH3M0HJ7EEJ0699DPP0"),
        "my-branch": S("XDZ162T1TYBEJMK99NPG"),
    }
    assert info.tags == {
        "it works!": S("4QF8JA0YPDN51MHSSYVG"),
        "it also works!": S("XDZ162T1TYBEJMK99NPG"),
    }
    assert info.deleted_tags == {"deleted"}
    assert info.status.set_at == 1739999515981700
    parents = {
        str(k): (str(v.parent_id) if v.parent_id else None) for k, v in info.snapshots.items()
    }
    assert parents == {
        "P874YS3J196959RDHX7G": None,
        "GC4YVH5SKBPEZCENYQE0": "P874YS3J196959RDHX7G",
        "7XAF0Q905SH4938DN9CG": "GC4YVH5SKBPEZCENYQE0",
        "NXH3M0HJ7EEJ0699DPP0": "7XAF0Q905SH4938DN9CG",
        "4QF8JA0YPDN51MHSSYVG": "NXH3M0HJ7EEJ0699DPP0",
        "XDZ162T1TYBEJMK99NPG": "4QF8JA0YPDN51MHSSYVG",
    }
    root = info.snapshots[S("P874YS3J196959RDHX7G")]
    assert root.metadata == {"__root": True}
    assert root.flushed_at == 1739999515981700
    updates = info.latest_updates
    assert len(updates) == 12
    assert all(u.backup_path is None for u in updates)
    assert updates[0] == UpdateEntry(RepoMigrated(1, 2), 1775664957505640)
    assert updates[-1] == UpdateEntry(RepoInitialized(), 1739999515981700)
    by_kind = {type(u.kind).__name__ + getattr(u.kind, "name", ""): u.updated_at for u in updates}
    assert by_kind["TagDeleteddeleted"] == 1739999516025456
    assert by_kind["TagCreatedit works!"] == 1739999516024456
    assert by_kind["TagCreateddeleted"] == 1739999516024457
    assert by_kind["BranchCreatedmy-branch"] == 1739999516038746


def test_each_backup_is_the_state_after_the_entry_naming_it(fixtures_dir: Path) -> None:
    current = decode_repo_info(_read(fixtures_dir, "test-repo-v2/repo"))
    for entry in current.latest_updates[1:]:
        backup = decode_repo_info(
            _read(fixtures_dir, f"test-repo-v2/overwritten/{entry.backup_path}")
        )
        assert backup.latest_updates[0].kind == entry.kind
        assert backup.latest_updates[0].updated_at == entry.updated_at
        assert backup.latest_updates[0].backup_path is None
    fresh = decode_repo_info(_read(fixtures_dir, f"test-repo-v2/overwritten/{OVERWRITTEN[0]}"))
    assert list(fresh.snapshots) == [S("1CECHNKREP0F1RSTCMT0")]
    assert fresh.branches == {"main": S("1CECHNKREP0F1RSTCMT0")}
    assert fresh.latest_updates == [UpdateEntry(RepoInitialized(), 1775664957441366)]
    assert fresh.config is not None


# ---- the update protocol ---------------------------------------------------------------------


def test_backup_name_vector() -> None:
    suffix = crockford_decode("PTXGHH5DYGZ1JY7JBK70")
    assert len(suffix) == 12
    assert backup_name(1775664957464, suffix) == "repo.30728015042536.PTXGHH5DYGZ1JY7JBK70"
    assert (
        backup_name(0, bytes(12), prefix="config.yaml")
        == "config.yaml.32503680000000.00000000000000000000"
    )
    with pytest.raises(InvalidInputError):
        backup_name(1775664957464, b"short")
    with pytest.raises(InvalidInputError):
        backup_name(32503680000001, bytes(12))


def _apply_ref_change(info: RepoInfo, kind: object, target: RepoInfo) -> RepoInfo:
    """Reproduce the refs/snapshot side of an update (the ops log is append_update's job)."""
    tags, branches = dict(info.tags), dict(info.branches)
    deleted, snapshots = set(info.deleted_tags), dict(info.snapshots)
    if isinstance(kind, NewCommit):
        snapshots[kind.new_snap_id] = target.snapshots[kind.new_snap_id]
        branches[kind.branch] = kind.new_snap_id
    elif isinstance(kind, BranchCreated):
        branches[kind.name] = target.branches[kind.name]
    elif isinstance(kind, TagCreated):
        tags[kind.name] = target.tags[kind.name]
    elif isinstance(kind, TagDeleted):
        assert tags.pop(kind.name) == kind.previous_snap_id
        deleted.add(kind.name)
    else:  # pragma: no cover - the fixture has no other kinds
        raise AssertionError(kind)
    return dataclasses.replace(
        info, tags=tags, branches=branches, deleted_tags=deleted, snapshots=snapshots
    )


@pytest.mark.parametrize("append_layout", [False, True])
def test_append_update_replays_the_fixture_history(
    fixtures_dir: Path, append_layout: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replaying the reference's updates gives its states; the stock layout gives its very
    bytes, the append layout (later builds keep earlier tables in place) the same content."""
    import icechunk.format.repo_info as repo_info_module

    monkeypatch.setattr(repo_info_module, "APPEND_LAYOUT", append_layout)
    names = [f"test-repo-v2/overwritten/{n}" for n in OVERWRITTEN] + ["test-repo-v2/repo"]
    raws = [_read(fixtures_dir, n) for n in names]
    states = [decode_repo_info(r) for r in raws]
    state = states[0]
    for step in range(1, len(states)):
        target = states[step]
        newest = target.latest_updates[0]
        state = append_update(state, newest.kind, newest.updated_at, backup=OVERWRITTEN[step - 1])
        assert state.latest_updates == target.latest_updates
        assert state.repo_before_updates is None
        state = _apply_ref_change(state, newest.kind, target)
        assert state == target
        encoded = encode_repo_info(state, implementation="ic-2.0.0-alpha.7")
        if append_layout:
            again = decode_repo_info(encoded)
            assert again == target
            assert again.latest_updates == target.latest_updates
        else:
            assert encoded == raws[step]


def _entry(t: int, backup: str | None) -> UpdateEntry:
    return UpdateEntry(GCRan(), t, backup)


def _info(updates: list[UpdateEntry], before: str | None = None) -> RepoInfo:
    root = SnapshotId(bytes(12))
    return RepoInfo(
        tags={},
        branches={"main": root},
        deleted_tags=set(),
        snapshots={root: SnapshotEntry(root, None, 1, "init", {})},
        status=RepoStatusRecord(),
        latest_updates=updates,
        repo_before_updates=before,
    )


def test_append_update_pages_at_backed_up_entries() -> None:
    info = _info([UpdateEntry(RepoInitialized(), 1)], before="older")
    names = []
    for t in range(2, 8):
        names.append(f"b{t - 1}")
        info = append_update(info, ConfigChanged(), t, backup=names[-1], page_size=3)
        assert len(info.latest_updates) <= 3
        assert info.latest_updates[0].backup_path is None
        assert [u.updated_at for u in info.latest_updates] == list(range(t, max(t - 3, 0), -1))
    # after 7 updates (1 + 6) on pages of 3: entries 7, 6, 5 kept; 4 cut -> its backup
    assert [u.backup_path for u in info.latest_updates] == [None, "b6", "b5"]
    assert info.repo_before_updates == "b4"


def test_append_update_keeps_previous_page_pointer_when_no_cut() -> None:
    info = append_update(_info([_entry(5, None)], before="older"), GCRan(), 6, "bk", page_size=3)
    assert info.repo_before_updates == "older"
    assert info.latest_updates == [_entry(6, None), _entry(5, "bk")]


def test_append_update_never_cuts_at_synthetic_entries() -> None:
    # a migrated repo: newest entry plus synthetic history, none with a backup path
    synthetic = [_entry(t, None) for t in range(10, 0, -1)]
    info = append_update(_info(synthetic), MetadataChanged(), 11, "m1", page_size=3)
    assert len(info.latest_updates) == 11  # nothing can be cut: only "m1" has a path, at index 1
    assert info.repo_before_updates is None
    info = append_update(info, MetadataChanged(), 12, "m2", page_size=3)
    # candidates: 12, 11(m2), 10(m1), 9.. -> cut at the first backed-up entry once 3 are held
    assert [u.updated_at for u in info.latest_updates] == [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert info.repo_before_updates is None
    info = append_update(info, MetadataChanged(), 13, "m3", page_size=3)
    assert [u.updated_at for u in info.latest_updates] == [13, 12, 11]
    assert info.repo_before_updates == "m1"


def test_append_update_cut_happens_after_synthetic_run() -> None:
    updates = [_entry(9, None), _entry(8, "p8"), _entry(7, None), _entry(6, None), _entry(5, "p5")]
    info = append_update(_info(updates), GCRan(), 10, "p9", page_size=2)
    # list: 10, 9(p9) -> full; 8 has a path -> cut there
    assert [u.updated_at for u in info.latest_updates] == [10, 9]
    assert info.repo_before_updates == "p8"
    info = append_update(_info(updates), GCRan(), 10, "p9", page_size=3)
    # 10, 9, 8 -> full; 7 and 6 have no path and stay; 5 is the cut
    assert [u.updated_at for u in info.latest_updates] == [10, 9, 8, 7, 6]
    assert info.repo_before_updates == "p5"


def test_append_update_requires_increasing_time() -> None:
    info = _info([_entry(100, None)])
    for t in (100, 99):
        with pytest.raises(FormatError) as err:
            append_update(info, GCRan(), t, "b")
        assert err.value.kind == ErrorKind.SNAPSHOT_TIMESTAMP
    assert append_update(_info([]), GCRan(), 0, "b").latest_updates == [_entry(0, None)]


def test_append_update_does_not_mutate_input() -> None:
    info = _info([_entry(1, None)])
    append_update(info, GCRan(), 2, "b")
    assert info.latest_updates == [_entry(1, None)]


# ---- hypothesis round trip ------------------------------------------------------------------

_ids = st.binary(min_size=12, max_size=12).map(SnapshotId)
_u64 = st.integers(0, 2**64 - 1)
_names = map_keys(12)
_json = json_values(key_size=6, dict_size=4, max_leaves=12)
_metadata = st.dictionaries(_names, _json, max_size=4)
_status = st.builds(
    RepoStatusRecord,
    st.sampled_from(list(Availability)),
    _u64,
    st.none() | st.text(max_size=20),
)


def _kinds(ids: list[SnapshotId]) -> st.SearchStrategy[object]:
    sid = st.sampled_from(ids) | _ids
    return st.one_of(
        st.just(RepoInitialized()),
        st.builds(RepoMigrated, st.integers(0, 255), st.integers(0, 255)),
        st.just(ConfigChanged()),
        st.just(MetadataChanged()),
        st.builds(TagCreated, _names),
        st.builds(TagDeleted, _names, sid),
        st.builds(BranchCreated, _names),
        st.builds(BranchDeleted, _names, sid),
        st.builds(BranchReset, _names, sid),
        st.builds(NewCommit, _names, sid),
        st.builds(CommitAmended, _names, sid, sid),
        st.builds(NewDetachedSnapshot, sid),
        st.just(GCRan()),
        st.just(ExpirationRan()),
        st.builds(FeatureFlagChanged, st.integers(0, 65535), st.booleans(), st.booleans()),
        st.builds(RepoStatusChanged, _status),
    )


_flags = st.none() | st.lists(st.integers(0, 65535), unique=True, max_size=5).map(
    lambda x: tuple(sorted(x))
)


@st.composite
def repo_infos(draw: st.DrawFn) -> RepoInfo:
    ids = draw(st.lists(_ids, min_size=1, max_size=8, unique=True))
    snapshots = {}
    for i, sid in enumerate(ids):
        parent = None if i == 0 else draw(st.none() | st.sampled_from(ids[:i]))
        pruned = draw(st.none() | st.lists(_ids, min_size=1, max_size=3).map(tuple))
        snapshots[sid] = SnapshotEntry(
            sid, parent, draw(_u64), draw(st.text(max_size=20)), draw(_metadata), pruned
        )
    ref_names = st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
        min_size=1,
        max_size=10,
    )
    branches = draw(st.dictionaries(ref_names, st.sampled_from(ids), max_size=4))
    branches["main"] = draw(st.sampled_from(ids))
    updates = draw(
        st.lists(
            st.builds(UpdateEntry, _kinds(ids), _u64, st.none() | _names), min_size=1, max_size=20
        )
    )
    return RepoInfo(
        tags=draw(st.dictionaries(ref_names, st.sampled_from(ids), max_size=4)),
        branches=branches,
        deleted_tags=draw(st.sets(ref_names, max_size=3)),
        snapshots=snapshots,
        status=draw(_status),
        latest_updates=updates,
        metadata=draw(st.none() | _metadata),
        repo_before_updates=draw(st.none() | _names),
        config=draw(st.none() | st.binary(max_size=50)),
        enabled_feature_flags=draw(_flags),
        disabled_feature_flags=draw(_flags),
        spec_version=draw(st.sampled_from([1, 2])),
    )


@given(repo_infos())
def test_roundtrip(info: RepoInfo) -> None:
    raw = encode_repo_info(info)
    decoded = decode_repo_info(raw)
    assert decoded == info
    assert encode_repo_info(decoded) == raw


def test_empty_pruned_list_is_written_absent() -> None:
    info = _info([_entry(1, None)])
    root = next(iter(info.snapshots))
    info.snapshots[root] = dataclasses.replace(info.snapshots[root], pruned_ancestor_tx_logs=())
    assert decode_repo_info(encode_repo_info(info)).snapshots[root].pruned_ancestor_tx_logs is None


def test_encode_refuses_unrepresentable_values() -> None:
    info = _info([_entry(1, None)])
    with pytest.raises(FormatError, match="not listed"):
        encode_repo_info(dataclasses.replace(info, tags={"t": SnapshotId(b"x" * 12)}))
    with pytest.raises(FormatError, match="main"):
        encode_repo_info(dataclasses.replace(info, branches={}))
    orphan = SnapshotId(b"y" * 12)
    snaps = dict(info.snapshots)
    snaps[orphan] = SnapshotEntry(orphan, SnapshotId(b"z" * 12), 2, "x", {})
    with pytest.raises(FormatError, match="parent"):
        encode_repo_info(dataclasses.replace(info, snapshots=snaps))
    with pytest.raises(FormatError) as err:
        encode_repo_info(dataclasses.replace(info, latest_updates=[UpdateEntry(GCRan(), -1)]))
    assert err.value.kind == ErrorKind.SERIALIZATION


# ---- corrupt input ---------------------------------------------------------------------------

NAME = "some/prefix/repo"


@pytest.fixture(scope="module")
def v2_payload(fixtures_dir: Path) -> bytes:
    raw = (fixtures_dir / "test-repo-v2/repo").read_bytes()
    return decode_envelope(raw, "repo", FileType.REPO_INFO)[1]


def _wrap(payload: bytes | bytearray) -> bytes:
    return encode_envelope(bytes(payload), FileType.REPO_INFO, 2)


def _expect_format_error(data: bytes, kind: ErrorKind | None = None) -> FormatError:
    with pytest.raises(FormatError) as err:
        decode_repo_info(data, NAME)
    assert NAME in str(err.value)
    if kind is not None:
        assert err.value.kind == kind
    return err.value


def test_bad_header(fixtures_dir: Path) -> None:
    raw = (fixtures_dir / "test-repo-v2/repo").read_bytes()
    _expect_format_error(b"NOT AN ICECHUNK FILE" + raw[20:])
    _expect_format_error(raw[:30])
    wrong_type = raw[:37] + bytes([1]) + raw[38:]
    assert "snapshot" in str(_expect_format_error(wrong_type))
    _expect_format_error(raw[:36] + bytes([3]) + raw[37:], ErrorKind.UNSUPPORTED_SPEC_VERSION)
    _expect_format_error(raw[:36] + bytes([1]) + raw[37:])
    _expect_format_error(raw[:-10], ErrorKind.DESERIALIZATION)  # truncated zstd
    _expect_format_error(raw[:39] + b"\x00" * 40)  # not zstd


def test_truncated_and_garbled_flatbuffer(v2_payload: bytes) -> None:
    for n in (0, 4, 8, 100, 1000, len(v2_payload) // 2, len(v2_payload) - 20):
        _expect_format_error(_wrap(v2_payload[:n]))
    _expect_format_error(_wrap(b"\xff" * 64))
    _expect_format_error(_wrap(b""))


def _patched(payload: bytes, pos: int, fmt: str, value: int) -> bytes:
    buf = bytearray(payload)
    struct.pack_into(fmt, buf, pos, value)
    return _wrap(buf)


def test_repo_spec_version_too_new(v2_payload: bytes) -> None:
    pos = root_table(v2_payload).field(0)
    _expect_format_error(_patched(v2_payload, pos, "<B", 3), ErrorKind.UNSUPPORTED_SPEC_VERSION)


def test_ref_index_out_of_range(v2_payload: bytes) -> None:
    main = root_table(v2_payload).tables(2)[0]  # branches[0] = main -> index 1
    assert main.u32(1) == 1
    err = _expect_format_error(_patched(v2_payload, main.field(1), "<I", 6))
    assert "index" in str(err)


@pytest.mark.parametrize("bad", [6, -2, 1000])
def test_parent_offset_out_of_range(v2_payload: bytes, bad: int) -> None:
    snap = root_table(v2_payload).tables(4)[1]  # 2768 -> parent index 5
    assert snap.i32(1) == 5
    err = _expect_format_error(_patched(v2_payload, snap.field(1), "<i", bad))
    assert "parent_offset" in str(err)


def test_parent_cycle_and_self_parent(v2_payload: bytes) -> None:
    snaps = root_table(v2_payload).tables(4)
    assert snaps[0].i32(1) == -1  # root, written explicitly
    _expect_format_error(_patched(v2_payload, snaps[0].field(1), "<i", 5))  # 0 -> 5 -> 2 -> 0
    _expect_format_error(_patched(v2_payload, snaps[1].field(1), "<i", 1))


def test_unknown_update_type(v2_payload: bytes) -> None:
    update = root_table(v2_payload).tables(7)[0]
    assert update.u8(0) == 5
    for bad in (0, 17, 255):
        info = decode_repo_info(_patched(v2_payload, update.field(0), "<B", bad), NAME)
        assert len(info.snapshots) == 6  # the ops log is decoded on first access only
        for _ in range(2):  # and a corrupt one keeps raising
            with pytest.raises(FormatError, match="type") as err:
                _ = info.latest_updates
            assert NAME in str(err.value)
            assert err.value.kind == ErrorKind.DESERIALIZATION


def test_invalid_availability() -> None:
    info = _info([_entry(1, None)])
    info.status = RepoStatusRecord(Availability.READ_ONLY, 5, "maintenance")
    payload = decode_envelope(encode_repo_info(info), "x", FileType.REPO_INFO)[1]
    status = root_table(payload).table(5)
    assert status is not None
    _expect_format_error(_patched(payload, status.field(0), "<B", 9))


def test_fuzzed_payload_only_raises_format_error(v2_payload: bytes) -> None:
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    messages = []
    for _ in range(300):
        buf = bytearray(v2_payload)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        try:
            decode_repo_info(_wrap(buf), NAME).latest_updates  # noqa: B018 - decodes the ops log
        except FormatError as err:  # anything else fails the test
            messages.append(str(err))
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
    assert all(NAME in m for m in messages)
    assert outcomes["error"] > 0
    assert outcomes["ok"] > 0


# ---- reading a branch tip without decoding -----------------------------------------------------


@given(repo_infos(), st.text(max_size=10))
def test_peek_branch_tip_agrees_with_the_full_decode(info: RepoInfo, other: str) -> None:
    raw = encode_repo_info(info)
    for branch, tip in info.branches.items():
        assert peek_branch_tip(raw, branch) == (tip, info.status.availability)
    if other not in info.branches:
        assert peek_branch_tip(raw, other) == (None, info.status.availability)


def test_peek_branch_tip_reports_corrupt_input_as_format_error() -> None:
    first, second = SnapshotId(bytes(12)), SnapshotId(b"\x01" * 12)
    info = dataclasses.replace(
        _info([_entry(1, None)]),
        branches={"main": second},  # index 1 in the sorted list: the field is written
        snapshots={
            first: SnapshotEntry(first, None, 1, "init", {}),
            second: SnapshotEntry(second, first, 2, "next", {}),
        },
    )
    payload = decode_envelope(encode_repo_info(info), NAME, FileType.REPO_INFO)[1]
    main = root_table(payload).tables(2)[0]
    assert main.u32(1) == 1
    assert peek_branch_tip(_wrap(payload), "main", NAME) == (second, Availability.ONLINE)
    with pytest.raises(FormatError, match="index"):
        peek_branch_tip(_patched(payload, main.field(1), "<I", 7), "main", NAME)
    spec = root_table(payload).field(0)
    with pytest.raises(FormatError) as err:
        peek_branch_tip(_patched(payload, spec, "<B", 3), "main", NAME)
    assert err.value.kind == ErrorKind.UNSUPPORTED_SPEC_VERSION
    for n in (0, 8, len(payload) // 2):
        with pytest.raises(FormatError):
            peek_branch_tip(_wrap(payload[:n]), "main", NAME)
