"""``Repository.rewrite_manifests``: rewrite every array's manifests for the current config.

The data does not change: the commit re-splits every array's refs per the active
``manifest.splitting`` config (FORMAT.md §6.4) and records that config as JSON under
``__icechunk.splitting_config`` in the commit metadata.
"""

from __future__ import annotations

from typing import Any

from icechunk._errors import ErrorKind, FormatError
from icechunk.core.repo_state import RepoInfoRefs
from icechunk.format.ids import SnapshotId

__all__ = ["rewrite_manifests"]


async def rewrite_manifests(
    repo: object,
    message: str,
    *,
    branch: str,
    metadata: dict[str, Any] | None = None,
    commit_method: str = "new_commit",
) -> SnapshotId:
    """Commit (or amend) ``branch`` with all manifests rewritten; returns the new snapshot id.

    Raises
    ------
    FormatError
        ``commit_method="amend"`` on a spec-1 repository (``unsupported-operation-for-version``).
    ConflictError
        The branch moved while the manifests were being written (no rebase).
    """
    from icechunk.core.repository import RepoEngine, _with_reserved

    assert isinstance(repo, RepoEngine)
    if commit_method not in ("new_commit", "amend"):
        raise ValueError(f"commit_method must be 'new_commit' or 'amend', got {commit_method!r}")
    if commit_method == "amend" and not isinstance(repo.state, RepoInfoRefs):
        raise FormatError(
            "rewrite_manifests(commit_method='amend') needs a spec-2 repository",
            ErrorKind.UNSUPPORTED_OPERATION_FOR_VERSION,
        )
    splitting = repo.effective.splitting
    reserved = {"splitting_config": splitting.to_serde() if splitting is not None else None}
    engine = await repo.writable_session(branch)
    if commit_method == "new_commit":
        return await repo.commit(
            engine,
            message,
            metadata,
            allow_empty=True,
            extra_icechunk_metadata=reserved,
            rewrite_manifests=True,
        )
    state = repo.state
    assert isinstance(state, RepoInfoRefs)
    return await repo._replace_tip(
        state, engine, branch, message, _with_reserved(metadata, reserved), rewrite_manifests=True
    )
