"""Spec 1 -> 2 upgrade of the reference-written fixture, compared with the reference's result.

``test-repo-v2-migrated`` is ``test-repo-v1`` upgraded by Icechunk 2.0.0-alpha.7.  Our
``repo`` must decode to the same content except the RepoMigrated timestamp, the header's
implementation name and the persisted config (FORMAT.md §10 item 6: we convert
``config.yaml`` as it is, the fixture holds the runtime config merged with storage defaults).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import zarr

import icechunk as ic
from icechunk._utilities import upgrade_icechunk_repository
from icechunk.format.ids import SnapshotId
from icechunk.format.repo_config import decode_repo_config
from icechunk.format.repo_info import RepoMigrated, decode_repo_info
from icechunk.storage._local import LocalFileSystemStorage
from icechunk.testing._wrappers import _Wrapper


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            out[full.relative_to(root).as_posix()] = hashlib.sha256(full.read_bytes()).hexdigest()
    return out


def _open(path: Path) -> ic.Repository:
    return ic.Repository.open(ic.local_filesystem_storage(str(path)))


def test_upgrade_matches_the_reference_migration(fixture_copy, fixtures_dir: Path) -> None:
    path = fixture_copy("test-repo-v1")
    original = _tree(path)
    repo = _open(path)
    assert repo.spec_version == 1
    new = upgrade_icechunk_repository(repo, dry_run=False)
    assert new.spec_version == 2
    assert ic.Repository.fetch_spec_version(ic.local_filesystem_storage(str(path))) == 2

    ours = decode_repo_info((path / "repo").read_bytes())
    theirs = decode_repo_info((fixtures_dir / "test-repo-v2-migrated" / "repo").read_bytes())
    for name in (
        "spec_version", "tags", "branches", "deleted_tags", "snapshots", "status", "metadata",
        "repo_before_updates", "enabled_feature_flags", "disabled_feature_flags",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.snapshots[SnapshotId.parse("P874YS3J196959RDHX7G")].metadata == {"__root": True}
    assert len(ours.latest_updates) == len(theirs.latest_updates) == 12
    assert isinstance(ours.latest_updates[0].kind, RepoMigrated)
    assert ours.latest_updates[0].kind == theirs.latest_updates[0].kind == RepoMigrated(1, 2)
    assert ours.latest_updates[1:] == theirs.latest_updates[1:]
    assert all(u.backup_path is None for u in ours.latest_updates)

    # config: same threshold and the same five legacy containers (theirs adds defaults)
    our_config = decode_repo_config(ours.config)
    their_config = decode_repo_config(theirs.config)
    assert our_config["inline_chunk_threshold_bytes"] == their_config["inline_chunk_threshold_bytes"] == 12
    ours_vcc, theirs_vcc = our_config["virtual_chunk_containers"], their_config["virtual_chunk_containers"]
    assert ours_vcc.keys() == theirs_vcc.keys() == {"az", "file", "gcs", "s3", "tigris"}
    for key, container in ours_vcc.items():
        other = theirs_vcc[key]
        assert (container["name"], container["url_prefix"]) == (other["name"], other["url_prefix"])
        ((variant, options),) = container["store"].items()
        ((other_variant, other_options),) = other["store"].items()
        assert variant == other_variant
        if isinstance(options, dict):  # (2.0.0-alpha.7 had no checksum_algorithm field)
            assert {k: v for k, v in options.items() if k in other_options} == other_options

    # every other file is untouched; refs/ and config.yaml are gone; nothing in overwritten/
    after = _tree(path)
    kept = {k: v for k, v in original.items() if not k.startswith("refs/") and k != "config.yaml"}
    assert {k: v for k, v in after.items() if k != "repo"} == kept
    assert set(after) == set(_tree(fixtures_dir / "test-repo-v2-migrated"))

    # the same answers as the reference's migrated repository
    reference = _open(fixture_copy("test-repo-v2-migrated"))
    assert new.list_branches() == reference.list_branches() == {"main", "my-branch"}
    assert new.list_tags() == reference.list_tags() == {"it works!", "it also works!"}
    with pytest.raises(ic.RefNotFoundError):
        new.lookup_tag("deleted")
    for ref in ("main", "my-branch"):
        assert list(new.ancestry(branch=ref)) == list(reference.ancestry(branch=ref))
    assert [type(u.kind).__name__ for u in new.ops_log()] == [
        type(u.kind).__name__ for u in reference.ops_log()
    ]
    branch = new.readonly_session("my-branch")
    np.testing.assert_array_equal(
        zarr.open_array(branch.store, path="group1/small_chunks", mode="r")[:], [84, 84, 84, 84, 8]
    )
    assert np.isnan(zarr.open_array(branch.store, path="group2/group3/group4/group5/inner", mode="r")[:]).all()
    fill = {s.message: s.id for s in new.ancestry(branch="main")}["fill data"]
    np.testing.assert_array_equal(
        zarr.open_array(new.readonly_session(snapshot_id=fill).store, path="group1/big_chunks", mode="r")[:],
        np.full((10, 10), 42.0),
    )
    # the upgraded repository takes spec-2 operations
    new.set_metadata({"upgraded": True})
    session = new.writable_session("main")
    zarr.open_array(session.store, path="group1/small_chunks")[0] = 1
    session.commit("after upgrade")
    assert [type(u.kind).__name__ for u in new.ops_log()][:3] == ["NewCommit", "MetadataChanged", "RepoMigrated"]


_S3 = {
    "region": "us-east-1", "endpoint_url": "http://localhost:4200", "anonymous": False,
    "allow_http": True, "force_path_style": True, "network_stream_timeout_seconds": None,
    "requester_pays": False, "checksum_algorithm": None,
}
_TIGRIS = {
    "region": None, "endpoint_url": "https://fly.storage.tigris.dev", "anonymous": False,
    "allow_http": False, "force_path_style": False, "network_stream_timeout_seconds": None,
    "requester_pays": False, "checksum_algorithm": None,
}
# the persisted config Icechunk 2.2.0 writes when it upgrades test-repo-v1 (decoded)
REFERENCE_2_2_CONFIG = {
    "inline_chunk_threshold_bytes": 12, "get_partial_values_concurrency": None,
    "compression": None, "max_concurrent_requests": None, "caching": None, "storage": None,
    "virtual_chunk_containers": {
        "az": {"name": "az", "url_prefix": "az", "store": {"azure": {}}},
        "file": {"name": "file", "url_prefix": "file", "store": {"local_file_system": ""}},
        "gcs": {"name": "gcs", "url_prefix": "gcs", "store": {"gcs": {}}},
        "s3": {"name": "s3", "url_prefix": "s3://testbucket", "store": {"s3_compatible": _S3}},
        "tigris": {"name": "tigris", "url_prefix": "tigris", "store": {"tigris": _TIGRIS}},
    },
    "manifest": None, "previous_file": None, "repo_update_retries": None,
    "num_updates_per_repo_info_file": None,
}


def test_config_matches_what_the_current_reference_writes(fixture_copy) -> None:
    path = fixture_copy("test-repo-v1")
    upgrade_icechunk_repository(_open(path), dry_run=False)
    ours = decode_repo_info((path / "repo").read_bytes())
    assert decode_repo_config(ours.config) == REFERENCE_2_2_CONFIG
    # readers apply it like the spec-1 config.yaml: threshold 12, invalid containers ignored
    assert _open(path).config.inline_chunk_threshold_bytes == 12


def test_old_handle_is_invalidated(fixture_copy) -> None:
    repo = _open(fixture_copy("test-repo-v1"))
    upgrade_icechunk_repository(repo, dry_run=False)
    with pytest.raises(RuntimeError):
        repo.list_branches()  # noqa: B018
    with pytest.raises(RuntimeError):
        repo.spec_version  # noqa: B018


def test_dry_run_changes_nothing(fixture_copy) -> None:
    path = fixture_copy("test-repo-v1")
    before = _tree(path)
    repo = _open(path)
    same = upgrade_icechunk_repository(repo, dry_run=True, prefetch_concurrency=2)
    assert same is repo
    assert _tree(path) == before
    assert repo.spec_version == 1
    assert repo.list_branches() == {"main", "my-branch"}


def test_keep_v1_files(fixture_copy) -> None:
    path = fixture_copy("test-repo-v1")
    new = upgrade_icechunk_repository(_open(path), dry_run=False, delete_unused_v1_files=False)
    tree = _tree(path)
    assert "refs/branch.main/ref.json" in tree and "config.yaml" in tree and "repo" in tree
    assert new.spec_version == 2  # repo wins over spec-1 refs (FORMAT.md §8.3)


def test_upgrading_spec2_is_refused(fixture_copy) -> None:
    repo = _open(fixture_copy("test-repo-v2"))
    with pytest.raises(ic.SessionStateError) as info:
        upgrade_icechunk_repository(repo, dry_run=True)
    assert info.value.kind == "invalid-repository-migration"


class _DeleteRecorder(_Wrapper):
    """Records deletions; fails the ``fail_at``-th one (1-based) if set."""

    def __init__(self, inner, fail_at: int | None = None) -> None:
        super().__init__(inner)
        self.deleted: list[str] = []
        self.fail_at = fail_at
        self.calls = 0

    async def delete_many(self, keys, *, exact_count: bool = True) -> int:
        keys = list(keys)
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise ic.StorageError("injected deletion failure")
        self.deleted.extend(keys)
        return await self._inner.delete_many(keys, exact_count=exact_count)

    def with_settings(self, settings):
        return _DeleteRecorder(self._inner.with_settings(settings), self.fail_at)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


def test_deletion_order(fixture_copy) -> None:
    path = fixture_copy("test-repo-v1")
    storage = _DeleteRecorder(LocalFileSystemStorage(str(path)))
    from icechunk._sync import run
    from icechunk.core.upgrade import migrate_to_v2

    run(migrate_to_v2(storage, dry_run=False))
    assert storage.deleted[0] == "refs/branch.main/ref.json"
    assert storage.deleted[-1] == "config.yaml"
    assert set(storage.deleted[1:-1]) == {
        "refs/branch.my-branch/ref.json",
        "refs/tag.deleted/ref.json",
        "refs/tag.deleted/ref.json.deleted",
        "refs/tag.it also works!/ref.json",
        "refs/tag.it works!/ref.json",
    }


@pytest.mark.parametrize("fail_at", [1, 2])
def test_failure_rolls_back(fixture_copy, fail_at: int) -> None:
    path = fixture_copy("test-repo-v1")
    before = _tree(path)
    storage = _DeleteRecorder(LocalFileSystemStorage(str(path)), fail_at=fail_at)
    from icechunk._sync import run
    from icechunk.core.upgrade import migrate_to_v2

    with pytest.raises(ic.StorageError, match="injected"):
        run(migrate_to_v2(storage, dry_run=False))
    assert _tree(path) == before  # refs restored, repo removed
    repo = _open(path)
    assert repo.spec_version == 1
    assert repo.list_tags() == {"it works!", "it also works!"}
    # and a later attempt succeeds
    assert upgrade_icechunk_repository(repo, dry_run=False).spec_version == 2


def test_upgrade_of_a_fresh_spec1_repo(tmp_path: Path) -> None:
    storage = ic.local_filesystem_storage(str(tmp_path / "repo"))
    repo = ic.Repository.create(storage, spec_version=1)
    session = repo.writable_session("main")
    arr = zarr.create_array(session.store, name="a", shape=(4,), chunks=(2,), dtype="i4", fill_value=0)
    arr[:] = [1, 2, 3, 4]
    first = session.commit("first")
    repo.create_branch("b", first)
    repo.create_tag("t", first)
    repo.delete_tag("t")
    new = upgrade_icechunk_repository(repo, dry_run=False)
    assert new.list_branches() == {"main", "b"}
    assert new.list_tags() == set()
    assert [s.message for s in new.ancestry(branch="main")] == ["first", "Repository initialized"]
    kinds = [type(u.kind).__name__ for u in new.ops_log()]
    assert kinds == [
        "RepoMigrated", "TagDeleted", "TagCreated", "BranchCreated", "NewCommit", "RepoInitialized"
    ]
    times = [u.updated_at for u in new.ops_log()]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)
    np.testing.assert_array_equal(zarr.open_array(new.readonly_session("b").store, path="a")[:], [1, 2, 3, 4])
    with pytest.raises(ic.AlreadyExistsError):
        new.create_tag("t", first)
