"""Local filesystem storage: one file per key under a root directory (POSIX only).

Write protocol (every write is atomic: readers see the old or the new bytes, never a mix):

- the new bytes go to a temp file ``.<32 hex>.tmp`` in the target's directory (a name no
  valid key can have, so listings skip it);
- ``create``: ``os.link(temp, target)``; ``EEXIST`` means the key exists (lost race);
- ``overwrite``: ``os.replace(temp, target)`` (atomic; not ordered against a concurrent
  compare-and-swap of the same key, which the engine never does);
- compare-and-swap (a :class:`VersionToken`): under the directory lock, re-read the target,
  compare its version, then ``os.replace``;
- compare-and-swap keeping a backup (every update of ``repo``): the same, but the current
  file is hard-linked under the backup key and the temp file swapped in with
  ``renameat2(RENAME_EXCHANGE)`` where the system has it (``_exchange.py`` says why).

The directory lock is ``fcntl.flock(LOCK_EX)`` on the directory's own file descriptor, so no
extra file appears in the repository and the lock also excludes other processes (and other
threads: each call opens its own descriptor).  Readers never lock.  ``flock`` is not
reliable on NFS; network filesystems are not supported.

Versions are content hashes: the ETag of an object is the hex BLAKE2b-128 of its bytes
(immune to inode reuse and coarse mtimes).  Computing one reads the file, so :meth:`head`
reports a version only for objects up to 1 MiB, an ``overwrite`` of more than 64 KiB returns
no version, and :meth:`list_prefix` reports none; use :meth:`get_with_version` to obtain a
compare-and-swap token.

Differences from the reference: its local backend defaults to
``unsafe_use_conditional_update=False`` and overwrites the ``repo`` file unconditionally,
so concurrent commits can be lost.  We report the same default settings (they get persisted
in repository configs) but *always* perform a real compare-and-swap when given a version
token.  ``fsync=True`` makes writes durable (temp file and directory are fsynced); it is off
by default, as in the reference, and costs about 3.5x on small writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from icechunk._errors import ErrorKind, InvalidInputError, NotFoundError, StorageError
from icechunk.config import StorageConcurrencySettings, StorageRetriesSettings, StorageSettings
from icechunk.storage import _inodes as inodes
from icechunk.storage._abc import ByteRange, ObjectInfo, PutMode, PutResult, Storage, VersionToken
from icechunk.storage._commit_lock import DirectoryCommitLock, unlock_and_close
from icechunk.storage._common import (
    TEMP_NAME,
    SettingsMixin,
    bad_mode,
    check_key,
    check_prefix,
    describe_settings,
)
from icechunk.storage._exchange import exchange
from icechunk.storage._ranges import resolve_range

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LocalFileSystemStorage", "content_etag"]

T = TypeVar("T")

# reads/writes bigger than this run in a worker thread (so big chunk I/O overlaps with zarr's
# codec work); smaller ones inline, because a thread hop costs 50-200 µs (feasibility.md §5)
INLINE_LIMIT = 1 << 16
# plain overwrites report a version only up to this size: chunk writes never need one, and
# hashing would cost a large share of the write
OVERWRITE_VERSION_LIMIT = 1 << 16
# head() hashes (reads) objects up to this size to report their version; bigger: version None
HEAD_VERSION_LIMIT = 1 << 20
# deletes of more keys than this run in a worker thread
INLINE_DELETES = 64

#: The reference's local-filesystem defaults (persisted in repository configs, FORMAT.md §4.4).
LOCAL_DEFAULTS = StorageSettings(
    concurrency=StorageConcurrencySettings(
        max_concurrent_requests_for_object=5, ideal_concurrent_request_size=4096
    ),
    retries=StorageRetriesSettings(max_tries=1, initial_backoff_ms=0, max_backoff_ms=0),
    unsafe_use_conditional_update=False,
    unsafe_use_metadata=False,
)

_NOT_FOUND_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)
# the filesystem makes no hard links (or no more of them): writers fall back to other means
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


def content_etag(data: bytes | bytearray | memoryview) -> str:
    """The local ETag: hex BLAKE2b-128 of the content."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _io_error(error: OSError, what: str) -> StorageError:
    return StorageError(f"{what}: {error.strerror or error} ({error.filename or ''})", ErrorKind.IO)


