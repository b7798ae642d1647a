"""Sessions: a consistent view of one snapshot, and (when writable) a transaction on a branch."""

from __future__ import annotations

import contextlib
import html
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from icechunk._errors import ErrorKind, RebaseFailedError, SessionStateError
from icechunk._sync import blocking
from icechunk._types import ChunkType, SessionMode
from icechunk.core.paths import normalize_path
from icechunk.core.session import SessionEngine
from icechunk.snapshots import Diff
from icechunk.store import PICKLE_ADVICE, IcechunkStore

if TYPE_CHECKING:
    from icechunk.config import RepositoryConfig
    from icechunk.conflicts import ConflictSolver
    from icechunk.core.repository import RepoEngine

__all__ = ["ForkSession", "Session", "SessionMode"]


class Session:
    """A view of one snapshot; writable sessions also hold uncommitted changes.

    Get one from :meth:`icechunk.Repository.readonly_session`,
    :meth:`~icechunk.Repository.writable_session` or :meth:`Session.fork`.
    """

    def __init__(self, engine: SessionEngine, repo: RepoEngine) -> None:
        self._engine = engine
        self._repo = repo

    # ---- properties -------------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        """True for read-only sessions and sessions that finished a commit, amend or flush."""
        return self._engine.read_only

    @property
    def mode(self) -> SessionMode:
        """``readonly``, ``writable`` or ``rearrange`` (sessions without a branch say readonly)."""
        if self._engine.branch is None:
            return SessionMode.readonly
        return SessionMode.rearrange if self._engine.mode == "rearrange" else SessionMode.writable

    @property
    def snapshot_id(self) -> str:
        """The base snapshot (the new one after a commit)."""
        return str(self._engine.snapshot_id)

    @property
    def branch(self) -> str | None:
        """The branch of a writable or rearrange session; None otherwise."""
        return self._engine.branch

    @property
    def has_uncommitted_changes(self) -> bool:
        return not self._engine.changes.is_empty()

    @property
    def store(self) -> IcechunkStore:
        """A zarr store reading and writing through this session."""
        return IcechunkStore(self)

    @property
    def config(self) -> RepositoryConfig:
        """A copy of the repository configuration this session runs with."""
        return self._repo.config.merge(None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Session) and other._engine is self._engine

    def __hash__(self) -> int:
        return id(self._engine)

    def __repr__(self) -> str:
        return (
            f"icechunk.{type(self).__name__}(snapshot_id={self.snapshot_id!r}, branch={self.branch!r}, "
            f"read_only={self.read_only}, has_uncommitted_changes={self.has_uncommitted_changes})"
        )

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"

    # ---- pickling ---------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        engine = self._engine
        if not engine.read_only and engine.mode != "fork":
            raise ValueError(PICKLE_ADVICE)
        from icechunk.core.fork import dump_changes

        return {
            "repo": self._repo,
            "snapshot": engine.base.snapshot,
            "mode": engine.mode,
            "changes": dump_changes(engine.changes) if engine.mode == "fork" else None,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        from icechunk.core.assets import SnapshotIndex
        from icechunk.core.fork import load_changes

        repo: RepoEngine = state["repo"]
        changes = load_changes(state["changes"]) if state["changes"] is not None else None
        self._repo = repo
        self._engine = SessionEngine(
            repo.assets,
            repo.state,
            repo.effective,
            SnapshotIndex(state["snapshot"]),
            mode=state["mode"],
            changes=changes,
            virtual_fetch=repo.virtual_fetcher(),
            default_metadata=repo.default_commit_metadata,
        )

    # ---- change set -------------------------------------------------------------------------

    def status(self) -> Diff:
        """The uncommitted changes of this session."""
        from icechunk.core.diff import session_diff

        return _public_diff(session_diff(self._engine))

    def discard_changes(self) -> None:
        """Drop every uncommitted change."""
        self._engine.require_writable(data=False)
        from icechunk.core.changeset import ChangeSet

        self._engine.changes = ChangeSet()

    # ---- commits ----------------------------------------------------------------------------

    async def commit_async(
        self,
        message: str,
        metadata: dict[str, Any] | None = None,
        *,
        rebase_with: ConflictSolver | None = None,
        rebase_tries: int = 1000,
        allow_empty: bool = False,
    ) -> str:
        """Commit the changes as a new snapshot on the session's branch; returns its id.

        Parameters
        ----------
        message
            Commit message.
        metadata
            Commit properties, merged over the repository's default commit metadata.
        rebase_with
            A conflict solver: when the branch moved, rebase onto it and retry (up to
            ``rebase_tries`` times, with jittered backoff) instead of raising ConflictError.
        allow_empty
            Allow a commit with no changes.

        Raises
        ------
        ConflictError
            The branch moved since the session started and no solver was given.
        RebaseFailedError
            The solver could not resolve a conflict.
        SessionStateError
            No changes (unless ``allow_empty``), or a read-only/forked/finished session.
        """
        from icechunk.core.rebase import commit_with_rebase

        with _public_rebase_errors():
            sid = await commit_with_rebase(
                self._repo, self._engine, message, metadata,
                solver=None if rebase_with is None else rebase_with._solver(),
                rebase_tries=rebase_tries, allow_empty=allow_empty,
            )
        return str(sid)

    commit = blocking(commit_async)

    async def amend_async(
        self, message: str, *, metadata: dict[str, Any] | None = None, allow_empty: bool = False
    ) -> str:
        """Replace the branch tip with a snapshot holding its changes plus this session's.

        Spec 2 only.  The ancestry does not grow; the tip id changes.
        """
        return str(await self._repo.amend(self._engine, message, metadata, allow_empty=allow_empty))

    amend = blocking(amend_async)

    async def flush_async(self, message: str, *, metadata: dict[str, Any] | None = None) -> str:
        """Write an anonymous snapshot of the session (no branch moves); returns its id."""
        return str(await self._repo.flush(self._engine, message, metadata))

    flush = blocking(flush_async)

    async def rebase_async(self, solver: ConflictSolver) -> None:
        """Replay the commits made on the branch since the session's base, oldest first.

        Raises
        ------
        RebaseFailedError
            When ``solver`` cannot resolve a conflict (the session stays consistent at the
            last commit replayed successfully).
        """
        from icechunk.core.rebase import rebase

        with _public_rebase_errors():
            await rebase(self._repo, self._engine, solver._solver())

    rebase = blocking(rebase_async)

    # ---- forks ------------------------------------------------------------------------------

    def fork(self) -> ForkSession:
        """A picklable writable session holding a snapshot of this session's current state."""
        from icechunk._sync import run

        return run(self._fork_async())

    async def _fork_async(self) -> ForkSession:
        from icechunk.core.fork import fork_engine

        engine = await fork_engine(self._repo, self._engine)
        return ForkSession(engine, self._repo)

    def merge(self, *others: Session) -> None:
        """Absorb the change sets of forks into this session (later forks win on chunks).

        Merging is in-memory work with no I/O, so it runs in the calling thread rather than
        hopping to the I/O loop and back (two thread wake-ups, about as long as the merge).

        Raises
        ------
        SessionStateError
            A fork absorbing a branch session, conflicting metadata, or rearrange changes.
        """
        from icechunk.core.fork import merge_into

        for other in others:
            if not isinstance(other, Session):
                raise TypeError(f"can only merge sessions, got {type(other).__name__}")
            if not isinstance(other, ForkSession) and isinstance(self, ForkSession):
                raise SessionStateError(
                    "a fork cannot absorb a branch session; merge forks into the session instead",
                    ErrorKind.MERGE_NOT_ALLOWED,
                )
            merge_into(self._engine, other._engine)

    async def merge_async(self, *others: Session) -> None:
        """Async twin of :meth:`merge`."""
        self.merge(*others)

    # ---- nodes and chunks -------------------------------------------------------------------

    async def get_node_id_async(self, path: str) -> str:
        """An id of the node at ``path`` that stays the same across moves."""
        return str(self._engine.get_node(path).id)

    get_node_id = blocking(get_node_id_async)

    async def chunk_type_async(self, array_path: str, chunk_coordinates: Sequence[int]) -> ChunkType:
        """How the chunk is stored (``uninitialized`` when it does not exist)."""
        node = self._engine.get_array(array_path)
        ref = await self._engine.chunk_ref(node, tuple(int(c) for c in chunk_coordinates))
        if ref is None:
            return ChunkType.uninitialized
        return ChunkType(int(ref.kind))

    chunk_type = blocking(chunk_type_async)

    async def chunk_coordinates(self, array_path: str, batch_size: int = 1000) -> AsyncIterator[tuple[int, ...]]:
        """Yield the index of every initialised chunk of an array."""
        coords = await self._engine.chunk_coordinates(normalize_path(array_path))
        for start in range(0, len(coords), max(batch_size, 1)):
            for row in coords[start : start + batch_size].tolist():
                yield tuple(row)

    async def all_virtual_chunk_locations_async(self) -> list[str]:
        """The location of every virtual chunk ref in the session, one entry per ref.

        Like the reference: nodes in path order, chunks in index order, duplicates kept.
        """
        from icechunk.format.manifest import RefKind

        out: list[str] = []
        for node in sorted(self._engine.all_nodes(), key=lambda n: n.path):
            if node.array is None:
                continue
            refs = await self._engine.current_refs(node)
            mask = refs.kind == RefKind.VIRTUAL
            out.extend(refs.location[mask].tolist())
        return out

    all_virtual_chunk_locations = blocking(all_virtual_chunk_locations_async)

    # ---- rearranging ------------------------------------------------------------------------

    async def move_async(self, from_path: str, to_path: str) -> None:
        """Move (rename) a group or array with its subtree; metadata only.

        Needs a rearrange session (:meth:`icechunk.Repository.rearrange_session`).  Never
        creates groups and never overwrites.

        Raises
        ------
        SessionStateError
            Not a rearrange session (``non-rearrange-session``), destination inside the
            source (``move-into-self-or-descendant``), destination parent missing
            (``move-destination-parent-missing``) or an array
            (``move-destination-parent-not-group``).
        AlreadyExistsError
            The destination exists (``move-wont-overwrite``).
        """
        from icechunk.core.rearrange import move_node

        move_node(self._engine, from_path, to_path)

    move = blocking(move_async)

    def shift_array(self, array_path: str, chunk_offset: Iterable[int]) -> None:
        """Move every chunk of an array by ``chunk_offset`` chunks (one value per dimension).

        Chunks landing outside the grid are dropped; vacated positions read as the fill
        value.  Only chunk refs change.  Needs a writable session and a regular chunk grid.
        """
        from icechunk._sync import run
        from icechunk.core.rearrange import shift_array

        run(shift_array(self._engine, normalize_path(array_path), tuple(chunk_offset)))

    def reindex_array(
        self,
        array_path: str,
        forward: Callable[[Iterable[int]], Iterable[int] | None],
        backward: Callable[[Iterable[int]], Iterable[int] | None] | None = None,
    ) -> None:
        """Move chunk refs with an index function.

        ``forward(idx)`` gives the new index of the existing chunk ``idx`` (None leaves it
        alone).  Without ``backward``, positions nothing moved to keep their old chunk; with
        ``backward`` (the inverse of ``forward``), each existing position whose pre-image is
        None or empty is cleared to the fill value.

        Raises
        ------
        InvalidInputError
            A target outside the chunk grid (``invalid-chunk-index``), or a non-regular grid.
        """
        from icechunk._sync import run
        from icechunk.core.rearrange import reindex_array

        run(reindex_array(self._engine, normalize_path(array_path), forward, backward))


class ForkSession(Session):
    """A writable, picklable session for distributed writes; merge it back, never commit it."""

    async def commit_async(
        self,
        message: str,
        metadata: dict[str, Any] | None = None,
        *,
        rebase_with: ConflictSolver | None = None,
        rebase_tries: int = 1000,
        allow_empty: bool = False,
    ) -> str:
        """Always raises: forks are merged into a session, which commits."""
        raise SessionStateError("commits are not allowed on a ForkSession", ErrorKind.COMMIT_NOT_ALLOWED)

    async def amend_async(
        self, message: str, *, metadata: dict[str, Any] | None = None, allow_empty: bool = False
    ) -> str:
        """Always raises: forks are merged into a session, which commits."""
        raise SessionStateError("commits are not allowed on a ForkSession", ErrorKind.COMMIT_NOT_ALLOWED)

    async def rebase_async(self, solver: ConflictSolver) -> None:
        """Always raises: forks have no branch to rebase onto."""
        raise SessionStateError("rebase is not allowed on a ForkSession", ErrorKind.COMMIT_NOT_ALLOWED)


@contextlib.contextmanager
def _public_rebase_errors() -> Iterator[None]:
    """Turn the core's conflict records into public :class:`icechunk.Conflict` objects."""
    from icechunk.conflicts import Conflict, ConflictType

    try:
        yield
    except RebaseFailedError as err:
        if not err.conflicts or isinstance(err.conflicts[0], Conflict):
            raise
        public = [
            Conflict(ConflictType(int(r.kind)), r.path, r.chunks.tolist() if r.chunks is not None else None)
            for r in err.conflicts
        ]
        raise RebaseFailedError(err.snapshot, public, message=err.message) from None


def _public_diff(raw: Any) -> Diff:
    return Diff(
        new_groups=set(raw.new_groups),
        new_arrays=set(raw.new_arrays),
        deleted_groups=set(raw.deleted_groups),
        deleted_arrays=set(raw.deleted_arrays),
        updated_groups=set(raw.updated_groups),
        updated_arrays=set(raw.updated_arrays),
        updated_chunks={k: [list(c) for c in v] for k, v in raw.updated_chunks.items()},
        moved_nodes=list(raw.moved_nodes),
    )
