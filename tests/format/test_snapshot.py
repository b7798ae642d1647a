"""Snapshot codec: reference fixtures (values and byte identity), round trips, corrupt input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from icechunk import FormatError
from icechunk._errors import ErrorKind
from icechunk.format.header import HEADER_SIZE, FileType, decode_envelope, encode_envelope
from icechunk.format.ids import INITIAL_SNAPSHOT_ID, ManifestId, NodeId, SnapshotId
from icechunk.format.snapshot import (
    ArrayData,
    DimensionShape,
    ManifestFileInfo,
    ManifestRef,
    NodeSnapshot,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
    snapshot_flatbuffer,
)
from icechunk.format.transaction_log import decode_transaction_log
from tests.format.strategies import json_values

# --------------------------------------------------------------------------------------------
# helpers


def _read(fixtures_dir: Path, repo: str, name: str) -> Snapshot:
    path = fixtures_dir / repo / "snapshots" / name
    return decode_snapshot(path.read_bytes(), str(path))


def _rewrap(data: bytes, mutate) -> bytes:
    """Decompress a file's flatbuffer, apply ``mutate`` to it, and wrap it again."""
    header, buf = decode_envelope(data, "x", FileType(data[37]))
    return encode_envelope(mutate(bytearray(buf)), header.file_type, header.spec_version)


def _node(snap: Snapshot, path: str) -> NodeSnapshot:
    (node,) = [n for n in snap.nodes if n.path == path]
    return node


def _metadata_files(fixtures_dir: Path, repo: str, kind: str) -> list[Path]:
    return sorted((fixtures_dir / repo / kind).iterdir())


# --------------------------------------------------------------------------------------------
# byte identity with the reference writer


@pytest.mark.parametrize("repo", ["test-repo-v2", "test-repo-v1", "test-repo-v2-migrated"])
def test_fixture_snapshots_reencode_byte_for_byte(fixtures_dir: Path, repo: str) -> None:
    files = _metadata_files(fixtures_dir, repo, "snapshots")
    assert len(files) == 6
    for path in files:
        data = path.read_bytes()
        snap = decode_snapshot(data, str(path))
        again = encode_snapshot(
            snap, spec_version=snap.spec_version, implementation=snap.implementation
        )
        assert again == data, path
        assert decode_snapshot(again, "again") == snap


def test_initial_snapshot_flatbuffer_matches_format_vector(fixtures_dir: Path) -> None:
    snap = _read(fixtures_dir, "test-repo-v2", "1CECHNKREP0F1RSTCMT0")
    expected = bytes.fromhex(
        "1c0000004963686b14002c000400000010002400140018001c002000140000000b1cc8d6"
        "787580f0e33a65341c0000001c00000034000000740000007800000004450737f54e0600"
        "00000000160000005265706f7369746f727920696e697469616c697a6564000001000000"
        "0c00000008000c00040008000800000020000000040000001200000069735f726f6f7400"
        "0109010101016802240100000a0000005f5f6963656368756e6b00000000000000000000"
        "00000000"
    )
    assert snapshot_flatbuffer(snap, 2) == expected


def test_fresh_initial_snapshot_equals_fixture(fixtures_dir: Path) -> None:
    """Building the initial snapshot from scratch reproduces the reference file."""
    snap = Snapshot(
        id=INITIAL_SNAPSHOT_ID,
        parent_id=None,
        flushed_at=1775664957441284,
        message="Repository initialized",
        metadata={"__icechunk": {"is_root": True}},
        manifest_files=(),
        nodes=(),
    )
    data = encode_snapshot(snap, implementation="ic-2.0.0-alpha.7")
    assert data == (fixtures_dir / "test-repo-v2/snapshots/1CECHNKREP0F1RSTCMT0").read_bytes()
    assert len(data) == 192


# --------------------------------------------------------------------------------------------
# decoded values: spec 2 (FORMAT.md §9.2, §9.4; fixtures README §3)

