"""The session engine: a view of one snapshot plus a change set, and edits to it.

Nodes resolve through the change set first (new nodes by path, edits and deletions by node
id) and then the base snapshot.  Chunk refs resolve through the array's chunk edits, then the
base snapshot's manifests.  Writes only touch the change set (and upload chunk objects);
nothing becomes visible to others before a commit (:mod:`icechunk.core.commit`).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from icechunk._errors import (
    ErrorKind,
    InvalidInputError,
    NodeNotFoundError,
    ReadOnlyError,
    SessionStateError,
)
from icechunk.core.aio import gather
from icechunk.core.assets import AssetManager, SnapshotIndex
from icechunk.core.changeset import TOMBSTONE, ChangeSet, ChunkChanges
from icechunk.core.effective import EffectiveConfig
from icechunk.core.metadata import ArrayMetadata, GroupMetadata, parse_metadata
from icechunk.core.paths import child_name, is_ancestor, join, normalize_path, parent
from icechunk.core.repo_state import RepoState
from icechunk.core.virtual import chunk_bounds
from icechunk.format.ids import NodeId, SnapshotId
from icechunk.format.manifest import ArrayManifest, ChunkRef, RefKind
from icechunk.format.snapshot import NodeSnapshot
from icechunk.storage._abc import ByteRange, OffsetRange, RangeRequest, SuffixRange

__all__ = ["NodeView", "SessionEngine", "slice_range"]

VirtualFetch = Callable[[ChunkRef, "ByteRange | None"], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as the session sees it."""

    id: NodeId
    path: str
    user_data: bytes
    array: ArrayMetadata | None
    base: NodeSnapshot | None

    @property
    def is_array(self) -> bool:
        return self.array is not None


def _base_array_meta(node: NodeSnapshot) -> ArrayMetadata | None:
    if node.array is None:
        return None
    return ArrayMetadata(node.user_data, node.array.shape, node.array.dimension_names, None)


def slice_range(data: bytes, byte_range: ByteRange | None) -> bytes:
    """Apply a byte range to in-memory bytes (end past the data is truncated)."""
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetRange):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixRange):
        return data[-byte_range.suffix :] if byte_range.suffix else b""
    raise InvalidInputError(f"unsupported byte range {byte_range!r}", ErrorKind.INVALID_BYTE_RANGE)


def _sub_range(ref: ChunkRef, byte_range: ByteRange | None) -> RangeRequest:
    """The absolute range inside the target object for a range relative to the chunk.

    Unlike virtual reads (:func:`absolute_range`), a start past the chunk's end is kept, so
    the storage decides about it.
    """
    start = ref.offset
    lo, hi = chunk_bounds(ref.length, byte_range)
    return RangeRequest(start + lo, start + max(hi, lo))


