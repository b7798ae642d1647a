"""Writing virtual chunk refs into a session, one at a time or as columns.

The bulk path never builds a Python object per ref: locations, offsets and lengths go
straight into one columnar :class:`~icechunk.format.manifest.ArrayManifest` that is added to
the session's change set.  Per-location work (URL shape and container checks) runs once per
*distinct* location, which is what makes a million refs into a few thousand files cheap.

Checksums (FORMAT.md §3.4): a ``str`` is an ETag; a ``datetime`` is a last-modified bound
stored as u32 seconds since the epoch (wrapping like the reference's ``as u32`` cast, so
``9999-12-31`` is stored as 4294111232).  Naive datetimes are taken as UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from icechunk._errors import ErrorKind, InvalidInputError
from icechunk.config import VirtualChunkContainer
from icechunk.core.session import NodeView, SessionEngine
from icechunk.core.virtual import VCC_SCHEME
from icechunk.format.manifest import ArrayManifest, ChunkRef, RefKind

__all__ = [
    "checksum_fields",
    "container_prefixes",
    "failed_indices",
    "last_modified_seconds",
    "set_virtual_columns",
    "set_virtual_ref",
    "spec_columns",
    "unravel_grid",
]

_ABSOLUTE_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_U32 = 0xFFFFFFFF


def last_modified_seconds(moment: datetime) -> int:
    """A last-modified checksum as stored: u32 seconds (wrapping), naive = UTC."""
    if not isinstance(moment, datetime):
        raise InvalidInputError(
            f"a last-modified checksum must be a datetime, got {type(moment).__name__}",
            ErrorKind.INVALID_VIRTUAL_REF,
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) & _U32


def checksum_fields(checksum: str | datetime | None) -> tuple[str | None, int]:
    """``(etag, last_modified)`` columns for a user checksum."""
    if checksum is None:
        return None, 0
    if isinstance(checksum, str):
        return checksum, 0
    if isinstance(checksum, datetime):
        return None, last_modified_seconds(checksum)
    raise InvalidInputError(
        f"checksum must be an ETag string or a datetime, got {type(checksum).__name__}",
        ErrorKind.INVALID_VIRTUAL_REF,
    )


def container_prefixes(containers: dict[str, VirtualChunkContainer]) -> tuple[str, ...]:
    """Prefixes a valid location starts with: container prefixes and ``vcc://<name>/``."""
    names = [f"{VCC_SCHEME}{c.name}/" for c in containers.values() if c.name is not None]
    return (*containers, *names)


def _check_location_shape(location: object) -> str:
    if not isinstance(location, str):
        raise InvalidInputError(
            f"virtual chunk locations must be strings, got {type(location).__name__}",
            ErrorKind.INVALID_VIRTUAL_REF,
        )
    if not _ABSOLUTE_URL.match(location):
        raise InvalidInputError(
            f"virtual chunk location {location!r} must be an absolute URL (s3://, gs://, "
            "file:///, https://, vcc://<container>/...)",
            ErrorKind.INVALID_VIRTUAL_REF,
        )
    return location


def _no_container(location: str) -> InvalidInputError:
    return InvalidInputError(
        f"no virtual chunk container matches the location {location!r}; add one with "
        "RepositoryConfig.set_virtual_chunk_container (or pass validate_container=False)",
        ErrorKind.NO_CONTAINER_FOR_VIRTUAL_CHUNK,
    )


def _writable_array(engine: SessionEngine, path: str) -> NodeView:
    engine.require_writable()
    return engine._array_for_write(path)


def set_virtual_ref(
    engine: SessionEngine,
    path: str,
    coords: tuple[int, ...],
    location: str,
    offset: int,
    length: int,
    checksum: str | datetime | None,
    validate_container: bool,
) -> None:
    """Record one virtual ref.

    Raises
    ------
    InvalidInputError
        Bad location, out-of-grid index, or (with validation) no matching container.
    """
    engine.require_writable()
    node = engine._array_for_write(path, coords)
    location = _check_location_shape(location)
    if validate_container and not location.startswith(container_prefixes(engine.config.containers)):
        raise _no_container(location)
    offset, length = int(offset), int(length)
    if offset < 0 or length < 0:
        raise InvalidInputError("virtual ref offset and length must be >= 0", ErrorKind.INVALID_VIRTUAL_REF)
    etag, last_modified = checksum_fields(checksum)
    ref = ChunkRef(
        RefKind.VIRTUAL, offset=offset, length=length, location=location, etag=etag,
        last_modified=last_modified,
    )
    engine.set_chunk_ref(node, coords, ref)


