"""Rebase a session over commits made on its branch, and commit with rebase-and-retry."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from icechunk._errors import ConflictError, ErrorKind, RebaseFailedError, SessionStateError
from icechunk.core.conflicts import CoreSolver, detect_conflicts
from icechunk.core.repository import RepoEngine
from icechunk.core.session import SessionEngine
from icechunk.format.ids import SnapshotId

__all__ = ["commit_with_rebase", "rebase"]


async def _commits_since(repo: RepoEngine, base: SnapshotId, tip: SnapshotId) -> list[SnapshotId]:
    """Commits between ``base`` (exclusive) and ``tip`` (inclusive), oldest first."""
    chain: list[SnapshotId] = []
    async for entry in repo.ancestry(tip):
        if entry.id == base:
            return list(reversed(chain))
        chain.append(entry.id)
    raise RebaseFailedError(
        str(tip), [], message=f"cannot rebase: {base} is not in the history of the branch tip {tip}"
    )


async def rebase(repo: RepoEngine, engine: SessionEngine, solver: CoreSolver) -> None:
    """Replay every commit made on the session's branch since its base, oldest first.

    Each commit is checked against the change set; if ``solver`` resolves all its conflicts
    the session moves its base to that commit, otherwise RebaseFailedError is raised and
    the session stays on the last commit replayed successfully.
    """
    if engine.branch is None or engine.mode in ("readonly", "fork"):
        raise SessionStateError("rebase needs a session on a branch", ErrorKind.COMMIT_NOT_ALLOWED)
    try:
        tip = await repo.state.lookup_branch(engine.branch)
    except KeyError:
        return  # the branch was deleted: nothing to replay
    if tip == engine.base.id:
        return
    for sid in await _commits_since(repo, engine.base.id, tip):
        log = await repo.transaction_log(sid)
        after = await repo.snapshot(sid)
        conflicts = detect_conflicts(engine, log, after.snapshot)
        unresolved = solver.unresolved(conflicts)
        if unresolved:
            raise RebaseFailedError(str(sid), list(unresolved))
        solver.apply(engine, conflicts)
        engine.base = after
        _drop_stale_deletes(engine)


def _drop_stale_deletes(engine: SessionEngine) -> None:
    """Forget deletes of nodes the new base no longer has (both sides deleted them)."""
    by_path = engine.base.by_path
    for deleted in (engine.changes.deleted_groups, engine.changes.deleted_arrays):
        for path, nid in list(deleted.items()):
            node = by_path.get(path)
            if node is None or node.id != nid:
                del deleted[path]


async def commit_with_rebase(
    repo: RepoEngine,
    engine: SessionEngine,
    message: str,
    metadata: dict[str, Any] | None,
    *,
    solver: CoreSolver | None,
    rebase_tries: int = 1000,
    allow_empty: bool = False,
) -> SnapshotId:
    """Commit; with a solver, rebase on conflicts and retry (jittered exponential backoff).

    The number of rebases is recorded as ``__icechunk.rebase_attempts`` in the commit
    metadata.
    """
    attempts = 0
    while True:
        if solver is not None and engine.branch is not None and attempts < rebase_tries:
            tip = await repo.state.lookup_branch(engine.branch)
            if tip != engine.base.id:  # rebase before paying for manifests and snapshot
                attempts += 1
                await rebase(repo, engine, solver)
        extra = {"rebase_attempts": attempts} if attempts else None
        try:
            return await repo.commit(
                engine, message, metadata, allow_empty=allow_empty, extra_icechunk_metadata=extra
            )
        except ConflictError as err:
            if solver is None or attempts >= rebase_tries or err.kind != ErrorKind.COMMIT_CONFLICT:
                raise
        # lost a race: back off with full jitter so contending writers spread out
        await asyncio.sleep(random.uniform(0, min(2.0, 0.01 * 2 ** min(attempts, 8))))
