"""Spec-1 refs: the ``refs/`` objects of a spec-1 repository (FORMAT.md §1.2, §5.12).

A branch is ``refs/branch.<name>/ref.json``, a tag ``refs/tag.<name>/ref.json``; both hold the
compact JSON ``{"snapshot":"<20-char id>"}`` (35 bytes, no spaces, no newline).  A deleted
tag keeps its ``ref.json`` and gains an empty tombstone ``refs/tag.<name>/ref.json.deleted``;
its name can never be reused.  Spec-2 repositories keep their refs inside the repo-info file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from icechunk._errors import ErrorKind, FormatError, InvalidInputError
from icechunk.format.ids import SnapshotId

__all__ = [
    "REFS_PREFIX",
    "TAG_TOMBSTONE",
    "RefListing",
    "branch_key",
    "decode_ref",
    "encode_ref",
    "parse_ref_listing",
    "tag_key",
    "tag_tombstone_key",
    "validate_ref_name",
]

REFS_PREFIX = "refs/"
_BRANCH = "branch."
_TAG = "tag."
_REF_FILE = "ref.json"
_TOMBSTONE_FILE = "ref.json.deleted"
TAG_TOMBSTONE = b""
"""Content of a tag tombstone (an empty object)."""


def validate_ref_name(name: str) -> str:
    """Check a branch or tag name and return it.

    Raises
    ------
    InvalidInputError
        If the name is not a string, is empty or contains ``/`` (kind ``INVALID_REF_NAME``).
    """
    candidate: object = name  # callers may pass anything
    if not isinstance(candidate, str) or not candidate:
        raise InvalidInputError(
            f"invalid ref name {name!r}: it must be a non-empty string", ErrorKind.INVALID_REF_NAME
        )
    if "/" in name:
        raise InvalidInputError(
            f"invalid ref name {name!r}: it must not contain '/'", ErrorKind.INVALID_REF_NAME
        )
    return name


def branch_key(name: str) -> str:
    """Storage key of a spec-1 branch pointer: ``refs/branch.<name>/ref.json``."""
    return f"{REFS_PREFIX}{_BRANCH}{validate_ref_name(name)}/{_REF_FILE}"


def tag_key(name: str) -> str:
    """Storage key of a spec-1 tag pointer: ``refs/tag.<name>/ref.json``."""
    return f"{REFS_PREFIX}{_TAG}{validate_ref_name(name)}/{_REF_FILE}"


def tag_tombstone_key(name: str) -> str:
    """Storage key of a spec-1 tag tombstone: ``refs/tag.<name>/ref.json.deleted``."""
    return f"{REFS_PREFIX}{_TAG}{validate_ref_name(name)}/{_TOMBSTONE_FILE}"


def encode_ref(snapshot_id: SnapshotId) -> bytes:
    """The 35-byte ``ref.json`` content pointing at ``snapshot_id``."""
    return b'{"snapshot":"' + str(SnapshotId(snapshot_id)).encode("ascii") + b'"}'


def decode_ref(data: bytes | bytearray | memoryview, name: str = "ref.json") -> SnapshotId:
    """Read the snapshot id out of a ``ref.json`` object.

    Any JSON formatting is accepted (not only the compact form writers produce).

    Raises
    ------
    FormatError
        If the content is not a JSON object with a valid ``snapshot`` id.
    """
    try:
        value = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise FormatError(
            f"cannot decode ref {name}: not JSON", ErrorKind.DESERIALIZATION
        ) from None
    text = value.get("snapshot") if isinstance(value, dict) else None
    if not isinstance(text, str):
        raise FormatError(
            f'cannot decode ref {name}: expected {{"snapshot": "<id>"}}', ErrorKind.DESERIALIZATION
        )
    try:
        return SnapshotId.parse(text)
    except InvalidInputError:
        raise FormatError(
            f"cannot decode ref {name}: invalid snapshot id {text!r}", ErrorKind.DESERIALIZATION
        ) from None


@dataclass(frozen=True, slots=True)
class RefListing:
    """Ref names found by listing ``refs/``.

    ``tags`` holds only live tags; ``deleted_tags`` every name with a tombstone (whether or
    not its ``ref.json`` is still there).
    """

    branches: frozenset[str]
    tags: frozenset[str]
    deleted_tags: frozenset[str]


def parse_ref_listing(keys: Iterable[str]) -> RefListing:
    """Classify the keys found under ``refs/`` into branches, live tags and deleted tags.

    Parameters
    ----------
    keys
        Object keys, either relative to the repository root (``refs/branch.main/ref.json``)
        or to ``refs/`` (``branch.main/ref.json``).  Keys that are not ref objects are
        ignored.
    """
    branches: set[str] = set()
    tags: set[str] = set()
    tombstones: set[str] = set()
    for key in keys:
        rel = key[len(REFS_PREFIX) :] if key.startswith(REFS_PREFIX) else key
        ref_dir, sep, file = rel.partition("/")
        if not sep or "/" in file:
            continue
        if ref_dir.startswith(_BRANCH) and file == _REF_FILE:
            name = ref_dir[len(_BRANCH) :]
            if name:
                branches.add(name)
        elif ref_dir.startswith(_TAG):
            name = ref_dir[len(_TAG) :]
            if not name:
                continue
            if file == _REF_FILE:
                tags.add(name)
            elif file == _TOMBSTONE_FILE:
                tombstones.add(name)
    return RefListing(frozenset(branches), frozenset(tags - tombstones), frozenset(tombstones))
