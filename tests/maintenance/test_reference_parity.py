"""Maintenance operations give the same answers as the reference implementation (2.2.0).

Each scenario script runs twice in a subprocess: once with the reference installed (a cached
virtualenv, see ``tests/interop/reference.py``) and once with this package; the JSON they
print must match.  Skipped when the reference cannot be installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.interop.reference import run_reference

pytestmark = pytest.mark.interop
REF = "2.2.0"
ROOT = Path(__file__).resolve().parents[2]

PRELUDE = r"""
import json, shutil, sys, time
from datetime import UTC, datetime, timedelta
import numpy as np
import zarr
import icechunk as ic

path = sys.argv[1]
shutil.rmtree(path, ignore_errors=True)
names = {"1CECHNKREP0F1RSTCMT0": "root"}

def tick():
    time.sleep(0.01)

def cut():
    tick()
    moment = datetime.now(UTC)
    tick()
    return moment

def write(repo, branch, values, message):
    s = repo.writable_session(branch)
    root = zarr.open_group(s.store, mode="a")
    for name, data in values.items():
        if name in root:
            arr = root[name]
            if arr.shape != data.shape:
                arr.resize(data.shape)
        else:
            arr = root.create_array(name, shape=data.shape, chunks=(4,), dtype=data.dtype, fill_value=-1)
        arr[:] = data
    sid = s.commit(message)
    names[sid] = message
    tick()
    return sid

def named(ids):
    return sorted(names.get(i, i) for i in ids)

def summary(g):
    return [g.chunks_deleted, g.manifests_deleted, g.snapshots_deleted, g.transaction_logs_deleted]
"""

EXPIRE_GC = r"""
repo = ic.Repository.create(ic.local_filesystem_storage(path), config=ic.RepositoryConfig(inline_chunk_threshold_bytes=0))
rng = np.random.default_rng(0)
def data(n=16):
    return rng.integers(0, 1000, n).astype("i8")
write(repo, "main", {"x": data(), "y": data(8)}, "m1")
m2 = write(repo, "main", {"x": data()}, "m2")
repo.create_branch("dev", m2)
write(repo, "dev", {"y": data(8)}, "d1")
m3 = write(repo, "main", {"x": data(), "y": data(8)}, "m3")
repo.create_tag("old-tag", m3)
repo.create_tag("older-tag", m2)
repo.create_branch("stale", m3)
write(repo, "stale", {"x": data()}, "s1")
s = repo.writable_session("main"); zarr.open_array(s.store, path="x")[:4] = 7; names[s.flush("detached")] = "detached"
write(repo, "main", {"x": data(20)}, "m4")
s = repo.writable_session("main"); zarr.open_array(s.store, path="y")[:] = 5; names[s.amend("m4 amended")] = "m4 amended"
repo.create_branch("gone", repo.lookup_branch("dev")); repo.delete_branch("gone")
c = cut()
write(repo, "main", {"y": data(8)}, "m5")
write(repo, "dev", {"x": data()}, "d2")
s = repo.writable_session("main"); zarr.open_array(s.store, path="x")[:4] = 3; names[s.flush("young detached")] = "young detached"
out = {"expired": named(repo.expire_snapshots(c, delete_expired_branches=True))}
out["refs"] = [sorted(repo.list_branches()), sorted(repo.list_tags())]
out["history"] = {b: [x.message for x in repo.ancestry(branch=b)] for b in sorted(repo.list_branches())}
out["tag_history"] = {t: [x.message for x in repo.ancestry(tag=t)] for t in sorted(repo.list_tags())}
info = repo.inspect_repo_info()
out["listed"] = sorted((names.get(s["id"], s["id"]), names.get(s.get("parent_id"), s.get("parent_id"))) for s in info["snapshots"])
out["gc_dry"] = summary(repo.garbage_collect(datetime.now(UTC) + timedelta(seconds=1), dry_run=True))
out["gc"] = summary(repo.garbage_collect(datetime.now(UTC) + timedelta(seconds=1)))
out["values"] = {
    b: {k: int(np.asarray(v[:]).sum()) for k, v in zarr.open_group(repo.readonly_session(b).store, mode="r").arrays()}
    for b in sorted(repo.list_branches())
}
out["stats"] = repo.chunk_storage_stats().native_bytes > 0
print(json.dumps(out))
"""

GC_REPARENT = r"""
repo = ic.Repository.create(ic.local_filesystem_storage(path), config=ic.RepositoryConfig(inline_chunk_threshold_bytes=0))
one = write(repo, "main", {"x": np.arange(8)}, "one")
s = repo.writable_session("main"); zarr.open_array(s.store, path="x")[:] = 7; det = s.flush("det"); names[det] = "det"
s = repo.writable_session("main"); zarr.open_array(s.store, path="x")[:] = 8; names[s.flush("alone")] = "alone"
c = cut()
repo.create_branch("tmp", det)
young = write(repo, "tmp", {"x": np.array([9] * 8)}, "young")
repo.delete_branch("tmp")
out = {"gc": summary(repo.garbage_collect(c))}
info = repo.inspect_repo_info()
out["listed"] = sorted((names.get(s["id"]), names.get(s.get("parent_id"))) for s in info["snapshots"])
out["young"] = zarr.open_array(repo.readonly_session(snapshot_id=young).store, path="x")[:].tolist()
print(json.dumps(out))
"""

SPEC1_EXPIRE = r"""
repo = ic.Repository.create(ic.local_filesystem_storage(path), spec_version=1, config=ic.RepositoryConfig(inline_chunk_threshold_bytes=0))
first = None
for i in range(3):
    sid = write(repo, "main", {"a": np.array([i, i], dtype="i8")}, f"c{i}")
    first = first or sid
