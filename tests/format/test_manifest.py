"""Manifest files: fixture values, byte identity with the reference writer, ArrayManifest API,
location compression and corrupt input (FORMAT.md §3.4, §4.7, §6, §9.4)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import zstandard

import icechunk
from icechunk._errors import InvalidInputError
from icechunk.format._manifest_oracle import OracleArray, OracleRef, oracle_build, oracle_read
from icechunk.format.header import HEADER_SIZE, FileType, decode_envelope, encode_envelope
from icechunk.format.ids import ChunkId, ManifestId, NodeId
from icechunk.format.manifest import (
    ArrayManifest,
    ChunkRef,
    LocationCompression,
    Manifest,
    RefKind,
    decode_manifest,
    encode_manifest,
)

INLINE_FRAME = bytes.fromhex("28b52ffd200109000054")
VIRTUAL_LOCATION = "s3://testbucket/can_read_old/chunk-1"
VIRTUAL_LAST_MODIFIED = 4294111232


def _read(fixtures_dir: Path, repo: str, name: str) -> tuple[bytes, Manifest]:
    data = (fixtures_dir / repo / "manifests" / name).read_bytes()
    return data, decode_manifest(data, f"manifests/{name}")


def _assert_native(am: ArrayManifest, coords: tuple[int, ...], chunk: str) -> None:
    ref = am.get(coords)
    assert ref == ChunkRef(RefKind.NATIVE, chunk_id=ChunkId.parse(chunk), offset=0, length=19)


def _assert_virtual(am: ArrayManifest, coords: tuple[int, ...]) -> None:
    ref = am.get(coords)
    assert ref == ChunkRef(
        RefKind.VIRTUAL,
        location=VIRTUAL_LOCATION,
        offset=0,
        length=19,
        last_modified=VIRTUAL_LAST_MODIFIED,
    )


# --------------------------------------------------------------------------------------------
# fixtures: concrete values (fixtures/README.md §2, §3; FORMAT.md §9.4)
# --------------------------------------------------------------------------------------------


def test_v2_native_manifest_values(fixtures_dir: Path) -> None:
    _, m = _read(fixtures_dir, "test-repo-v2", "7TPWNB215VHK4691XAH0")
    assert m.id == ManifestId.parse("7TPWNB215VHK4691XAH0")
    assert m.spec_version == 2
    assert m.implementation == "ic-2.0.0-alpha.7"
    assert len(m.arrays) == 1
    am = m.arrays[0]
    assert am.node_id == NodeId(bytes.fromhex("a15fc7e15cc2c61f"))
    assert am.coords.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert am.kind.tolist() == [RefKind.NATIVE] * 4
    _assert_native(am, (0, 0), "YQ4Q6MYWYJP899FNSK90")
    _assert_native(am, (0, 1), "S7RX4P9PYQ67530ZW0V0")
    _assert_native(am, (1, 0), "Y6147HDSWH0C8FF9NRZ0")
    _assert_native(am, (1, 1), "WJM4MA33JK9EBY6T7500")
    assert am.extents() == [(0, 2), (0, 2)]


def test_v2_virtual_manifest_values(fixtures_dir: Path) -> None:
    _, m = _read(fixtures_dir, "test-repo-v2", "WTMRMCW414QYFTX7JJPG")
    am = m.array(NodeId(bytes.fromhex("a15fc7e15cc2c61f")))
    assert am is not None
    assert am.kind.tolist() == [RefKind.VIRTUAL, RefKind.NATIVE, RefKind.NATIVE, RefKind.NATIVE]
    _assert_virtual(am, (0, 0))
    assert am.etag[0] is None
    _assert_native(am, (0, 1), "S7RX4P9PYQ67530ZW0V0")
    _assert_native(am, (1, 0), "Y6147HDSWH0C8FF9NRZ0")
    _assert_native(am, (1, 1), "WJM4MA33JK9EBY6T7500")
    assert am.chunk_id[0].tolist() == [0] * 12  # not native


@pytest.mark.parametrize(
    ("name", "count"), [("MV3SGP7Q0A17BRBJNNVG", 5), ("RZ09HJ4CVB3KZWKAJFX0", 4)]
)
def test_v2_inline_manifest_values(fixtures_dir: Path, name: str, count: int) -> None:
    _, m = _read(fixtures_dir, "test-repo-v2", name)
    am = m.arrays[0]
    assert am.node_id == NodeId(bytes.fromhex("ceffde82865fae19"))
    assert am.coords.tolist() == [[i] for i in range(count)]
    for i in range(count):
        assert am.get((i,)) == ChunkRef(RefKind.INLINE, inline=INLINE_FRAME)
    assert am.get((count,)) is None
    assert am.offset.tolist() == [0] * count


def test_v1_manifest_values(fixtures_dir: Path) -> None:
    _, m = _read(fixtures_dir, "test-repo-v1", "CMYVHDWMSTG9R25780YG")
    assert m.spec_version == 1
    assert m.implementation == "ic-0.1.3"
    am = m.arrays[0]
    assert am.node_id == NodeId(bytes.fromhex("e62fd64f1b704ee9"))
    _assert_native(am, (0, 0), "52H0E4NSPN8SVRK9EVGG")
    _assert_native(am, (0, 1), "DWQ75SDC624XF9H326RG")
    _assert_native(am, (1, 0), "09HEW2P03CSMHFAZY7DG")
    _assert_native(am, (1, 1), "RW938N1KP2R4BHMW62QG")

    _, m = _read(fixtures_dir, "test-repo-v1", "Q04J7QW5RQ8D17TPA10G")
    am = m.arrays[0]
    _assert_virtual(am, (0, 0))
    _assert_native(am, (0, 1), "DWQ75SDC624XF9H326RG")

    for name, count in (("G3W2W8V6ZG09J6C21WE0", 5), ("SHTEAP8C784YMZSJKBM0", 4)):
        _, m = _read(fixtures_dir, "test-repo-v1", name)
        am = m.arrays[0]
        assert am.node_id == NodeId(bytes.fromhex("12a6ae5294405ec2"))
        assert [ref for _, ref in am.items()] == [
            ChunkRef(RefKind.INLINE, inline=INLINE_FRAME)
        ] * count


@pytest.mark.parametrize(
    ("repo", "spec"), [("test-repo-v2", 2), ("test-repo-v1", 1), ("test-repo-v2-migrated", 1)]
)
def test_fixture_manifests_reencode_byte_identical(
    fixtures_dir: Path, repo: str, spec: int
) -> None:
    files = sorted((fixtures_dir / repo / "manifests").iterdir())
    assert len(files) == 4
    for path in files:
        data = path.read_bytes()
        m = decode_manifest(data, path.name)
        assert m.spec_version == spec
        again = encode_manifest(m, spec_version=spec, implementation=m.implementation)
        assert again == data, path.name
        assert decode_manifest(again, path.name) == m


# --------------------------------------------------------------------------------------------
# ArrayManifest
# --------------------------------------------------------------------------------------------


def _node(i: int = 1) -> NodeId:
    return NodeId(i.to_bytes(8, "big"))


def _mixed(node: NodeId | None = None) -> ArrayManifest:
    return ArrayManifest.from_refs(
        node or _node(),
        2,
        {
            (1, 0): ChunkRef(RefKind.INLINE, inline=b"abc"),
            (0, 1): ChunkRef(RefKind.NATIVE, chunk_id=ChunkId(bytes(range(12))), length=7),
            (0, 0): ChunkRef(RefKind.VIRTUAL, location="s3://b/x", offset=3, length=4, etag='"e1"'),
            (2, 5): ChunkRef(RefKind.VIRTUAL, location="gs://é/✓", length=9, last_modified=17),
        },
    )


def test_array_manifest_from_refs_sorted_and_find() -> None:
    am = _mixed()
    assert len(am) == 4
    assert am.ndim == 2
    assert am.coords.dtype == np.uint32
    assert am.coords.tolist() == [[0, 0], [0, 1], [1, 0], [2, 5]]
    assert am.find((0, 1)) == 1
    assert am.find((2, 5)) == 3
    assert am.find((2, 4)) == -1
    assert am.find((9, 9)) == -1
    assert am.find((0,)) == -1  # wrong number of dimensions
    assert am.find((-1, 0)) == -1
    assert am.find((2**32, 0)) == -1
    assert am.ref(0) == ChunkRef(
        RefKind.VIRTUAL, location="s3://b/x", offset=3, length=4, etag='"e1"'
    )
    assert am.ref(2) == ChunkRef(RefKind.INLINE, inline=b"abc")
    assert am.get((0, 1)) == ChunkRef(RefKind.NATIVE, chunk_id=ChunkId(bytes(range(12))), length=7)
    assert am.find_many(np.array([[2, 5], [0, 0], [3, 3], [0, 1]])).tolist() == [3, 0, -1, 1]


def test_array_manifest_empty_and_zero_dimensional() -> None:
    empty = ArrayManifest.empty(_node(), 3)
    assert len(empty) == 0
    assert empty.coords.shape == (0, 3)
    assert empty.find((0, 0, 0)) == -1
    assert empty.extents() == []
    scalar = ArrayManifest.from_refs(_node(), 0, {(): ChunkRef(RefKind.INLINE, inline=b"\x00")})
    assert scalar.coords.shape == (1, 0)
    assert scalar.find(()) == 0
    assert scalar.get(()) == ChunkRef(RefKind.INLINE, inline=b"\x00")


def test_array_manifest_high_dimensional_keys() -> None:
    refs = {
        (5, 0, 2**31, 7): ChunkRef(RefKind.INLINE, inline=b"a"),
        (5, 0, 2**31, 6): ChunkRef(RefKind.INLINE, inline=b"b"),
        (0, 2**32 - 1, 0, 0): ChunkRef(RefKind.INLINE, inline=b"c"),
    }
    am = ArrayManifest.from_refs(_node(), 4, refs)  # 32+32+32+3 bits: void keys
    assert am.coords.tolist() == [[0, 2**32 - 1, 0, 0], [5, 0, 2**31, 6], [5, 0, 2**31, 7]]
    for coords, ref in refs.items():
        assert am.get(coords) == ref
    assert am.find((5, 0, 2**31, 8)) == -1
    small = ArrayManifest.from_refs(
        _node(), 3, {(1, 2, 3): refs[(5, 0, 2**31, 7)], (1, 2, 2): refs[(0, 2**32 - 1, 0, 0)]}
    )  # packed uint64 keys
    assert small.find((1, 2, 3)) == 1
    assert small.find((1, 2, 4)) == -1
    assert small.find((8, 2, 3)) == -1


def test_from_columns_sorts_and_last_duplicate_wins() -> None:
    am = ArrayManifest.from_columns(
        _node(),
        np.array([[3], [1], [3], [0]]),
        RefKind.NATIVE,
        chunk_id=np.arange(48, dtype=np.uint8).reshape(4, 12),
        length=np.array([10, 11, 12, 13]),
    )
    assert am.coords.ravel().tolist() == [0, 1, 3]
    assert am.length.tolist() == [13, 11, 12]
    assert am.chunk_id[2].tolist() == list(range(24, 36))
    with pytest.raises(InvalidInputError):
        ArrayManifest.from_columns(
            _node(), np.array([[1], [0]]), RefKind.NATIVE, assume_sorted=True
        )
    with pytest.raises(InvalidInputError):
        ArrayManifest.from_columns(_node(), np.array([[-1]]), RefKind.NATIVE)


def test_take_concat_select_without() -> None:
    am = _mixed()
    part = am.take(np.array([3, 0]))
    assert part.coords.tolist() == [[2, 5], [0, 0]]
    newer = ArrayManifest.from_refs(
        _node(),
        2,
        {
            (0, 1): ChunkRef(RefKind.INLINE, inline=b"new"),
            (7, 7): ChunkRef(RefKind.NATIVE, chunk_id=ChunkId(bytes(12)), length=1),
        },
    )
    merged = ArrayManifest.concat(_node(9), [am, newer])
    assert merged.node_id == _node(9)
    assert merged.coords.tolist() == [[0, 0], [0, 1], [1, 0], [2, 5], [7, 7]]
    assert merged.get((0, 1)) == ChunkRef(RefKind.INLINE, inline=b"new")  # later part wins
    assert merged.get((2, 5)) == am.get((2, 5))
    assert ArrayManifest.concat(_node(), [newer, am]).get((0, 1)) == am.get((0, 1))
    box = merged.select_box((0, 1), (3, 6))
    assert box.coords.tolist() == [[0, 1], [2, 5]]
    rest = merged.without(np.array([[0, 1], [4, 4], [7, 7]]))
    assert rest.coords.tolist() == [[0, 0], [1, 0], [2, 5]]
    assert merged.extents() == [(0, 8), (0, 8)]
    one_d = ArrayManifest.from_refs(_node(), 1, {(0,): ChunkRef(RefKind.INLINE, inline=b"")})
    with pytest.raises(InvalidInputError):
        ArrayManifest.concat(_node(), [am, one_d])
    # empty parts do not constrain the dimensionality
    assert ArrayManifest.concat(_node(), [ArrayManifest.empty(_node(), 5), one_d]) == one_d


def test_manifest_array_lookup() -> None:
    arrays = [_mixed(_node(i)) for i in (7, 2, 5)]
    m = Manifest(ManifestId(bytes(12)), sorted(arrays, key=lambda a: bytes(a.node_id)))
    assert m.array(_node(5)) is not None
    assert m.array(_node(5)).node_id == _node(5)
    assert m.array(_node(3)) is None
    assert m.num_chunk_refs == 12


# --------------------------------------------------------------------------------------------
# encoding rules
# --------------------------------------------------------------------------------------------


def _flatbuffer(data: bytes) -> bytes:
    return decode_envelope(data, "x", FileType.MANIFEST)[1]


def _virtual_manifest(
    count: int, *, location: str = "s3://bucket/prefix/data/file-{:07d}.nc"
) -> Manifest:
    am = ArrayManifest.from_columns(
        _node(),
        np.arange(count).reshape(count, 1),
        RefKind.VIRTUAL,
        location=[location.format(i) for i in range(count)],
        offset=np.arange(count) * 100,
        length=np.full(count, 100),
        etag=[f"etag-{i}" if i % 3 == 0 else None for i in range(count)],
        last_modified=np.where(np.arange(count) % 3 == 1, 1_700_000_000, 0),
    )
    return Manifest(ManifestId.random(), [am])


def test_small_manifests_write_explicit_plain_locations() -> None:
    m = _virtual_manifest(999)
    mid, arrays, algorithm, dictionary, has_algorithm = oracle_read(_flatbuffer(encode_manifest(m)))
    assert mid == bytes(m.id)
    assert (algorithm, has_algorithm, dictionary) == (0, True, None)
    assert all(r.location is not None and r.compressed_location is None for r in arrays[0].refs)
    assert decode_manifest(encode_manifest(m), "x") == m


def test_location_compression_with_dictionary() -> None:
    m = _virtual_manifest(1500)
    data = encode_manifest(m)
    _, arrays, algorithm, dictionary, has_algorithm = oracle_read(_flatbuffer(data))
    assert (algorithm, has_algorithm) == (1, False)  # omitted = default 1
    assert dictionary is not None
    assert 0 < len(dictionary) <= 2048
    refs = arrays[0].refs
    assert all(r.location is None and r.compressed_location is not None for r in refs)
    d = zstandard.ZstdCompressionDict(dictionary)
    for ref, expected in zip(refs[:50], m.arrays[0].location[:50], strict=True):
        frame = ref.compressed_location
        params = zstandard.get_frame_parameters(frame)
        assert params.dict_id == d.dict_id()
        assert params.content_size == len(expected)
        plain = zstandard.ZstdDecompressor(dict_data=d).decompress(frame, max_output_size=1024)
        assert plain.decode() == expected
    # checksums: etag wins, last-modified otherwise
    assert refs[0].etag == b"etag-0" and refs[0].last_modified == 0
    assert refs[1].etag is None and refs[1].last_modified == 1_700_000_000
    decoded = decode_manifest(data, "x")
    assert decoded == m
    assert decoded.arrays[0].get((1,)).last_modified == 1_700_000_000
    assert decoded.arrays[0].get((3,)).etag == "etag-3"


def test_location_compression_thresholds() -> None:
    lc = LocationCompression(min_num_chunks=10)
    m = _virtual_manifest(12)
    assert oracle_read(_flatbuffer(encode_manifest(m, location_compression=lc)))[3] is not None
    assert oracle_read(_flatbuffer(encode_manifest(m, location_compression=None)))[3] is None
    # spec 1 never compresses and has no compression_algorithm field
    _, _, _, dictionary, has_algorithm = oracle_read(
        _flatbuffer(encode_manifest(m, spec_version=1, location_compression=lc))
    )
    assert (dictionary, has_algorithm) == (None, False)
    # mostly tiny locations: no dictionary
    tiny = _virtual_manifest(12, location="s3://{}")
    _, _, algorithm, dictionary, _ = oracle_read(
        _flatbuffer(encode_manifest(tiny, location_compression=lc))
    )
    assert (algorithm, dictionary) == (0, None)
    # a location over 1024 bytes: the manifest keeps plain locations
    long = _virtual_manifest(12, location="s3://bucket/" + "x" * 1020 + "{}")
    data = encode_manifest(long, location_compression=lc)
    assert oracle_read(_flatbuffer(data))[3] is None
    assert decode_manifest(data, "x") == long


def _compressed_fixture(frames: list[bytes], dictionary: bytes) -> bytes:
    refs = [OracleRef(index=(i,), length=5, compressed_location=f) for i, f in enumerate(frames)]
    buf = oracle_build(
        bytes(12), [OracleArray(bytes(8), refs)], compression_algorithm=None, dictionary=dictionary
    )
    return encode_envelope(buf, FileType.MANIFEST, 2)


def test_decode_foreign_compressed_locations() -> None:
    samples = [f"s3://bucket/path/to/some/file-{i:05d}.nc".encode() for i in range(300)]
    d = zstandard.train_dictionary(1024, samples)
    plain = zstandard.ZstdCompressor(level=3, dict_data=d)
    no_size = zstandard.ZstdCompressor(level=3, dict_data=d, write_content_size=False)
    frames = [plain.compress(samples[0]), no_size.compress(samples[1]), plain.compress(b"")]
    m = decode_manifest(_compressed_fixture(frames, d.as_bytes()), "x")
    assert m.arrays[0].location.tolist() == [samples[0].decode(), samples[1].decode(), ""]
    assert m.arrays[0].kind.tolist() == [RefKind.VIRTUAL] * 3
    # more than 1024 bytes: refused, like the reference reader
    big = plain.compress(b"x" * 1025)
    with pytest.raises(icechunk.FormatError, match="manifests/BIG"):
        decode_manifest(_compressed_fixture([big], d.as_bytes()), "manifests/BIG")
    big_no_size = no_size.compress(b"x" * 1025)
    with pytest.raises(icechunk.FormatError):
        decode_manifest(_compressed_fixture([big_no_size], d.as_bytes()), "x")
    # compressed locations need the dictionary
    buf = oracle_build(
        bytes(12),
        [OracleArray(bytes(8), [OracleRef(index=(0,), compressed_location=frames[0])])],
        compression_algorithm=0,
    )
    with pytest.raises(icechunk.FormatError, match="dictionary"):
        decode_manifest(encode_envelope(buf, FileType.MANIFEST, 2), "x")


def test_unsorted_foreign_manifest_is_sorted_on_read() -> None:
    refs = [OracleRef(index=(i,), inline=bytes([i])) for i in (3, 1, 2)]
    arrays = [OracleArray(bytes([9]) * 8, refs), OracleArray(bytes([1]) * 8, refs[:1])]
    buf = oracle_build(bytes(12), arrays, compression_algorithm=0)
    m = decode_manifest(encode_envelope(buf, FileType.MANIFEST, 2), "x")
    assert [bytes(a.node_id) for a in m.arrays] == [bytes([1]) * 8, bytes([9]) * 8]
    assert m.arrays[1].coords.ravel().tolist() == [1, 2, 3]
    assert m.arrays[1].inline.tolist() == [b"\x01", b"\x02", b"\x03"]


def test_encode_rejects_bad_input() -> None:
    am = _mixed()
    with pytest.raises(InvalidInputError):
        encode_manifest(Manifest(ManifestId(bytes(12)), [am, am]))
    with pytest.raises(InvalidInputError):
        encode_manifest(Manifest(ManifestId(bytes(12)), [am]), spec_version=3)
    broken = am.take(np.arange(len(am)))
    broken.location = broken.location.copy()
    broken.location[0] = None  # a virtual ref without location
    with pytest.raises(InvalidInputError):
        encode_manifest(Manifest(ManifestId(bytes(12)), [broken]))
    bad_kind = am.take(np.arange(len(am)))
    bad_kind.kind = np.full(len(am), 7, dtype=np.uint8)
    with pytest.raises(InvalidInputError):
        encode_manifest(Manifest(ManifestId(bytes(12)), [bad_kind]))


# --------------------------------------------------------------------------------------------
# corrupt input
# --------------------------------------------------------------------------------------------


def _sample_file(*, compressed: bool = False) -> bytes:
    arrays = [_mixed(_node(1)), _mixed(_node(2))]
    if compressed:
        arrays.append(_virtual_manifest(40).arrays[0])
        arrays[-1].node_id = _node(3)
    lc = LocationCompression(min_num_chunks=30)
    data = encode_manifest(Manifest(ManifestId(bytes(range(12))), arrays), location_compression=lc)
    if compressed:
        assert oracle_read(_flatbuffer(data))[3] is not None
    return data


def test_corrupt_headers_and_streams() -> None:
    data = _sample_file()
    name = "manifests/CORRUPT"
    with pytest.raises(icechunk.FormatError, match=name):
        decode_manifest(b"XCE" + data[3:], name)
    wrong_type = data[:37] + bytes([FileType.SNAPSHOT]) + data[38:]
    with pytest.raises(icechunk.FormatError, match=name):
        decode_manifest(wrong_type, name)
    with pytest.raises(icechunk.FormatError, match=name):
        decode_manifest(data[:-5], name)  # truncated zstd
    with pytest.raises(icechunk.FormatError, match=name):
        decode_manifest(data[:20], name)
    fb = _flatbuffer(data)
    for cut in (0, 3, 8, len(fb) // 3, len(fb) // 2, len(fb) - 9):
        with pytest.raises(icechunk.FormatError, match=name):
            decode_manifest(encode_envelope(fb[:cut], FileType.MANIFEST, 2), name)


@pytest.mark.parametrize("compressed", [False, True])
def test_fuzzed_flatbuffers_only_raise_format_error(compressed: bool) -> None:
    fb = bytearray(_flatbuffer(_sample_file(compressed=compressed)))
    rng = random.Random(1234 + compressed)
    outcomes = {"ok": 0, "error": 0}
    messages: list[str] = []
    for _ in range(400):
        mutated = bytearray(fb)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(mutated))
            mutated[pos] = rng.choice(
                [0, 0xFF, rng.randrange(256), mutated[pos] ^ (1 << rng.randrange(8))]
            )
        data = encode_envelope(bytes(mutated), FileType.MANIFEST, 2)
        try:
            m = decode_manifest(data, "manifests/FUZZ")
        except icechunk.FormatError as err:
            messages.append(str(err))
            outcomes["error"] += 1
        else:
            assert isinstance(m, Manifest)
            outcomes["ok"] += 1
    assert outcomes["error"] > 0 and outcomes["ok"] > 0
    assert all("manifests/FUZZ" in message for message in messages)


def test_header_is_39_bytes_and_spec_byte() -> None:
    data = encode_manifest(Manifest(ManifestId(bytes(12)), [_mixed()]), implementation="ic-test")
    assert data[12:36].rstrip(b" ") == b"ic-test"
    assert data[36:39] == bytes([2, FileType.MANIFEST, 1])
    assert len(data) > HEADER_SIZE
    spec1 = encode_manifest(Manifest(ManifestId(bytes(12)), [_mixed()]), spec_version=1)
    assert spec1[36] == 1
    assert decode_manifest(spec1, "x").spec_version == 1


def test_empty_locations_with_dictionary() -> None:
    """Empty locations (all of one array, or some) survive dictionary compression.

    python-zstandard's bulk APIs refuse (compression) or crash on (decompression) zero-length
    items, so those go through the one-by-one path.
    """
    lc = LocationCompression(min_num_chunks=10)
    empty = _virtual_manifest(20, location="")
    mixed = _virtual_manifest(100, location="s3://bucket/prefix/some/file-{}.nc")
    mixed.arrays[0].location[::5] = ""
    for m in (empty, mixed):
        m.arrays[0].node_id = _node(1)
    both = Manifest(ManifestId(bytes(12)), [mixed.arrays[0], _relabel(empty.arrays[0], 2)])
    data = encode_manifest(both, location_compression=lc)
    assert oracle_read(_flatbuffer(data))[3] is not None
    assert decode_manifest(data, "x") == both


def _relabel(am: ArrayManifest, node: int) -> ArrayManifest:
    out = am.take(np.arange(len(am)))
    out.node_id = _node(node)
    return out
