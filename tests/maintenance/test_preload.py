"""Manifest preloading when a session starts (a cache hint)."""

from __future__ import annotations

import numpy as np
import zarr

import icechunk as ic
from icechunk._sync import run
from icechunk.core.preload import DEFAULT_PRELOAD_IF, preload_manifests, wait_for_preloads


def _repo(preload: ic.ManifestPreloadConfig | None) -> tuple[ic.Repository, dict[str, list[str]]]:
    storage = ic.in_memory_storage()
    repo = ic.Repository.create(storage)
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="a")
    for name, n in (("time", 10), ("lat", 5), ("data", 50)):
        root.create_array(name, shape=(n,), chunks=(1,), dtype="i2", fill_value=-1)[:] = np.arange(n)
    sid = session.commit("arrays")
    manifests = {
        node["path"]: [m["id"] for m in node["manifest_refs"]]
        for node in repo.inspect_snapshot(sid)["nodes"]
        if node["node_type"] == "array"
    }
    config = ic.RepositoryConfig(manifest=ic.ManifestConfig(preload=preload)) if preload else None
    return ic.Repository.open(storage, config=config), manifests


def _cached(repo: ic.Repository, mid: str) -> bool:
    from icechunk.format.ids import ManifestId

    return repo._engine.assets._manifests.get(ManifestId.parse(mid)) is not None


def test_session_start_preloads_matching_manifests() -> None:
    preload = ic.ManifestPreloadConfig(
        preload_if=ic.ManifestPreloadCondition.name_matches("^time$"), max_total_refs=100
    )
    repo, manifests = _repo(preload)
    assert not _cached(repo, manifests["/time"][0])
    repo.readonly_session("main")
    run(wait_for_preloads())
    assert _cached(repo, manifests["/time"][0])
    assert not _cached(repo, manifests["/data"][0])


def test_default_condition_and_limits() -> None:
    repo, manifests = _repo(None)
    session = repo.readonly_session("main")
    assert not _cached(repo, manifests["/time"][0])  # no preload config: nothing preloaded
    loaded = run(preload_manifests(session._engine, ic.ManifestPreloadConfig()))
    assert loaded == 15  # time and lat are coordinate names; data is not
    assert _cached(repo, manifests["/lat"][0]) and not _cached(repo, manifests["/data"][0])
    assert DEFAULT_PRELOAD_IF.matches("/a/latitude", 10)
    assert not DEFAULT_PRELOAD_IF.matches("/a/latitude", 5000)
    repo2, _ = _repo(None)
    limited = run(preload_manifests(repo2.readonly_session("main")._engine, ic.ManifestPreloadConfig(max_total_refs=12)))
    assert limited == 5  # /lat (5) comes first by path; /time (10) would exceed the budget
    none = run(
        preload_manifests(repo2.readonly_session("main")._engine, ic.ManifestPreloadConfig(max_arrays_to_scan=1))
    )
    assert none == 0  # only /data is scanned (nodes are sorted by path)


def test_a_preload_started_by_a_blocking_call_runs_on_after_it_returns() -> None:
    """The calling thread's loop stops when the call returns; the preload must not stop with it."""
    import time

    preload = ic.ManifestPreloadConfig(
        preload_if=ic.ManifestPreloadCondition.name_matches("^time$"), max_total_refs=100
    )
    repo, manifests = _repo(preload)
    repo.readonly_session("main")
    deadline = time.monotonic() + 10
    while not _cached(repo, manifests["/time"][0]) and time.monotonic() < deadline:
        time.sleep(0.01)  # no blocking icechunk call meanwhile
    assert _cached(repo, manifests["/time"][0])
