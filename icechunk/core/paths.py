"""Node paths and zarr store keys (FORMAT.md §3.1 path rules, §7.1–§7.3 key mapping).

Node paths are absolute (``/``, ``/group/array``).  Store keys are relative
(``group/array/zarr.json``, ``group/array/c/0/1``).
"""

from __future__ import annotations

from dataclasses import dataclass

from icechunk._errors import ErrorKind, InvalidInputError

__all__ = [
    "ChunkKey",
    "MetadataKey",
    "child_name",
    "is_ancestor",
    "join",
    "key_prefix_for",
    "normalize_path",
    "parent",
    "parse_key",
]

METADATA_FILE = "zarr.json"
_V2_FILES = (".zarray", ".zgroup", ".zattrs", ".zmetadata")


def normalize_path(path: str) -> str:
    """Canonical absolute node path; accepts ``"a/b"``, ``"/a/b/"`` and ``""`` (root).

    Raises
    ------
    InvalidInputError
        For empty, ``.`` or ``..`` segments.
    """
    if not isinstance(path, str):
        raise InvalidInputError(f"node path must be a string, got {type(path).__name__}", ErrorKind.INVALID_PATH)
    stripped = path.strip("/")
    if not stripped:
        return "/"
    segments = stripped.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidInputError(f"invalid node path {path!r}", ErrorKind.INVALID_PATH)
    return "/" + "/".join(segments)


def parent(path: str) -> str | None:
    """Parent node path, or None for the root."""
    if path == "/":
        return None
    head = path.rsplit("/", 1)[0]
    return head or "/"


def child_name(path: str) -> str:
    """Last segment of a path (``""`` for the root)."""
    return path.rsplit("/", 1)[-1]


def join(path: str, name: str) -> str:
    return f"/{name}" if path == "/" else f"{path}/{name}"


def is_ancestor(ancestor: str, path: str) -> bool:
    """Whether ``ancestor`` is a strict ancestor of ``path``."""
    if ancestor == "/":
        return path != "/"
    return path.startswith(ancestor + "/")


def key_prefix_for(path: str) -> str:
    """The store-key prefix of a node (``""`` for the root, ``"a/b/"`` otherwise)."""
    return "" if path == "/" else path[1:] + "/"


@dataclass(frozen=True, slots=True)
class MetadataKey:
    """A ``zarr.json`` key: the node it describes."""

    path: str


@dataclass(frozen=True, slots=True)
class ChunkKey:
    """A chunk key: array path and chunk coordinates."""

    path: str
    coords: tuple[int, ...]


def parse_key(key: str) -> MetadataKey | ChunkKey:
    """Map a zarr v3 store key to a node path or (array path, chunk coordinates).

    Only the v3 ``default`` chunk-key encoding with ``/`` separators is understood; zarr v2
    metadata keys and other encodings are invalid.

    Raises
    ------
    InvalidInputError
        (kind ``invalid-key``) when the key is neither form.
    """
    name = key.rsplit("/", 1)[-1]
    if name == METADATA_FILE:
        return MetadataKey(normalize_path(key[: -len(METADATA_FILE)]))
    if name in _V2_FILES:
        raise InvalidInputError(f"zarr v2 keys are not supported: {key!r}", ErrorKind.INVALID_KEY)
    # after the chunk marker only digits and '/' can follow, so the marker is the last 'c'
    idx = key.rfind("c")
    if idx < 0 or (idx > 0 and key[idx - 1] != "/"):
        raise InvalidInputError(f"invalid chunk key {key!r}", ErrorKind.INVALID_KEY)
    rest = key[idx + 1 :]
    if rest and not rest.startswith("/"):
        raise InvalidInputError(f"invalid chunk key {key!r}", ErrorKind.INVALID_KEY)
    coords: list[int] = []
    for part in rest[1:].split("/") if rest else ():
        if not part.isdigit() or not part.isascii():
            raise InvalidInputError(f"invalid chunk key {key!r}", ErrorKind.INVALID_KEY)
        value = int(part)
        if value >= 2**32:
            raise InvalidInputError(f"chunk index too large in {key!r}", ErrorKind.INVALID_CHUNK_INDEX)
        coords.append(value)
    return ChunkKey(normalize_path(key[:idx]), tuple(coords))
