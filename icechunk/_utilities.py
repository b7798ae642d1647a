"""Top-level utilities: spec versions, user agent, debug info, spec 1 -> 2 upgrade."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import TYPE_CHECKING

from icechunk._types import SpecVersion
from icechunk._version import __version__

if TYPE_CHECKING:
    from icechunk.repository import Repository

__all__ = [
    "print_debug_info",
    "spec_version",
    "supported_spec_versions",
    "upgrade_icechunk_repository",
    "user_agent",
]


def supported_spec_versions() -> list[SpecVersion]:
    """The on-disk versions this library reads and writes, newest first."""
    return [SpecVersion.v2, SpecVersion.v1]


def spec_version() -> SpecVersion:
    """The version new repositories get by default."""
    return SpecVersion.current()


def user_agent() -> str:
    """The User-Agent string of this library."""
    return f"icechunk-python-{__version__}"


def print_debug_info() -> None:
    """Print platform and package versions, one ``name:  version`` per line."""
    print(f"platform:  {platform.platform()}")
    print(f"python:  {sys.version.split()[0]}")
    print(f"icechunk:  {__version__}")
    for name in ("zarr", "numcodecs", "xarray", "virtualizarr", "numpy", "dask", "obstore"):
        try:
            print(f"{name}:  {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue


def upgrade_icechunk_repository(
    repo: Repository,
    *,
    dry_run: bool,
    delete_unused_v1_files: bool = True,
    prefetch_concurrency: int | None = None,
) -> Repository:
    """Migrate a spec-1 repository to spec 2 (FORMAT.md §8.4); returns a freshly opened handle."""
    raise NotImplementedError("upgrading spec-1 repositories is not implemented yet (issue 8)")
