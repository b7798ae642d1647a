"""Transaction-log codec: reference fixtures, vectorized chunk lists, round trips, corrupt input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import icechunk.format.transaction_log as txmod
from icechunk import FormatError
from icechunk._errors import ErrorKind
from icechunk.format.header import HEADER_SIZE, FileType, decode_envelope, encode_envelope
from icechunk.format.ids import INITIAL_SNAPSHOT_ID, NodeId, SnapshotId
from icechunk.format.snapshot import decode_snapshot
from icechunk.format.transaction_log import (
    MoveOperation,
    NodeType,
    TransactionLog,
    decode_transaction_log,
    encode_transaction_log,
    normalize_chunk_coords,
    transaction_log_flatbuffer,
)


def _read(fixtures_dir: Path, repo: str, name: str) -> TransactionLog:
    path = fixtures_dir / repo / "transactions" / name
    return decode_transaction_log(path.read_bytes(), str(path))


def _ids(hexes: str) -> list[NodeId]:
    return [NodeId(bytes.fromhex(h)) for h in hexes.split()]


def _chunks(log: TransactionLog) -> dict[str, list[list[int]]]:
    return {node.hex(): coords.tolist() for node, coords in log.updated_chunks.items()}


def _builder_only(log: TransactionLog, spec: int = 2) -> bytes:
    """The flatbuffer written entirely with the flatbuffers Builder (no numpy block)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(txmod, "_VECTORIZE_MIN", 1 << 62)
        return transaction_log_flatbuffer(log, spec)


def _numpy_always(log: TransactionLog, spec: int = 2) -> bytes:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(txmod, "_VECTORIZE_MIN", 1)
        return transaction_log_flatbuffer(log, spec)


def _decode_payload(payload: bytes, *, vectorize_min: int | None = None) -> TransactionLog:
    data = encode_envelope(payload, FileType.TRANSACTION_LOG, 2)
    if vectorize_min is None:
        return decode_transaction_log(data, "x")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(txmod, "_VECTORIZE_READ_MIN", vectorize_min)
        return decode_transaction_log(data, "x")


# --------------------------------------------------------------------------------------------
# reference fixtures


@pytest.mark.parametrize(("repo", "count"), [("test-repo-v2", 6), ("test-repo-v1", 5)])
def test_fixture_logs_reencode_byte_for_byte(fixtures_dir: Path, repo: str, count: int) -> None:
    files = sorted((fixtures_dir / repo / "transactions").iterdir())
    assert len(files) == count
    for path in files:
        data = path.read_bytes()
        log = decode_transaction_log(data, str(path))
        again = encode_transaction_log(
            log, spec_version=log.spec_version, implementation=log.implementation
        )
        assert again == data, path
        # the numpy block writer produces the same bytes as the builder for these logs
        payload = decode_envelope(data, "x", FileType.TRANSACTION_LOG)[1]
        assert _numpy_always(log, log.spec_version) == payload
        assert _decode_payload(payload, vectorize_min=1).updated_chunks.keys() == (
            log.updated_chunks.keys()
        )


def test_initial_log_matches_format_vector(fixtures_dir: Path) -> None:
    log = _read(fixtures_dir, "test-repo-v2", "1CECHNKREP0F1RSTCMT0")
    assert log.id == INITIAL_SNAPSHOT_ID
    assert log == TransactionLog(INITIAL_SNAPSHOT_ID, moved_nodes=[])
    expected = bytes.fromhex(
        "200000004963686b00001600300004001000140018001c002000240028002c0016000000"
        "0b1cc8d6787580f0e33a65343c000000340000002c000000240000001800000018000000"
        "0c000000040000000000000000000000000000000000000000000000000000000000000000000000"
    )
    fresh = TransactionLog(INITIAL_SNAPSHOT_ID, moved_nodes=[])
    assert transaction_log_flatbuffer(fresh) == expected
    encoded = encode_transaction_log(fresh, implementation="ic-2.0.0-alpha.7")
    assert len(encoded) == 118
    assert encoded == (fixtures_dir / "test-repo-v2/transactions/1CECHNKREP0F1RSTCMT0").read_bytes()