V2_SNAPSHOTS = {
    "1CECHNKREP0F1RSTCMT0": (1775664957441284, "Repository initialized", []),
    "7T7DSS71H2JNBBZQ9M8G": (1775664957445952, "empty structure", []),
    "ZA24GZGPNK3GH682Q1R0": (
        1775664957451322,
        "fill data",
        [("7TPWNB215VHK4691XAH0", 242, 4), ("MV3SGP7Q0A17BRBJNNVG", 175, 5)],
    ),
    "2768FV3XW5ZXYM84XNNG": (
        1775664957453095,
        "set virtual chunk",
        [("MV3SGP7Q0A17BRBJNNVG", 175, 5), ("WTMRMCW414QYFTX7JJPG", 282, 4)],
    ),
    "QTP2RTYS5YQW8RPSQ93G": (
        1775664957455715,
        "delete a chunk",
        [("RZ09HJ4CVB3KZWKAJFX0", 169, 4), ("WTMRMCW414QYFTX7JJPG", 282, 4)],
    ),
    "H7T8YA6KR5TH32F3PS10": (
        1775664957463413,
        "some more structure",
        [("RZ09HJ4CVB3KZWKAJFX0", 169, 4), ("WTMRMCW414QYFTX7JJPG", 282, 4)],
    ),
}


@pytest.mark.parametrize("name", sorted(V2_SNAPSHOTS))
def test_v2_snapshot_headers_and_manifest_files(fixtures_dir: Path, name: str) -> None:
    snap = _read(fixtures_dir, "test-repo-v2", name)
    flushed_at, message, manifests = V2_SNAPSHOTS[name]
    assert str(snap.id) == name
    assert snap.parent_id is None  # spec 2 keeps parentage in the repo info
    assert snap.spec_version == 2
    assert snap.implementation == "ic-2.0.0-alpha.7"
    assert snap.flushed_at == flushed_at
    assert snap.message == message
    assert [(str(m.id), m.size_bytes, m.num_chunk_refs) for m in snap.manifest_files] == manifests
    for mid, size, _ in manifests:
        # size_bytes is the size of the manifest object on storage
        assert (fixtures_dir / "test-repo-v2/manifests" / mid).stat().st_size == size


def test_v2_initial_snapshot_values(fixtures_dir: Path) -> None:
    snap = _read(fixtures_dir, "test-repo-v2", "1CECHNKREP0F1RSTCMT0")
    assert snap.id == INITIAL_SNAPSHOT_ID
    assert snap.metadata == {"__icechunk": {"is_root": True}}
    assert snap.nodes == ()
    assert snap.manifest_files == ()


def test_v2_snapshot_nodes(fixtures_dir: Path) -> None:
    snap = _read(fixtures_dir, "test-repo-v2", "H7T8YA6KR5TH32F3PS10")
    assert snap.metadata == {}
    assert [(n.path, n.id.hex(), n.is_array) for n in snap.nodes] == [
        ("/", "bef835879ab40c97", False),
        ("/group1", "f962e1f649ec4f16", False),
        ("/group1/big_chunks", "a15fc7e15cc2c61f", True),
        ("/group1/small_chunks", "ceffde82865fae19", True),
        ("/group2", "026cde75edf056a2", False),
        ("/group2/group3", "4d69b3b4f4660de4", False),
        ("/group2/group3/group4", "7e1266ea322e5bc8", False),
        ("/group2/group3/group4/group5", "d246b1178616b336", False),
        ("/group2/group3/group4/group5/inner", "082ce480563fb770", True),
    ]
    big = _node(snap, "/group1/big_chunks").array
    assert big == ArrayData(
        shape=(DimensionShape(10, 2), DimensionShape(10, 2)),
        dimension_names=None,
        manifests=(ManifestRef(ManifestId.parse("WTMRMCW414QYFTX7JJPG"), ((0, 2), (0, 2))),),
    )
    small = _node(snap, "/group1/small_chunks").array
    assert small is not None
    assert small.shape == (DimensionShape(5, 5),)
    assert small.manifests == (ManifestRef(ManifestId.parse("RZ09HJ4CVB3KZWKAJFX0"), ((0, 4),)),)
    inner = _node(snap, "/group2/group3/group4/group5/inner").array
    assert inner is not None
    assert inner.shape == (DimensionShape(10, 2), DimensionShape(10, 2))
    assert inner.manifests == ()
    # user_data is the zarr.json document, verbatim
    root = json.loads(_node(snap, "/").user_data)
    assert root == {"attributes": {}, "zarr_format": 3, "node_type": "group"}
    group1 = json.loads(_node(snap, "/group1").user_data)
    assert group1["attributes"] == {"this": "is a nice group", "icechunk": 1, "size": 42.0}
    meta = json.loads(_node(snap, "/group1/big_chunks").user_data)
    assert meta["shape"] == [10, 10]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [5, 5]
    assert b'\n  "' in _node(snap, "/group1/big_chunks").user_data  # pretty-printed as stored


