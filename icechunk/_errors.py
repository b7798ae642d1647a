"""The icechunk error tree.

Every failure the library reports on purpose is an :class:`IcechunkError` subclass carrying a
``message`` and a stable ``kind`` code (:class:`ErrorKind`).  ``NotFoundError`` is also a
``KeyError`` and ``InvalidInputError`` also a ``ValueError`` so that code written against
plain Python exceptions keeps working.

This module is a leaf: it imports nothing from the package.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "ErrorKind",
    "FormatError",
    "IcechunkError",
    "InternalError",
    "InvalidInputError",
    "NodeNotFoundError",
    "NotFoundError",
    "ReadOnlyError",
    "RebaseFailedError",
    "RefNotFoundError",
    "RepositoryNotFoundError",
    "SessionStateError",
    "SnapshotNotFoundError",
    "StorageError",
]


class ErrorKind(enum.StrEnum):
    """Stable, append-only codes that say *why* an error was raised."""

    # conflicts
    COMMIT_CONFLICT = "commit-conflict"
    BRANCH_UPDATE_CONFLICT = "branch-update-conflict"
    REBASE_FAILED = "rebase-failed"
    CONFIG_UPDATED = "config-updated"
    REPO_INFO_UPDATED = "repo-info-updated"
    UPDATE_ATTEMPTS_EXHAUSTED = "update-attempts-exhausted"
    # not found
    NODE_NOT_FOUND = "node-not-found"
    ANCESTOR_NODE_NOT_FOUND = "ancestor-node-not-found"
    CHUNK_NOT_FOUND = "chunk-not-found"
    KEY_NOT_FOUND = "key-not-found"
    SNAPSHOT_NOT_FOUND = "snapshot-not-found"
    NO_SNAPSHOT_AT_TIME = "no-snapshot-at-time"
    REF_NOT_FOUND = "ref-not-found"
    BRANCH_NOT_FOUND = "branch-not-found"
    TAG_NOT_FOUND = "tag-not-found"
    REPOSITORY_NOT_FOUND = "repository-not-found"
    MANIFEST_INFO_NOT_FOUND = "manifest-info-not-found"
    # already exists
    NODE_ALREADY_EXISTS = "node-already-exists"
    BRANCH_ALREADY_EXISTS = "branch-already-exists"
    TAG_ALREADY_EXISTS = "tag-already-exists"
    TAG_PREVIOUSLY_DELETED = "tag-previously-deleted"
    MOVE_WONT_OVERWRITE = "move-wont-overwrite"
    # read only
    READ_ONLY_SESSION = "read-only-session"
    READ_ONLY_STORE = "read-only-store"
    READ_ONLY_STORAGE = "read-only-storage"
    READ_ONLY_REPOSITORY = "read-only-repository"
    # invalid input
    INVALID_KEY = "invalid-key"
    INVALID_CHUNK_INDEX = "invalid-chunk-index"
    ZERO_LENGTH_CHUNK = "zero-length-chunk"
    INVALID_MANIFEST_SPLIT_INDEX = "invalid-manifest-split-index"
    INVALID_REF_TYPE = "invalid-ref-type"
    INVALID_REF_NAME = "invalid-ref-name"
    INVALID_SNAPSHOT_ID = "invalid-snapshot-id"
    INVALID_PATH = "invalid-path"
    BAD_KEY_PREFIX = "bad-key-prefix"
    BAD_METADATA = "bad-metadata"
    BAD_PREFIX = "bad-prefix"
    NOT_AN_ARRAY = "not-an-array"
    NOT_A_GROUP = "not-a-group"
    INVALID_BYTE_RANGE = "invalid-byte-range"
    INVALID_COMMIT_CONFIGURATION = "invalid-commit-configuration"
    INVALID_ARRAY_METADATA = "invalid-array-metadata"
    INVALID_FEATURE_FLAG = "invalid-feature-flag"
    INVALID_VIRTUAL_REF = "invalid-virtual-ref"
    INVALID_CREDENTIALS = "invalid-credentials"
    NO_CONTAINER_FOR_VIRTUAL_CHUNK = "no-container-for-virtual-chunk"
    UNAUTHORIZED_VIRTUAL_CHUNK_CONTAINER = "unauthorized-virtual-chunk-container"
    EMPTY_PREFIX_CREATION = "empty-prefix-creation"
    PARENT_DIRECTORY_NOT_CLEAN = "parent-directory-not-clean"
    BAD_SNAPSHOT_CHAIN_FOR_DIFF = "bad-snapshot-chain-for-diff"
    # session / repository state
    COMMIT_NOT_ALLOWED = "commit-not-allowed"
    MERGE_NOT_ALLOWED = "merge-not-allowed"
    CANNOT_FORK_READ_ONLY_SESSION = "cannot-fork-read-only-session"
    REARRANGE_SESSION_ONLY = "rearrange-session-only"
    NON_REARRANGE_SESSION = "non-rearrange-session"
    MOVE_INTO_SELF_OR_DESCENDANT = "move-into-self-or-descendant"
    MOVE_DESTINATION_PARENT_MISSING = "move-destination-parent-missing"
    MOVE_DESTINATION_PARENT_NOT_GROUP = "move-destination-parent-not-group"
    NO_CHANGES_TO_COMMIT = "no-changes-to-commit"
    NO_AMEND_FOR_INITIAL_COMMIT = "no-amend-for-initial-commit"
    NOT_ON_BRANCH = "not-on-branch"
    NO_SNAPSHOT = "no-snapshot"
    CANNOT_DELETE_MAIN = "cannot-delete-main"
    UNCOMMITTED_CHANGES = "uncommitted-changes"
    MERGE_FAILED = "merge-failed"
    NOT_ALLOWED = "not-allowed"
    UNIMPLEMENTED = "unimplemented"
    REBASE_TX_LOG_PRUNED = "rebase-tx-log-pruned"
    FEATURE_FLAG_DISABLED = "feature-flag-disabled"
    TAG_ERROR = "tag-error"
    INVALID_REPOSITORY_MIGRATION = "invalid-repository-migration"
    # storage
    OBJECT_NOT_FOUND = "object-not-found"
    OBJECT_STORE = "object-store"
    IO = "io"
    STORAGE_CONFIG = "storage-config"
    CANNOT_PARSE_URL = "cannot-parse-url"
    BAD_REDIRECT = "bad-redirect"
    SEMAPHORE_ACQUIRE = "semaphore-acquire"
    STORAGE_OTHER = "storage-other"
    VIRTUAL_CHUNK_FETCH = "virtual-chunk-fetch"
    VIRTUAL_CHUNK_MODIFIED = "virtual-chunk-modified"
    INVALID_OBJECT_SIZE = "invalid-object-size"
    # format
    SERIALIZATION = "serialization"
    DESERIALIZATION = "deserialization"
    CONFIG_DESERIALIZATION = "config-deserialization"
    INVALID_FILE_FORMAT = "invalid-file-format"
    UNSUPPORTED_SPEC_VERSION = "unsupported-spec-version"
    UNSUPPORTED_OPERATION_FOR_VERSION = "unsupported-operation-for-version"
    SNAPSHOT_TIMESTAMP = "snapshot-timestamp"
    DUPLICATE_SNAPSHOT_ID = "duplicate-snapshot-id"
    # internal
    CONCURRENCY = "concurrency"
    FLUSH = "flush"
    PARTIAL_VALUES_PANIC = "partial-values-panic"
    CONFLICTING_PATH_NOT_FOUND = "conflicting-path-not-found"
    INCONSISTENT_MANIFESTS = "inconsistent-manifests"
    POISON_LOCK = "poison-lock"
    PICKLE = "pickle"
    UNKNOWN = "unknown"


def _kind_value(kind: ErrorKind | str | None) -> str:
    if kind is None:
        return ErrorKind.UNKNOWN.value
    return kind.value if isinstance(kind, ErrorKind) else str(kind)


class IcechunkError(Exception):
    """Base class of every error icechunk raises on purpose.

    Parameters
    ----------
    message
        Human-readable explanation; also what ``str(error)`` returns.
    kind
        An :class:`ErrorKind` code (or its string value); ``"unknown"`` when omitted.
    """

    def __init__(self, message: str = "", kind: ErrorKind | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = _kind_value(kind)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"icechunk.{type(self).__name__}(message={self.message!r}, kind={self.kind!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self.__dict__.copy()))


def _rebuild_error(cls: type[IcechunkError], state: dict[str, Any]) -> IcechunkError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class ConflictError(IcechunkError):
    """A commit or ref update lost a race: the branch moved since the session started.

    Attributes
    ----------
    expected_parent
        The snapshot the session (or compare-and-swap) was based on.
    actual_parent
        The branch tip found at commit time.
    """

    def __init__(
        self,
        expected_parent: str | None = None,
        actual_parent: str | None = None,
        message: str | None = None,
        kind: ErrorKind | str | None = None,
    ) -> None:
        if message is None:
            message = (
                "commit conflict: the branch moved; expected parent "
                f"{expected_parent}, actual parent {actual_parent}"
            )
        super().__init__(message, kind or ErrorKind.COMMIT_CONFLICT)
        self.expected_parent = expected_parent
        self.actual_parent = actual_parent


class RebaseFailedError(ConflictError):
    """A rebase met conflicts its solver could not resolve.

    Attributes
    ----------
    snapshot
        The commit being replayed when the rebase stopped.
    conflicts
        The unresolved :class:`icechunk.conflicts.Conflict` objects.
    """

    def __init__(
        self,
        snapshot: str = "",
        conflicts: list[Any] | None = None,
        message: str | None = None,
        kind: ErrorKind | str | None = None,
    ) -> None:
        conflicts = list(conflicts or [])
        if message is None:
            message = f"rebase failed on snapshot {snapshot}: {len(conflicts)} conflict(s)"
        super().__init__(None, None, message, kind or ErrorKind.REBASE_FAILED)
        self.snapshot = snapshot
        self.conflicts = conflicts


class NotFoundError(IcechunkError, KeyError):
    """Something looked up does not exist (also a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class NodeNotFoundError(NotFoundError):
    """No group or array at the given path."""


class SnapshotNotFoundError(NotFoundError):
    """No snapshot with the given id (or none at the requested time)."""


class RefNotFoundError(NotFoundError):
    """No branch or tag with the given name."""


class RepositoryNotFoundError(NotFoundError):
    """The storage location holds no repository."""


class AlreadyExistsError(IcechunkError):
    """A branch, tag or node with that name already exists (or existed)."""


class ReadOnlyError(IcechunkError):
    """A write was attempted through something read-only."""


class InvalidInputError(IcechunkError, ValueError):
    """A bad argument: malformed key, id, metadata, location, ... (also a ``ValueError``)."""


class SessionStateError(IcechunkError):
    """The operation is not allowed in the session's or repository's current state."""


class StorageError(IcechunkError):
    """The storage backend failed (I/O, network, configuration, virtual chunk fetch)."""


class FormatError(IcechunkError):
    """A file could not be decoded or encoded, or the spec version does not allow it."""


class InternalError(IcechunkError):
    """A bug or broken invariant inside icechunk."""


for _cls in (
    IcechunkError,
    ConflictError,
    RebaseFailedError,
    NotFoundError,
    NodeNotFoundError,
    SnapshotNotFoundError,
    RefNotFoundError,
    RepositoryNotFoundError,
    AlreadyExistsError,
    ReadOnlyError,
    InvalidInputError,
    SessionStateError,
    StorageError,
    FormatError,
    InternalError,
    ErrorKind,
):
    _cls.__module__ = "icechunk"
