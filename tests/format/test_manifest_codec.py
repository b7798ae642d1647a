"""Property tests of the vectorized manifest codec.

- encode -> decode is the identity (all ref kinds mixed, many arrays, 0-d arrays, unicode
  locations, etags, last-modified, spec 1 and 2, with and without location compression);
- the vectorized writer produces exactly the bytes of ``flatbuffers.Builder`` driven in the
  reference build order (``_manifest_oracle``), so its buffers are as valid as the builder's;
- a straightforward per-ref ``Table`` reader reads the same values, and every u16/u32/u64
  scalar in our buffers is naturally aligned relative to the buffer start (the Rust verifier
  rejects unaligned scalars).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import icechunk.format._manifest_layout as layout
from icechunk.format._manifest_layout import build_manifest_buffer
from icechunk.format._manifest_oracle import (
    OracleArray,
    OracleRef,
    oracle_build,
    oracle_read,
    table_field_positions,
)
from icechunk.format._manifest_read import read_manifest_buffer
from icechunk.format._manifest_wire import (
    B_CHUNK_ID,
    B_COMPRESSED_LOCATION,
    B_ETAG,
    B_INLINE,
    B_LAST_MODIFIED,
    B_LENGTH,
    B_LOCATION,
    B_OFFSET,
    Segments,
    WireArray,
)
from icechunk.format.header import FileType, decode_envelope
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

U64 = st.integers(0, 2**64 - 1)
SMALL_U64 = st.sampled_from([0, 0, 1, 19, 2**32, 2**63 + 5])
locations = st.one_of(
    st.text(max_size=70),
    st.from_regex(r"s3://[a-z]{1,8}/[a-z0-9/_.-]{0,60}", fullmatch=True),
)


@st.composite
def chunk_refs(draw: st.DrawFn) -> ChunkRef:
    kind = draw(st.sampled_from(list(RefKind)))
    if kind == RefKind.NATIVE:
        return ChunkRef(
            kind,
            chunk_id=ChunkId(draw(st.binary(min_size=12, max_size=12))),
            offset=draw(st.one_of(SMALL_U64, U64)),
            length=draw(st.one_of(SMALL_U64, U64)),
        )
    if kind == RefKind.INLINE:
        return ChunkRef(kind, inline=draw(st.binary(max_size=40)))
    checksum = draw(st.sampled_from(["none", "etag", "last_modified"]))
    return ChunkRef(
        kind,
        location=draw(locations),
        offset=draw(st.one_of(SMALL_U64, U64)),
        length=draw(st.one_of(SMALL_U64, U64)),
        etag=draw(st.text(max_size=20)) if checksum == "etag" else None,
        last_modified=draw(st.integers(1, 2**32 - 1)) if checksum == "last_modified" else 0,
    )


@st.composite
def array_manifests(draw: st.DrawFn, node: bytes) -> ArrayManifest:
    ndim = draw(st.integers(0, 4))
    if ndim == 0:
        keys = draw(st.sampled_from([[], [()]]))
    else:
        coord = st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1))
        keys = draw(st.lists(st.tuples(*[coord] * ndim), max_size=40, unique=True))
    refs = {k: draw(chunk_refs()) for k in keys}
    return ArrayManifest.from_refs(NodeId(node), ndim, refs)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    nodes = draw(st.lists(st.binary(min_size=8, max_size=8), max_size=4, unique=True))
    arrays = [draw(array_manifests(n)) for n in sorted(nodes)]
    return Manifest(ManifestId(draw(st.binary(min_size=12, max_size=12))), arrays)


def _expected(m: Manifest) -> Manifest:
    """What a round trip gives back: arrays sorted; inline refs carry no offset/length; a
    virtual ref keeps one checksum (etag over last-modified); an array without refs has no index vector to tell its dimensionality, so it reads as 0-d."""
    arrays = []
    for am in m.arrays:
        if len(am) == 0:
            arrays.append(ArrayManifest.empty(am.node_id, 0))
            continue
        am = am.take(np.arange(len(am)))
        inline = am.kind == RefKind.INLINE
        am.offset = np.where(inline, np.uint64(0), am.offset)
        am.length = np.where(inline, np.uint64(0), am.length)
        # one checksum at most: the etag wins over last-modified
        has_etag = np.array([e is not None for e in am.etag], dtype=bool)
        am.last_modified = np.where(has_etag, np.uint32(0), am.last_modified)
        arrays.append(am)
    return Manifest(m.id, sorted(arrays, key=lambda a: bytes(a.node_id)), m.spec_version)


@settings(max_examples=60)
@given(m=manifests(), spec=st.sampled_from([1, 2]), compress=st.booleans())
def test_round_trip(m: Manifest, spec: int, compress: bool) -> None:
    lc = LocationCompression(min_num_chunks=3) if compress else None
    data = encode_manifest(m, spec_version=spec, location_compression=lc)
    back = decode_manifest(data, "manifests/X")
    assert back.spec_version == spec
    assert back == _expected(Manifest(m.id, m.arrays, spec))
    # and the encoding is stable
    if not compress:
        assert encode_manifest(back, spec_version=spec, location_compression=lc) == data


def _wire_from_oracle(arr: OracleArray) -> WireArray:
    n = len(arr.refs)
    ndim = len(arr.refs[0].index) if n else 0
    shape = np.zeros(n, dtype=np.uint16)
    cols: dict[str, tuple[list[int], list[bytes]]] = {
        k: ([], []) for k in ("inline", "location", "etag", "compressed_location")
    }
    chunk_id = np.zeros((n, 12), dtype=np.uint8)
    for i, r in enumerate(arr.refs):
        bits = 0
        bits |= B_LENGTH if r.length else 0
        bits |= B_OFFSET if r.offset else 0
        bits |= B_LAST_MODIFIED if r.last_modified else 0
        if r.chunk_id is not None:
            bits |= B_CHUNK_ID
            chunk_id[i] = np.frombuffer(r.chunk_id, dtype=np.uint8)
        for name, bit in (
            ("inline", B_INLINE),
            ("location", B_LOCATION),
            ("etag", B_ETAG),
            ("compressed_location", B_COMPRESSED_LOCATION),
        ):
            value = getattr(r, name)
            if value is not None:
                bits |= bit
                cols[name][0].append(i)
                cols[name][1].append(value)
        shape[i] = bits
    return WireArray(
        node_id=arr.node_id,
        coords=np.array([r.index for r in arr.refs], dtype=np.uint32).reshape(n, ndim),
        shape=shape,
        offset=np.array([r.offset for r in arr.refs], dtype=np.uint64),
        length=np.array([r.length for r in arr.refs], dtype=np.uint64),
        chunk_id=chunk_id,
        last_modified=np.array([r.last_modified for r in arr.refs], dtype=np.uint32),
        **{
            k: Segments.from_bytes_list(np.array(rows, dtype=np.int64), values)
            for k, (rows, values) in cols.items()
        },
    )


@st.composite
def oracle_refs(draw: st.DrawFn, index: tuple[int, ...]) -> OracleRef:
    """Any field combination the reference writer produces (virtual: plain or compressed)."""
    kind = draw(st.sampled_from(["native", "inline", "virtual", "compressed"]))
    fields: dict[str, object] = {"index": index}
    if kind == "native":
        fields["chunk_id"] = draw(st.binary(min_size=12, max_size=12))
    elif kind == "inline":
        fields["inline"] = draw(st.binary(max_size=33))
        return OracleRef(**fields)  # type: ignore[arg-type]
    elif kind == "virtual":
        fields["location"] = draw(st.text(max_size=30)).encode()
    else:
        fields["compressed_location"] = draw(st.binary(max_size=30))
    fields["offset"] = draw(SMALL_U64)
    fields["length"] = draw(SMALL_U64)
    if kind in ("virtual", "compressed"):
        choice = draw(st.sampled_from(["none", "etag", "last_modified"]))
        if choice == "etag":
            fields["etag"] = draw(st.text(max_size=12)).encode()
        elif choice == "last_modified":
            fields["last_modified"] = draw(st.integers(1, 2**32 - 1))
    return OracleRef(**fields)  # type: ignore[arg-type]


@st.composite
def oracle_arrays(draw: st.DrawFn, node: bytes, max_refs: int = 30) -> OracleArray:
    ndim = draw(st.integers(0, 3))
    if ndim == 0:
        keys = draw(st.sampled_from([[], [()]]))
    else:
        keys = sorted(
            draw(st.lists(st.tuples(*[st.integers(0, 9)] * ndim), max_size=max_refs, unique=True))
        )
    # long runs of one shape exercise the writer's strided fast path
    template = draw(oracle_refs(())) if draw(st.booleans()) else None
    refs = []
    for k in keys:
        if template is not None and template.inline is None:
            refs.append(OracleRef(**{**template.__dict__, "index": k}))
        else:
            refs.append(draw(oracle_refs(k)))
    return OracleArray(node, refs)


def _assert_aligned(buf: bytes) -> None:
    for kind, pos in table_field_positions(buf):
        width = {"u16": 2, "u32": 4, "i32": 4, "u64": 8}[kind]
        assert pos % width == 0, f"{kind} at {pos} is not aligned"
    assert len(buf) % 4 == 0


@settings(max_examples=80)
@given(
    nodes=st.lists(st.binary(min_size=8, max_size=8), max_size=3, unique=True),
    data=st.data(),
    algorithm=st.sampled_from([None, 0]),
    with_dictionary=st.booleans(),
    min_run=st.sampled_from([2, 5, layout._MIN_RUN]),
    in_place=st.booleans(),
    builder_max=st.sampled_from([0, 4, layout._BUILDER_MAX]),
)
def test_vectorized_writer_matches_builder(
    nodes: list[bytes],
    data: st.DataObject,
    algorithm: int | None,
    with_dictionary: bool,
    min_run: int,
    in_place: bool,
    builder_max: int,
) -> None:
    """Both writers (vectorized, and ref by ref up to ``builder_max`` refs per block, mixed
    within one manifest) reproduce the stock builder's bytes."""
    arrays = [data.draw(oracle_arrays(n)) for n in sorted(nodes)]
    mid = data.draw(st.binary(min_size=12, max_size=12))
    dictionary = data.draw(st.binary(max_size=40)) if with_dictionary else None
    expected = oracle_build(mid, arrays, compression_algorithm=algorithm, dictionary=dictionary)
    saved = layout._MIN_RUN, layout._IN_PLACE, layout._BUILDER_MAX
    layout._MIN_RUN, layout._IN_PLACE, layout._BUILDER_MAX = min_run, in_place, builder_max
    try:
        got = bytes(
            build_manifest_buffer(
                mid,
                [_wire_from_oracle(a) for a in arrays],
                compression_algorithm=algorithm,
                dictionary=dictionary,
            )
        )
    finally:
        layout._MIN_RUN, layout._IN_PLACE, layout._BUILDER_MAX = saved
    assert got == expected
    _assert_aligned(got)
    # the vectorized reader agrees with the per-ref Table reader
    _, oracle_arrays_read, _, oracle_dict, _ = oracle_read(got)
    assert oracle_arrays_read == arrays
    assert oracle_dict == dictionary
    wire = read_manifest_buffer(got)
    assert [
        bytes(
            build_manifest_buffer(
                wire.id, wire.arrays, compression_algorithm=algorithm, dictionary=wire.dictionary
            )
        )
    ] == [got]