def test_v2_manifest_usage_per_snapshot(fixtures_dir: Path) -> None:
    """FORMAT.md §9.4: which manifest each array points to, per snapshot."""
    expect = {
        "7T7DSS71H2JNBBZQ9M8G": {},
        "ZA24GZGPNK3GH682Q1R0": {
            "/group1/big_chunks": "7TPWNB215VHK4691XAH0",
            "/group1/small_chunks": "MV3SGP7Q0A17BRBJNNVG",
        },
        "2768FV3XW5ZXYM84XNNG": {
            "/group1/big_chunks": "WTMRMCW414QYFTX7JJPG",
            "/group1/small_chunks": "MV3SGP7Q0A17BRBJNNVG",
        },
        "QTP2RTYS5YQW8RPSQ93G": {
            "/group1/big_chunks": "WTMRMCW414QYFTX7JJPG",
            "/group1/small_chunks": "RZ09HJ4CVB3KZWKAJFX0",
        },
    }
    for name, refs in expect.items():
        snap = _read(fixtures_dir, "test-repo-v2", name)
        found = {
            n.path: str(n.array.manifests[0].manifest_id)
            for n in snap.nodes
            if n.array is not None and n.array.manifests
        }
        assert found == refs, name
        small = _node(snap, "/group1/small_chunks").array
        assert small is not None
        assert small.shape == (DimensionShape(5, 5),)


# --------------------------------------------------------------------------------------------
# decoded values: spec 1 (fixtures README §2)

V1_SNAPSHOTS = {
    "P874YS3J196959RDHX7G": (None, 1739999515981700, "Repository initialized", []),
    "GC4YVH5SKBPEZCENYQE0": ("P874YS3J196959RDHX7G", 1739999515996389, "empty structure", []),
    "7XAF0Q905SH4938DN9CG": (
        "GC4YVH5SKBPEZCENYQE0",
        1739999516012709,
        "fill data",
        [("CMYVHDWMSTG9R25780YG", 240, 4), ("G3W2W8V6ZG09J6C21WE0", 175, 5)],
    ),
    "NXH3M0HJ7EEJ0699DPP0": (
        "7XAF0Q905SH4938DN9CG",
        1739999516017780,
        "set virtual chunk",
        [("G3W2W8V6ZG09J6C21WE0", 175, 5), ("Q04J7QW5RQ8D17TPA10G", 278, 4)],
    ),
    "4QF8JA0YPDN51MHSSYVG": (
        "NXH3M0HJ7EEJ0699DPP0",
        1739999516023456,
        "delete a chunk",
        [("Q04J7QW5RQ8D17TPA10G", 278, 4), ("SHTEAP8C784YMZSJKBM0", 166, 4)],
    ),
    "XDZ162T1TYBEJMK99NPG": (
        "4QF8JA0YPDN51MHSSYVG",
        1739999516037746,
        "some more structure",
        [("Q04J7QW5RQ8D17TPA10G", 278, 4), ("SHTEAP8C784YMZSJKBM0", 166, 4)],
    ),
}


@pytest.mark.parametrize("repo", ["test-repo-v1", "test-repo-v2-migrated"])
@pytest.mark.parametrize("name", sorted(V1_SNAPSHOTS))
def test_v1_snapshot_values(fixtures_dir: Path, repo: str, name: str) -> None:
    snap = _read(fixtures_dir, repo, name)
    parent, flushed_at, message, manifests = V1_SNAPSHOTS[name]
    assert str(snap.id) == name
    assert (str(snap.parent_id) if snap.parent_id else None) == parent
    assert snap.flushed_at == flushed_at
    assert snap.message == message
    assert snap.spec_version == 1
    assert snap.implementation == "ic-0.1.3"
    assert [(str(m.id), m.size_bytes, m.num_chunk_refs) for m in snap.manifest_files] == manifests
    # spec-1 metadata values are MessagePack; the old initial snapshot says {"__root": true}
    assert snap.metadata == ({"__root": True} if name == "P874YS3J196959RDHX7G" else {})