def test_v2_log_values(fixtures_dir: Path) -> None:
    repo = "test-repo-v2"
    for name in ("7T7DSS71H2JNBBZQ9M8G", "ZA24GZGPNK3GH682Q1R0", "H7T8YA6KR5TH32F3PS10"):
        log = _read(fixtures_dir, repo, name)
        assert str(log.id) == name
        assert log.spec_version == 2
        assert log.implementation == "ic-2.0.0-alpha.7"
        assert log.moved_nodes == []

    log = _read(fixtures_dir, repo, "7T7DSS71H2JNBBZQ9M8G")
    assert log.new_groups == _ids("bef835879ab40c97 f962e1f649ec4f16")
    assert log.new_arrays == _ids("a15fc7e15cc2c61f ceffde82865fae19")
    assert log.deleted_groups == log.deleted_arrays == []
    assert log.updated_groups == log.updated_arrays == []
    assert log.updated_chunks == {}

    log = _read(fixtures_dir, repo, "ZA24GZGPNK3GH682Q1R0")
    assert log.new_groups == log.new_arrays == []
    assert _chunks(log) == {
        "a15fc7e15cc2c61f": [[0, 0], [0, 1], [1, 0], [1, 1]],
        "ceffde82865fae19": [[0], [1], [2], [3], [4]],
    }
    for coords in log.updated_chunks.values():
        assert coords.dtype == np.uint32

    assert _chunks(_read(fixtures_dir, repo, "2768FV3XW5ZXYM84XNNG")) == {
        "a15fc7e15cc2c61f": [[0, 0]]
    }
    assert _chunks(_read(fixtures_dir, repo, "QTP2RTYS5YQW8RPSQ93G")) == {"ceffde82865fae19": [[4]]}

    log = _read(fixtures_dir, repo, "H7T8YA6KR5TH32F3PS10")
    assert log.new_groups == _ids(
        "026cde75edf056a2 4d69b3b4f4660de4 7e1266ea322e5bc8 d246b1178616b336"
    )
    assert log.new_arrays == _ids("082ce480563fb770")
    assert log.updated_chunks == {}


def test_v1_log_values(fixtures_dir: Path) -> None:
    for repo in ("test-repo-v1", "test-repo-v2-migrated"):
        log = _read(fixtures_dir, repo, "GC4YVH5SKBPEZCENYQE0")
        assert log.spec_version == 1
        assert log.implementation == "ic-0.1.3"
        assert log.moved_nodes is None  # spec 1 has no moved_nodes field
        assert log.new_groups == _ids("19e0ca6f3e38d592 88d855940139b249")
        assert log.new_arrays == _ids("12a6ae5294405ec2 e62fd64f1b704ee9")
        assert log.updated_chunks == {}

        log = _read(fixtures_dir, repo, "7XAF0Q905SH4938DN9CG")
        assert _chunks(log) == {
            "12a6ae5294405ec2": [[0], [1], [2], [3], [4]],
            "e62fd64f1b704ee9": [[0, 0], [0, 1], [1, 0], [1, 1]],
        }
        assert log.new_groups == log.new_arrays == []
        assert _chunks(_read(fixtures_dir, repo, "NXH3M0HJ7EEJ0699DPP0")) == {
            "e62fd64f1b704ee9": [[0, 0]]
        }
        assert _chunks(_read(fixtures_dir, repo, "4QF8JA0YPDN51MHSSYVG")) == {
            "12a6ae5294405ec2": [[4]]
        }
        log = _read(fixtures_dir, repo, "XDZ162T1TYBEJMK99NPG")
        assert log.new_groups == _ids(
            "13a8a5f07f0ffee5 2a1bac1bfead0ea8 4b1eda44981301c3 d682f068516bfc9d"
        )
        assert log.new_arrays == _ids("ef5b8fb8b35f4f3f")
        assert not (fixtures_dir / repo / "transactions/P874YS3J196959RDHX7G").exists()


# --------------------------------------------------------------------------------------------
# writer behaviour


