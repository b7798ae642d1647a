"""AssetManager: typed, cached reads and writes of repository objects.

Owns the object-key layout (FORMAT.md §1), turns missing objects into the right
not-found error, decodes big payloads off the event loop, shares in-flight fetches and keeps
LRU caches of snapshots (by node count) and manifests (by ref count).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from icechunk._errors import ErrorKind, NotFoundError, SnapshotNotFoundError, StorageError
from icechunk.format.ids import ChunkId, ManifestId, SnapshotId
from icechunk.format.manifest import LocationCompression, Manifest, decode_manifest, encode_manifest
from icechunk.format.repo_info import RepoInfo, encode_repo_info
from icechunk.format.snapshot import NodeSnapshot, Snapshot, decode_snapshot, encode_snapshot
from icechunk.format.transaction_log import (
    TransactionLog,
    decode_transaction_log,
    encode_transaction_log,
)
from icechunk.storage._abc import ByteRange, Storage

__all__ = ["AssetManager", "SnapshotIndex", "keys", "read_manifest", "read_snapshot"]

T = TypeVar("T")

_OFF_LOOP_BYTES = 1 << 20  # decode/encode payloads bigger than this in a worker thread


class keys:
    """Object keys relative to the repository root."""

    REPO = "repo"
    CONFIG_YAML = "config.yaml"
    # where a commit writes its small objects ("" for the repo object's temp file)
    COMMIT_PREFIXES = ("manifests", "snapshots", "transactions", "")

    @staticmethod
    def snapshot(sid: SnapshotId) -> str:
        return f"snapshots/{sid}"

    @staticmethod
    def manifest(mid: ManifestId) -> str:
        return f"manifests/{mid}"

    @staticmethod
    def transaction_log(sid: SnapshotId) -> str:
        return f"transactions/{sid}"

    @staticmethod
    def chunk(cid: ChunkId) -> str:
        return f"chunks/{cid}"

    @staticmethod
    def overwritten(name: str) -> str:
        return f"overwritten/{name}"


@dataclass
class SnapshotIndex:
    """A snapshot with lookup structures built once: nodes by path, by id, children."""

    snapshot: Snapshot
    by_path: dict[str, NodeSnapshot] = field(init=False)
    _children: dict[str, list[str]] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.by_path = {n.path: n for n in self.snapshot.nodes}

    @property
    def id(self) -> SnapshotId:
        return self.snapshot.id

    def children(self, path: str) -> list[str]:
        """Names of the direct children of ``path`` (sorted)."""
        if self._children is None:
            children: dict[str, set[str]] = {}
            for node_path in self.by_path:
                # register every ancestor link, so paths without a node of their own
                # (implicit groups) still list their children
                while node_path != "/":
                    head, _, name = node_path.rpartition("/")
                    head = head or "/"
                    siblings = children.setdefault(head, set())
                    if name in siblings:
                        break
                    siblings.add(name)
                    node_path = head
            self._children = {k: sorted(v) for k, v in children.items()}
        return self._children.get(path, [])


class _LRU(Generic[T]):
    """A small weight-bounded LRU map, safe to use from several threads."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Any, tuple[T, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> T | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Any, value: T, weight: int) -> None:
        with self._lock:
            if key in self._items:
                self._weight -= self._items.pop(key)[1]
            self._items[key] = (value, weight)
            self._weight += weight
            while self._weight > self.capacity and len(self._items) > 1:
                _, (_, w) = self._items.popitem(last=False)
                self._weight -= w


async def _maybe_off_loop(size: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if size > _OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)


async def read_snapshot(storage: Storage, sid: SnapshotId) -> Snapshot:
    """Read and decode one snapshot file (no caching)."""
    key = keys.snapshot(sid)
    try:
        data = await storage.get(key)
    except NotFoundError:
        raise SnapshotNotFoundError(f"snapshot {sid} not found", ErrorKind.SNAPSHOT_NOT_FOUND) from None
    return await _maybe_off_loop(len(data), decode_snapshot, data, key)


async def read_manifest(storage: Storage, mid: ManifestId) -> Manifest:
    """Read and decode one manifest file (no caching)."""
    key = keys.manifest(mid)
    try:
        data = await storage.get(key)
    except NotFoundError:
        raise StorageError(f"manifest {mid} is missing from storage", ErrorKind.OBJECT_NOT_FOUND) from None
    return await _maybe_off_loop(len(data), decode_manifest, data, key)


def _log_weight(log: TransactionLog) -> int:
    return 1 + sum(len(c) for c in log.updated_chunks.values())