def test_v1_snapshot_nodes_and_shapes(fixtures_dir: Path) -> None:
    snap = _read(fixtures_dir, "test-repo-v1", "XDZ162T1TYBEJMK99NPG")
    assert [(n.path, n.id.hex()) for n in snap.nodes] == [
        ("/", "19e0ca6f3e38d592"),
        ("/group1", "88d855940139b249"),
        ("/group1/big_chunks", "e62fd64f1b704ee9"),
        ("/group1/small_chunks", "12a6ae5294405ec2"),
        ("/group2", "2a1bac1bfead0ea8"),
        ("/group2/group3", "13a8a5f07f0ffee5"),
        ("/group2/group3/group4", "d682f068516bfc9d"),
        ("/group2/group3/group4/group5", "4b1eda44981301c3"),
        ("/group2/group3/group4/group5/inner", "ef5b8fb8b35f4f3f"),
    ]
    big = _node(snap, "/group1/big_chunks").array
    assert big is not None
    # spec 1 stores (array_length, chunk_length); num_chunks is derived
    assert big.shape == (DimensionShape(10, 2, 5), DimensionShape(10, 2, 5))
    assert big.dimension_names is None
    assert big.manifests == (
        ManifestRef(ManifestId.parse("Q04J7QW5RQ8D17TPA10G"), ((0, 2), (0, 2))),
    )
    small = _node(snap, "/group1/small_chunks").array
    assert small is not None
    assert small.shape == (DimensionShape(5, 5, 1),)
    assert small.manifests == (ManifestRef(ManifestId.parse("SHTEAP8C784YMZSJKBM0"), ((0, 4),)),)
    assert json.loads(_node(snap, "/").user_data)["consolidated_metadata"] is None

    fill = _read(fixtures_dir, "test-repo-v1", "7XAF0Q905SH4938DN9CG")
    refs = {n.path: n.array.manifests for n in fill.nodes if n.array is not None}
    assert refs == {
        "/group1/big_chunks": (
            ManifestRef(ManifestId.parse("CMYVHDWMSTG9R25780YG"), ((0, 2), (0, 2))),
        ),
        "/group1/small_chunks": (ManifestRef(ManifestId.parse("G3W2W8V6ZG09J6C21WE0"), ((0, 5),)),),
    }


def test_v1_initial_snapshot_metadata_is_msgpack_true(fixtures_dir: Path) -> None:
    data = (fixtures_dir / "test-repo-v1/snapshots/P874YS3J196959RDHX7G").read_bytes()
    _, buf = decode_envelope(data, "x", FileType.SNAPSHOT)
    assert b"__root\x00" in buf
    assert b"\x01\x00\x00\x00\xc3" in buf  # a 1-byte vector holding msgpack true
    snap = decode_snapshot(data, "x")
    assert snap.nodes == ()
    assert snap.parent_id is None


# --------------------------------------------------------------------------------------------
# writer behaviour


def _array_node(path: str, shape, names=None, manifests=()) -> NodeSnapshot:
    return NodeSnapshot(NodeId.random(), path, b"{}", ArrayData(tuple(shape), names, manifests))


def _snapshot(nodes=(), **kw) -> Snapshot:
    base = dict(
        id=SnapshotId.random(),
        parent_id=None,
        flushed_at=1,
        message="m",
        metadata={},
        manifest_files=(),
        nodes=tuple(nodes),
    )
    base.update(kw)
    return Snapshot(**base)


def test_spec2_omits_parent_and_spec1_keeps_it() -> None:
    parent = SnapshotId.random()
    snap = _snapshot(parent_id=parent)
    assert decode_snapshot(encode_snapshot(snap), "x").parent_id is None
    v1 = decode_snapshot(encode_snapshot(snap, spec_version=1), "x")
    assert v1.parent_id == parent
    assert v1.spec_version == 1


def test_writer_sorts_nodes_manifest_files_and_metadata() -> None:
    nodes = [
        NodeSnapshot(NodeId.random(), "/a/b", b"{}", None),
        NodeSnapshot(NodeId.random(), "/a-b", b"{}", None),  # raw byte order: "-" < "/"
        NodeSnapshot(NodeId.random(), "/", b"{}", None),
        NodeSnapshot(NodeId.random(), "/a", b"{}", None),
    ]
    files = [ManifestFileInfo(ManifestId(bytes([b]) * 12), 10, 1) for b in (9, 3, 7)]
    snap = _snapshot(nodes, manifest_files=tuple(files), metadata={"b": 1, "a": [1, "x"], "": None})
    for spec in (1, 2):
        got = decode_snapshot(encode_snapshot(snap, spec_version=spec), "x")
        assert [n.path for n in got.nodes] == ["/", "/a", "/a-b", "/a/b"]
        assert [m.id[0] for m in got.manifest_files] == [3, 7, 9]
        assert got.metadata == {"b": 1, "a": [1, "x"], "": None}
        assert list(got.metadata) == ["", "a", "b"]  # the decoder keeps the stored order


