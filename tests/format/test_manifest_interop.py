"""Interop of the manifest codec with the reference implementation (icechunk 2.x).

Needs a Python with ``icechunk>=2`` and ``zarr`` installed, given by the environment variable
``ICECHUNK_REFERENCE_PYTHON`` or, by default, the cached icechunk 2.2.0 virtualenv that
tests/interop builds (skipped with a reason when it cannot be built).

1. The reference writes a repository whose manifests mix native, inline and virtual refs
   (etag / last-modified checksums, 2-D, 3-D and 0-d arrays, a few thousand refs, and a
   manifest over the location-compression threshold).
2. We decode every manifest and re-encode it: byte-identical for the flatbuffer (the
   dictionary-compressed one is rebuilt from its stored frames) and for the whole file
   when no dictionary is involved.
3. We overwrite the manifests with our own encoding (a freshly trained dictionary for the
   compressed one, so a different size, which we record in the snapshots) and the reference
   must read the same virtual locations and array values.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from icechunk.format._manifest_layout import build_manifest_buffer
from icechunk.format._manifest_read import read_manifest_buffer
from icechunk.format.header import FileType, decode_envelope
from icechunk.format.manifest import decode_manifest, encode_manifest
from icechunk.format.snapshot import decode_snapshot, encode_snapshot

pytestmark = pytest.mark.interop

WRITE = textwrap.dedent(
    """
    import datetime, json, sys
    import numpy as np, icechunk, zarr
    path = sys.argv[1]
    config = icechunk.RepositoryConfig.default()
    config.inline_chunk_threshold_bytes = 40
    config.set_virtual_chunk_container(
        icechunk.VirtualChunkContainer("s3://testbucket/", icechunk.s3_store(region="us-east-1"))
    )
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(path), config)
    s = repo.writable_session("main")
    root = zarr.group(s.store)
    rng = np.random.default_rng(0)
    a = root.create_array("mixed", shape=(50, 40), chunks=(1, 1), dtype="u1", compressors=None, fill_value=0)
    a[:] = rng.integers(0, 255, size=(50, 40), dtype="u1")
    b = root.create_array("cube", shape=(30, 30, 2), chunks=(1, 1, 2), dtype="f8", compressors=None, fill_value=0)
    b[:] = rng.random((30, 30, 2))
    c = root.create_array("big", shape=(100, 300), chunks=(1, 10), dtype="f8", compressors=None, fill_value=0)
    c[:] = rng.random((100, 300))
    d = root.create_array("mix2", shape=(40, 40), chunks=(2, 2), dtype="f8", fill_value=0)
    vals = rng.random((40, 40)); vals[::4, :] = 1.0
    d[:] = vals
    z0 = root.create_array("scalar", shape=(), dtype="f8", compressors=None, fill_value=0)
    z0[()] = 3.5
    root.create_array("virt", shape=(40, 60), chunks=(1, 1), dtype="u1", fill_value=0)
    specs = []
    for i in range(40):
        for j in range(60):
            loc = f"s3://testbucket/some/prefix/{'x' * int(rng.integers(0, 30))}file-{i:04d}-{j:05d}.nc"
            kw = {}
            r = rng.random()
            if r < 0.3:
                kw["etag_checksum"] = f"etag-{i}-{j}" * int(rng.integers(0, 3))
            elif r < 0.6:
                kw["last_updated_at_checksum"] = datetime.datetime(
                    2020, 1, 1, tzinfo=datetime.timezone.utc
                ) + datetime.timedelta(seconds=int(rng.integers(0, 10**8)))
            specs.append(icechunk.VirtualChunkSpec(
                [i, j], loc, int(rng.integers(0, 2**40)) * int(rng.random() < 0.9),
                int(rng.integers(1, 2**30)), **kw))
    s.store.set_virtual_refs("virt", specs)
    m = root.create_array("vmix", shape=(30, 30), chunks=(1, 1), dtype="f8", compressors=None, fill_value=0)
    m[:] = rng.random((30, 30))
    for i in range(0, 30, 2):
        for j in range(0, 30, 3):
            s.store.set_virtual_ref(f"vmix/c/{i}/{j}", f"s3://testbucket/vm/{i}/{j}", offset=i * 100, length=8)
    s.commit("refs")
    """
)

READ = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np, icechunk, zarr
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(sys.argv[1]))
    s = repo.readonly_session("main")
    root = zarr.open_group(s.store, mode="r")
    out = {"virtual": sorted(s.all_virtual_chunk_locations())}
    for name in ("mixed", "cube", "big", "mix2", "scalar"):
        out[name] = hashlib.sha256(np.ascontiguousarray(root[name][...]).tobytes()).hexdigest()
    print(json.dumps(out))
    """
)


def _reference_python() -> str:
    """``ICECHUNK_REFERENCE_PYTHON``, or the cached icechunk 2.2.0 virtualenv of tests/interop."""
    python = os.environ.get("ICECHUNK_REFERENCE_PYTHON")
    if python:
        return python
    from tests.interop.reference import reference_python

    return str(reference_python("2.2.0"))


def _run(python: str, script: str, *args: str) -> str:
    # run outside the project so the reference package is imported, not ours
    result = subprocess.run(
        [python, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd="/",
        check=True,
        timeout=600,
    )
    return result.stdout


def test_reference_manifests_round_trip(tmp_path: Path) -> None:
    python = _reference_python()
    repo = tmp_path / "repo"
    _run(python, WRITE, str(repo))
    before = json.loads(_run(python, READ, str(repo)))
    assert len(before["virtual"]) == 2400 + 150

    manifests = sorted((repo / "manifests").iterdir())
    assert len(manifests) == 7
    saw_dictionary = saw_mixed = False
    sizes: dict[str, int] = {}
    for path in manifests:
        data = path.read_bytes()
        header, buf = decode_envelope(data, path.name, FileType.MANIFEST)
        wire = read_manifest_buffer(buf)
        rebuilt = build_manifest_buffer(
            wire.id,
            wire.arrays,
            compression_algorithm=wire.compression_algorithm if wire.has_algorithm else None,
            dictionary=wire.dictionary,
        )
        assert bytes(rebuilt) == buf, path.name
        m = decode_manifest(data, path.name)
        kinds = {int(k) for a in m.arrays for k in a.kind}
        saw_mixed |= len(kinds) > 1
        ours = encode_manifest(m, implementation=header.implementation)
        if wire.dictionary is None:
            assert ours == data, path.name
        else:
            saw_dictionary = True
            assert decode_manifest(ours, path.name) == m
            ours_wire = read_manifest_buffer(decode_envelope(ours, "x", FileType.MANIFEST)[1])
            assert ours_wire.dictionary is not None  # our own, freshly trained
        path.write_bytes(ours)
        sizes[path.name] = len(ours)
    assert saw_dictionary and saw_mixed
    _patch_manifest_sizes(repo, sizes)

    after = json.loads(_run(python, READ, str(repo)))
    assert after == before


def _patch_manifest_sizes(repo: Path, sizes: dict[str, int]) -> None:
    """Record the new manifest sizes in the snapshots (the reference reads that many bytes)."""
    for path in (repo / "snapshots").iterdir():
        snapshot = decode_snapshot(path.read_bytes(), path.name)
        files = tuple(
            dataclasses.replace(info, size_bytes=sizes.get(str(info.id), info.size_bytes))
            for info in snapshot.manifest_files
        )
        if files != snapshot.manifest_files:
            patched = dataclasses.replace(snapshot, manifest_files=files)
            path.write_bytes(encode_snapshot(patched, implementation=snapshot.implementation))
