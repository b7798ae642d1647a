"""What icechunk needs from a node's ``zarr.json`` (FORMAT.md §4.3, §7.4).

The document is stored verbatim; it is parsed once when written to learn the node type, the
shape and chunk grid (number of chunks per dimension) and the dimension names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from icechunk._errors import ErrorKind, InvalidInputError
from icechunk.format.snapshot import DimensionShape

__all__ = ["ArrayMetadata", "GroupMetadata", "NodeMetadata", "parse_metadata"]


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    user_data: bytes


@dataclass(frozen=True, slots=True)
class ArrayMetadata:
    """An array's ``zarr.json`` with the derived shape (length, number of chunks per dim)."""

    user_data: bytes
    shape: tuple[DimensionShape, ...]
    dimension_names: tuple[str | None, ...] | None
    regular_chunk_shape: tuple[int, ...] | None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def num_chunks(self) -> tuple[int, ...]:
        return tuple(d.num_chunks for d in self.shape)


NodeMetadata = GroupMetadata | ArrayMetadata


def _bad(msg: str) -> InvalidInputError:
    return InvalidInputError(f"invalid zarr metadata: {msg}", ErrorKind.BAD_METADATA)


def _rectilinear_counts(spec: Any, length: int) -> int:
    if isinstance(spec, int):
        return -(-length // spec) if spec else 0
    count = 0
    for item in spec:
        if isinstance(item, list):
            count += int(item[1])
        else:
            count += 1
    return count


def parse_metadata(user_data: bytes, *, allow_rectilinear: bool = True) -> NodeMetadata:
    """Parse a zarr v3 ``zarr.json`` document.

    Raises
    ------
    InvalidInputError
        (kind ``bad-metadata``) when it is not valid zarr v3 group or array metadata.
    """
    try:
        doc = json.loads(user_data)
    except (UnicodeDecodeError, ValueError) as err:
        raise _bad(f"not JSON ({err})") from None
    if not isinstance(doc, dict):
        raise _bad("the document is not a JSON object")
    if doc.get("zarr_format") != 3:
        raise _bad("only zarr_format 3 is supported")
    node_type = doc.get("node_type")
    if node_type == "group":
        return GroupMetadata(bytes(user_data))
    if node_type != "array":
        raise _bad(f"unknown node_type {node_type!r}")
    shape = doc.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise _bad("array 'shape' must be a list of non-negative integers")
    grid = doc.get("chunk_grid")
    if not isinstance(grid, dict):
        raise _bad("array has no 'chunk_grid'")
    name, conf = grid.get("name"), grid.get("configuration") or {}
    regular: tuple[int, ...] | None = None
    if name == "regular":
        chunk_shape = conf.get("chunk_shape")
        if not isinstance(chunk_shape, list) or len(chunk_shape) != len(shape):
            raise _bad("regular chunk_grid needs a chunk_shape of the array's rank")
        if not all(isinstance(c, int) and c >= 0 for c in chunk_shape):
            raise _bad("chunk sizes must be non-negative integers")
        regular = tuple(chunk_shape)
        counts = [(-(-s // c) if c else 0) for s, c in zip(shape, chunk_shape, strict=True)]
    elif name == "rectilinear" and allow_rectilinear:
        specs = conf.get("chunk_shapes")
        if not isinstance(specs, list) or len(specs) != len(shape):
            raise _bad("rectilinear chunk_grid needs chunk_shapes of the array's rank")
        counts = [_rectilinear_counts(sp, s) for sp, s in zip(specs, shape, strict=True)]
    else:
        raise _bad(f"unsupported chunk grid {name!r}")
    key_encoding = doc.get("chunk_key_encoding") or {"name": "default"}
    if key_encoding.get("name") != "default" or (key_encoding.get("configuration") or {}).get(
        "separator", "/"
    ) != "/":
        raise _bad("only the 'default' chunk key encoding with '/' separator is supported")
    names = doc.get("dimension_names")
    dims: tuple[str | None, ...] | None = None
    if names is not None:
        if not isinstance(names, list) or len(names) != len(shape):
            raise _bad("dimension_names must list one name (or null) per dimension")
        dims = tuple(n if isinstance(n, str) and n else None for n in names)
    return ArrayMetadata(
        user_data=bytes(user_data),
        shape=tuple(DimensionShape(s, n) for s, n in zip(shape, counts, strict=True)),
        dimension_names=dims,
        regular_chunk_shape=regular,
    )