repo.create_branch("old", first)
repo.create_tag("t", first)
c = cut()
write(repo, "main", {"a": np.array([9, 9], dtype="i8")}, "young")
out = {"expired": named(repo.expire_snapshots(c, delete_expired_branches=True))}
out["history"] = [x.message for x in repo.ancestry(branch="main")]
out["refs"] = [sorted(repo.list_branches()), sorted(repo.list_tags())]
out["tag"] = [x.message for x in repo.ancestry(tag="t")]
out["gc"] = summary(repo.garbage_collect(datetime.now(UTC) + timedelta(seconds=1)))
print(json.dumps(out))
"""


SPLITTING = r"""
from icechunk import ManifestSplitCondition as Cond, ManifestSplitDimCondition as Dim
def cfg(rules):
    return ic.RepositoryConfig(manifest=ic.ManifestConfig(splitting=ic.ManifestSplittingConfig.from_dict(rules)))
def refs(repo, sid, name):
    node = [n for n in repo.inspect_snapshot(sid)["nodes"] if n["path"] == name][0]
    return [(m["id"], m["extents"]) for m in node["manifest_refs"]]
storage = ic.local_filesystem_storage(path)
repo = ic.Repository.create(storage, config=cfg({Cond.name_matches("split_*"): {Dim.Axis(0): 1, Dim.DimensionName("latitude"): 1, Dim.Any(): 3}}))
s = repo.writable_session("main")
for name in ("split_arr", "other"):
    a = zarr.create_array(s.store, name=name, shape=(10, 10), chunks=(3, 3), dtype="f8", fill_value=np.nan,
                          dimension_names=("latitude", "longitude"))
    a[:] = np.arange(100.).reshape(10, 10)
first = s.commit("data")
out = {"first": [e for _, e in refs(repo, first, "/split_arr")], "other": len(refs(repo, first, "/other"))}
s = repo.writable_session("main"); zarr.open_array(s.store, path="split_arr")[0, 0] = -1
second = s.commit("one chunk")
a, b = refs(repo, first, "/split_arr"), refs(repo, second, "/split_arr")
out["reused_after_one_chunk"] = [x == y for x, y in zip(a, b)]
repo = repo.reopen(config=cfg({Cond.name_matches("split_*"): {Dim.Axis(0): 1, Dim.DimensionName("longitude"): 1, Dim.Any(): 3}}))
rw = repo.rewrite_manifests("rewrite", branch="main")
out["rewrite"] = [e for _, e in refs(repo, rw, "/split_arr")]
out["rewrite_meta"] = repo.lookup_snapshot(rw).metadata
# coarser split over the 16 fine manifests, one chunk touched
repo = repo.reopen(config=cfg({Cond.AnyArray(): {Dim.Any(): 2}}))
s = repo.writable_session("main"); zarr.open_array(s.store, path="split_arr")[9, 9] = -2
coarse = s.commit("coarse")
fine = refs(repo, rw, "/split_arr")
out["coarse"] = [(e, (m, e) in fine) for m, e in refs(repo, coarse, "/split_arr")]
out["other_kept"] = refs(repo, coarse, "/other") == refs(repo, rw, "/other")
# finer split over coarse manifests
repo = repo.reopen(config=cfg({Cond.AnyArray(): {Dim.Any(): 1}}))
rw2 = repo.rewrite_manifests("to fine", branch="main", commit_method="amend")
repo = repo.reopen(config=cfg({Cond.AnyArray(): {Dim.Any(): 4}}))
s = repo.writable_session("main"); zarr.open_array(s.store, path="other")[0, 0] = -3
c2 = s.commit("all in one")
out["one_box"] = [(e, (m, e) in refs(repo, rw2, "/other")) for m, e in refs(repo, c2, "/other")]
out["values"] = zarr.open_array(repo.readonly_session("main").store, path="split_arr")[:].tolist()
print(json.dumps(out))
"""

MOVES_AND_REINDEX = r"""
repo = ic.Repository.create(ic.local_filesystem_storage(path))
s = repo.writable_session("main")
root = zarr.open_group(s.store, mode="a")
g = root.create_group("group"); sub = g.create_group("sub")
g.create_array("temp", shape=(6,), chunks=(2,), dtype="i4", fill_value=0)[:] = np.arange(6)
sub.create_array("deep", shape=(2, 2), chunks=(1, 1), dtype="f4", fill_value=0)[:] = [[1, 2], [3, 4]]
root.create_group("other")
root.create_array("arr", shape=(3,), chunks=(3,), dtype="i1", fill_value=0)[:] = [7, 8, 9]
base = s.commit("layout")
out = {}
s = repo.rearrange_session("main")
for src, dst in [("/arr", "/tmp_name"), ("/tmp_name", "/other/arr"), ("/group/temp", "/a-b"), ("/other", "/a"),
                 ("/group", "/aa"), ("/aa", "/group"), ("/group", "/renamed")]:
    s.move(src, dst)
