"""A rich spec-2 repository, written and described by one script that runs on either implementation.

Our package and the reference share their public API, so the same source text runs under both
(each in its own interpreter, see :func:`tests.interop.reference.run_reference` and
:func:`tests.interop.reference.run_ours`).  What one implementation writes, the other
describes, and the two descriptions must be equal to the last byte of JSON.

Scripts (``sys.argv``):

``WRITE``  ``<repo> <data dir>``: several dtypes and groups, inline + native + virtual chunks
           (into ``<data dir>/virt.bin``), nested commit metadata, repo metadata, branches
           (one reset, one deleted), tags (one deleted), an amend, manifest splitting and a
           rearrange-session move.  Prints the snapshot ids it made.
``DESCRIBE`` ``<repo> <data dir>``: every ref, ancestry entry (ids, parents, messages, metadata,
           written_at), ops-log entry, repo metadata, manifest list/extents, virtual locations
           and every node (attrs, dtype, shape, chunks, fill value, values) of every branch/tag.
``COMMIT_ON_TOP`` ``<repo> <data dir>``: a commit on ``main`` touching native, inline and
           virtual chunks, attributes and a new array.  Prints its snapshot id.
"""

from __future__ import annotations

import numpy as np

#: Content of ``<data dir>/virt.bin``: the bytes virtual refs point into.
VIRT_VALUES = (np.arange(64, dtype="<i4") * 3 - 50).astype("<i4")

_COMMON = r"""
import datetime, hashlib, json, math, sys
import numpy as np
import icechunk as ic
import zarr

REPO, DATA = sys.argv[1], sys.argv[2]
PREFIX = "file://" + DATA.rstrip("/") + "/"
VIRT = PREFIX + "virt.bin"
AUTH = ic.containers_credentials({PREFIX: ic.Credentials.LocalFileSystemAccess()})


def open_repo():
    return ic.Repository.open(ic.local_filesystem_storage(REPO), authorize_virtual_chunk_access=AUTH)
"""