class AssetManager:
    """Typed access to the objects of one repository.

    Parameters
    ----------
    storage
        Where the repository lives.
    spec_version
        Spec byte for newly written metadata files (1 or 2).
    compression_level
        zstd level for metadata files.
    num_snapshot_nodes, num_chunk_refs
        Cache capacities (nodes held by cached snapshots, refs held by cached manifests).
    location_compression
        When to dictionary-compress virtual locations in new manifests.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        spec_version: int = 2,
        compression_level: int = 3,
        num_snapshot_nodes: int = 500_000,
        num_chunk_refs: int = 15_000_000,
        location_compression: LocationCompression | None = None,
    ) -> None:
        self.storage = storage
        self.spec_version = spec_version
        self.compression_level = compression_level
        self.location_compression = location_compression or LocationCompression()
        self._snapshots: _LRU[SnapshotIndex] = _LRU(max(num_snapshot_nodes, 1))
        self._manifests: _LRU[Manifest] = _LRU(max(num_chunk_refs, 1))
        # weighted by changed chunks, so a few huge logs cannot pin memory
        self._tx_logs: _LRU[TransactionLog] = _LRU(4_000_000)
        self._inflight: dict[tuple[int, str], asyncio.Future[Any]] = {}
        self._inflight_lock = threading.Lock()

    # ---- shared fetching --------------------------------------------------------------------

    async def _shared(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        """Run ``fetch`` once for concurrent requests of the same key on one event loop."""
        loop = asyncio.get_running_loop()
        token = (id(loop), key)
        with self._inflight_lock:
            future = self._inflight.get(token)
            owner = future is None
            if owner:
                future = loop.create_future()
                self._inflight[token] = future
        assert future is not None
        if not owner:
            return await asyncio.shield(future)
        try:
            result = await fetch()
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: waiters may not exist
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._inflight_lock:
                self._inflight.pop(token, None)

    # ---- snapshots --------------------------------------------------------------------------

    async def fetch_snapshot(self, sid: SnapshotId) -> SnapshotIndex:
        cached = self._snapshots.get(sid)
        if cached is not None:
            return cached

        async def fetch() -> SnapshotIndex:
            snapshot = await read_snapshot(self.storage, sid)
            index = SnapshotIndex(snapshot)
            self._snapshots.put(sid, index, max(len(snapshot.nodes), 1))
            return index

        return await self._shared(f"s/{sid}", fetch)

    async def write_snapshot(self, snapshot: Snapshot) -> None:
        data = encode_snapshot(
            snapshot, spec_version=self.spec_version, compression_level=self.compression_level
        )
        await self._put_new(keys.snapshot(snapshot.id), data)
        self._snapshots.put(snapshot.id, SnapshotIndex(snapshot), max(len(snapshot.nodes), 1))

    # ---- manifests --------------------------------------------------------------------------

    async def fetch_manifest(self, mid: ManifestId) -> Manifest:
        cached = self._manifests.get(mid)
        if cached is not None:
            return cached

        async def fetch() -> Manifest:
            manifest = await read_manifest(self.storage, mid)
            self._manifests.put(mid, manifest, max(manifest.num_chunk_refs, 1))
            return manifest

        return await self._shared(f"m/{mid}", fetch)

    async def write_manifest(self, manifest: Manifest) -> int:
        """Write a manifest; returns its stored size in bytes."""
        size = manifest.num_chunk_refs * 48
        data = await _maybe_off_loop(
            size,
            encode_manifest,
            manifest,
            spec_version=self.spec_version,
            compression_level=self.compression_level,
            location_compression=self.location_compression if self.spec_version >= 2 else None,
        )
        await self._put_new(keys.manifest(manifest.id), data)
        self._manifests.put(manifest.id, manifest, max(manifest.num_chunk_refs, 1))
        return len(data)

    # ---- transaction logs -------------------------------------------------------------------

    async def fetch_transaction_log(self, sid: SnapshotId) -> TransactionLog:
        cached = self._tx_logs.get(sid)
        if cached is not None:
            return cached
        key = keys.transaction_log(sid)
        data = await self.storage.get(key)
        log = await _maybe_off_loop(len(data), decode_transaction_log, data, key)
        self._tx_logs.put(sid, log, _log_weight(log))
        return log

    async def write_transaction_log(self, log: TransactionLog) -> None:
        size = sum(len(c) for c in log.updated_chunks.values()) * 16
        data = await _maybe_off_loop(
            size,
            encode_transaction_log,
            log,
            spec_version=self.spec_version,
            compression_level=self.compression_level,
        )
        await self._put_new(keys.transaction_log(log.id), data)
        self._tx_logs.put(log.id, log, _log_weight(log))

    # ---- chunks -----------------------------------------------------------------------------

    async def write_chunk(self, data: bytes | bytearray | memoryview) -> ChunkId:
        cid = ChunkId.random()
        await self.storage.put_fresh(keys.chunk(cid), data)
        return cid

    async def fetch_chunk(self, cid: ChunkId, byte_range: ByteRange | None = None) -> bytes:
        try:
            return await self.storage.get(keys.chunk(cid), byte_range)
        except NotFoundError:
            raise StorageError(
                f"chunk object {cid} is missing from storage", ErrorKind.OBJECT_NOT_FOUND
            ) from None

    # ---- repo info --------------------------------------------------------------------------

    def encode_repo_info(self, info: RepoInfo) -> bytes:
        return encode_repo_info(info, compression_level=self.compression_level)

    async def _put_new(self, key: str, data: bytes) -> None:
        # ids are random and fresh: nobody can read the key before the commit publishes it
        await self.storage.put_fresh(key, data)