out["status"] = s.status().moved_nodes
sid = s.commit("shuffle")
out["tx"] = [(m["from"], m["to"]) for m in repo.inspect_transaction_log(sid)["moved_nodes"]]
out["diff"] = repo.diff(from_snapshot_id=base, to_snapshot_id=sid).moved_nodes
after = zarr.open_group(repo.readonly_session("main").store, mode="r")
out["layout"] = sorted(p for p, _ in after.members(max_depth=None))
errors = {}
s = repo.rearrange_session("main")
for src, dst in [("/renamed", "/missing/x"), ("/renamed", "/a/arr/x"), ("/renamed", "/renamed/sub/x"),
                 ("/renamed", "/renamed"), ("/renamed", "/a"), ("/nothing", "/x"), ("/", "/x"), ("/renamed", "/")]:
    try:
        s.move(src, dst)
        errors[src + "->" + dst] = "ok"
    except Exception as e:
        errors[src + "->" + dst] = type(e).__name__ + ":" + str(getattr(e, "kind", ""))
out["errors"] = errors
for name, call in [("move", lambda: repo.writable_session("main").move("/a", "/b")),
                   ("write", lambda: zarr.open_array(s.store, path="a/arr").__setitem__(0, 1)),
                   ("shift", lambda: s.shift_array("/a/arr", [1]))]:
    try:
        call()
        out[name] = "ok"
    except Exception as e:
        out[name] = type(e).__name__ + ":" + str(getattr(e, "kind", ""))
s = repo.writable_session("main")
a = zarr.create_array(s.store, name="r", shape=(8, 6), chunks=(2, 3), dtype="i4", fill_value=-1)
a[:] = np.arange(48).reshape(8, 6)
s.commit("r")
def run(fn):
    s = repo.writable_session("main")
    try:
        fn(s)
    except Exception as e:
        return type(e).__name__ + ":" + str(getattr(e, "kind", ""))
    return zarr.open_array(s.store, path="r")[:].tolist()
out["shift"] = run(lambda s: s.shift_array("/r", [1, -1]))
out["shift_far"] = run(lambda s: s.shift_array("/r", [9, 0]))
out["reindex"] = run(lambda s: s.reindex_array("/r", lambda i: [i[1], i[0]] if i[1] < 4 else None))
out["reindex_back"] = run(lambda s: s.reindex_array(
    "/r", lambda i: [i[0] + 1, i[1]] if i[0] < 3 else None, lambda i: [i[0] - 1, i[1]] if i[0] > 0 else None))
out["reindex_oob"] = run(lambda s: s.reindex_array("/r", lambda i: [i[0] + 4, i[1]]))
print(json.dumps(out))
"""

UPGRADE = r"""
src = sys.argv[2]
shutil.copytree(src, path)
repo = ic.Repository.open(ic.local_filesystem_storage(path))
new = ic.upgrade_icechunk_repository(repo, dry_run=False)
try:
    repo.list_branches()
    out = {"old_handle": "usable"}
except RuntimeError:
    out = {"old_handle": "RuntimeError"}
out["spec"] = int(new.spec_version)
out["refs"] = [sorted(new.list_branches()), sorted(new.list_tags())]
# (the newest entry, RepoMigrated, is stamped with the current time)
out["ops"] = [(str(u.kind).split("(")[0].split(".")[-1], u.updated_at.isoformat()) for u in list(new.ops_log())[1:]]
info = new.inspect_repo_info()
out["snapshots"] = info["snapshots"]
out["branches"], out["tags"], out["deleted"] = info["branches"], info["tags"], info["deleted_tags"]
import os
out["files"] = sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)
print(json.dumps(out))
"""


def _run_ours(script: str, *args: str) -> object:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd="/",
    )
    if proc.returncode != 0:
        raise AssertionError(f"our run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario", ["EXPIRE_GC", "GC_REPARENT", "SPEC1_EXPIRE", "MOVES_AND_REINDEX", "SPLITTING"])
def test_same_answers_as_the_reference(tmp_path: Path, scenario: str) -> None:
    script = PRELUDE + globals()[scenario]
    theirs = run_reference(REF, script, str(tmp_path / "theirs"))
    ours = _run_ours(script, str(tmp_path / "ours"))
    assert ours == theirs


def test_upgrade_same_as_the_reference(tmp_path: Path, fixtures_dir: Path) -> None:
    script = PRELUDE + UPGRADE
    source = str(fixtures_dir / "test-repo-v1")
    theirs = run_reference(REF, script, str(tmp_path / "theirs"), source)
    ours = _run_ours(script, str(tmp_path / "ours"), source)
    assert ours == theirs
    assert ours["old_handle"] == "RuntimeError" and len(ours["ops"]) == 11
