"""IcechunkStore: a zarr 3 ``Store`` over an icechunk session.

Metadata keys (``<path>/zarr.json``) read and write the nodes of the session; chunk keys
(``<path>/c/<i>/<j>``) read and write chunk refs (FORMAT.md §7).  Listing works from the node
tree and the arrays' chunk coordinates, never from a scan of storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.core.buffer.cpu import Buffer as CpuBuffer

from icechunk._errors import ErrorKind, IcechunkError, InvalidInputError, ReadOnlyError
from icechunk._malloc import tune_for_chunk_buffers
from icechunk._sync import blocking
from icechunk.core.paths import (
    ChunkKey,
    MetadataKey,
    key_prefix_for,
    normalize_path,
    parse_key,
)
from icechunk.core.session import NodeView, SessionEngine
from icechunk.format.manifest import RefKind
from icechunk.storage._abc import ByteRange, OffsetRange, RangeRequest, SuffixRange

if TYPE_CHECKING:
    from icechunk._sync import AsyncCloseableIterator
    from icechunk.session import Session
    from icechunk.virtual import VirtualChunkSpec

__all__ = ["IcechunkStore"]

_READ_ONLY_MESSAGE = "store was opened in read-only mode and does not support writing"

PICKLE_ADVICE = (
    "You must opt-in to pickle writable sessions in a distributed context: use "
    "`Session.fork()` and pickle the fork (then `Session.merge(*forks)` the results), use "
    "`icechunk.xarray.to_icechunk` instead of `Dataset.to_zarr` with dask arrays, or use a "
    "read-only session (or a fork) for reads."
)


class ReadOnlyStoreError(ReadOnlyError, ValueError):
    """A write through a store opened read-only (also a ``ValueError``, as zarr expects)."""


ReadOnlyStoreError.__module__ = "icechunk"


def _byte_range(byte_range: ByteRequest | None) -> ByteRange | None:
    if byte_range is None:
        return None
    if isinstance(byte_range, RangeByteRequest):
        if byte_range.start < 0 or byte_range.end < byte_range.start:
            raise InvalidInputError(f"invalid byte range {byte_range!r}", ErrorKind.INVALID_BYTE_RANGE)
        return RangeRequest(byte_range.start, byte_range.end)
    if isinstance(byte_range, OffsetByteRequest):
        if byte_range.offset < 0:
            raise InvalidInputError(f"invalid byte range {byte_range!r}", ErrorKind.INVALID_BYTE_RANGE)
        return OffsetRange(byte_range.offset)
    if isinstance(byte_range, SuffixByteRequest):
        if byte_range.suffix < 0:
            raise InvalidInputError(f"invalid byte range {byte_range!r}", ErrorKind.INVALID_BYTE_RANGE)
        return SuffixRange(byte_range.suffix)
    raise ValueError(f"Unexpected byte_range, got {byte_range!r}")


def _slice(data: bytes, byte_range: ByteRange | None) -> bytes:
    from icechunk.core.session import slice_range

    return slice_range(data, byte_range)


class IcechunkStore(Store):
    """A zarr 3 store reading and writing through an icechunk session.

    Get one from :attr:`icechunk.Session.store`; constructing it directly is internal.
    """

    __slots__ = ("_engine", "_session")

    def __init__(self, session: Session, read_only: bool | None = None) -> None:
        engine: SessionEngine = session._engine
        super().__init__(read_only=engine.read_only if read_only is None else read_only)
        self._session = session
        self._engine = engine
        tune_for_chunk_buffers()  # chunk-sized buffers are about to come and go

    # ---- identity, pickling, repr -----------------------------------------------------------

    @property
    def session(self) -> Session:
        """The session this store reads and writes through."""
        return self._session

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IcechunkStore) and other._engine is self._engine

    def __hash__(self) -> int:
        return id(self._engine)

    def __getstate__(self) -> dict[str, Any]:
        if not (self._engine.read_only or self._engine.mode == "fork"):
            raise ValueError(PICKLE_ADVICE)
        return {"session": self._session, "read_only": self._read_only}

    def __setstate__(self, state: dict[str, Any]) -> None:
        session = state["session"]
        self._session = session
        self._engine = session._engine
        self._read_only = state["read_only"]
        self._is_open = False

    def __repr__(self) -> str:
        return (
            f"icechunk.IcechunkStore(snapshot_id={str(self._engine.snapshot_id)!r}, "
            f"branch={self._engine.branch!r}, read_only={self._read_only})"
        )

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(repr(self))}</pre>"

    def with_read_only(self, read_only: bool = False) -> IcechunkStore:
        """A new store on the same session with the given read-only flag."""
        return IcechunkStore(self._session, read_only=read_only)

    # ---- capabilities -----------------------------------------------------------------------

    @property
    def supports_writes(self) -> bool:
        return True

    @property
    def supports_deletes(self) -> bool:
        return True

    @property
    def supports_partial_writes(self) -> bool:  # type: ignore[override]
        return False

    @property
    def supports_listing(self) -> bool:
        return True

    @property
    def supports_consolidated_metadata(self) -> bool:
        return False

    def _check_writable(self) -> None:
        if self._read_only:
            raise ReadOnlyStoreError(_READ_ONLY_MESSAGE, ErrorKind.READ_ONLY_STORE)

    # ---- reads ------------------------------------------------------------------------------

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        rng = _byte_range(byte_range)
        try:
            parsed = parse_key(key)
        except InvalidInputError:
            return None
        engine = self._engine
        if isinstance(parsed, MetadataKey):
            node = engine.node(parsed.path)
            if node is None:
                return None
            return prototype.buffer.from_bytes(_slice(node.user_data, rng))
        data = await engine.get_chunk(parsed.path, parsed.coords, rng)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        requests = list(key_ranges)
        semaphore = asyncio.Semaphore(max(self._engine.config.get_partial_values_concurrency, 1))

        async def one(key: str, byte_range: ByteRequest | None) -> Buffer | None:
            async with semaphore:
                try:
                    return await self.get(key, prototype, byte_range)
                except (IcechunkError, ValueError):
                    return None

        return list(await asyncio.gather(*(one(k, r) for k, r in requests)))

    async def exists(self, key: str) -> bool:
        try:
            parsed = parse_key(key)
        except InvalidInputError:
            return False
        engine = self._engine
        node = engine.node(parsed.path)
        if node is None:
            return False
        if isinstance(parsed, MetadataKey):
            return True
        if node.array is None:
            return False
        return await engine.chunk_ref(node, parsed.coords) is not None

    async def getsize(self, key: str) -> int:
        try:
            parsed = parse_key(key)
        except InvalidInputError:
            raise FileNotFoundError(key) from None
        node = self._engine.node(parsed.path)
        if node is None:
            raise FileNotFoundError(key)
        if isinstance(parsed, MetadataKey):
            return len(node.user_data)
        ref = await self._engine.chunk_ref(node, parsed.coords) if node.array else None
        if ref is None:
            raise FileNotFoundError(key)
        return len(ref.inline or b"") if int(ref.kind) == RefKind.INLINE else int(ref.length)

    async def getsize_prefix(self, prefix: str) -> int:
        total = 0
        for node in self._nodes_under(prefix):
            if (key_prefix_for(node.path) + "zarr.json").startswith(prefix):
                total += len(node.user_data)
            if node.array is not None:
                refs = await self._engine.current_refs(node)
                if len(refs):
                    keys = self._chunk_keys(node.path, refs.coords)
                    mask = np.fromiter((k.startswith(prefix) for k in keys), bool, len(keys))
                    sizes = np.where(
                        refs.kind == RefKind.INLINE,
                        np.fromiter((len(b) if b is not None else 0 for b in refs.inline), np.uint64, len(refs)),
                        refs.length,
                    )
                    total += int(sizes[mask].sum())
        return total

    # ---- writes -----------------------------------------------------------------------------

    async def set(self, key: str, value: Buffer) -> None:
        if not isinstance(value, Buffer):
            raise TypeError(f"IcechunkStore.set(): `value` must be a Buffer instance, got {type(value).__name__}")
        self._check_writable()
        parsed = parse_key(key)
        engine = self._engine
        if isinstance(parsed, MetadataKey):
            engine.set_metadata(parsed.path, value.to_bytes())
        else:
            # host buffers go through without a copy (storage copies or writes them out)
            data = value.as_buffer_like() if isinstance(value, CpuBuffer) else value.to_bytes()
            await engine.set_chunk(parsed.path, parsed.coords, memoryview(data).cast("B"))

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        if not await self.exists(key):
            await self.set(key, value)

    async def set_partial_values(self, key_start_values: Iterable[tuple[str, int, Any]]) -> None:
        self._check_writable()
        self._engine.require_writable()
        raise NotImplementedError("IcechunkStore does not support partial writes")

    async def delete(self, key: str) -> None:
        self._check_writable()
        try:
            parsed = parse_key(key)
        except InvalidInputError:
            self._engine.require_writable()
            return
        if isinstance(parsed, MetadataKey):
            self._engine.delete_node(parsed.path)
        else:
            self._engine.delete_chunk(parsed.path, parsed.coords)

    async def delete_dir(self, prefix: str) -> None:
        self._check_writable()
        engine = self._engine
        engine.require_writable()
        prefix = prefix.rstrip("/")
        if not prefix:
            engine.clear()
            return
        try:
            path = normalize_path(prefix)
        except InvalidInputError:
            return
        if engine.node(path) is not None:
            engine.delete_node(path)
            return
        # a prefix inside an array's chunk tree: delete the matching chunks
        for node in self._arrays_containing(prefix):
            refs = await engine.current_refs(node)
            for coords, key in zip(refs.coords.tolist(), self._chunk_keys(node.path, refs.coords), strict=True):
                if key == prefix or key.startswith(prefix + "/"):
                    engine.delete_chunk(node.path, tuple(coords))

    async def clear(self) -> None:
        self._check_writable()
        self._engine.clear()

    def sync_clear(self) -> None:
        """Blocking :meth:`clear`."""
        from icechunk._sync import run

        run(self.clear())

    async def is_empty(self, prefix: str) -> bool:
        async for _ in self.list_dir(prefix):
            return False
        return True

    # ---- virtual refs -----------------------------------------------------------------------

    async def set_virtual_ref_async(
        self,
        key: str,
        location: str,
        *,
        offset: int,
        length: int,
        checksum: str | datetime | None = None,
        validate_container: bool = True,
    ) -> None:
        """Store a reference to ``length`` bytes at ``offset`` of ``location`` at a chunk key.

        Parameters
        ----------
        key
            A chunk key such as ``"array/c/0/0"``.
        location
            Absolute URL of the object (``s3://``, ``gs://``, ``file:///``, ``https://``...) or
            ``vcc://<container name>/<path>``.  Reserved characters of the object key must be
            percent-encoded (``?`` as ``%3F``, ``#`` as ``%23``, ``%`` as ``%25``).
        offset, length
            The byte range of the chunk in the object.
        checksum
            An ETag (``str``) or a last-modified bound (``datetime``): reads fail later if the
            object changed.
        validate_container
            Require a virtual chunk container matching ``location``.

        Raises
        ------
        InvalidInputError
            A metadata key, an index outside the grid, or no container matches (kind
            ``no-container-for-virtual-chunk``).
        ReadOnlyError
            On a read-only store or session.
        """
        from icechunk.core.virtual_refs import set_virtual_ref

        self._check_writable()
        parsed = parse_key(key)
        if isinstance(parsed, MetadataKey):
            raise InvalidInputError(
                f"{key!r} is a metadata key: virtual refs go to chunk keys (use .set for metadata)",
                ErrorKind.INVALID_KEY,
            )
        set_virtual_ref(
            self._engine, parsed.path, parsed.coords, location, offset, length, checksum,
            validate_container,
        )

    set_virtual_ref = blocking(set_virtual_ref_async)

    async def set_virtual_refs_async(
        self, array_path: str, chunks: list[VirtualChunkSpec], *, validate_containers: bool = True
    ) -> list[tuple[int, ...]] | None:
        """Set many virtual refs of one array at once.

        With ``validate_containers``, refs whose location matches no virtual chunk container
        are skipped and their indices returned; None when every ref was set.
        """
        from icechunk.core.virtual_refs import failed_indices, set_virtual_columns, spec_columns

        self._check_writable()
        index, locations, offsets, lengths, etags, lms = spec_columns(chunks)
        engine = self._engine
        ndim = engine.get_array(normalize_path(array_path)).array.ndim  # type: ignore[union-attr]
        if any(len(i) != ndim for i in index):
            raise InvalidInputError(
                f"every VirtualChunkSpec index of {array_path} must have {ndim} dimensions",
                ErrorKind.INVALID_CHUNK_INDEX,
            )
        coords = np.asarray(index, dtype=np.int64).reshape(len(index), ndim)
        failed = set_virtual_columns(
            engine, normalize_path(array_path), coords, locations,
            np.asarray(offsets, dtype=np.int64), np.asarray(lengths, dtype=np.int64),
            etags=etags, last_modified=np.asarray(lms, dtype=np.uint32),
            validate_containers=validate_containers,
        )
        return failed_indices(coords, failed)

    set_virtual_refs = blocking(set_virtual_refs_async)

    async def set_virtual_refs_arr_async(
        self,
        array_path: str,
        chunk_grid_shape: tuple[int, ...],
        locations: list[str],
        offsets: np.ndarray,
        lengths: np.ndarray,
        *,
        validate_containers: bool = True,
        arr_offset: tuple[int, ...] | None = None,
        checksum: datetime | str | None = None,
    ) -> list[tuple[int, ...]] | None:
        """Set the virtual refs of a block of chunks from flat, C-ordered columns.

        Position ``i`` of ``locations`` / ``offsets`` / ``lengths`` is the chunk at the
        ``i``-th index of a C-order walk over ``chunk_grid_shape``, plus ``arr_offset`` (for
        appends).  An empty location means "no chunk here".  One ``checksum`` (ETag or
        last-modified bound) applies to every ref.  Returns the indices skipped because no
        container matched (with ``validate_containers``), or None.
        """
        from icechunk.core.virtual_refs import (
            checksum_fields,
            failed_indices,
            set_virtual_columns,
            unravel_grid,
        )

        self._check_writable()
        coords = unravel_grid(chunk_grid_shape, arr_offset)
        etag, last_modified = checksum_fields(checksum)
        failed = set_virtual_columns(
            self._engine, normalize_path(array_path), coords, locations, offsets, lengths,
            etags=etag, last_modified=last_modified, validate_containers=validate_containers,
        )
        return failed_indices(coords, failed)

    set_virtual_refs_arr = blocking(set_virtual_refs_arr_async)

    def array_chunk_iterator(
        self, array_path: str, batch_size: int = 100_000
    ) -> AsyncCloseableIterator[
        tuple[np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray, dict[int, bytes]]
    ]:
        """Every existing chunk ref of an array, in columnar batches of up to ``batch_size``.

        Each batch is ``(coords, kinds, paths, offsets, lengths, inlined)``: ``coords`` is
        ``uint32 (n, ndim)``; ``kinds`` ``uint8`` (1 native, 2 virtual, 3 inline); ``paths``
        the absolute URL of virtual rows (``vcc://`` resolved), the chunk id of native rows
        and ``""`` for inline rows; ``offsets`` / ``lengths`` ``uint64``; ``inlined`` maps a
        row of the batch to the bytes of an inline chunk.  Usable with ``for`` and
        ``async for``.
        """
        from icechunk._sync import AsyncCloseableIterator

        return AsyncCloseableIterator(self._chunk_batches(array_path, max(int(batch_size), 1)))

    async def _chunk_batches(
        self, array_path: str, batch_size: int
    ) -> AsyncIterator[tuple[np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray, dict[int, bytes]]]:
        from icechunk.core.virtual import resolve_vcc
        from icechunk.format.ids import ChunkId

        engine = self._engine
        node = engine.get_array(normalize_path(array_path))
        refs = await engine.current_refs(node)
        containers = engine.config.containers
        for lo in range(0, len(refs), batch_size):
            part = refs.take(np.arange(lo, min(lo + batch_size, len(refs))))
            kinds = part.kind
            paths: list[str] = []
            inlined: dict[int, bytes] = {}
            for row, kind in enumerate(kinds.tolist()):
                if kind == RefKind.VIRTUAL:
                    paths.append(resolve_vcc(containers, part.location[row]))
                elif kind == RefKind.NATIVE:
                    paths.append(str(ChunkId(part.chunk_id[row].tobytes())))
                else:
                    paths.append("")
                    inlined[row] = part.inline[row]
            yield part.coords, kinds, paths, part.offset, part.length, inlined

    # ---- listing ----------------------------------------------------------------------------

    def _nodes_under(self, prefix: str) -> list[NodeView]:
        """Nodes whose keys may start with ``prefix`` (whole tree for short prefixes)."""
        nodes = self._engine.all_nodes()
        if not prefix:
            return nodes
        return [
            n for n in nodes
            if (kp := key_prefix_for(n.path)).startswith(prefix) or prefix.startswith(kp)
        ]

    def _arrays_containing(self, prefix: str) -> list[NodeView]:
        return [n for n in self._nodes_under(prefix) if n.array is not None]

    @staticmethod
    def _chunk_keys(path: str, coords: np.ndarray) -> list[str]:
        base = key_prefix_for(path) + "c"
        if coords.shape[1] == 0:
            return [base] * coords.shape[0]
        return [base + "/" + "/".join(row) for row in coords.astype(str).tolist()]

    async def list(self) -> AsyncIterator[str]:
        async for key in self.list_prefix(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        nodes = self._nodes_under(prefix)
        for node in nodes:
            key = key_prefix_for(node.path) + "zarr.json"
            if key.startswith(prefix):
                yield key
        for node in nodes:
            if node.array is None:
                continue
            refs = await self._engine.current_refs(node)
            for key in self._chunk_keys(node.path, refs.coords):
                if key.startswith(prefix):
                    yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        engine = self._engine
        prefix = prefix.rstrip("/")
        try:
            path = normalize_path(prefix)
        except InvalidInputError:
            return
        node = engine.node(path)
        if node is not None:
            yield "zarr.json"
            if node.array is not None:
                yield "c"
            else:
                for name in engine.children(path):
                    yield name
            return
        implicit = engine.children(path)
        if implicit:  # a path with descendants but no node of its own
            for name in implicit:
                yield name
            return
        # inside a chunk tree: "<array>/c[/i/j...]"
        try:
            parsed = parse_key(prefix)
        except InvalidInputError:
            return
        if not isinstance(parsed, ChunkKey):
            return
        array = engine.node(parsed.path)
        if array is None or array.array is None or len(parsed.coords) >= array.array.ndim:
            return
        coords = (await engine.current_refs(array)).coords
        depth = len(parsed.coords)
        if depth:
            mask = np.all(coords[:, :depth] == np.asarray(parsed.coords, dtype=coords.dtype), axis=1)
            coords = coords[mask]
        for value in np.unique(coords[:, depth]).tolist():
            yield str(value)
