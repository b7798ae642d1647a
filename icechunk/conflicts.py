"""Conflict types and solvers used by :meth:`icechunk.Session.rebase` and commit-with-rebase."""

from __future__ import annotations

import enum

from icechunk.core.conflicts import CoreSolver

__all__ = [
    "BasicConflictSolver",
    "Conflict",
    "ConflictDetector",
    "ConflictSolver",
    "ConflictType",
    "VersionSelection",
]


class ConflictType(enum.Enum):
    """What kind of conflict a rebase met (API.md §5)."""

    NewNodeConflictsWithExistingNode = 1
    NewNodeInInvalidGroup = 2
    ZarrMetadataDoubleUpdate = 3
    ZarrMetadataUpdateOfDeletedArray = 4
    ZarrMetadataUpdateOfDeletedGroup = 5
    ChunkDoubleUpdate = 6
    ChunksUpdatedInDeletedArray = 7
    ChunksUpdatedInUpdatedArray = 8
    DeleteOfUpdatedArray = 9
    DeleteOfUpdatedGroup = 10
    MoveOperationCannotBeRebased = 11


class VersionSelection(enum.Enum):
    """Which side wins a chunk double-write."""

    Fail = 0
    UseOurs = 1
    UseTheirs = 2


class Conflict:
    """One conflict found while rebasing."""

    def __init__(
        self,
        conflict_type: ConflictType,
        path: str,
        conflicted_chunks: list[list[int]] | None = None,
    ) -> None:
        self._conflict_type = conflict_type
        self._path = path
        self._conflicted_chunks = conflicted_chunks

    @property
    def conflict_type(self) -> ConflictType:
        return self._conflict_type

    @property
    def path(self) -> str:
        return self._path

    @property
    def conflicted_chunks(self) -> list[list[int]] | None:
        return self._conflicted_chunks

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conflict) and (
            self._conflict_type, self._path, self._conflicted_chunks
        ) == (other._conflict_type, other._path, other._conflicted_chunks)

    def __hash__(self) -> int:
        return hash((self._conflict_type, self._path))

    def __repr__(self) -> str:
        chunks = "" if self._conflicted_chunks is None else f", conflicted_chunks={self._conflicted_chunks!r}"
        return f"icechunk.Conflict(conflict_type={self._conflict_type.name}, path={self._path!r}{chunks})"

    def __reduce__(self) -> tuple[type[Conflict], tuple[ConflictType, str, list[list[int]] | None]]:
        return (Conflict, (self._conflict_type, self._path, self._conflicted_chunks))


class ConflictSolver:
    """Base class of the conflict solvers (only the two below are supported)."""

    def _solver(self) -> CoreSolver:
        raise TypeError(
            f"{type(self).__name__} is not a supported solver; use ConflictDetector or "
            "BasicConflictSolver"
        )


class ConflictDetector(ConflictSolver):
    """Resolves nothing: a rebase succeeds only when nothing overlaps."""

    def _solver(self) -> CoreSolver:
        return CoreSolver(detect_only=True)

    def __repr__(self) -> str:
        return "icechunk.ConflictDetector()"


class BasicConflictSolver(ConflictSolver):
    """Resolves chunk double-writes and deletes of updated nodes; anything else fails.

    Parameters
    ----------
    on_chunk_conflict
        ``UseOurs`` (default) keeps this session's chunk, ``UseTheirs`` drops our write,
        ``Fail`` aborts.
    fail_on_delete_of_updated_array, fail_on_delete_of_updated_group
        When False (default) our delete wins over their update.
    """

    def __init__(
        self,
        *,
        on_chunk_conflict: VersionSelection = VersionSelection.UseOurs,
        fail_on_delete_of_updated_array: bool = False,
        fail_on_delete_of_updated_group: bool = False,
    ) -> None:
        if not isinstance(on_chunk_conflict, VersionSelection):
            raise TypeError("on_chunk_conflict must be a VersionSelection")
        self.on_chunk_conflict = on_chunk_conflict
        self.fail_on_delete_of_updated_array = fail_on_delete_of_updated_array
        self.fail_on_delete_of_updated_group = fail_on_delete_of_updated_group

    def _solver(self) -> CoreSolver:
        on_chunk = {
            VersionSelection.UseOurs: "ours",
            VersionSelection.UseTheirs: "theirs",
            VersionSelection.Fail: "fail",
        }[self.on_chunk_conflict]
        return CoreSolver(
            on_chunk=on_chunk,
            fail_on_delete_of_updated_array=self.fail_on_delete_of_updated_array,
            fail_on_delete_of_updated_group=self.fail_on_delete_of_updated_group,
        )

    def __repr__(self) -> str:
        return (
            f"icechunk.BasicConflictSolver(on_chunk_conflict={self.on_chunk_conflict.name}, "
            f"fail_on_delete_of_updated_array={self.fail_on_delete_of_updated_array}, "
            f"fail_on_delete_of_updated_group={self.fail_on_delete_of_updated_group})"
        )


for _cls in (ConflictType, VersionSelection, Conflict, ConflictSolver, ConflictDetector, BasicConflictSolver):
    _cls.__module__ = "icechunk"
