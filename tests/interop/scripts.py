"""Scripts run under the reference implementation, and the matching in-process readers.

``READ`` and :func:`read_repo` produce the same JSON description of a repository (refs,
ancestry messages, every node's attributes and array values), so the two implementations can
be compared value by value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import zarr

READ = r"""
import json, math, sys
import numpy as np
import icechunk as ic
import zarr

def clean(v):
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v

def describe(store):
    root = zarr.open_group(store, mode="r")
    nodes = {"/": {"attrs": dict(root.attrs), "kind": "group"}}
    for path, item in root.members(max_depth=None):
        entry = {"attrs": dict(item.attrs)}
        if isinstance(item, zarr.Array):
            entry["kind"] = "array"
            entry["dtype"] = str(item.dtype)
            entry["values"] = clean(np.asarray(item[...]).tolist())
        else:
            entry["kind"] = "group"
        nodes["/" + path] = entry
    return nodes

repo = ic.Repository.open(ic.local_filesystem_storage(sys.argv[1]))
out = {"branches": sorted(repo.list_branches()), "tags": sorted(repo.list_tags()),
       "ancestry": {}, "nodes": {}, "tips": {}}
for b in out["branches"]:
    out["ancestry"][b] = [s.message for s in repo.ancestry(branch=b)]
    session = repo.readonly_session(branch=b)
    out["tips"][b] = session.snapshot_id
    out["nodes"][b] = describe(session.store)
for t in out["tags"]:
    out["nodes"]["tag:" + t] = describe(repo.readonly_session(tag=t).store)
print(json.dumps(out))
"""

WRITE = r"""
import json, sys
import numpy as np
import icechunk as ic
import zarr

path, spec = sys.argv[1], int(sys.argv[2])
kwargs = {} if spec == 0 else {"spec_version": spec}
config = ic.RepositoryConfig.default()
config.inline_chunk_threshold_bytes = 40
repo = ic.Repository.create(ic.local_filesystem_storage(path), config=config, **kwargs)
s = repo.writable_session("main")
root = zarr.group(s.store, attributes={"title": "written by the reference"})
g = root.create_group("g", attributes={"n": 1, "f": 2.5, "s": "x"})
g.create_array("small", shape=(6,), chunks=(2,), dtype="int16", fill_value=-1)
g.create_array("big", shape=(100, 60), chunks=(50, 30), dtype="float64", fill_value=float("nan"))
first = s.commit("structure")
s = repo.writable_session("main")
g = zarr.open_group(s.store, path="g", mode="a")
g["small"][:4] = np.arange(4, dtype="int16")
g["big"][:] = np.arange(6000, dtype="float64").reshape(100, 60)
second = s.commit("data")
repo.create_branch("dev", second)
repo.create_tag("v1", second)
repo.create_tag("gone", first)
repo.delete_tag("gone")
s = repo.writable_session("dev")
g = zarr.open_group(s.store, path="g", mode="a")
g["big"][:50, :30] = -1.0
del g["small"]
s.commit("dev change")
print(json.dumps({"first": first, "second": second}))
"""

COMMIT_ON_TOP = r"""
import json, sys
import numpy as np
import icechunk as ic
import zarr

repo = ic.Repository.open(ic.local_filesystem_storage(sys.argv[1]))
s = repo.writable_session("main")
arr = zarr.open_array(s.store, path="g/big", mode="a")
arr[50:, 30:] = 7.0
root = zarr.open_group(s.store, mode="a")
root.create_array("added_by_reference", shape=(3,), chunks=(3,), dtype="int32", fill_value=0)[:] = [1, 2, 3]
print(json.dumps({"sid": s.commit("reference commit on top")}))
"""


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def describe(store: Any) -> dict[str, Any]:
    """Same output as the ``describe`` function inside :data:`READ`."""
    root = zarr.open_group(store, mode="r")
    nodes: dict[str, Any] = {"/": {"attrs": dict(root.attrs), "kind": "group"}}
    for path, item in root.members(max_depth=None):
        entry: dict[str, Any] = {"attrs": dict(item.attrs)}
        if isinstance(item, zarr.Array):
            entry["kind"] = "array"
            entry["dtype"] = str(item.dtype)
            entry["values"] = _clean(np.asarray(item[...]).tolist())
        else:
            entry["kind"] = "group"
        nodes["/" + path] = entry
    return nodes


def read_repo(path: str) -> dict[str, Any]:
    """Describe a repository with this package (same shape as :data:`READ`'s output)."""
    import icechunk as ic

    repo = ic.Repository.open(ic.local_filesystem_storage(path))
    out: dict[str, Any] = {
        "branches": sorted(repo.list_branches()),
        "tags": sorted(repo.list_tags()),
        "ancestry": {},
        "nodes": {},
        "tips": {},
    }
    for b in out["branches"]:
        out["ancestry"][b] = [s.message for s in repo.ancestry(branch=b)]
        session = repo.readonly_session(branch=b)
        out["tips"][b] = session.snapshot_id
        out["nodes"][b] = describe(session.store)
    for t in out["tags"]:
        out["nodes"]["tag:" + t] = describe(repo.readonly_session(tag=t).store)
    return out


def write_repo(path: str, spec: int) -> dict[str, str]:
    """The content of :data:`WRITE`, written by this package."""
    import icechunk as ic

    config = ic.RepositoryConfig(inline_chunk_threshold_bytes=40)
    repo = ic.Repository.create(ic.local_filesystem_storage(path), config=config, spec_version=spec)
    s = repo.writable_session("main")
    root = zarr.group(s.store, attributes={"title": "written by the reference"})
    g = root.create_group("g", attributes={"n": 1, "f": 2.5, "s": "x"})
    g.create_array("small", shape=(6,), chunks=(2,), dtype="int16", fill_value=-1)
    g.create_array("big", shape=(100, 60), chunks=(50, 30), dtype="float64", fill_value=float("nan"))
    first = s.commit("structure")
    s = repo.writable_session("main")
    g = zarr.open_group(s.store, path="g", mode="a")
    g["small"][:4] = np.arange(4, dtype="int16")
    g["big"][:] = np.arange(6000, dtype="float64").reshape(100, 60)
    second = s.commit("data")
    repo.create_branch("dev", second)
    repo.create_tag("v1", second)
    repo.create_tag("gone", first)
    repo.delete_tag("gone")
    s = repo.writable_session("dev")
    g = zarr.open_group(s.store, path="g", mode="a")
    g["big"][:50, :30] = -1.0
    del g["small"]
    s.commit("dev change")
    return {"first": first, "second": second}


def commit_on_top(path: str) -> str:
    """The content of :data:`COMMIT_ON_TOP`, committed by this package."""
    import icechunk as ic

    repo = ic.Repository.open(ic.local_filesystem_storage(path))
    s = repo.writable_session("main")
    arr = zarr.open_array(s.store, path="g/big", mode="a")
    arr[50:, 30:] = 7.0
    root = zarr.open_group(s.store, mode="a")
    root.create_array("added_by_reference", shape=(3,), chunks=(3,), dtype="int32", fill_value=0)[:] = [1, 2, 3]
    return s.commit("reference commit on top")