def test_spec2_always_writes_moved_nodes_and_spec1_never() -> None:
    log = TransactionLog(SnapshotId.random())
    assert decode_transaction_log(encode_transaction_log(log), "x").moved_nodes == []
    v1 = decode_transaction_log(encode_transaction_log(log, spec_version=1), "x")
    assert v1.moved_nodes is None
    assert v1.spec_version == 1
    moving = dataclasses.replace(
        log, moved_nodes=[MoveOperation("/a", "/b", NodeId.random(), NodeType.GROUP)]
    )
    with pytest.raises(FormatError) as err:
        encode_transaction_log(moving, spec_version=1)
    assert err.value.kind == ErrorKind.UNSUPPORTED_OPERATION_FOR_VERSION.value


def test_writer_sorts_everything() -> None:
    a, b, c = (NodeId(bytes([i]) * 8) for i in (1, 2, 3))
    moves = [
        MoveOperation("/x", "/aa", c, NodeType.ARRAY),
        MoveOperation("/y", "/a-b", b, NodeType.GROUP),
        MoveOperation("/z", "/a/b", a, NodeType.ARRAY),
        MoveOperation("/w", "/a", NodeId(bytes(8)), NodeType.GROUP),
    ]
    log = TransactionLog(
        SnapshotId.random(),
        new_groups=[c, a, b],
        deleted_arrays=[b, a],
        updated_chunks={
            c: np.array([[2, 1], [0, 5], [2, 1], [0, 4]]),
            a: [(3,), (1,)],
        },
        moved_nodes=moves,
    )
    got = decode_transaction_log(encode_transaction_log(log), "x")
    assert got.new_groups == [a, b, c]
    assert got.deleted_arrays == [a, b]
    assert list(got.updated_chunks) == [a, c]
    assert got.updated_chunks[c].tolist() == [[0, 4], [0, 5], [2, 1]]  # sorted, unique
    assert got.updated_chunks[a].tolist() == [[1], [3]]
    # segment-wise order of destinations: /a < /a/b < /a-b < /aa
    assert [m.to_path for m in got.moved_nodes] == ["/a", "/a/b", "/a-b", "/aa"]
    assert [m.node_type for m in got.moved_nodes] == [
        NodeType.GROUP,
        NodeType.ARRAY,
        NodeType.GROUP,
        NodeType.ARRAY,
    ]
    assert got.moved_nodes[1] == MoveOperation("/z", "/a/b", a, NodeType.ARRAY)


def test_normalize_chunk_coords() -> None:
    out = normalize_chunk_coords(np.array([[1, 2], [0, 9], [1, 2]], dtype=np.int64))
    assert out.dtype == np.uint32
    assert out.tolist() == [[0, 9], [1, 2]]
    assert normalize_chunk_coords([], ndim=3).shape == (0, 3)
    assert normalize_chunk_coords(np.zeros((5, 0), dtype=np.uint32)).shape == (1, 0)
    assert normalize_chunk_coords([()]).shape == (1, 0)
    already = np.array([[0, 1], [0, 2], [1, 0]], dtype=np.uint32)
    assert normalize_chunk_coords(already) is already  # no copy when nothing to do
    for bad in ([[-1, 0]], [[2**32, 0]], np.zeros(3), [[0.5, 1.0]]):
        with pytest.raises(FormatError):
            normalize_chunk_coords(bad)


def test_encode_rejects_bad_ids() -> None:
    with pytest.raises(FormatError):
        encode_transaction_log(TransactionLog(SnapshotId.random(), new_groups=[b"short"]))
    with pytest.raises(FormatError):
        encode_transaction_log(TransactionLog(SnapshotId.random()), spec_version=3)
    bad_path = MoveOperation("/\ud800", "/b", NodeId.random(), NodeType.GROUP)
    with pytest.raises(FormatError):
        encode_transaction_log(TransactionLog(SnapshotId.random(), moved_nodes=[bad_path]))


