"""Run the reference implementation (PyPI ``icechunk``) in a throwaway virtualenv.

Our package has the same import name, so the reference never shares an interpreter with the
tests: a cached virtualenv under ``.cache/reference/<version>`` runs scripts in a subprocess
that print one JSON document.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ICECHUNK_REFERENCE_CACHE", ROOT / ".cache" / "reference"))
PYTHON_FOR = {"1.1.21": "3.11", "2.2.0": "3.12"}


def find_python(minor: str) -> str | None:
    """An interpreter of the given ``major.minor`` version, or None."""
    candidates = [shutil.which(f"python{minor}")]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}*/bin/python{minor}")))
    if f"{sys.version_info.major}.{sys.version_info.minor}" == minor:
        candidates.insert(0, sys.executable)
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.startswith(minor):
            return candidate
    return None


class ReferenceUnavailable(Exception):
    """The reference cannot run here (no suitable Python, or no package index)."""


def ensure_reference(version: str, extra: tuple[str, ...] = (), flavour: str = "") -> Path:
    """The interpreter of a cached virtualenv holding ``icechunk==version`` (+ ``extra`` packages).

    ``flavour`` names a separate venv (``<version>-<flavour>``) so that heavier installs (the
    benchmarks' xarray/dask) never disturb the one the tests share.

    Raises
    ------
    ReferenceUnavailable
        When no suitable Python exists or the package index is unreachable.
    """
    minor = PYTHON_FOR[version]
    name = f"{version}-{flavour}" if flavour else version
    venv = CACHE / name
    python = venv / "bin" / "python"
    with _venv_lock(name):
        if python.exists() and (venv / "ok").exists():
            _ensure_extras(python, venv, extra)
            return python
        base = find_python(minor)
        if base is None:
            raise ReferenceUnavailable(f"icechunk {version} needs Python {minor}, which is not installed here")
        _build_venv(
            venv,
            base,
            [f"icechunk=={version}", "zarr>=3.1,<3.2", "numpy", *extra],
            f"cannot install icechunk=={version} from the package index",
        )
        (venv / "ok").write_text("ok")
        (venv / "extras").write_text("\n".join(sorted(extra)))
    return python


def _ensure_extras(python: Path, venv: Path, extra: tuple[str, ...]) -> None:
    """Install extra packages asked for since the virtualenv was built."""
    marker = venv / "extras"
    have = set(marker.read_text().split()) if marker.exists() else set()
    missing = sorted(set(extra) - have)
    if not missing:
        return
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *missing], capture_output=True, text=True, timeout=900
    )
    if install.returncode != 0:
        raise ReferenceUnavailable(f"cannot install {missing} next to the reference: {install.stderr[-500:]}")
    marker.write_text("\n".join(sorted(have | set(missing))))


def ensure_peer(reference: Path, packages: tuple[str, ...], name: str) -> Path:
    """A virtualenv on the reference's interpreter with the reference's packages but not
    the reference itself, plus ``packages``: our package runs there (from the worktree, on
    ``PYTHONPATH``) so that both implementations sit on the same Python, zarr, numcodecs and
    numpy, and a comparison measures the implementations rather than the environments.

    Rebuilt whenever the reference's package set changes.

    Raises
    ------
    ReferenceUnavailable
        When the packages cannot be installed.
    """
    freeze = subprocess.run(
        [str(reference), "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, timeout=300
    )
    if freeze.returncode != 0:
        raise ReferenceUnavailable(f"cannot list the reference's packages: {freeze.stderr[-500:]}")
    pins = sorted(line for line in freeze.stdout.splitlines() if line and not line.lower().startswith("icechunk"))
    wanted = "\n".join([*pins, *sorted(packages)])
    venv = CACHE / name
    python = venv / "bin" / "python"
    with _venv_lock(name):
        marker = venv / "ok"
        if python.exists() and marker.exists() and marker.read_text() == wanted:
            return python
        base = subprocess.run(
            [str(reference), "-c", "import sys; print(sys._base_executable)"], capture_output=True, text=True
        ).stdout.strip()
        _build_venv(venv, base or sys.executable, [*pins, *packages], f"cannot build the peer virtualenv {name}")
        marker.write_text(wanted)
    return python


@contextlib.contextmanager
def _venv_lock(name: str) -> Iterator[None]:
    """Exclusive use of the cached virtualenv ``name`` (other test processes wait)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_venv(venv: Path, base: str, requirements: list[str], failure: str) -> None:
    """A fresh virtualenv at ``venv`` on interpreter ``base`` with ``requirements`` installed;
    on a failed install it is removed and ReferenceUnavailable(``failure``: pip's error) raised."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if install.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise ReferenceUnavailable(f"{failure}: {install.stderr[-500:]}")


def reference_python(version: str) -> Path:
    """:func:`ensure_reference` for tests: skips the calling test when the reference cannot run."""
    try:
        return ensure_reference(version)
    except ReferenceUnavailable as exc:
        pytest.skip(str(exc))


def run_reference(version: str, script: str, *args: str, timeout: float = 300) -> Any:
    """Run ``script`` with the reference installed; returns the JSON it printed last."""
    python = reference_python(version)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(python), "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd="/",
    )
    if proc.returncode != 0:
        raise AssertionError(f"reference icechunk {version} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_ours(script: str, *args: str, timeout: float = 300) -> Any:
    """Run ``script`` with this package (our worktree first on the path), like :func:`run_reference`.

    Running our side in a subprocess too keeps both implementations under identical conditions
    (fresh interpreter, same script text).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd="/",
    )
    if proc.returncode != 0:
        raise AssertionError(f"this package failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
