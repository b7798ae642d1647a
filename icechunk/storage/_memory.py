"""In-memory storage: a dict of bytes with a version counter (tests, scratch repositories).

Each :func:`in_memory_storage` call makes an independent store.  Compare-and-swap runs under
a ``threading.Lock`` that is never held across an ``await``, so one instance may be used from
several threads and event loops.

Pickling: the pickle carries the store's identity and a copy of its current contents.
Unpickling in the process that still holds the original gives a handle on the *same* live
data; unpickling elsewhere (another process) gives an independent copy of the contents at
pickling time.  Both compare equal to the original (equality is identity of the store plus
settings).
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from icechunk._errors import ErrorKind, NotFoundError
from icechunk.config import StorageSettings
from icechunk.storage._abc import (
    ByteRange,
    ObjectInfo,
    PutMode,
    PutResult,
    Storage,
    VersionToken,
)
from icechunk.storage._common import (
    SettingsMixin,
    bad_mode,
    check_key,
    check_prefix,
    describe_settings,
)
from icechunk.storage._ranges import resolve_range

__all__ = ["MemoryStorage"]


@dataclass(frozen=True, slots=True)
class _Object:
    data: bytes
    generation: int
    created_at: datetime


class _MemoryData:
    """The shared state behind every handle on one in-memory store."""

    __slots__ = ("__weakref__", "counter", "lock", "objects")

    def __init__(self, objects: dict[str, _Object] | None = None, counter: int = 0) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, _Object] = objects or {}
        self.counter = counter

    def next_generation(self) -> int:
        self.counter += 1
        return self.counter


# live stores of this process by identity, so that unpickling here re-attaches to them
_LIVE: weakref.WeakValueDictionary[str, _MemoryData] = weakref.WeakValueDictionary()
_LIVE_LOCK = threading.Lock()


def _token(obj: _Object) -> VersionToken:
    return VersionToken(etag=str(obj.generation))


def _not_found(key: str) -> NotFoundError:
    return NotFoundError(f"object not found in memory storage: {key!r}", ErrorKind.OBJECT_NOT_FOUND)


class MemoryStorage(SettingsMixin, Storage):
    """Volatile storage in a dict; see the module docstring for pickling semantics."""

    def __init__(
        self,
        settings: StorageSettings | None = None,
        *,
        _data: _MemoryData | None = None,
        _ident: str | None = None,
    ) -> None:
        self._user_settings = self._check_settings(settings)
        self._ident = _ident or uuid.uuid4().hex
        if _data is None:
            _data = _MemoryData()
            with _LIVE_LOCK:
                _LIVE[self._ident] = _data
        self._data = _data

    # docstring inherited
    async def get(self, key: str, byte_range: ByteRange | None = None) -> bytes:
        check_key(key)
        obj = self._data.objects.get(key)  # a dict read is atomic; no lock needed
        if obj is None:
            raise _not_found(key)
        if byte_range is None:
            return obj.data
        start, end = resolve_range(byte_range, len(obj.data))
        return obj.data[start:end]

    async def get_with_version(self, key: str) -> tuple[bytes, VersionToken]:
        check_key(key)
        obj = self._data.objects.get(key)
        if obj is None:
            raise _not_found(key)
        return obj.data, _token(obj)

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        mode: PutMode = "overwrite",
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        check_key(key)
        payload = bytes(data)
        state = self._data
        with state.lock:
            current = state.objects.get(key)
            if mode == "create":
                if current is not None:
                    return PutResult(ok=False)
            elif isinstance(mode, VersionToken):
                if current is None or _token(current) != mode:
                    return PutResult(ok=False)
            elif mode != "overwrite":
                raise bad_mode(mode)
            obj = _Object(payload, state.next_generation(), datetime.now(UTC))
            state.objects[key] = obj
        return PutResult(ok=True, version=_token(obj))

    async def head(self, key: str) -> ObjectInfo | None:
        check_key(key)
        obj = self._data.objects.get(key)
        if obj is None:
            return None
        return ObjectInfo(key, len(obj.data), obj.created_at, _token(obj))

    async def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        prefix = check_prefix(prefix)
        with self._data.lock:
            items = [(k, o) for k, o in self._data.objects.items() if k.startswith(prefix)]
        for key, obj in sorted(items, key=lambda item: item[0]):
            yield ObjectInfo(key, len(obj.data), obj.created_at, _token(obj))

    async def delete_many(self, keys: Iterable[str], *, exact_count: bool = True) -> int:
        keys = [check_key(k) for k in keys]
        deleted = 0
        with self._data.lock:
            for key in keys:
                if self._data.objects.pop(key, None) is not None:
                    deleted += 1
        return deleted

    def with_settings(self, settings: StorageSettings | None) -> MemoryStorage:
        return MemoryStorage(settings, _data=self._data, _ident=self._ident)

    # ---- identity, pickling, repr -----------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryStorage):
            return NotImplemented
        return self._ident == other._ident and self.settings == other.settings

    def __hash__(self) -> int:
        return hash((MemoryStorage, self._ident))

    def __reduce__(self) -> tuple[Any, ...]:
        with self._data.lock:
            objects = dict(self._data.objects)
            counter = self._data.counter
        return (_restore, (self._ident, objects, counter, self._user_settings))

    def __repr__(self) -> str:
        return (
            f"icechunk.storage.MemoryStorage(id={self._ident[:8]!r}, "
            f"objects={len(self._data.objects)}{describe_settings(self)})"
        )

    __str__ = __repr__


def _restore(
    ident: str, objects: dict[str, _Object], counter: int, settings: StorageSettings | None
) -> MemoryStorage:
    with _LIVE_LOCK:
        data = _LIVE.get(ident)
        if data is None:
            data = _MemoryData(dict(objects), counter)
            _LIVE[ident] = data
    return MemoryStorage(settings, _data=data, _ident=ident)