WRITE = _COMMON + r"""
config = ic.RepositoryConfig.default()
config.inline_chunk_threshold_bytes = 64
config.set_virtual_chunk_container(ic.VirtualChunkContainer(PREFIX, ic.local_filesystem_store(DATA)))
split = {ic.ManifestSplitCondition.path_matches("split.*"): {ic.ManifestSplitDimCondition.Axis(0): 3}}
config.manifest = ic.ManifestConfig(splitting=ic.ManifestSplittingConfig.from_dict(split))
repo = ic.Repository.create(ic.local_filesystem_storage(REPO), config=config, authorize_virtual_chunk_access=AUTH)
repo.set_metadata({"project": "interop", "nested": {"list": [1, 2.5, "x", None, True], "n": -3}})
repo.update_metadata({"owner": "tests"})
ids = {}

# 1. structure: nested groups and arrays of several dtypes
s = repo.writable_session("main")
root = zarr.group(s.store, attributes={"title": "rich", "nested": {"a": [1, {"b": None}]}})
a = root.create_group("a", attributes={"level": 1})
b = a.create_group("b", attributes={"level": 2, "f": 0.25})
c = b.create_group("c")
root.create_group("empty_group")
root.create_array("flags", shape=(10,), chunks=(4,), dtype="bool", fill_value=False)
a.create_array("i8", shape=(7, 5), chunks=(3, 2), dtype="int8", fill_value=-7)
a.create_array("u16", shape=(40,), chunks=(16,), dtype="uint16", fill_value=1)
b.create_array("i64", shape=(3, 4, 5), chunks=(2, 2, 2), dtype="int64", fill_value=0,
               attributes={"units": "m", "scale": 1e-3})
b.create_array("f32", shape=(30,), chunks=(30,), dtype="float32", fill_value=float("nan"))
c.create_array("f64", shape=(64, 32), chunks=(16, 16), dtype="float64", fill_value=float("nan"),
               dimension_names=["y", "x"])
c.create_array("c128", shape=(6,), chunks=(3,), dtype="complex128", fill_value=0)
root.create_array("strings", shape=(5,), chunks=(2,), dtype=str)
root.create_array("split_me", shape=(20, 4), chunks=(2, 4), dtype="int32", fill_value=-1)
root.create_array("virt", shape=(64,), chunks=(8,), dtype="<i4", compressors=None, fill_value=0)
root.create_array("untouched", shape=(3,), chunks=(3,), dtype="int16", fill_value=5)
ids["structure"] = s.commit("structure", metadata={"author": "tester", "nested": {"k": [1, 2, {"deep": "yes"}], "pi": 3.5}})

# 2. data: inline chunks (<= 64 bytes), native chunks (random, incompressible) and virtual refs
rng = np.random.default_rng(42)
s = repo.writable_session("main")
g = zarr.open_group(s.store, mode="a")
g["flags"][:] = np.arange(10) % 3 == 0
g["a/i8"][:5, :] = np.arange(25, dtype="int8").reshape(5, 5) - 12
g["a/u16"][:] = np.arange(40, dtype="uint16") * 1000
g["a/b/i64"][:] = np.arange(60, dtype="int64").reshape(3, 4, 5) * (2**40)
g["a/b/f32"][:20] = np.linspace(-1, 1, 20, dtype="float32")
g["a/b/c/f64"][:48] = rng.standard_normal((48, 32))
g["a/b/c/c128"][:] = np.arange(6) + 1j * np.arange(6)[::-1]
g["strings"][:] = ["alpha", "", "ΓΔ unicode", "d" * 100, "e"]
g["split_me"][:] = np.arange(80, dtype="int32").reshape(20, 4)
for i in range(8):
    if i != 5:  # chunk 5 stays missing (fill value)
        s.store.set_virtual_ref(f"virt/c/{i}", VIRT, offset=32 * i, length=32)
ids["data"] = s.commit("data", metadata={"step": 2, "tags": ["x", "y"], "empty": {}})

# 3. an amended commit on top of "data"
s = repo.writable_session("main")
g = zarr.open_group(s.store, mode="a")
g["a/u16"][:16] = 7
g.attrs["amended"] = True
ids["to_amend"] = s.commit("to be amended")
s = repo.writable_session("main")
g = zarr.open_group(s.store, mode="a")
g["a/i8"][5:, :] = 99
ids["amended"] = s.amend("amended commit", metadata={"amended": True, "nested": {"n": [None, 1.5]}})

# 4. branches and tags
repo.create_branch("dev", ids["data"])
repo.create_branch("tmp", ids["structure"])
repo.reset_branch("tmp", ids["data"])
repo.create_branch("gone", ids["structure"])
repo.delete_branch("gone")
repo.create_tag("v1", ids["data"])
repo.create_tag("v2", ids["amended"])
repo.create_tag("deleted", ids["structure"])
repo.delete_tag("deleted")
s = repo.writable_session("dev")
g = zarr.open_group(s.store, mode="a")
g["a/b/c/f64"][:16, :16] = -1.0
del g["untouched"]
g.create_group("dev_only", attributes={"branch": "dev"})
ids["dev"] = s.commit("dev change", metadata={"branch": "dev"})

# 5. a rearrange session: move a group (and the arrays under it) on main
s = repo.rearrange_session("main")
s.move("/a/b/c", "/moved_c")
s.move("/flags", "/a/flags_moved")
ids["moved"] = s.commit("rearranged", metadata={"moves": 2})
print(json.dumps(ids))
"""

