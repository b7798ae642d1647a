"""Edits that move things without rewriting data: node moves, chunk reindexing and shifting.

- :func:`move_node` (rearrange sessions, API.md §3.2): renames a group or array with its
  subtree.  Only metadata changes; the move is recorded in the change set (``moves``), the
  session resolves paths through it, and the commit writes collapsed ``moved_nodes``.
- :func:`shift_array` and :func:`reindex_array` (writable sessions): move chunk *refs* to
  other grid positions; chunk objects are never read or copied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from icechunk._errors import (
    AlreadyExistsError,
    ErrorKind,
    InvalidInputError,
    NodeNotFoundError,
    SessionStateError,
)
from icechunk.core.changeset import TOMBSTONE
from icechunk.core.metadata import ArrayMetadata, parse_metadata
from icechunk.core.paths import is_ancestor, normalize_path, parent
from icechunk.core.session import NodeView, SessionEngine
from icechunk.format.manifest import ArrayManifest

__all__ = ["move_node", "reindex_array", "shift_array"]


def move_node(engine: SessionEngine, from_path: str, to_path: str) -> None:
    """Move the node at ``from_path`` (and its subtree) to ``to_path``.

    Raises
    ------
    SessionStateError
        Not a rearrange session (``non-rearrange-session``); destination inside the source
        (``move-into-self-or-descendant``); destination parent missing
        (``move-destination-parent-missing``) or an array
        (``move-destination-parent-not-group``).
    AlreadyExistsError
        The destination exists (``move-wont-overwrite``).
    NodeNotFoundError
        Nothing at ``from_path``.
    """
    if engine.mode != "rearrange":
        raise SessionStateError(
            "moving nodes needs a rearrange session (Repository.rearrange_session)",
            ErrorKind.NON_REARRANGE_SESSION,
        )
    src = normalize_path(from_path)
    dst = normalize_path(to_path)
    with engine._lock:
        if engine.node(src) is None:
            raise NodeNotFoundError(f"cannot move {src}: node not found", ErrorKind.NODE_NOT_FOUND)
        if dst == src or is_ancestor(src, dst):
            raise SessionStateError(
                f"cannot move {src} to {dst}: the destination is inside the source",
                ErrorKind.MOVE_INTO_SELF_OR_DESCENDANT,
            )
        if engine.node(dst) is not None:
            raise AlreadyExistsError(
                f"cannot move {src} to {dst}: the destination exists (moves never overwrite)",
                ErrorKind.MOVE_WONT_OVERWRITE,
            )
        dst_parent = parent(dst)
        assert dst_parent is not None
        parent_node = engine.node(dst_parent)
        if parent_node is None and dst_parent != "/":
            raise SessionStateError(
                f"cannot move {src} to {dst}: the destination parent {dst_parent} does not exist",
                ErrorKind.MOVE_DESTINATION_PARENT_MISSING,
            )
        if parent_node is not None and parent_node.is_array:
            raise SessionStateError(
                f"cannot move {src} to {dst}: the destination parent {dst_parent} is an array",
                ErrorKind.MOVE_DESTINATION_PARENT_NOT_GROUP,
            )
        engine.changes.moves.append((src, dst))


def _regular_array(engine: SessionEngine, path: str, what: str) -> tuple[NodeView, ArrayMetadata]:
    engine.require_writable()
    node = engine.get_array(path)
    meta = parse_metadata(node.user_data)
    if not isinstance(meta, ArrayMetadata) or meta.regular_chunk_shape is None:
        raise InvalidInputError(
            f"{what} needs an array with a regular chunk grid; {path} has another grid",
            ErrorKind.INVALID_ARRAY_METADATA,
        )
    return node, meta


def _tombstones(node: NodeView, coords: np.ndarray) -> ArrayManifest:
    return ArrayManifest.from_columns(node.id, coords, TOMBSTONE)


async def shift_array(engine: SessionEngine, array_path: str, chunk_offset: Iterable[int]) -> None:
    """Move every chunk ref by ``chunk_offset`` chunks (vectorized).

    Refs landing outside the grid are dropped; vacated positions read as the fill value.

    Raises
    ------
    InvalidInputError
        Wrong number of offsets, or an array whose grid is not regular.
    """
    node, meta = _regular_array(engine, array_path, "shift_array")
    offset = np.asarray([int(o) for o in chunk_offset], dtype=np.int64)
    if offset.shape != (meta.ndim,):
        raise InvalidInputError(
            f"shift_array needs one offset per dimension ({meta.ndim}), got {offset.tolist()}",
            ErrorKind.INVALID_CHUNK_INDEX,
        )
    refs = await engine.current_refs(node)
    if len(refs) == 0 or not offset.any():
        return
    grid = np.asarray(meta.num_chunks, dtype=np.int64)
    target = refs.coords.astype(np.int64) + offset
    inside = np.flatnonzero(np.all((target >= 0) & (target < grid), axis=1))
    moved = _relocated(refs, inside, target[inside])
    # vacate every old position, then place the moved refs (later rows win)
    engine.set_chunk_table(node, ArrayManifest.concat(node.id, [_tombstones(node, refs.coords), moved]))


def _relocated(refs: ArrayManifest, rows: np.ndarray, coords: np.ndarray) -> ArrayManifest:
    """The refs of ``rows`` placed at ``coords`` (sorted; on a repeated target the last wins)."""
    return ArrayManifest.from_columns(
        refs.node_id,
        np.asarray(coords, dtype=np.int64).reshape(len(rows), refs.ndim),
        refs.kind[rows],
        chunk_id=refs.chunk_id[rows],
        offset=refs.offset[rows],
        length=refs.length[rows],
        inline=refs.inline[rows],
        location=refs.location[rows],
        etag=refs.etag[rows],
        last_modified=refs.last_modified[rows],
    )


async def reindex_array(
    engine: SessionEngine,
    array_path: str,
    forward: Callable[[list[int]], Iterable[int] | None],
    backward: Callable[[list[int]], Iterable[int] | None] | None = None,
) -> None:
    """Move chunk refs with a per-chunk index function (see API.md §3.2).

    Every existing chunk ``idx`` is sent to ``forward(idx)`` (None leaves it alone).  With
    ``backward``, each existing position whose pre-image is None, empty, or not an existing
    chunk is cleared.

    Raises
    ------
    InvalidInputError
        A target outside the grid (``invalid-chunk-index``), or a non-regular grid.
    """
    node, meta = _regular_array(engine, array_path, "reindex_array")
    refs = await engine.current_refs(node)
    if len(refs) == 0:
        return
    grid = meta.num_chunks
    coords = refs.coords.tolist()
    existing = {tuple(c) for c in coords}
    sources: list[int] = []
    targets: list[tuple[int, ...]] = []
    for row, idx in enumerate(coords):
        new = forward(list(idx))
        if new is None:
            continue
        new_idx = tuple(int(i) for i in new)
        if len(new_idx) != meta.ndim or any(i < 0 or i >= n for i, n in zip(new_idx, grid, strict=True)):
            raise InvalidInputError(
                f"reindex_array: chunk {list(idx)} maps to {list(new_idx)}, outside the chunk grid {list(grid)}",
                ErrorKind.INVALID_CHUNK_INDEX,
            )
        sources.append(row)
        targets.append(new_idx)
    parts: list[ArrayManifest] = []
    if backward is not None:
        cleared = []
        for idx in coords:
            pre = backward(list(idx))
            pre_idx = None if pre is None else tuple(int(i) for i in pre)
            if pre_idx is None or (meta.ndim and not pre_idx) or pre_idx not in existing:
                cleared.append(idx)
        if cleared:
            parts.append(_tombstones(node, np.asarray(cleared, dtype=np.uint32).reshape(-1, meta.ndim)))
    if sources:
        # several sources may map to one target: the last one wins, as sequential writes would
        parts.append(_relocated(refs, np.asarray(sources, dtype=np.int64), np.asarray(targets, dtype=np.int64)))
    if parts:
        engine.set_chunk_table(node, parts[0] if len(parts) == 1 else ArrayManifest.concat(node.id, parts))
