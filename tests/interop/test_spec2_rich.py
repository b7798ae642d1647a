"""Spec-2 interop on a rich repository, both directions, against icechunk 2.2.0.

One script (:mod:`tests.interop.rich`) writes the repository; it runs unchanged under either
implementation.  Each repository is then described by both implementations and the two JSON
descriptions must be identical: refs, every ancestry entry (ids, parents, messages, nested
metadata, written_at), the ops log (kinds, fields, times, backups), repo metadata, manifest
files and split extents, chunk kinds (inline / native / virtual) and every value of every node
on every branch and tag.  Then each implementation commits on top of the other's repository.

Skipped with a reason when Python 3.12 or the package index is unavailable.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.interop import rich
from tests.interop.reference import run_ours, run_reference

pytestmark = pytest.mark.interop
REF = "2.2.0"
SIDE = {"ours": run_ours, "reference": lambda script, *args: run_reference(REF, script, *args)}


def _write(tmp: Path, writer: str) -> dict[str, Any]:
    data = tmp / "data"
    data.mkdir(parents=True)
    rich.VIRT_VALUES.tofile(data / "virt.bin")
    ids = SIDE[writer](rich.WRITE, str(tmp / "repo"), str(data))
    return {"repo": tmp / "repo", "data": data, "ids": ids}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The rich repository as written by each implementation (read-only for the tests)."""
    return {w: _write(tmp_path_factory.mktemp(f"by_{w}"), w) for w in SIDE}


def _describe_both(repo: Path, data: Path) -> dict[str, Any]:
    ours = run_ours(rich.DESCRIBE, str(repo), str(data))
    theirs = run_reference(REF, rich.DESCRIBE, str(repo), str(data))
    assert ours == theirs  # pytest prints the first differing keys
    return ours


def _check_content(desc: dict[str, Any], ids: dict[str, str]) -> None:
    """What the write script put in, seen through a description."""
    assert desc["spec"] == 2
    assert desc["metadata"] == {
        "project": "interop", "owner": "tests", "nested": {"list": [1, 2.5, "x", None, True], "n": -3}
    }
    assert desc["branches"] == {"main": ids["moved"], "dev": ids["dev"], "tmp": ids["data"]}
    assert desc["tags"] == {"v1": ids["data"], "v2": ids["amended"]}  # "deleted" is gone
    main = desc["ancestry"]["main"]
    assert [e["message"] for e in main] == [
        "rearranged", "amended commit", "data", "structure", "Repository initialized"
    ]
    assert [e["id"] for e in main[:4]] == [ids["moved"], ids["amended"], ids["data"], ids["structure"]]
    assert all(e["parent"] == nxt["id"] for e, nxt in zip(main, main[1:]))
    assert main[-1]["parent"] is None
    assert main[1]["metadata"] == {"amended": True, "nested": {"n": [None, 1.5]}}
    assert main[3]["metadata"] == {"author": "tester", "nested": {"k": [1, 2, {"deep": "yes"}], "pi": 3.5}}
    assert ids["to_amend"] not in {e["id"] for e in main}
    assert desc["ancestry"]["dev"][0]["metadata"] == {"branch": "dev"}
    assert [e["written_at"] for e in main] == sorted((e["written_at"] for e in main), reverse=True)
    assert desc["lookup"] == main[0]

    kinds = [u["kind"] for u in desc["ops_log"]]
    assert kinds == [
        "NewCommit", "NewCommit", "TagDeleted", "TagCreated", "TagCreated", "TagCreated",
        "BranchDeleted", "BranchCreated", "BranchReset", "BranchCreated", "BranchCreated",
        "CommitAmended", "NewCommit", "NewCommit", "NewCommit", "MetadataChanged",
        "MetadataChanged", "RepoInitialized",
    ]
    amend = desc["ops_log"][kinds.index("CommitAmended")]["fields"]
    assert amend == {"branch": "main", "previous_snap_id": ids["to_amend"], "new_snap_id": ids["amended"]}
    assert desc["ops_log"][2]["fields"] == {"name": "deleted", "previous_snap_id": ids["structure"]}

    nodes = desc["trees"]["main"]["nodes"]
    assert {"/a/b/c", "/flags"}.isdisjoint(nodes) and {"/moved_c/f64", "/a/flags_moved"} <= set(nodes)
    assert nodes["/moved_c/f64"]["chunk_kinds"] == "nnnnnnuu"  # native chunks moved along
    assert nodes["/a/b/i64"]["chunk_kinds"] == "i" * 12 and nodes["/a/b/i64"]["attrs"]["units"] == "m"
    assert nodes["/virt"]["chunk_kinds"] == "vvvvvuvv"
    expected = rich.VIRT_VALUES.copy()
    expected[40:48] = 0
    assert nodes["/virt"]["values"]["head"] == expected[:8].tolist()
    assert nodes["/strings"]["values"]["head"] == ["alpha", "", "ΓΔ unicode", "d" * 100, "e"]
    assert desc["trees"]["main"]["virtual"] == [desc["trees"]["main"]["virtual"][0]] * 7
    assert "/untouched" not in desc["trees"]["dev"]["nodes"]
    assert desc["trees"]["dev"]["nodes"]["/dev_only"]["attrs"] == {"branch": "dev"}
    # manifest splitting: 10 chunk rows of split_me in splits of 3 along axis 0
    extents = [e for _, e in desc["manifests"]["main"]["refs"]["/split_me"]]
    assert extents == [[[0, 3], [0, 1]], [[3, 6], [0, 1]], [[6, 9], [0, 1]], [[9, 10], [0, 1]]]