def test_transaction_log_equality() -> None:
    node = NodeId.random()
    one = TransactionLog(SnapshotId(bytes(12)), updated_chunks={node: np.array([[1, 2]])})
    same = TransactionLog(SnapshotId(bytes(12)), updated_chunks={node: np.array([[1, 2]])})
    other = TransactionLog(SnapshotId(bytes(12)), updated_chunks={node: np.array([[1, 3]])})
    assert one == same
    assert one != other
    assert one != TransactionLog(SnapshotId(bytes(12)))
    empty_a = TransactionLog(SnapshotId(bytes(12)), updated_chunks={node: np.empty((0, 2))})
    empty_b = TransactionLog(SnapshotId(bytes(12)), updated_chunks={node: np.empty((0, 0))})
    assert empty_a == empty_b


# --------------------------------------------------------------------------------------------
# the vectorized ChunkIndices path


def _grid(n0: int, n1: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(n0), np.arange(n1), indexing="ij")
    return np.stack([i.ravel(), j.ravel()], axis=1).astype(np.uint32)


def test_vectorized_block_is_byte_identical_to_builder() -> None:
    rng = np.random.default_rng(7)
    chunks = {
        NodeId(bytes([1]) * 8): _grid(40, 50),
        NodeId(bytes([2]) * 8): normalize_chunk_coords(rng.integers(0, 9, (300, 5))),
        NodeId(bytes([3]) * 8): np.arange(100, dtype=np.uint32).reshape(-1, 1),
        NodeId(bytes([4]) * 8): np.zeros((1, 0), dtype=np.uint32),  # a 0-d array
        NodeId(bytes([5]) * 8): _grid(8, 8),  # exactly the threshold (64)
        NodeId(bytes([6]) * 8): _grid(9, 7),  # one below the threshold
    }
    log = TransactionLog(
        SnapshotId.random(),
        new_arrays=list(chunks),
        updated_chunks=chunks,
        moved_nodes=[MoveOperation("/p", "/q", NodeId.random(), NodeType.ARRAY)],
    )
    v1_log = dataclasses.replace(log, moved_nodes=None, spec_version=1)
    for spec, log in ((1, v1_log), (2, log)):
        builder = _builder_only(log, spec)
        assert transaction_log_flatbuffer(log, spec) == builder
        assert _numpy_always(log, spec) == builder
        # both readers agree with each other and with the input (payload wrapped as spec 2)
        decoded = _decode_payload(builder, vectorize_min=1)
        assert decoded == dataclasses.replace(log, spec_version=2)
        assert _decode_payload(builder, vectorize_min=1 << 62) == decoded


def test_vectorized_first_array_creates_vtable() -> None:
    """The block writer is right whether or not the shared vtable already exists."""
    chunks = {NodeId(bytes(8)): _grid(10, 10), NodeId(bytes([9]) * 8): _grid(3, 30)}
    log = TransactionLog(SnapshotId(bytes(12)), updated_chunks=chunks, moved_nodes=[])
    assert _numpy_always(log) == _builder_only(log)
    assert decode_transaction_log(encode_transaction_log(log), "x") == log


def test_many_chunks_roundtrip() -> None:
    coords = _grid(400, 500)  # 200k 2-D coordinates
    node = NodeId.random()
    log = TransactionLog(SnapshotId.random(), updated_chunks={node: coords}, moved_nodes=[])
    payload = transaction_log_flatbuffer(log)
    got = _decode_payload(payload)
    assert got == log
    assert got.updated_chunks[node].dtype == np.uint32
    assert got.updated_chunks[node].flags.c_contiguous
    # offsets and coordinates sit at 4-byte aligned positions of the final buffer
    assert len(payload) % 4 == 0
    first_vector = payload.index((len(coords)).to_bytes(4, "little"))
    assert first_vector % 4 == 0


def test_unaligned_gather() -> None:
    buf = bytes(range(64))
    gather = txmod._Gather(buf)
    pos = np.array([0, 1, 5, 60], dtype=np.int64)
    expected = [int.from_bytes(buf[p : p + 4], "little") for p in pos]
    assert gather.u32(pos).tolist() == expected
    assert gather.u32(pos[[0, 3]]).tolist() == [expected[0], expected[3]]
    with pytest.raises(IndexError):
        gather.u32(np.array([61]))
    with pytest.raises(IndexError):
        gather.u32(np.array([-4]))