class SessionEngine:
    """State and edits of one session (async core; no zarr, no sync bridge).

    Parameters
    ----------
    assets, state, config
        Repository access, refs backend and effective configuration.
    base
        The snapshot the session reads from (and commits on top of).
    branch
        Branch of a writable/rearrange session; None for read-only sessions and forks.
    mode
        ``"readonly"``, ``"writable"``, ``"rearrange"`` or ``"fork"``.
    virtual_fetch
        Coroutine resolving a virtual chunk ref (authorization, checksums); None refuses.
    """

    def __init__(
        self,
        assets: AssetManager,
        state: RepoState,
        config: EffectiveConfig,
        base: SnapshotIndex,
        *,
        branch: str | None = None,
        mode: str = "readonly",
        changes: ChangeSet | None = None,
        virtual_fetch: VirtualFetch | None = None,
        default_metadata: dict[str, object] | None = None,
    ) -> None:
        self.assets = assets
        self.state = state
        self.config = config
        self.base = base
        self.branch = branch
        self.mode = mode
        self.changes = changes if changes is not None else ChangeSet()
        self.virtual_fetch = virtual_fetch
        self.default_metadata = dict(default_metadata or {})
        self._lock = threading.Lock()

    # ---- state ------------------------------------------------------------------------------

    @property
    def snapshot_id(self) -> SnapshotId:
        return self.base.id

    @property
    def read_only(self) -> bool:
        return self.mode == "readonly"

    def require_writable(self, *, data: bool = True) -> None:
        """Raise unless the session may write (``data`` writes are refused in rearrange mode)."""
        if self.mode == "readonly":
            raise ReadOnlyError("this session is read-only", ErrorKind.READ_ONLY_SESSION)
        if data and self.mode == "rearrange":
            raise SessionStateError(
                "a rearrange session can only move nodes", ErrorKind.REARRANGE_SESSION_ONLY
            )

    def finish(self, new_base: SnapshotIndex) -> None:
        """After commit/amend/flush: read-only on the new snapshot, no branch, no changes."""
        self.base = new_base
        self.branch = None
        self.mode = "readonly"
        self.changes = ChangeSet()

    # ---- nodes ------------------------------------------------------------------------------

    def _base_path(self, path: str) -> str:
        """Path in the base snapshot of what lives at ``path`` now (after moves)."""
        for src, dst in reversed(self.changes.moves):
            if path == dst:
                path = src
            elif is_ancestor(dst, path):
                path = src + path[len(dst) :]
            elif path == src or is_ancestor(src, path):
                return "\x00"  # moved away: nothing of the base lives here any more
        return path

    def _current_path(self, base_path: str) -> str:
        path = base_path
        for src, dst in self.changes.moves:
            if path == src:
                path = dst
            elif is_ancestor(src, path):
                path = dst + path[len(src) :]
        return path

    def node(self, path: str) -> NodeView | None:
        """The group or array at ``path``, or None."""
        changes = self.changes
        new_group = changes.new_groups.get(path)
        if new_group is not None:
            return NodeView(new_group[0], path, new_group[1], None, None)
        new_array = changes.new_arrays.get(path)
        if new_array is not None:
            return NodeView(new_array[0], path, new_array[1].user_data, new_array[1], None)
        base = self.base.by_path.get(self._base_path(path) if changes.moves else path)
        if base is None:
            return None
        if base.is_array:
            if changes.deleted_arrays.get(base.path) == base.id:
                return None
            meta = changes.updated_arrays.get(base.id) or _base_array_meta(base)
            assert meta is not None
            return NodeView(base.id, path, meta.user_data, meta, base)
        if changes.deleted_groups.get(base.path) == base.id:
            return None
        user_data = changes.updated_groups.get(base.id, base.user_data)
        return NodeView(base.id, path, user_data, None, base)

    def get_node(self, path: str) -> NodeView:
        node = self.node(normalize_path(path))
        if node is None:
            raise NodeNotFoundError(f"node not found: {path}", ErrorKind.NODE_NOT_FOUND)
        return node

    def get_array(self, path: str) -> NodeView:
        node = self.get_node(path)
        if node.array is None:
            raise InvalidInputError(f"{path} is not an array", ErrorKind.NOT_AN_ARRAY)
        return node

    def children(self, path: str) -> list[str]:
        """Sorted names of the direct child nodes of ``path``."""
        names: set[str] = set()
        base_path = self._base_path(path) if self.changes.moves else path
        for name in self.base.children(base_path):
            child = join(base_path, name)
            # keep live nodes, and implicit (node-less) paths of the base
            if self.node(join(path, name)) is not None or child not in self.base.by_path:
                names.add(name)
        prefix = path if path == "/" else path + "/"
        for new_path in (*self.changes.new_groups, *self.changes.new_arrays):
            if new_path != path and new_path.startswith(prefix):
                names.add(new_path[len(prefix) :].split("/", 1)[0])
        if self.changes.moves:
            for _, dst in self.changes.moves:
                if parent(dst) == path and self.node(dst) is not None:
                    names.add(child_name(dst))
        return sorted(names)

    def all_nodes(self) -> list[NodeView]:
        """Every node of the session, sorted by path."""
        out: dict[str, NodeView] = {}
        for base in self.base.snapshot.nodes:
            path = self._current_path(base.path) if self.changes.moves else base.path
            node = self.node(path)
            if node is not None and node.id == base.id:
                out[path] = node
        for path in (*self.changes.new_groups, *self.changes.new_arrays):
            view = self.node(path)
            if view is not None:
                out[path] = view
        return [out[p] for p in sorted(out, key=lambda p: p.encode())]

    def descendants(self, path: str) -> list[NodeView]:
        return [n for n in self.all_nodes() if is_ancestor(path, n.path)]

    # ---- metadata edits ---------------------------------------------------------------------

    def set_metadata(self, path: str, user_data: bytes) -> None:
        """Create or update the group/array at ``path`` from its ``zarr.json`` bytes."""
        self.require_writable()
        path = normalize_path(path)
        meta = parse_metadata(user_data, allow_rectilinear=self.state.spec_version >= 2)
        with self._lock:
            existing = self.node(path)
            if existing is not None and (existing.array is None) != isinstance(meta, GroupMetadata):
                self._delete_locked(existing)
                existing = None
            for ancestor_path in _ancestors(path):
                ancestor = self.node(ancestor_path)
                if ancestor is not None and ancestor.is_array:
                    raise InvalidInputError(
                        f"cannot create {path}: {ancestor_path} is an array", ErrorKind.NOT_A_GROUP
                    )
            ch = self.changes
            if existing is None:
                nid = NodeId.random()
                if isinstance(meta, GroupMetadata):
                    ch.new_groups[path] = (nid, meta.user_data)
                else:
                    ch.new_arrays[path] = (nid, meta)
                return
            if existing.user_data == meta.user_data:
                return
            if existing.base is None:  # a node created in this session
                if isinstance(meta, GroupMetadata):
                    ch.new_groups[path] = (existing.id, meta.user_data)
                else:
                    ch.new_arrays[path] = (existing.id, meta)
                    self._resize_changes(existing.id, meta)
            elif isinstance(meta, GroupMetadata):
                ch.updated_groups[existing.id] = meta.user_data
            else:
                ch.updated_arrays[existing.id] = meta
                self._resize_changes(existing.id, meta)

    def _resize_changes(self, node_id: NodeId, meta: ArrayMetadata) -> None:
        changes = self.changes.chunks.get(node_id)
        if changes is not None:
            if changes.ndim != meta.ndim:
                del self.changes.chunks[node_id]
            else:
                changes.keep_inside(meta.num_chunks)

    def delete_node(self, path: str) -> None:
        """Delete a group or array with its subtree (no-op when nothing is there)."""
        self.require_writable()
        with self._lock:
            node = self.node(normalize_path(path))
            if node is not None:
                self._delete_locked(node)

    def _delete_locked(self, node: NodeView) -> None:
        for victim in [*self.descendants(node.path), node]:
            ch = self.changes
            ch.chunks.pop(victim.id, None)
            if victim.base is None:
                ch.new_groups.pop(victim.path, None)
                ch.new_arrays.pop(victim.path, None)
            elif victim.is_array:
                ch.updated_arrays.pop(victim.id, None)
                ch.deleted_arrays[victim.base.path] = victim.id
            else:
                ch.updated_groups.pop(victim.id, None)
                ch.deleted_groups[victim.base.path] = victim.id

    def clear(self) -> None:
        """Delete every node."""
        self.require_writable()
        with self._lock:
            for node in self.all_nodes():
                if self.node(node.path) is not None:
                    self._delete_locked(node)

    # ---- chunks -----------------------------------------------------------------------------

    @staticmethod
    def _check_coords(node: NodeView, coords: tuple[int, ...]) -> bool:
        """Whether ``coords`` names a chunk inside the array's grid."""
        assert node.array is not None
        if len(coords) != node.array.ndim:
            return False
        return all(c < max(n, 1) for c, n in zip(coords, node.array.num_chunks, strict=True))

    async def chunk_ref(self, node: NodeView, coords: tuple[int, ...]) -> ChunkRef | None:
        """The ref of a chunk, or None (fill value)."""
        if not self._check_coords(node, coords):
            return None
        changes = self.changes.chunks.get(node.id)
        if changes is not None:
            touched, ref = changes.get(coords)
            if touched:
                return ref
        base = node.base
        if base is None or base.array is None:
            return None
        for mref in base.array.manifests:
            if mref.contains(coords):
                manifest = await self.assets.fetch_manifest(mref.manifest_id)
                table = manifest.array(base.id)
                if table is None:
                    return None
                row = table.find(coords)
                return table.ref(row) if row >= 0 else None
        return None

    async def read_chunk(self, ref: ChunkRef, byte_range: ByteRange | None = None) -> bytes:
        """The bytes of a chunk (or a byte range of it, relative to the chunk).

        Raises
        ------
        InvalidInputError
            (kind ``invalid-byte-range``) for a range starting past the chunk's end, whatever
            the chunk kind; a range ending past it is truncated.
        """
        kind = int(ref.kind)
        length = len(ref.inline or b"") if kind == RefKind.INLINE else int(ref.length)
        if chunk_bounds(length, byte_range)[0] > length:
            raise InvalidInputError(
                f"byte range {byte_range!r} starts past the end of a {length}-byte chunk",
                ErrorKind.INVALID_BYTE_RANGE,
            )
        if kind == RefKind.INLINE:
            return slice_range(ref.inline or b"", byte_range)
        if kind == RefKind.NATIVE:
            assert ref.chunk_id is not None
            if ref.offset == 0 and byte_range is None:
                rng: ByteRange | None = RangeRequest(0, ref.length) if ref.length else None
            else:
                rng = _sub_range(ref, byte_range)
            return await self.assets.fetch_chunk(ref.chunk_id, rng)
        if self.virtual_fetch is None:
            raise InvalidInputError(
                f"cannot read virtual chunk at {ref.location}: no virtual chunk access configured",
                ErrorKind.UNAUTHORIZED_VIRTUAL_CHUNK_CONTAINER,
            )
        return await self.virtual_fetch(ref, byte_range)

    async def get_chunk(
        self, path: str, coords: tuple[int, ...], byte_range: ByteRange | None = None
    ) -> bytes | None:
        node = self.node(path)
        if node is None or node.array is None:
            return None
        ref = await self.chunk_ref(node, coords)
        if ref is None:
            return None
        return await self.read_chunk(ref, byte_range)

    def _array_for_write(self, path: str, coords: tuple[int, ...] | None = None) -> NodeView:
        node = self.node(normalize_path(path))
        if node is None:
            raise NodeNotFoundError(f"cannot write chunks: no array at {path}", ErrorKind.NODE_NOT_FOUND)
        if node.array is None:
            raise InvalidInputError(f"cannot write chunks: {path} is a group", ErrorKind.NOT_AN_ARRAY)
        if coords is not None and not self._check_coords(node, coords):
            raise InvalidInputError(
                f"chunk index {list(coords)} is outside the chunk grid "
                f"{list(node.array.num_chunks)} of {path}",
                ErrorKind.INVALID_CHUNK_INDEX,
            )
        return node

    async def set_chunk(self, path: str, coords: tuple[int, ...], data: bytes | memoryview) -> None:
        """Write a chunk: inline up to the threshold, otherwise as a new chunk object."""
        self.require_writable()
        node = self._array_for_write(path, coords)
        if len(data) == 0:
            raise InvalidInputError("zero-length chunks cannot be written", ErrorKind.ZERO_LENGTH_CHUNK)
        if len(data) <= self.config.inline_chunk_threshold_bytes:
            ref = ChunkRef(kind=RefKind.INLINE, inline=bytes(data))
        else:
            cid = await self.assets.write_chunk(data)
            ref = ChunkRef(kind=RefKind.NATIVE, chunk_id=cid, offset=0, length=len(data))
        self.set_chunk_ref(node, coords, ref)

    def set_chunk_ref(self, node: NodeView, coords: tuple[int, ...], ref: ChunkRef | None) -> None:
        """Record a ref (or a deletion) for one chunk of an array."""
        assert node.array is not None
        with self._lock:
            self.changes.chunk_changes(node.id, node.array.ndim).set(coords, ref)

    def set_chunk_table(self, node: NodeView, table: ArrayManifest) -> None:
        """Record many refs at once (rows of kind TOMBSTONE delete)."""
        assert node.array is not None
        with self._lock:
            self.changes.chunk_changes(node.id, node.array.ndim).add_table(table)

    def delete_chunk(self, path: str, coords: tuple[int, ...]) -> None:
        """Clear a chunk (reads back as the fill value); no-op for impossible keys."""
        self.require_writable()
        node = self.node(normalize_path(path))
        if node is None or node.array is None or not self._check_coords(node, coords):
            return
        self.set_chunk_ref(node, coords, None)

    # ---- chunk listing ----------------------------------------------------------------------

    async def base_refs(self, node: NodeView) -> ArrayManifest | None:
        """All refs of a base array from its manifests (None for new arrays)."""
        base = node.base
        if base is None or base.array is None:
            return None
        manifests = await gather(*(self.assets.fetch_manifest(m.manifest_id) for m in base.array.manifests))
        parts = [t for m in manifests if (t := m.array(base.id)) is not None]
        if not parts:
            return ArrayManifest.empty(base.id, node.array.ndim if node.array else 0)
        return parts[0] if len(parts) == 1 else ArrayManifest.concat(base.id, parts)

    async def current_refs(self, node: NodeView) -> ArrayManifest:
        """Every existing chunk ref of an array as the session sees it (sorted, in grid)."""
        assert node.array is not None
        ndim = node.array.ndim
        base = await self.base_refs(node)
        changes: ChunkChanges | None = self.changes.chunks.get(node.id)
        parts = [p for p in (base, changes.table() if changes else None) if p is not None and len(p)]
        if not parts:
            return ArrayManifest.empty(node.id, ndim)
        merged = parts[0] if len(parts) == 1 else ArrayManifest.concat(node.id, parts)
        if merged.ndim != ndim:
            return ArrayManifest.empty(node.id, ndim)
        keep = merged.kind != TOMBSTONE
        if ndim:
            grid = np.maximum(np.asarray(node.array.num_chunks, dtype=np.uint64), 1)
            keep &= np.all(merged.coords < grid, axis=1)
        return merged if keep.all() else merged.take(np.flatnonzero(keep))

    async def chunk_coordinates(self, path: str) -> np.ndarray:
        """``(n, ndim)`` coordinates of every existing chunk of the array at ``path``."""
        node = self.get_array(path)
        return (await self.current_refs(node)).coords


def _ancestors(path: str) -> list[str]:
    out = []
    current = parent(path)
    while current is not None:
        out.append(current)
        current = parent(current)
    return out