@pytest.mark.parametrize("writer", list(SIDE))
def test_both_implementations_read_the_repo_identically(written, writer) -> None:
    repo = written[writer]
    desc = _describe_both(repo["repo"], repo["data"])
    _check_content(desc, repo["ids"])
    # the native chunks are real objects on disk, the inline ones are not
    chunk_files = list((repo["repo"] / "chunks").iterdir())
    native = sum(
        node.get("chunk_kinds", "").count("n")
        for tree in desc["trees"].values() for node in tree["nodes"].values()
    )
    assert 0 < len(chunk_files) <= native


def _normalized(desc: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """A description with writer-specific noise (random ids, clocks, sizes) replaced."""
    label = {sid: name for name, sid in ids.items()}
    out = copy.deepcopy(desc)

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items() if k not in ("written_at", "at")}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str):
            return label.get(v, "<initial>" if len(v) == 20 and v.isalnum() and v.isupper() else v)
        return v

    for name, m in out["manifests"].items():
        out["manifests"][name] = {
            "num_refs": sorted(f[1] for f in m["files"]),
            "extents": {p: [e for _, e in refs] for p, refs in m["refs"].items()},
        }
    for u in out["ops_log"]:
        u["backup"] = u["backup"] is not None
    return walk(out)


def test_both_writers_build_the_same_repository(written) -> None:
    """Same script, same logical repository: only ids, clocks and byte sizes differ."""
    descs = {
        w: _normalized(run_ours(rich.DESCRIBE, str(r["repo"]), str(r["data"])), r["ids"])
        for w, r in written.items()
    }
    for d, w in ((descs["ours"], "ours"), (descs["reference"], "reference")):
        for tree in d["trees"].values():  # the data dir differs between the two
            tree["virtual"] = [v.replace(str(written[w]["data"]), "<data>") for v in tree["virtual"]]
    assert descs["ours"] == descs["reference"]


@pytest.mark.parametrize(("writer", "committer"), [("ours", "reference"), ("reference", "ours")])
def test_commit_on_top_of_the_other_implementation(written, tmp_path, writer, committer) -> None:
    src = written[writer]
    repo = tmp_path / "repo"
    shutil.copytree(src["repo"], repo)
    before = run_ours(rich.DESCRIBE, str(repo), str(src["data"]))
    sid = SIDE[committer](rich.COMMIT_ON_TOP, str(repo), str(src["data"]), committer)["sid"]
    desc = _describe_both(repo, src["data"])

    assert desc["branches"]["main"] == sid
    top = desc["ancestry"]["main"]
    assert top[0] == {**top[0], "id": sid, "parent": src["ids"]["moved"], "message": "commit on top"}
    assert top[0]["metadata"] == {"by": committer, "nested": {"ok": [True]}}
    assert top[1:] == before["ancestry"]["main"]
    # the previous newest entry now names the backup of the repo object it replaced
    assert desc["ops_log"][2:] == before["ops_log"][1:]
    assert before["ops_log"][0]["backup"] is None and desc["ops_log"][1]["backup"] is not None
    assert desc["ops_log"][1] == {**before["ops_log"][0], "backup": desc["ops_log"][1]["backup"]}
    assert desc["ops_log"][0]["fields"] == {"branch": "main", "new_snap_id": sid}
    for name in ("dev", "tmp", "tag:v1", "tag:v2"):  # other refs untouched
        assert desc["trees"][name] == before["trees"][name]

    nodes = desc["trees"]["main"]["nodes"]
    assert nodes["/"]["attrs"]["on_top"] == {"by": committer}
    assert nodes["/added_on_top"]["values"]["head"] == [1.5, -2.5, 3.25, 0.0]
    assert nodes["/added_on_top"]["chunk_kinds"] == "ii"
    assert nodes["/moved_c/f64"]["chunk_kinds"] == "nnnnnnii"  # constant rows compress to inline
    assert nodes["/virt"]["chunk_kinds"] == "uvvvvvvv"
    virt = rich.VIRT_VALUES.copy()
    virt[:8] = 0
    virt[40:48] = rich.VIRT_VALUES[:8]
    assert nodes["/virt"]["values"]["head"] == virt[:8].tolist()
    assert nodes["/strings"]["values"]["head"][1] == "filled on top"
    # the split array got a new manifest only for the split it touched
    old = dict((tuple(map(tuple, e)), m) for m, e in before["manifests"]["main"]["refs"]["/split_me"])
    new = dict((tuple(map(tuple, e)), m) for m, e in desc["manifests"]["main"]["refs"]["/split_me"])
    assert old.keys() == new.keys()
    assert [k for k in old if old[k] != new[k]] == [((9, 10), (0, 1))]