# --------------------------------------------------------------------------------------------
# hypothesis round trips

_node_id = st.binary(min_size=8, max_size=8).map(NodeId)
_segment = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1, max_size=6
)
_path = st.one_of(
    st.just("/"), st.lists(_segment, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))
)


@st.composite
def _coords(draw) -> np.ndarray:
    ndim = draw(st.integers(0, 4))
    n = draw(st.sampled_from([0, 1, 2, 5, 63, 64, 65, 150]))
    top = draw(st.sampled_from([1, 3, 2**32 - 1]))
    seed = draw(st.integers(0, 2**32 - 1))
    raw = np.random.default_rng(seed).integers(0, top, (n, ndim), endpoint=True, dtype=np.uint64)
    return raw


@st.composite
def _logs(draw, spec: int) -> TransactionLog:
    lists = [draw(st.lists(_node_id, unique=True, max_size=5)) for _ in range(6)]
    chunks = draw(st.dictionaries(_node_id, _coords(), max_size=4))
    moves = None
    if spec == 2:
        moves = draw(
            st.lists(
                st.builds(MoveOperation, _path, _path, _node_id, st.sampled_from(list(NodeType))),
                max_size=5,
            )
        )
    return TransactionLog(
        SnapshotId(draw(st.binary(min_size=12, max_size=12))), *lists, chunks, moves, spec
    )


def _expected(log: TransactionLog) -> TransactionLog:
    return dataclasses.replace(
        log,
        new_groups=sorted(log.new_groups),
        new_arrays=sorted(log.new_arrays),
        deleted_groups=sorted(log.deleted_groups),
        deleted_arrays=sorted(log.deleted_arrays),
        updated_arrays=sorted(log.updated_arrays),
        updated_groups=sorted(log.updated_groups),
        updated_chunks={k: normalize_chunk_coords(v) for k, v in log.updated_chunks.items()},
        moved_nodes=(
            None
            if log.moved_nodes is None
            else sorted(
                log.moved_nodes, key=lambda m: [s.encode() for s in m.to_path.split("/") if s]
            )
        ),
    )


@pytest.mark.parametrize("spec", [1, 2])
@given(data=st.data())
def test_roundtrip(spec: int, data: st.DataObject) -> None:
    log = data.draw(_logs(spec))
    encoded = encode_transaction_log(log, spec_version=spec, implementation="ic-test")
    decoded = decode_transaction_log(encoded, "x")
    expected = _expected(log)
    assert decoded == expected
    assert decoded.implementation == "ic-test"
    for node, coords in decoded.updated_chunks.items():
        assert coords.dtype == np.uint32
        if len(expected.updated_chunks[node]):
            assert coords.shape == expected.updated_chunks[node].shape
    # the builder-only encoder writes the very same bytes
    assert _builder_only(log, spec) == decode_envelope(encoded, "x", FileType.TRANSACTION_LOG)[1]


# --------------------------------------------------------------------------------------------
# corrupt input


@pytest.fixture(scope="module")
def tx_file(fixtures_dir: Path) -> bytes:
    return (fixtures_dir / "test-repo-v2/transactions/ZA24GZGPNK3GH682Q1R0").read_bytes()


def _big_log_file() -> bytes:
    chunks = {NodeId(bytes([1]) * 8): _grid(12, 12), NodeId(bytes([2]) * 8): _grid(2, 3)}
    log = TransactionLog(
        SnapshotId(bytes(12)), new_groups=[NodeId(bytes(8))], updated_chunks=chunks
    )
    return encode_transaction_log(log)


def _assert_format_error(data: bytes, name: str = "transactions/BROKEN") -> FormatError:
    with pytest.raises(FormatError) as err:
        decode_transaction_log(data, name)
    assert name in str(err.value)
    return err.value


def _rewrap(data: bytes, mutate) -> bytes:
    header, buf = decode_envelope(data, "x", FileType.TRANSACTION_LOG)
    return encode_envelope(mutate(bytearray(buf)), FileType.TRANSACTION_LOG, header.spec_version)