def _big_mixed(n: int, seed: int) -> Manifest:
    rng = np.random.default_rng(seed)
    side = int(np.sqrt(n))
    i, j = np.divmod(np.arange(side * side), side)
    count = side * side
    kind = rng.choice(
        [RefKind.NATIVE, RefKind.VIRTUAL, RefKind.INLINE], size=count, p=[0.6, 0.3, 0.1]
    )
    kind[: count // 2] = RefKind.NATIVE  # a long uniform run, then a mix
    virtual = kind == RefKind.VIRTUAL
    inline = kind == RefKind.INLINE
    location = np.empty(count, dtype=object)
    location[virtual] = [f"s3://bucket/{'x' * (k % 7)}/f-{k}.nc" for k in np.flatnonzero(virtual)]
    etag = np.empty(count, dtype=object)
    etag[virtual & (np.arange(count) % 2 == 0)] = "etag"
    payloads = np.empty(count, dtype=object)
    payloads[inline] = [bytes(k % 13) for k in np.flatnonzero(inline)]
    am = ArrayManifest.from_columns(
        NodeId(bytes(8)),
        np.stack([i, j], axis=1),
        kind,
        chunk_id=rng.integers(0, 256, size=(count, 12), dtype=np.uint8),
        offset=np.where(inline, 0, rng.integers(0, 3, size=count) * 1000),
        length=np.where(inline, 0, rng.integers(0, 2**40, size=count)),
        inline=payloads,
        location=location,
        etag=etag,
        last_modified=np.where(virtual, rng.integers(0, 5, size=count), 0),
    )
    am.chunk_id[kind != RefKind.NATIVE] = 0
    return Manifest(ManifestId(bytes(range(12))), [am])


@pytest.mark.parametrize("compress", [False, True])
def test_large_mixed_manifest(compress: bool) -> None:
    m = _big_mixed(20_000, 7)
    lc = LocationCompression(min_num_chunks=1000) if compress else None
    data = encode_manifest(m, location_compression=lc)
    assert decode_manifest(data, "x") == _expected(m)
    buf = decode_envelope(data, "x", FileType.MANIFEST)[1]
    wire = read_manifest_buffer(buf)
    has_dict = wire.dictionary is not None
    assert has_dict == compress
    _assert_aligned(buf)
    # the same bytes as the builder, for the decoded wire form (compressed frames included)
    mid, arrays, algorithm, dictionary, has_algorithm = oracle_read(buf)
    rebuilt = oracle_build(
        mid,
        arrays,
        compression_algorithm=algorithm if has_algorithm else None,
        dictionary=dictionary,
    )
    assert rebuilt == buf


def test_lookup_on_large_manifest_is_fast() -> None:
    m = _big_mixed(40_000, 3)
    am = m.arrays[0]
    am.find((0, 0))  # builds the cached key
    import time

    probes = [(int(a), int(b)) for a, b in am.coords[::97].tolist()]
    t0 = time.perf_counter()
    rows = [am.find(p) for p in probes]
    per_lookup = (time.perf_counter() - t0) / len(probes)
    assert rows == list(range(0, len(am), 97))
    assert per_lookup < 50e-6  # a few microseconds normally; generous for loaded CI machines


def test_pipelined_location_compression_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compression in many chunks on the thread pool, refs laid out block by block."""
    import icechunk.format._location_codec as location_codec
    import icechunk.format.manifest as manifest_module

    monkeypatch.setattr(location_codec, "_CHUNK", 97)
    monkeypatch.setattr(location_codec, "_THREADED_FROM", 10)
    monkeypatch.setattr(manifest_module, "_COMPRESSED_BLOCK", 3 * 97)
    m = _big_mixed(3_000, 11)
    data = encode_manifest(m, location_compression=LocationCompression(min_num_chunks=100))
    assert decode_manifest(data, "x") == _expected(m)
    buf = decode_envelope(data, "x", FileType.MANIFEST)[1]
    mid, arrays, algorithm, dictionary, has_algorithm = oracle_read(buf)
    assert dictionary is not None and not has_algorithm
    assert sum(r.compressed_location is not None for r in arrays[0].refs) > 300
    assert oracle_build(mid, arrays, compression_algorithm=None, dictionary=dictionary) == buf


def test_repeated_locations_are_compressed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consecutive refs into one file share a compressed frame (identical bytes anyway)."""
    import icechunk.format._location_codec as location_codec
    import icechunk.format.manifest as manifest_module

    monkeypatch.setattr(location_codec, "_CHUNK", 50)
    monkeypatch.setattr(location_codec, "_THREADED_FROM", 10)
    monkeypatch.setattr(manifest_module, "_COMPRESSED_BLOCK", 130)
    count = 2_000
    locations = [f"s3://bucket/run/file-{i // 7:05d}.nc" for i in range(count)]
    locations[5] = "s3://bucket/other.nc"
    am = ArrayManifest.from_columns(
        NodeId(bytes(8)),
        np.arange(count).reshape(count, 1),
        RefKind.VIRTUAL,
        location=locations,
        offset=np.arange(count) * 10,
        length=np.full(count, 10),
    )
    m = Manifest(ManifestId(bytes(12)), [am])
    data = encode_manifest(m, location_compression=LocationCompression(min_num_chunks=100))
    assert decode_manifest(data, "x") == m
    _, arrays, _, dictionary, _ = oracle_read(decode_envelope(data, "x", FileType.MANIFEST)[1])
    assert dictionary is not None
    frames = [r.compressed_location for r in arrays[0].refs]
    assert frames[7] == frames[8] == frames[13] != frames[14]
