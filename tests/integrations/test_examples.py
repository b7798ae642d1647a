"""Every script in examples/ runs to completion on a fresh directory (they assert their results)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("xarray")
pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"quickstart.py", "distributed_write.py", "append_with_concurrent_writer.py"} <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    target = tmp_path / "repo"
    result = subprocess.run(
        [sys.executable, str(script), str(target)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    assert str(target) in result.stdout  # each example says where the repository is
    assert (target / "repo").is_file() or (target / "refs").is_dir()  # and really made one there


def test_quickstart_without_arguments(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stderr
    created = [p for p in tmp_path.glob("icechunk-quickstart-*/repo") if p.is_dir()]
    assert len(created) == 1
    assert f"The repository is at {created[0]}" in result.stdout
