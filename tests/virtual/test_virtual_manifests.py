"""Manifests holding virtual refs: location dictionary at commit (FORMAT.md §4.7), fixtures,
de-duplicated encoding and lazily decoded locations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

import icechunk as ic
from icechunk import ErrorKind, FormatError, RepositoryConfig, VirtualChunkContainer
from icechunk.credentials import LocalFileSystemAccess
from icechunk.format._manifest_read import read_manifest_buffer
from icechunk.format.header import FileType, decode_envelope
from icechunk.format.ids import ManifestId, NodeId
from icechunk.format.manifest import (
    ArrayManifest,
    LocationCompression,
    Manifest,
    RefKind,
    decode_manifest,
    encode_manifest,
)
from icechunk.storage import local_filesystem_store


def _commit_refs(tmp_path: Path, n: int, files: int) -> tuple[ic.Repository, Path, list[str]]:
    data = tmp_path / "data"
    data.mkdir()
    urls = []
    for f in range(files):
        (data / f"part-{f:03d}.bin").write_bytes(np.arange(f * 1000, f * 1000 + n, dtype="<u4").tobytes())
        urls.append(f"file://{data}/part-{f:03d}.bin")
    config = RepositoryConfig.default()
    config.set_virtual_chunk_container(VirtualChunkContainer(f"file://{data}/", local_filesystem_store(str(data))))
    repo = ic.Repository.create(
        ic.local_filesystem_storage(str(tmp_path / "repo")), config,
        authorize_virtual_chunk_access={f"file://{data}/": LocalFileSystemAccess},
    )
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="v", shape=(n,), chunks=(1,), dtype="<u4", compressors=None, fill_value=0)
    idx = np.arange(n)
    locations = [urls[i % files] for i in range(n)]
    assert session.store.set_virtual_refs_arr("v", (n,), locations, idx * 4, np.full(n, 4)) is None
    session.commit(f"{n} virtual refs")
    return repo, data, urls


def _only_manifest(repo_path: Path):  # type: ignore[no-untyped-def]
    (path,) = (repo_path / "manifests").iterdir()
    header, buf = decode_envelope(path.read_bytes(), path.name, FileType.MANIFEST)
    return path, read_manifest_buffer(buf)


def test_commit_with_1000_virtual_refs_writes_a_location_dictionary(tmp_path: Path) -> None:
    repo, data, urls = _commit_refs(tmp_path, 1000, files=7)
    path, wire = _only_manifest(tmp_path / "repo")
    assert wire.dictionary is not None and len(wire.dictionary) > 0
    assert wire.compression_algorithm == 1 and not wire.has_algorithm  # field omitted -> 1
    (arr,) = wire.arrays
    assert len(arr.compressed_location) == 1000 and len(arr.location) == 0
    # each frame is a standalone zstd frame of the location, with the manifest dictionary
    import zstandard

    dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(wire.dictionary))
    first = dctx.decompress(arr.compressed_location.item(0), max_output_size=1024)
    assert first.decode() == urls[0]
    # and it reads back through the engine, in a fresh handle
    fresh = ic.Repository.open(
        repo.storage, authorize_virtual_chunk_access={f"file://{data}/": LocalFileSystemAccess}
    )
    values = zarr.open_array(fresh.readonly_session("main").store, path="v")[:]
    expected = np.array([(i % 7) * 1000 + i for i in range(1000)], dtype="<u4")
    np.testing.assert_array_equal(values, expected)
    decoded = decode_manifest(path.read_bytes(), path.name)
    assert sorted(set(decoded.arrays[0].location.tolist())) == urls


def test_below_1000_refs_locations_stay_plain(tmp_path: Path) -> None:
    _commit_refs(tmp_path, 999, files=3)
    _, wire = _only_manifest(tmp_path / "repo")
    assert wire.dictionary is None
    assert wire.compression_algorithm == 0 and wire.has_algorithm  # explicit 0
    assert len(wire.arrays[0].location) == 999 and len(wire.arrays[0].compressed_location) == 0


@pytest.mark.parametrize(
    ("fixture", "manifest", "node_hint"),
    [("test-repo-v2", "WTMRMCW414QYFTX7JJPG", None), ("test-repo-v1", "Q04J7QW5RQ8D17TPA10G", None)],
)
def test_fixture_manifests_with_virtual_refs_decode(fixtures_dir: Path, fixture: str, manifest: str, node_hint: object) -> None:
    path = fixtures_dir / fixture / "manifests" / manifest
    decoded = decode_manifest(path.read_bytes(), manifest)
    (arr,) = decoded.arrays
    row = arr.find((0, 0))
    ref = arr.ref(row)
    assert ref.kind == RefKind.VIRTUAL
    assert ref.location == "s3://testbucket/can_read_old/chunk-1"
    assert (ref.offset, ref.length, ref.etag, ref.last_modified) == (0, 19, None, 4294111232)
    assert [int(k) for k in arr.kind] == [RefKind.VIRTUAL, RefKind.NATIVE, RefKind.NATIVE, RefKind.NATIVE]


def _virtual_table(n: int, locations: list[str]) -> ArrayManifest:
    loc = np.empty(n, dtype=object)
    loc[:] = locations
    return ArrayManifest.from_columns(
        NodeId.random(),
        np.arange(n, dtype=np.uint32).reshape(n, 1),
        RefKind.VIRTUAL,
        offset=np.arange(n, dtype=np.uint64) * 10,
        length=np.full(n, 10, dtype=np.uint64),
        location=loc,
        etag=[None] * (n - 1) + ["etag-last"],
        # at most one checksum per ref is stored: the etag row has no last-modified
        last_modified=np.append(np.full(n - 1, 1_700_000_000, dtype=np.uint32), 0),
    )


@pytest.mark.parametrize("distinct", [3, 5000])
def test_big_manifests_round_trip_with_repeated_and_distinct_locations(distinct: int) -> None:
    n = 6000
    locations = [f"s3://bucket/dir/file-{i % distinct:05d}.nc" for i in range(n)]
    table = _virtual_table(n, locations)
    data = encode_manifest(Manifest(ManifestId.random(), [table]))
    decoded = decode_manifest(data, "m").arrays[0]
    # single refs decode without building the whole column
    assert decoded.ref(4321).location == locations[4321]
    assert decoded.ref(n - 1).etag == "etag-last" and decoded.ref(0).last_modified == 1_700_000_000
    assert decoded.get((17,)).location == locations[17]
    assert decoded == table  # the column, materialized
    assert decoded.take(np.array([5, 6])).location.tolist() == locations[5:7]
    # re-encoding what was decoded gives the same refs
    again = decode_manifest(encode_manifest(Manifest(ManifestId.random(), [decoded])), "m2").arrays[0]
    assert again == table


def test_repeated_locations_compress_to_the_per_location_frames() -> None:
    """However repeats are shared while compressing, every ref gets its location's frame."""
    import zstandard

    from icechunk.format._location_codec import compress_locations, train_location_dictionary
    from icechunk.format._manifest_wire import pack_strings

    n = 8192
    # runs of one file (consecutive repeats) and an interleaved tail
    locations = [f"gs://bkt/granule-{i // 1000}.h5" for i in range(n - 200)]
    locations += [f"gs://bkt/granule-{i % 3}.h5" for i in range(200)]
    seg = pack_strings(np.arange(n), locations)
    dictionary = train_location_dictionary(seg, max_samples=100, max_size=2048)
    assert dictionary is not None
    frames = compress_locations(seg, dictionary, 3)
    cctx = zstandard.ZstdCompressor(level=3, dict_data=zstandard.ZstdCompressionDict(dictionary))
    for i in (0, 1, 999, 1000, 4095, n - 201, n - 200, n - 1):
        assert frames.item(i) == cctx.compress(locations[i].encode())


def test_corrupt_lazily_decoded_location_is_a_format_error() -> None:
    n = 5000
    table = _virtual_table(n, [f"s3://bucket/file-{i % 4}.nc" for i in range(n)])
    data = encode_manifest(
        Manifest(ManifestId.random(), [table]), location_compression=LocationCompression(min_num_chunks=10**9)
    )
    decoded = decode_manifest(data, "m").arrays[0]
    lazy = decoded._lazy
    assert lazy is not None
    # damage the stored bytes of one plain location (invalid UTF-8)
    seg = lazy._pseg
    raw = seg.data.copy()
    raw[int(seg.starts[3])] = 0xFF
    lazy._pseg = type(seg)(seg.rows, raw, seg.starts, seg.lengths)
    with pytest.raises(FormatError) as err:
        decoded.ref(3)
    assert err.value.kind == ErrorKind.DESERIALIZATION
    assert decoded.ref(4).location == "s3://bucket/file-0.nc"
