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
    """Migrate a spec-1 repository to spec 2 (FORMAT.md §8.4); returns a freshly opened handle.

    Only metadata is read and only the ``repo`` object is written; snapshots, manifests,
    transaction logs and chunks are kept as they are.  Run it while nobody else uses the
    repository.

    Parameters
    ----------
    repo
        A handle on a spec-1 repository.  After a real (not dry) run it is invalidated: any
        attribute access raises ``RuntimeError``; use the returned handle.
    dry_run
        Compute and validate the migration without writing anything; returns ``repo``.
    delete_unused_v1_files
        Delete the spec-1 refs (``refs/``, main first) and ``config.yaml`` afterwards.
    prefetch_concurrency
        Snapshot files read concurrently (64 when None).

    Raises
    ------
    SessionStateError
        (``invalid-repository-migration``) not a spec-1 repository, or the migration failed
        (the repository is then left as a usable spec-1 repository).
    """
    from icechunk._sync import run
    from icechunk.core.repository import RepoEngine
    from icechunk.core.upgrade import migrate_to_v2
    from icechunk.repository import Repository

    engine = repo._engine
    run(
        migrate_to_v2(
            engine.storage,
            dry_run=dry_run,
            delete_unused_v1_files=delete_unused_v1_files,
            prefetch_concurrency=prefetch_concurrency,
            compression_level=engine.effective.compression_level,
        )
    )
    if dry_run:
        return repo
    new_engine = run(RepoEngine.open(engine.storage, engine.config, authorizations=engine.authorizations))
    new_engine.default_commit_metadata = dict(engine.default_commit_metadata)
    fresh = Repository(new_engine)
    _invalidate(repo)
    return fresh


class _InvalidatedRepository:
    """What an upgraded repository handle turns into: every attribute access fails."""

    def __getattribute__(self, name: str) -> object:
        if name == "__class__":
            return object.__getattribute__(self, name)
        raise RuntimeError(
            "this Repository handle was invalidated by upgrade_icechunk_repository; "
            "use the Repository it returned"
        )

    def __repr__(self) -> str:
        return "<icechunk.Repository (invalidated by upgrade_icechunk_repository)>"


def _invalidate(repo: Repository) -> None:
    repo.__dict__.clear()
    repo.__class__ = _InvalidatedRepository  # type: ignore[assignment]
