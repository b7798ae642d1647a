"""Storage wrappers for tests: added latency (public) and injected transient failures."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar, final

from icechunk.config import StorageSettings
from icechunk.storage import Storage
from icechunk.storage._abc import ByteRange, ObjectInfo, PutMode, PutResult, VersionToken
from icechunk.storage._retry import RetryPolicy, TransientStorageError, retrying

__all__ = ["FlakyStorage", "LatencyStorage"]

T = TypeVar("T")


class _Wrapper(Storage):
    """Delegates everything to ``inner``; subclasses hook :meth:`_before`."""

    def __init__(self, inner: Storage) -> None:
        if not isinstance(inner, Storage):
            raise TypeError(f"inner must be a Storage, got {type(inner).__name__}")
        self._inner = inner

    @property
    def inner(self) -> Storage:
        """The wrapped storage."""
        return self._inner

    async def _before(self, operation: str) -> None:
        """Called before every operation (``get``, ``put``, ``head``, ``list``, ``delete``)."""

    async def get(self, key: str, byte_range: ByteRange | None = None) -> bytes:
        await self._before("get")
        return await self._inner.get(key, byte_range)

    async def get_with_version(self, key: str) -> tuple[bytes, VersionToken]:
        await self._before("get")
        return await self._inner.get_with_version(key)

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        mode: PutMode = "overwrite",
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        await self._before("put")
        return await self._inner.put(key, data, mode, content_type=content_type, metadata=metadata)

    async def head(self, key: str) -> ObjectInfo | None:
        await self._before("head")
        return await self._inner.head(key)

    async def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        await self._before("list")
        async for info in self._inner.list_prefix(prefix):
            yield info

    async def delete_many(self, keys: Iterable[str], *, exact_count: bool = True) -> int:
        await self._before("delete")
        return await self._inner.delete_many(keys, exact_count=exact_count)

    def commit_lock(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self._inner.commit_lock()

    @property
    def read_only(self) -> bool:
        return self._inner.read_only

    @property
    def can_write_to_root(self) -> bool:
        return self._inner.can_write_to_root

    def default_settings(self) -> StorageSettings:
        return self._inner.default_settings()

    @property
    def settings(self) -> StorageSettings:
        return self._inner.settings


@final
class LatencyStorage(_Wrapper):
    """Wraps a storage and sleeps before each read or write (API.md §16).

    Parameters
    ----------
    inner
        The storage to wrap.
    write_latency_ms, read_latency_ms
        Delays before writes (put, delete) and reads (get, head, list); both can be changed
        at any time through the properties of the same names.
    """

    def __init__(self, inner: Storage, *, write_latency_ms: int = 0, read_latency_ms: int = 0) -> None:
        super().__init__(inner)
        self.write_latency_ms = write_latency_ms
        self.read_latency_ms = read_latency_ms

    async def _before(self, operation: str) -> None:
        delay = self.write_latency_ms if operation in ("put", "delete") else self.read_latency_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)

    def with_settings(self, settings: StorageSettings | None) -> LatencyStorage:
        return LatencyStorage(
            self._inner.with_settings(settings),
            write_latency_ms=self.write_latency_ms,
            read_latency_ms=self.read_latency_ms,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyStorage):
            return NotImplemented
        return (self._inner, self.write_latency_ms, self.read_latency_ms) == (
            other._inner, other.write_latency_ms, other.read_latency_ms,
        )

    def __hash__(self) -> int:
        return hash((LatencyStorage, self._inner))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_latency, (self._inner, self.write_latency_ms, self.read_latency_ms))

    def __repr__(self) -> str:
        return (
            f"icechunk.testing.LatencyStorage({self._inner!r}, write_latency_ms="
            f"{self.write_latency_ms}, read_latency_ms={self.read_latency_ms})"
        )


def _latency(inner: Storage, write_ms: int, read_ms: int) -> LatencyStorage:
    return LatencyStorage(inner, write_latency_ms=write_ms, read_latency_ms=read_ms)


class FlakyStorage(_Wrapper):
    """Fails the next ``failures`` calls of the chosen operations with a transient error,
    and retries transient errors like an object-store backend does (``settings.retries``).

    This is the storage layer's retry loop (:func:`icechunk.storage._retry.retrying`) around
    an injected fault, so tests can check that transient failures are retried with backoff
    up to ``max_tries``, and that the last failure surfaces once the tries run out.

    Parameters
    ----------
    inner
        The storage to wrap.
    failures
        How many calls fail before calls reach ``inner`` again.
    operations
        Which operations fail: any of ``get``, ``put``, ``head``, ``list``, ``delete``.
    settings
        Settings whose ``retries`` drive the retry loop (default: ``inner.settings``).
    """

    def __init__(
        self,
        inner: Storage,
        *,
        failures: int = 1,
        operations: Iterable[str] = ("get", "put", "head", "delete"),
        settings: StorageSettings | None = None,
    ) -> None:
        super().__init__(inner)
        self.remaining_failures = failures
        self.operations = frozenset(operations)
        self.attempts = 0
        self.injected = 0
        self._settings = settings
        self._lock = threading.Lock()

    @property
    def settings(self) -> StorageSettings:
        return self._inner.settings.merge(self._settings)

    async def _before(self, operation: str) -> None:
        if operation not in self.operations:
            return
        with self._lock:
            self.attempts += 1
            fail = self.remaining_failures > 0
            if fail:
                self.remaining_failures -= 1
                self.injected += 1
        if fail:
            raise TransientStorageError(f"injected transient failure of {operation}")

    async def _retried(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        async def attempt(number: int) -> T:
            await self._before(operation)
            return await call()

        return await retrying(RetryPolicy.from_settings(self.settings.retries), attempt)

    async def get(self, key: str, byte_range: ByteRange | None = None) -> bytes:
        return await self._retried("get", lambda: self._inner.get(key, byte_range))

    async def get_with_version(self, key: str) -> tuple[bytes, VersionToken]:
        return await self._retried("get", lambda: self._inner.get_with_version(key))

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        mode: PutMode = "overwrite",
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        return await self._retried(
            "put",
            lambda: self._inner.put(key, data, mode, content_type=content_type, metadata=metadata),
        )

    async def head(self, key: str) -> ObjectInfo | None:
        return await self._retried("head", lambda: self._inner.head(key))

    async def delete_many(self, keys: Iterable[str], *, exact_count: bool = True) -> int:
        keys = list(keys)
        return await self._retried(
            "delete", lambda: self._inner.delete_many(keys, exact_count=exact_count)
        )

    def with_settings(self, settings: StorageSettings | None) -> FlakyStorage:
        return FlakyStorage(
            self._inner, failures=self.remaining_failures, operations=self.operations, settings=settings
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlakyStorage):
            return NotImplemented
        return self._inner == other._inner and self.settings == other.settings

    def __hash__(self) -> int:
        return hash((FlakyStorage, self._inner))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_flaky, (self._inner, self.remaining_failures, tuple(self.operations), self._settings))

    def __repr__(self) -> str:
        return f"icechunk.testing.FlakyStorage({self._inner!r}, remaining_failures={self.remaining_failures})"


def _flaky(inner: Storage, failures: int, operations: tuple[str, ...], settings: StorageSettings | None) -> FlakyStorage:
    return FlakyStorage(inner, failures=failures, operations=operations, settings=settings)
