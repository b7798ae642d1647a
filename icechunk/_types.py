"""Small public enums and aliases shared across layers (a leaf module)."""

from __future__ import annotations

import enum
from typing import Literal, TypeAlias

__all__ = ["ChunkType", "CommitMethod", "RepoAvailability", "SessionMode", "SpecVersion"]


class SpecVersion(enum.IntEnum):
    """On-disk format versions."""

    v1 = 1
    v2 = 2

    @staticmethod
    def current() -> SpecVersion:
        """The version new repositories get by default."""
        return SpecVersion.v2


class ChunkType(enum.Enum):
    """How a chunk is stored."""

    uninitialized = 0
    native = 1
    virtual = 2
    inline = 3


class SessionMode(enum.Enum):
    """What a session may do."""

    readonly = 0
    writable = 1
    rearrange = 2


class RepoAvailability(enum.Enum):
    """Repository availability status."""

    online = 0
    read_only = 1


CommitMethod: TypeAlias = Literal["new_commit", "amend"]

for _cls in (SpecVersion, ChunkType, SessionMode, RepoAvailability):
    _cls.__module__ = "icechunk"