DESCRIBE = _COMMON + r"""
def clean(v):
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, complex):
        return [clean(v.real), clean(v.imag)]
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (np.generic,)):
        return clean(v.item())
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    return v


def values(arr):
    data = np.asarray(arr[...])
    if data.dtype.kind in "OUT":
        flat = [str(x) for x in data.ravel().tolist()]
        return {"digest": hashlib.sha256(json.dumps(flat).encode()).hexdigest(), "head": flat[:8]}
    return {"digest": hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest(),
            "head": clean(data.ravel()[:8].tolist())}


def chunk_kinds(session, path, arr):
    grid = [-(-n // c) for n, c in zip(arr.shape, arr.chunks)]
    names = ("uninitialized", "native", "virtual", "inline")
    out = []
    for idx in np.ndindex(*grid):
        kind = session.chunk_type(path, list(idx))
        out.append(next(n[0] for n in names if kind == getattr(ic.ChunkType, n)))
    return "".join(out)  # u/n/v/i per chunk, C order


def describe(session):
    root = zarr.open_group(session.store, mode="r")
    nodes = {"/": {"attrs": clean(dict(root.attrs)), "kind": "group"}}
    for path, item in sorted(root.members(max_depth=None)):
        entry = {"attrs": clean(dict(item.attrs))}
        if isinstance(item, zarr.Array):
            entry.update(kind="array", dtype=str(item.dtype), shape=list(item.shape),
                         chunks=list(item.chunks), fill_value=clean(item.fill_value),
                         dims=clean(item.metadata.dimension_names), values=values(item),
                         chunk_kinds=chunk_kinds(session, "/" + path, item))
        else:
            entry["kind"] = "group"
        nodes["/" + path] = entry
    return {"nodes": nodes, "virtual": sorted(session.all_virtual_chunk_locations())}


def info(snap):
    return {"id": snap.id, "parent": snap.parent_id, "message": snap.message,
            "metadata": clean(snap.metadata), "written_at": snap.written_at.isoformat()}


def update(u):
    fields = {}
    for name in ("branch", "name", "new_snap_id", "previous_snap_id", "from_version", "to_version", "id", "new_value"):
        if hasattr(u.kind, name):
            fields[name] = clean(getattr(u.kind, name))
    return {"kind": type(u.kind).__name__, "fields": fields, "at": u.updated_at.isoformat(),
            "backup": u.backup_path}


repo = open_repo()
out = {"spec": int(repo.spec_version), "metadata": clean(repo.get_metadata()),
       "branches": {b: repo.lookup_branch(b) for b in sorted(repo.list_branches())},
       "tags": {t: repo.lookup_tag(t) for t in sorted(repo.list_tags())},
       "ops_log": [update(u) for u in repo.ops_log()],
       "ancestry": {}, "trees": {}, "manifests": {}}
for name, sid in list(out["branches"].items()) + [("tag:" + t, s) for t, s in out["tags"].items()]:
    out["ancestry"][name] = [info(snap) for snap in repo.ancestry(snapshot_id=sid)]
    out["trees"][name] = describe(repo.readonly_session(snapshot_id=sid))
    files = repo.list_manifest_files(sid)
    refs = {n["path"]: [[r["id"], clean(r["extents"])] for r in n.get("manifest_refs") or []]
            for n in repo.inspect_snapshot(sid)["nodes"] if n["node_type"] == "array"}
    out["manifests"][name] = {"files": sorted([f.id, f.num_chunk_refs, f.size_bytes] for f in files),
                              "refs": refs}
out["lookup"] = info(repo.lookup_snapshot(out["branches"]["main"]))
print(json.dumps(out, sort_keys=True))
"""

COMMIT_ON_TOP = _COMMON + r"""
repo = open_repo()
s = repo.writable_session("main")
g = zarr.open_group(s.store, mode="a")
g["moved_c/f64"][48:, :] = np.full((16, 32), 2.5)
g["a/u16"][16:20] = 4242
g["split_me"][18:, :] = 0
g["strings"][1] = "filled on top"
g.attrs["on_top"] = {"by": sys.argv[3]}
s.store.set_virtual_ref("virt/c/5", VIRT, offset=0, length=32)
from zarr.core.sync import sync
sync(s.store.delete("virt/c/0"))  # a deleted virtual ref
new = g.create_array("added_on_top", shape=(4,), chunks=(2,), dtype="float64", fill_value=0)
new[:] = [1.5, -2.5, 3.25, 0.0]
sid = s.commit("commit on top", metadata={"by": sys.argv[3], "nested": {"ok": [True]}})
print(json.dumps({"sid": sid}))
"""