def unravel_grid(chunk_grid_shape: Sequence[int], offset: Sequence[int] | None) -> np.ndarray:
    """``(n, ndim)`` int64 chunk indices of a C-order grid, plus ``offset``."""
    shape = tuple(int(s) for s in chunk_grid_shape)
    if any(s < 0 for s in shape):
        raise InvalidInputError(f"invalid chunk grid shape {shape}", ErrorKind.INVALID_CHUNK_INDEX)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if not shape:
        return np.zeros((n, 0), dtype=np.int64)
    flat = np.arange(n, dtype=np.int64)
    coords = np.empty((n, len(shape)), dtype=np.int64)
    for d, c in enumerate(np.unravel_index(flat, shape)):
        coords[:, d] = c
    if offset is not None:
        off = np.asarray([int(o) for o in offset], dtype=np.int64)
        if off.shape != (len(shape),):
            raise InvalidInputError(
                f"arr_offset {tuple(offset)} does not have {len(shape)} dimensions",
                ErrorKind.INVALID_CHUNK_INDEX,
            )
        coords += off
    return coords


def _unsigned(values: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise InvalidInputError(
            f"{name} must have one value per chunk ({n}), got shape {arr.shape}",
            ErrorKind.INVALID_VIRTUAL_REF,
        )
    if arr.dtype.kind not in "ui":
        if n and arr.dtype.kind != "O":
            raise InvalidInputError(f"{name} must be integers, got {arr.dtype}", ErrorKind.INVALID_VIRTUAL_REF)
        arr = arr.astype(np.int64) if n else arr.astype(np.uint64)
    if arr.dtype.kind == "i" and n and int(arr.min()) < 0:
        raise InvalidInputError(f"{name} must be >= 0", ErrorKind.INVALID_VIRTUAL_REF)
    return arr.astype(np.uint64, copy=False)


def _location_list(locations: Any) -> list[Any]:
    if isinstance(locations, np.ndarray):
        return locations.astype(object).ravel().tolist() if locations.dtype != object else locations.ravel().tolist()
    return locations if isinstance(locations, list) else list(locations)


def set_virtual_columns(
    engine: SessionEngine,
    path: str,
    coords: np.ndarray,
    locations: Any,
    offsets: Any,
    lengths: Any,
    *,
    etags: str | Sequence[str | None] | None = None,
    last_modified: int | np.ndarray = 0,
    validate_containers: bool = True,
) -> np.ndarray:
    """Record many virtual refs of one array as a single columnar table.

    Rows whose location is the empty string are skipped ("no chunk").  With validation,
    rows whose location matches no container are skipped too; their row numbers are
    returned.  Later rows win over earlier ones at the same index.

    Parameters
    ----------
    coords
        ``(n, ndim)`` integer chunk indices.
    locations
        ``n`` location strings (list, tuple or numpy array).
    offsets, lengths
        ``n`` non-negative integers each.
    etags
        One ETag for every row, or one per row (None = no ETag).
    last_modified
        One u32 last-modified checksum for every row, or one per row (0 = none).

    Returns
    -------
    numpy.ndarray
        Row numbers (int64, ascending) skipped because no container matched.

    Raises
    ------
    InvalidInputError
        Inconsistent lengths, bad locations, negative values or indices outside the grid.
    """
    node = _writable_array(engine, path)
    assert node.array is not None
    coords = np.asarray(coords)
    n = int(coords.shape[0])
    ndim = node.array.ndim
    if coords.ndim != 2 or coords.shape[1] != ndim:
        raise InvalidInputError(
            f"chunk indices must have {ndim} dimensions for {path}, got shape {coords.shape}",
            ErrorKind.INVALID_CHUNK_INDEX,
        )
    locs = _location_list(locations)
    if len(locs) != n:
        raise InvalidInputError(
            f"got {len(locs)} locations for {n} chunks", ErrorKind.INVALID_VIRTUAL_REF
        )
    offset_col = _unsigned(offsets, n, "offsets")
    length_col = _unsigned(lengths, n, "lengths")

    # per distinct location: container check, and URL shape check (a location under a
    # container prefix is an absolute URL already)
    try:
        distinct = dict.fromkeys(locs)
    except TypeError:
        raise InvalidInputError("virtual chunk locations must be strings", ErrorKind.INVALID_VIRTUAL_REF) from None
    distinct.pop("", None)
    bad: set[str] = set()
    unchecked: Iterable[Any] = distinct
    if validate_containers:
        prefixes = container_prefixes(engine.config.containers)
        try:
            bad = {loc for loc in distinct if not loc.startswith(prefixes)}
        except (AttributeError, TypeError):
            raise InvalidInputError(
                "virtual chunk locations must be strings", ErrorKind.INVALID_VIRTUAL_REF
            ) from None
        unchecked = bad
    for loc in unchecked:
        _check_location_shape(loc)

    keep = np.fromiter(map(bool, locs), dtype=bool, count=n)
    failed = np.zeros(0, dtype=np.int64)
    if bad:
        failed_mask = np.fromiter((loc in bad for loc in locs), dtype=bool, count=n)
        failed = np.flatnonzero(failed_mask)
        keep &= ~failed_mask
    if n and ndim:
        grid = np.asarray(node.array.num_chunks, dtype=np.int64)
        kept = coords[keep] if not keep.all() else coords
        if kept.shape[0] and (int(kept.min()) < 0 or (kept.max(axis=0) >= np.maximum(grid, 1)).any()):
            raise InvalidInputError(
                f"virtual ref chunk indices fall outside the chunk grid {list(node.array.num_chunks)} "
                f"of {path}",
                ErrorKind.INVALID_CHUNK_INDEX,
            )

    location_col = np.empty(n, dtype=object)
    location_col[:] = locs
    if etags is None or isinstance(etags, str):
        etag_col: Any = None if etags is None else np.full(n, etags, dtype=object)
    else:
        etag_col = np.empty(n, dtype=object)
        etag_col[:] = list(etags)
    lm_col = np.broadcast_to(np.asarray(last_modified, dtype=np.uint32), (n,))
    rows: np.ndarray | None = None if keep.all() else np.flatnonzero(keep)

    def pick(col: Any) -> Any:
        return col if rows is None or col is None else col[rows]

    table = ArrayManifest.from_columns(
        node.id,
        pick(coords).astype(np.uint32) if n else np.zeros((0, ndim), dtype=np.uint32),
        RefKind.VIRTUAL,
        offset=pick(offset_col),
        length=pick(length_col),
        location=pick(location_col),
        etag=pick(etag_col),
        last_modified=pick(np.ascontiguousarray(lm_col)),
    )
    if len(table):
        engine.set_chunk_table(node, table)
    return failed


def failed_indices(coords: np.ndarray, failed: np.ndarray) -> list[tuple[int, ...]] | None:
    """The chunk indices of skipped rows as tuples, or None when nothing was skipped."""
    if failed.shape[0] == 0:
        return None
    return [tuple(row) for row in coords[failed].tolist()]


SpecColumns = tuple[list[list[int]], list[str], list[int], list[int], list["str | None"], list[int]]


def spec_columns(chunks: Iterable[Any]) -> SpecColumns:
    """Columns of ``VirtualChunkSpec``-like objects (index, location, offset, length, checksums)."""
    index: list[list[int]] = []
    location: list[str] = []
    offset: list[int] = []
    length: list[int] = []
    etag: list[str | None] = []
    lm: list[int] = []
    for spec in chunks:
        index.append(spec.index)
        location.append(spec.location)
        offset.append(spec.offset)
        length.append(spec.length)
        etag.append(spec.etag_checksum)
        moment = spec.last_updated_at_checksum
        lm.append(0 if moment is None else last_modified_seconds(moment))
    return index, location, offset, length, etag, lm