def _not_found(key: str) -> NotFoundError:
    return NotFoundError(f"object not found in local storage: {key!r}", ErrorKind.OBJECT_NOT_FOUND)


def _read_exact(fd: int, start: int, length: int) -> bytes:
    parts: list[bytes] = []
    while length > 0:
        chunk = os.pread(fd, length, start)
        if not chunk:  # the file shrank under us (it was replaced and we hold the old inode)
            break
        parts.append(chunk)
        start += len(chunk)
        length -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


class _DirLock:
    """``flock(LOCK_EX)`` on a directory descriptor, released on exit."""

    __slots__ = ("_fd", "_path")

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> _DirLock:
        self._fd = os.open(self._path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(self._fd)
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        unlock_and_close(self._fd)  # also where a child forked meanwhile shares the descriptor


class LocalFileSystemStorage(SettingsMixin, Storage):
    """Files under ``root``; see the module docstring for the write protocol.

    Parameters
    ----------
    path
        Root directory.  It is not created until the first write.
    settings
        Settings over :meth:`default_settings`.
    fsync
        Flush file contents and directory entries to disk on every write (default False).
    """

    def __init__(
        self, path: str | os.PathLike[str], settings: StorageSettings | None = None, *, fsync: bool = False
    ) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise StorageError("local filesystem storage needs POSIX (fcntl)", ErrorKind.STORAGE_CONFIG)
        try:
            raw: object = os.fspath(path)
        except TypeError as error:
            raise InvalidInputError(
                f"path must be a str or os.PathLike, got {type(path).__name__}", ErrorKind.STORAGE_CONFIG
            ) from error
        if not isinstance(raw, str) or not raw:
            raise InvalidInputError(f"invalid local storage path {path!r}", ErrorKind.STORAGE_CONFIG)
        self._root = os.path.realpath(os.path.abspath(os.path.expanduser(raw)))
        self._user_settings = self._check_settings(settings)
        self._fsync = bool(fsync)

    @property
    def root(self) -> str:
        """Absolute path of the root directory."""
        return self._root

    def default_settings(self) -> StorageSettings:
        return LOCAL_DEFAULTS.merge(None)

    def _path(self, key: str) -> str:
        return os.path.join(self._root, *check_key(key).split("/"))

    # ---- reads ------------------------------------------------------------------------------

    async def get(self, key: str, byte_range: ByteRange | None = None) -> bytes:
        fd, size = self._open(key)
        try:
            start, end = (0, size) if byte_range is None else resolve_range(byte_range, size)
        except BaseException:
            os.close(fd)
            raise
        if end - start > INLINE_LIMIT:
            return await asyncio.to_thread(_read_and_close, fd, start, end, key)
        return _read_and_close(fd, start, end, key)

    async def get_with_version(self, key: str) -> tuple[bytes, VersionToken]:
        fd, size = self._open(key)

        def read_and_hash() -> tuple[bytes, VersionToken]:
            data = _read_and_close(fd, 0, size, key)
            return data, VersionToken(etag=content_etag(data))

        if size > INLINE_LIMIT:
            return await asyncio.to_thread(read_and_hash)
        return read_and_hash()

    def _open(self, key: str) -> tuple[int, int]:
        """An open descriptor on a regular file and its size (the caller closes it)."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            if error.errno in _NOT_FOUND_ERRNOS:
                raise _not_found(key) from None
            raise _io_error(error, f"cannot open {key!r}") from error
        try:
            st = os.fstat(fd)
        except OSError as error:
            os.close(fd)
            raise _io_error(error, f"cannot stat {key!r}") from error
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise _not_found(key)
        return fd, st.st_size

    async def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = os.stat(path)
        except OSError as error:
            if error.errno in _NOT_FOUND_ERRNOS:
                return None
            raise _io_error(error, f"cannot stat {key!r}") from error
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > HEAD_VERSION_LIMIT:
            # existence/size checks of big snapshots and manifests must not read them
            return ObjectInfo(key, st.st_size, _mtime(st), None)
        try:
            data, version = await self.get_with_version(key)
        except NotFoundError:
            return None
        return ObjectInfo(key, len(data), _mtime(st), version)

    async def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        prefix = check_prefix(prefix)
        # start at the deepest directory that contains every match; keys come out sorted
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        async for info in self._walk(base, prefix):
            yield info

    async def _walk(self, rel_dir: str, prefix: str) -> AsyncIterator[ObjectInfo]:
        directory = os.path.join(self._root, *rel_dir.split("/")) if rel_dir else self._root
        for name, is_dir, size, mtime in await asyncio.to_thread(_scan, directory):
            key = f"{rel_dir}/{name}" if rel_dir else name
            if is_dir:
                # descend only where matches can be: key/ is under prefix or vice versa
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    async for info in self._walk(key, prefix):
                        yield info
            elif key.startswith(prefix):
                yield ObjectInfo(key, size, mtime, None)

    # ---- writes -----------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        mode: PutMode = "overwrite",
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        path = self._path(key)
        if not (mode in ("create", "overwrite") or isinstance(mode, VersionToken)):
            raise bad_mode(mode)
        return await _write(self._put, key, path, data, mode)

    async def put_fresh(self, key: str, data: bytes | bytearray | memoryview) -> None:
        await _write(self._put_fresh, key, self._path(key), data)

    def expect_writes(self, prefixes: Iterable[str]) -> None:
        for prefix in prefixes:
            if not prefix:
                inodes.serve(self._root)
                continue
            directory = os.path.join(self._root, *prefix.split("/"))
            # files are made ahead only in an existing directory, and the first commit with
            # chunks would otherwise create manifests/ itself (a new directory and its first
            # file cost 0.5-10 ms on a busy ext4, inside the commit); an empty one is harmless
            with contextlib.suppress(OSError):
                os.mkdir(directory)
            inodes.serve(directory)

    def commit_lock(self) -> DirectoryCommitLock:
        return DirectoryCommitLock(os.path.join(self._root, "snapshots"))

    async def put_with_backup(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        expected: VersionToken,
        backup_key: str,
        previous: bytes,
    ) -> PutResult:
        path, backup = self._path(key), self._path(backup_key)
        return await _write(self._put_with_backup, key, path, data, expected, backup, previous)

    def _put_with_backup(
        self, key: str, path: str, data: memoryview, expected: VersionToken, backup: str, previous: bytes
    ) -> PutResult:
        """Under the directory lock: check the version, hard-link the current file as the
        backup (no copy of its bytes), then exchange the temp file in (see ``_exchange``)."""
        directory = os.path.dirname(path)
        temp = self._write_temp(key, directory, data)
        version = VersionToken(etag=content_etag(data))

        def swap() -> bool:
            if not _has_version(path, expected):
                return False
            self._keep_copy(path, backup, previous)
            if not exchange(temp, path):
                os.replace(temp, path)
            return True

        try:
            ok = self._locked(directory, swap)
        except OSError as error:
            raise _io_error(error, f"cannot write {key!r}") from error
        finally:
            # after an exchange the temp name holds the replaced file, still linked as backup
            _unlink_quietly(temp)
        if ok and self._fsync:
            _fsync_dir(directory)
        return PutResult(ok=True, version=version) if ok else PutResult(ok=False)

    def _keep_copy(self, path: str, backup: str, previous: bytes) -> None:
        """Make ``backup`` a hard link to ``path``, or a copy of ``previous`` where links fail."""
        backup_dir = os.path.dirname(backup)
        try:
            try:
                os.link(path, backup)
            except FileNotFoundError:
                os.makedirs(backup_dir, exist_ok=True)
                os.link(path, backup)
        except OSError as error:
            if error.errno not in (*_NO_HARD_LINKS, errno.EXDEV):
                raise
            self._write_new_file(backup, backup_dir, memoryview(previous))
        if self._fsync:
            _fsync_dir(backup_dir)  # the backup is durable before the swap is

    def _put_fresh(self, key: str, path: str, data: memoryview) -> None:
        """Write straight to ``path`` (no temp file, no rename): nobody reads the key yet.

        A crash mid-write leaves a short file under a key nothing refers to, which garbage
        collection removes like any other unreachable object.
        """
        directory = os.path.dirname(path)
        try:
            self._write_new_file(path, directory, data)
        except FileExistsError:
            # the key exists (a retried write of the same object): replace it atomically
            self._put(key, path, data, "overwrite")
            return
        except OSError as error:
            raise _io_error(error, f"cannot write {key!r}") from error
        if self._fsync:
            _fsync_dir(directory)

    def _write_new_file(self, path: str, directory: str, data: memoryview) -> None:
        """Create ``path`` (never an existing file; its directory made on first use) holding
        ``data``, fsynced if asked; a failed write leaves no file behind.

        Where it can, the file is one made ahead of time (``_inodes``): filled while unnamed,
        then linked in under its name, which skips allocating an inode now.
        """
        # only small writes: they run inline on the event loop, where a commit waits for each;
        # big chunk writes run in worker threads, side by side, and the refill thread would
        # only add to their contention
        small = data.nbytes <= INLINE_LIMIT
        fd = inodes.take(directory) if small else None
        if fd is not None:
            try:
                _write_all(fd, data)
                if self._fsync:
                    os.fsync(fd)
                inodes.link(fd, path)
                return
            except (FileNotFoundError, inodes.CannotLink):
                pass  # the directory is gone, or the file cannot go there: create it below
            finally:
                os.close(fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)  # lazily: opening never creates the root
            fd = os.open(path, flags, 0o666)
        try:
            _write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(path)
            raise
        os.close(fd)
        if small:
            inodes.serve(directory)

    def _put(self, key: str, path: str, data: memoryview, mode: PutMode) -> PutResult:
        directory = os.path.dirname(path)
        temp = self._write_temp(key, directory, data)
        # big overwrites (chunks) skip the hash: it would cost ~40% of the write
        hashed = mode != "overwrite" or data.nbytes <= OVERWRITE_VERSION_LIMIT
        version = VersionToken(etag=content_etag(data)) if hashed else None
        renamed = False  # a renamed temp file is gone: no unlink to attempt
        try:
            if mode == "create":
                ok = self._link_or_fail(temp, path, directory)
            elif mode == "overwrite":
                # no lock: os.replace is atomic on its own, and the engine never overwrites a
                # key it also compare-and-swaps (chunks, manifests, snapshots are write-once)
                os.replace(temp, path)
                ok = renamed = True
            else:
                ok = renamed = self._locked(directory, lambda: self._swap_if(path, temp, mode))
        except OSError as error:
            raise _io_error(error, f"cannot write {key!r}") from error
        finally:
            if not renamed:
                _unlink_quietly(temp)
        if ok and self._fsync:
            _fsync_dir(directory)
        return PutResult(ok=True, version=version) if ok else PutResult(ok=False)

    def _write_temp(self, key: str, directory: str, data: memoryview) -> str:
        """A new temp file in ``directory`` holding ``data`` (the next version of ``key``)."""
        temp = os.path.join(directory, f".{uuid.uuid4().hex}.tmp")
        try:
            self._write_new_file(temp, directory, data)
        except OSError as error:
            raise _io_error(error, f"cannot write {key!r}") from error
        return temp

    def _link_or_fail(self, temp: str, path: str, directory: str) -> bool:
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        except OSError as error:
            if error.errno not in _NO_HARD_LINKS:
                raise
        # no hard links here: fall back to check-then-replace under the directory lock,
        # which every writer of this storage honours

        def create_locked() -> bool:
            if os.path.lexists(path):
                return False
            os.replace(temp, path)
            return True

        return self._locked(directory, create_locked)

    def _swap_if(self, path: str, temp: str, expected: VersionToken) -> bool:
        if not _has_version(path, expected):
            return False
        os.replace(temp, path)
        return True

    def _locked(self, directory: str, action: Callable[[], T]) -> T:
        with _DirLock(directory):
            return action()

    async def delete_many(self, keys: Iterable[str], *, exact_count: bool = True) -> int:
        paths = [(k, self._path(k)) for k in keys]
        if len(paths) > INLINE_DELETES:
            return await asyncio.to_thread(self._delete, paths)
        return self._delete(paths)

    def _delete(self, paths: list[tuple[str, str]]) -> int:
        by_dir: dict[str, list[tuple[str, str]]] = {}
        for key, path in paths:
            by_dir.setdefault(os.path.dirname(path), []).append((key, path))
        deleted = 0
        for directory, items in by_dir.items():
            try:
                with _DirLock(directory):
                    removed = _unlink_all(items)
            except OSError as error:  # only the lock raises OSError: no such directory
                if error.errno in _NOT_FOUND_ERRNOS:
                    continue
                raise _io_error(error, "cannot lock directory for delete") from error
            if self._fsync and removed:
                _fsync_dir(directory)
            deleted += removed
        return deleted

    def with_settings(self, settings: StorageSettings | None) -> LocalFileSystemStorage:
        return LocalFileSystemStorage(self._root, settings, fsync=self._fsync)

    # ---- identity, pickling, repr -----------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalFileSystemStorage):
            return NotImplemented
        return (self._root, self._fsync, self.settings) == (other._root, other._fsync, other.settings)

    def __hash__(self) -> int:
        return hash((LocalFileSystemStorage, self._root))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._root, self._user_settings, self._fsync))

    def __repr__(self) -> str:
        extra = ", fsync=True" if self._fsync else ""
        return f"icechunk.storage.LocalFileSystemStorage(path={self._root!r}{extra}{describe_settings(self)})"

    __str__ = __repr__


def _restore(root: str, settings: StorageSettings | None, fsync: bool) -> LocalFileSystemStorage:
    return LocalFileSystemStorage(root, settings, fsync=fsync)


async def _write(
    write: Callable[..., T], key: str, path: str, data: bytes | bytearray | memoryview, *args: Any
) -> T:
    """``write(key, path, view, *args)`` on a byte view of ``data``: inline for small writes,
    in a worker thread for big ones (so big chunk I/O overlaps with zarr's codec work)."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    if view.nbytes > INLINE_LIMIT:
        return await asyncio.to_thread(write, key, path, view, *args)
    return write(key, path, view, *args)


def _has_version(path: str, expected: VersionToken) -> bool:
    """Whether the file at ``path`` has version ``expected`` (a missing file never has)."""
    try:
        with open(path, "rb") as current:
            etag = content_etag(current.read())
    except OSError as error:
        if error.errno in _NOT_FOUND_ERRNOS:
            return False
        raise
    return expected.etag is not None and etag == expected.etag


def _read_and_close(fd: int, start: int, end: int, key: str) -> bytes:
    try:
        return _read_exact(fd, start, end - start) if end > start else b""
    except OSError as error:
        raise _io_error(error, f"cannot read {key!r}") from error
    finally:
        os.close(fd)


def _unlink_all(items: list[tuple[str, str]]) -> int:
    removed = 0
    for key, path in items:
        try:
            os.unlink(path)
            removed += 1
        except OSError as error:
            if error.errno not in _NOT_FOUND_ERRNOS:
                raise _io_error(error, f"cannot delete {key!r}") from error
    return removed


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, UTC)


def _scan(directory: str) -> list[tuple[str, bool, int, datetime | None]]:
    """Sorted ``(name, is_dir, size, mtime)`` of a directory; temp files skipped."""
    out: list[tuple[str, bool, int, datetime | None]] = []
    try:
        iterator = os.scandir(directory)
    except OSError as error:
        if error.errno in _NOT_FOUND_ERRNOS:
            return out
        raise _io_error(error, "cannot list directory") from error
    with iterator:
        for entry in iterator:
            if TEMP_NAME.match(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    out.append((entry.name, True, 0, None))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out.append((entry.name, False, st.st_size, _mtime(st)))
            except FileNotFoundError:
                continue  # deleted while we listed
    # a directory sorts as "name/" so that a depth-first walk yields keys in byte order
    out.sort(key=lambda item: (item[0] + "/" if item[1] else item[0]).encode())
    return out


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