def test_header_errors(tx_file: bytes, fixtures_dir: Path) -> None:
    _assert_format_error(b"\x00" * 12 + tx_file[12:])
    _assert_format_error(tx_file[:37] + b"\x07" + tx_file[38:])
    _assert_format_error(tx_file[:37] + b"\x01" + tx_file[38:])  # says snapshot
    error = _assert_format_error(tx_file[:36] + b"\x03" + tx_file[37:])
    assert error.kind == ErrorKind.UNSUPPORTED_SPEC_VERSION.value
    _assert_format_error(tx_file[:10])
    snap = (fixtures_dir / "test-repo-v2/snapshots/ZA24GZGPNK3GH682Q1R0").read_bytes()
    _assert_format_error(snap)
    with pytest.raises(FormatError, match="transactions/ZA24"):
        decode_snapshot(tx_file, "transactions/ZA24")


def test_truncated_zstd(tx_file: bytes) -> None:
    for cut in (HEADER_SIZE, HEADER_SIZE + 5, len(tx_file) - 1):
        _assert_format_error(tx_file[:cut])


@pytest.mark.parametrize("source", ["fixture", "vectorized"])
def test_truncated_flatbuffer(tx_file: bytes, source: str) -> None:
    data = tx_file if source == "fixture" else _big_log_file()
    original = decode_transaction_log(data, "x")
    buf = decode_envelope(data, "x", FileType.TRANSACTION_LOG)[1]
    errors = 0
    for cut in range(0, len(buf), 5):
        try:
            decoded = decode_transaction_log(_rewrap(data, lambda b, c=cut: b[:c]), "tx/CUT")
        except FormatError as err:
            message = str(err)
            errors += 1
        else:
            assert decoded == original
            continue
        assert "tx/CUT" in message
    assert errors >= len(range(0, len(buf), 5)) - 2


def test_ragged_and_missing_coords_are_format_errors() -> None:
    for n in (3, 80):  # struct loop and numpy reader
        log = TransactionLog(
            SnapshotId(bytes(12)), updated_chunks={NodeId(bytes(8)): _grid(1, n)}, moved_nodes=[]
        )
        payload = bytearray(transaction_log_flatbuffer(log))
        # make one coords vector claim 1 element instead of 2 (the last 2-element vector)
        marker = (2).to_bytes(4, "little") + (0).to_bytes(4, "little")
        pos = payload.rindex(marker)
        payload[pos : pos + 4] = (1).to_bytes(4, "little")
        with pytest.raises(FormatError, match="different lengths"):
            decode_transaction_log(encode_envelope(payload, FileType.TRANSACTION_LOG, 2), "x")
        payload[pos : pos + 4] = (2**30).to_bytes(4, "little")  # runs past the end
        with pytest.raises(FormatError):
            decode_transaction_log(encode_envelope(payload, FileType.TRANSACTION_LOG, 2), "x")


@pytest.mark.parametrize("source", ["fixture", "vectorized"])
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=6)
)
def test_fuzz_byte_flips(tx_file: bytes, source: str, flips: list[tuple[int, int]]) -> None:
    data = tx_file if source == "fixture" else _big_log_file()

    def flip(buf: bytearray) -> bytearray:
        for pos, xor in flips:
            buf[pos % len(buf)] ^= xor
        return buf

    try:
        log = decode_transaction_log(_rewrap(data, flip), "tx/FUZZ")
    except FormatError as err:
        message = str(err)
    else:
        assert isinstance(log, TransactionLog)
        for coords in log.updated_chunks.values():
            assert coords.dtype == np.uint32
            assert coords.ndim == 2
        return
    assert "tx/FUZZ" in message


@pytest.mark.slow
def test_million_chunks_block_identical_to_builder() -> None:
    """Soak: 1M coordinates, numpy block writer vs the plain builder (the latter takes ~20 s)."""
    log = TransactionLog(
        SnapshotId(bytes(12)), updated_chunks={NodeId(bytes(8)): _grid(1000, 1000)}, moved_nodes=[]
    )
    payload = transaction_log_flatbuffer(log)
    assert payload == _builder_only(log)
    assert _decode_payload(payload) == log
