"""Inspection dicts (API.md §2.6), manifest listing, progress bars and top-level utilities."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import icechunk as ic
from icechunk._utilities import print_debug_info, supported_spec_versions
from icechunk.core.progress import Progress, progress_enabled
from icechunk.format.ids import NodeId


@pytest.fixture
def v2(fixture_copy) -> ic.Repository:
    return ic.Repository.open(ic.local_filesystem_storage(str(fixture_copy("test-repo-v2"))))


def test_inspect_snapshot_shape(v2: ic.Repository) -> None:
    snap = v2.inspect_snapshot("H7T8YA6KR5TH32F3PS10")
    assert set(snap) == {"id", "header", "flushed_at", "commit_message", "metadata", "manifests", "nodes"}
    assert snap["header"] == {
        "written_by": "ic-2.0.0-alpha.7", "app_name": "ic", "app_version": "2.0.0-alpha.7",
        "spec_version": "2.0", "file_type": "snapshot", "compression": "zstd",
    }
    assert snap["flushed_at"] == "2026-04-08T16:15:57.463413Z"
    assert snap["id"] == "H7T8YA6KR5TH32F3PS10"
    assert snap["commit_message"] == "some more structure"
    assert {m["id"] for m in snap["manifests"]} == {"RZ09HJ4CVB3KZWKAJFX0", "WTMRMCW414QYFTX7JJPG"}
    big = next(n for n in snap["nodes"] if n["path"] == "/group1/big_chunks")
    assert big["node_type"] == "array" and big["id"] == str(NodeId(bytes.fromhex("a15fc7e15cc2c61f")))
    assert big["shape"] == [{"array_length": 10, "num_chunks": 2}] * 2
    assert big["manifest_refs"] == [{"id": "WTMRMCW414QYFTX7JJPG", "extents": [[0, 2], [0, 2]]}]
    files = v2.list_manifest_files("H7T8YA6KR5TH32F3PS10")
    assert sorted((f.id, f.size_bytes, f.num_chunk_refs) for f in files) == [
        ("RZ09HJ4CVB3KZWKAJFX0", 169, 4), ("WTMRMCW414QYFTX7JJPG", 282, 4)
    ]


def test_inspect_manifest_shape(v2: ic.Repository) -> None:
    manifest = v2.inspect_manifest("WTMRMCW414QYFTX7JJPG")
    assert set(manifest) == {
        "id", "header", "size_bytes", "num_arrays", "total_chunk_refs", "total_inline", "total_native",
        "total_virtual", "arrays", "compression",
    }
    assert manifest["size_bytes"] == 336  # the decompressed flatbuffer, as the reference reports
    assert manifest["arrays"] == [
        {"node_id": str(NodeId(bytes.fromhex("a15fc7e15cc2c61f"))), "num_chunk_refs": 4,
         "num_inline": 0, "num_native": 3, "num_virtual": 1}
    ]
    assert (manifest["num_arrays"], manifest["total_chunk_refs"]) == (1, 4)
    assert (manifest["total_native"], manifest["total_virtual"], manifest["total_inline"]) == (3, 1, 0)
    assert v2.inspect_manifest("RZ09HJ4CVB3KZWKAJFX0")["total_inline"] == 4


def test_inspect_repo_info_and_transaction_log_shapes(v2: ic.Repository) -> None:
    info = v2.inspect_repo_info()
    assert set(info) == {
        "header", "spec_version", "branches", "tags", "deleted_tags", "snapshots", "metadata", "latest_updates",
    }
    assert info["spec_version"] == "2.0"
    assert info["snapshots"][0] == {
        "id": "1CECHNKREP0F1RSTCMT0", "flushed_at": "2026-04-08T16:15:57.441284Z",
        "message": "Repository initialized", "metadata": {"__icechunk": {"is_root": True}},
    }
    assert info["latest_updates"][1] == {
        "update_type": {"type": "NewCommitUpdate", "branch": "my-branch", "new_snap_id": "H7T8YA6KR5TH32F3PS10"},
        "updated_at": "2026-04-08T16:15:57.463954Z",
        "backup_path": "repo.30728015042536.PTXGHH5DYGZ1JY7JBK70",
    }
    assert info["branches"] == {"main": "2768FV3XW5ZXYM84XNNG", "my-branch": "H7T8YA6KR5TH32F3PS10"}
    assert info["deleted_tags"] == ["deleted"]
    assert len(info["snapshots"]) == 6 and len(info["latest_updates"]) == 11
    log = v2.inspect_transaction_log("QTP2RTYS5YQW8RPSQ93G")
    assert set(log) == {
        "header", "new_groups", "new_arrays", "deleted_groups", "deleted_arrays", "updated_groups",
        "updated_arrays", "updated_chunks", "moved_nodes",
    }
    assert log["updated_chunks"] == [{"node_id": str(NodeId(bytes.fromhex("ceffde82865fae19"))), "chunks": [[4]]}]
    with pytest.raises(ic.SnapshotNotFoundError):
        v2.inspect_transaction_log("0000000000000000000G")


def test_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not progress_enabled()  # pytest captures stderr: not a terminal
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    with Progress("gc: test", 3, enabled=True) as bar:
        bar.update(2)
        bar.update()
    assert bar.count == 3
    assert "gc: test" in buffer.getvalue()
    silent = Progress("quiet", 1, enabled=False)
    silent.update()
    silent.close()
    assert silent.count == 1
    monkeypatch.setenv("ICECHUNK_NO_PROGRESS", "1")
    assert not progress_enabled()


def test_utilities(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert supported_spec_versions() == [ic.SpecVersion.v2, ic.SpecVersion.v1]
    print_debug_info()
    out = capsys.readouterr().out
    assert "icechunk:  " in out and "zarr:  " in out and "python:  " in out