def test_spec1_chunk_length_back_computed() -> None:
    node = _array_node("/x", [DimensionShape(10, 3), DimensionShape(0, 0), DimensionShape(7, 7, 1)])
    got = decode_snapshot(encode_snapshot(_snapshot([node]), spec_version=1), "x")
    assert got.nodes[0].array.shape == (
        DimensionShape(10, 3, 4),  # ceil(10 / 3) = 4, and ceil(10 / 4) = 3 chunks
        DimensionShape(0, 0, 0),
        DimensionShape(7, 7, 1),  # an explicit chunk_length wins
    )
    got2 = decode_snapshot(encode_snapshot(_snapshot([node])), "x")
    assert got2.nodes[0].array.shape == (
        DimensionShape(10, 3),
        DimensionShape(0, 0),
        DimensionShape(7, 7),
    )


def test_spec1_cannot_store_chunkless_nonempty_axis() -> None:
    node = _array_node("/x", [DimensionShape(10, 0)])
    with pytest.raises(FormatError):
        encode_snapshot(_snapshot([node]), spec_version=1)
    # spec 2 stores num_chunks directly
    got = decode_snapshot(encode_snapshot(_snapshot([node])), "x")
    assert got.nodes[0].array.shape == (DimensionShape(10, 0),)


def test_dimension_names_and_scalar_arrays() -> None:
    nodes = [
        _array_node("/named", [DimensionShape(4, 2)] * 3, ("x", None, "")),
        _array_node("/scalar", []),
        _array_node("/scalar_named", [], ()),
    ]
    for spec in (1, 2):
        got = decode_snapshot(encode_snapshot(_snapshot(nodes), spec_version=spec), "x")
        arrays = {n.path: n.array for n in got.nodes}
        assert arrays["/named"].dimension_names == ("x", None, None)  # "" means unnamed
        assert arrays["/scalar"].shape == ()
        assert arrays["/scalar"].dimension_names is None
        assert arrays["/scalar_named"].dimension_names == ()


def test_encode_rejects_unrepresentable_values() -> None:
    with pytest.raises(FormatError):
        encode_snapshot(_snapshot(flushed_at=-1))
    with pytest.raises(FormatError):
        encode_snapshot(_snapshot(metadata={"x": object()}))
    with pytest.raises(FormatError):
        encode_snapshot(_snapshot([_array_node("/x", [DimensionShape(1, 2**32)])]))
    with pytest.raises(FormatError):
        encode_snapshot(_snapshot([NodeSnapshot(NodeId.random(), "x", b"", None)]))
    with pytest.raises(FormatError) as err:
        encode_snapshot(_snapshot(), spec_version=3)
    assert err.value.kind == ErrorKind.UNSUPPORTED_SPEC_VERSION.value


# --------------------------------------------------------------------------------------------
# hypothesis round trips

_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_segment = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1, max_size=8
)
_path = st.one_of(
    st.just("/"), st.lists(_segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
)
_json = json_values(key_size=6, dict_size=4, max_leaves=12)


@st.composite
def _dims(draw, spec: int) -> tuple[DimensionShape, ...]:
    ndim = draw(st.integers(0, 4))
    dims = []
    for _ in range(ndim):
        if spec == 2:
            dims.append(DimensionShape(draw(_u64), draw(_u32)))
        else:  # spec 1 stores chunk lengths; a non-empty axis needs a non-zero one
            length = draw(_u64)
            chunk = draw(st.integers(1 if length else 0, 2**64 - 1))
            dims.append(DimensionShape(length, -(-length // chunk) if chunk else 0, chunk))
    return tuple(dims)


@st.composite
def _arrays(draw, spec: int) -> ArrayData:
    shape = draw(_dims(spec))
    names = draw(
        st.none() | st.tuples(*[st.none() | st.text(min_size=1, max_size=5) for _ in shape])
    )
    refs = draw(
        st.lists(
            st.builds(
                ManifestRef,
                st.binary(min_size=12, max_size=12).map(ManifestId),
                st.tuples(*[st.tuples(_u32, _u32) for _ in shape]),
            ),
            max_size=3,
        )
    )
    return ArrayData(shape, names, tuple(refs))


@st.composite
def _snapshots(draw, spec: int) -> Snapshot:
    paths = draw(st.lists(_path, unique=True, max_size=12))
    nodes = [
        NodeSnapshot(
            NodeId(draw(st.binary(min_size=8, max_size=8))),
            path,
            draw(st.binary(max_size=40)),
            draw(st.none() | _arrays(spec)),
        )
        for path in paths
    ]
    ids = draw(st.lists(st.binary(min_size=12, max_size=12), unique=True, max_size=4))
    files = [ManifestFileInfo(ManifestId(i), draw(_u64), draw(_u32)) for i in ids]
    return Snapshot(
        id=SnapshotId(draw(st.binary(min_size=12, max_size=12))),
        parent_id=(
            draw(st.none() | st.binary(min_size=12, max_size=12).map(SnapshotId))
            if spec == 1
            else None
        ),
        flushed_at=draw(_u64),
        message=draw(st.text(max_size=30)),
        metadata=draw(st.dictionaries(st.text(max_size=8), _json, max_size=5)),
        manifest_files=tuple(files),
        nodes=tuple(nodes),
        spec_version=spec,
    )


def _sorted(snap: Snapshot) -> Snapshot:
    return dataclasses.replace(
        snap,
        nodes=tuple(sorted(snap.nodes, key=lambda n: n.path.encode())),
        manifest_files=tuple(sorted(snap.manifest_files, key=lambda m: bytes(m.id))),
    )


@pytest.mark.parametrize("spec", [1, 2])
@given(data=st.data())
def test_roundtrip(spec: int, data: st.DataObject) -> None:
    snap = data.draw(_snapshots(spec))
    encoded = encode_snapshot(snap, spec_version=spec, implementation="ic-test")
    decoded = decode_snapshot(encoded, "x")
    assert decoded == _sorted(snap)
    assert decoded.spec_version == spec
    assert decoded.implementation == "ic-test"
    # re-encoding the decoded value is stable
    assert encode_snapshot(decoded, spec_version=spec, implementation="ic-test") == encoded


def test_roundtrip_big_snapshot() -> None:
    meta = {f"k{i}": {"v": list(range(i % 10)), "s": "x" * i} for i in range(300)}
    for spec in (1, 2):
        nodes = [NodeSnapshot(NodeId(bytes(8)), "/", b"{}", None)]
        for i in range(2000):
            chunk = i % 7 + 1
            dim = DimensionShape(i, -(-i // chunk), chunk if spec == 1 else None)
            refs = (ManifestRef(ManifestId.random(), ((0, i), (0, 3))),)
            nodes.append(_array_node(f"/g/a{i:05d}", [dim, dim], (f"d{i}", None), refs))
        snap = _snapshot(nodes, metadata=meta, spec_version=spec)
        assert decode_snapshot(encode_snapshot(snap, spec_version=spec), "x") == snap


# --------------------------------------------------------------------------------------------
# corrupt input


@pytest.fixture
def v2_file(fixtures_dir: Path) -> bytes:
    return (fixtures_dir / "test-repo-v2/snapshots/H7T8YA6KR5TH32F3PS10").read_bytes()


@pytest.fixture
def v1_file(fixtures_dir: Path) -> bytes:
    return (fixtures_dir / "test-repo-v1/snapshots/XDZ162T1TYBEJMK99NPG").read_bytes()


def _assert_format_error(data: bytes, name: str = "snapshots/BROKEN") -> FormatError:
    with pytest.raises(FormatError) as err:
        decode_snapshot(data, name)
    assert name in str(err.value)
    return err.value


def test_bad_magic(v2_file: bytes) -> None:
    _assert_format_error(b"X" + v2_file[1:])


def test_short_header(v2_file: bytes) -> None:
    _assert_format_error(v2_file[:20])
    _assert_format_error(b"")


def test_unknown_and_wrong_file_type(v2_file: bytes, fixtures_dir: Path) -> None:
    _assert_format_error(v2_file[:37] + b"\x09" + v2_file[38:])
    _assert_format_error(v2_file[:37] + b"\x02" + v2_file[38:])  # a manifest
    tx = (fixtures_dir / "test-repo-v2/transactions/H7T8YA6KR5TH32F3PS10").read_bytes()
    _assert_format_error(tx)
    with pytest.raises(FormatError, match="snapshots/H7T8"):
        decode_transaction_log(v2_file, "snapshots/H7T8")


def test_unsupported_spec_version_and_compression(v2_file: bytes) -> None:
    for spec in (0, 3, 255):
        error = _assert_format_error(v2_file[:36] + bytes([spec]) + v2_file[37:])
        assert error.kind == ErrorKind.UNSUPPORTED_SPEC_VERSION.value
    _assert_format_error(v2_file[:38] + b"\x00" + v2_file[39:])


def test_truncated_zstd(v2_file: bytes) -> None:
    for cut in (HEADER_SIZE, HEADER_SIZE + 3, len(v2_file) // 2, len(v2_file) - 1):
        _assert_format_error(v2_file[:cut])
    _assert_format_error(v2_file[:HEADER_SIZE] + b"\x28\xb5\x2f\xfd" + b"\xff" * 40)


def test_truncated_flatbuffer(v2_file: bytes, v1_file: bytes) -> None:
    for data in (v2_file, v1_file):
        original = decode_snapshot(data, "x")
        _, buf = decode_envelope(data, "x", FileType.SNAPSHOT)
        errors = 0
        for cut in range(0, len(buf), 3):
            corrupt = _rewrap(data, lambda b, cut=cut: b[:cut])
            try:
                decoded = decode_snapshot(corrupt, "snapshots/CUT")
            except FormatError as err:
                message = str(err)
                errors += 1
            else:
                assert decoded == original
                continue
            assert "snapshots/CUT" in message
        assert errors > len(buf) // 3 - 3  # at most trailing padding can be cut harmlessly


def test_garbled_fields(v2_file: bytes) -> None:
    # root offset pointing outside the buffer
    _assert_format_error(_rewrap(v2_file, lambda b: b"\xff\xff\xff\x7f" + b[4:]))
    # unknown node type: find a NodeSnapshot's union type byte (value 2 = group) and break it
    snap = decode_snapshot(v2_file, "x")
    tampered = dataclasses.replace(snap, nodes=snap.nodes[:1])
    payload = bytearray(snapshot_flatbuffer(tampered, 2))
    for i in range(len(payload)):
        trial = bytearray(payload)
        trial[i] = 7
        wrapped = encode_envelope(trial, FileType.SNAPSHOT, 2)
        try:
            decode_snapshot(wrapped, "x")
        except FormatError as err:
            if "unknown node type" in str(err):
                break
    else:
        pytest.fail("no byte controls the node type")


def test_garbage_payload_is_format_error() -> None:
    for payload in (b"", b"\x00" * 3, b"\x00" * 64, bytes(range(256)) * 4):
        head = encode_envelope(b"", FileType.SNAPSHOT, 2)[:HEADER_SIZE]
        cobj = zstandard.ZstdCompressor().compressobj()
        _assert_format_error(head + cobj.compress(payload) + cobj.flush())


FUZZ_TARGETS = [
    "test-repo-v2/snapshots/H7T8YA6KR5TH32F3PS10",
    "test-repo-v2/snapshots/1CECHNKREP0F1RSTCMT0",  # FlexBuffers metadata
    "test-repo-v1/snapshots/XDZ162T1TYBEJMK99NPG",
    "test-repo-v1/snapshots/P874YS3J196959RDHX7G",  # MessagePack metadata
]


@pytest.mark.parametrize("name", FUZZ_TARGETS)
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=6)
)
def test_fuzz_byte_flips(fixtures_dir: Path, name: str, flips: list[tuple[int, int]]) -> None:
    data = (fixtures_dir / name).read_bytes()

    def flip(buf: bytearray) -> bytearray:
        for pos, xor in flips:
            buf[pos % len(buf)] ^= xor
        return buf

    try:
        snap = decode_snapshot(_rewrap(data, flip), "snapshots/FUZZ")
    except FormatError as err:
        message = str(err)
    else:
        assert isinstance(snap, Snapshot)
        return
    assert "snapshots/FUZZ" in message
