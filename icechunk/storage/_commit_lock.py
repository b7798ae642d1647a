"""The local backend's commit lock: ``flock`` on the repository's ``snapshots/`` directory.

Writers that commit with rebase to one branch of a local repository hold it from reading the
branch tip to updating the branch (``Storage.commit_lock``).  Without it, four processes
committing to one branch lose about every other race and redo their manifests and
snapshots after a jittered sleep; with it they take turns, and the work done while waiting
(opening sessions, writing chunks) still overlaps.

Why ``snapshots/``: it exists in every repository (spec 1 and 2), no key is ever written to
it under the directory lock that compare-and-swaps take (snapshots are written once, under
fresh keys), so holding it cannot deadlock against our own compare-and-swap of ``repo``,
and no extra file appears in the repository.

A waiter blocks in a daemon thread of its own (only when the lock is taken, so an
uncontended commit pays one non-blocking ``flock``).  After :data:`WAIT_LIMIT_S` it goes on
without the lock (a stuck holder must not stall every other writer; the compare-and-swap
keeps the commit safe either way), and so does a cancelled waiter; the thread then releases
the lock as soon as it gets it.  The thread is a daemon so that a process whose waiter gave
up can still exit while another process holds the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows, where local storage refuses to open
    fcntl = None  # type: ignore[assignment]

__all__ = ["WAIT_LIMIT_S", "DirectoryCommitLock", "unlock_and_close"]

WAIT_LIMIT_S = 5.0
"""Longest wait for the lock before committing without it."""


class DirectoryCommitLock:
    """``async with`` holds ``flock(LOCK_EX)`` on ``directory`` (created if missing)."""

    __slots__ = ("_directory", "_fd")

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._fd = -1

    async def __aenter__(self) -> DirectoryCommitLock:
        fd = self._open()
        if fd < 0:
            return self  # no place to lock (a read-only location): go on without
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await self._wait(fd)
            return self
        except OSError:
            os.close(fd)  # flock unsupported here: go on without
            return self
        self._fd = fd
        return self

    async def _wait(self, fd: int) -> None:
        """Block for the lock in a daemon thread, at most :data:`WAIT_LIMIT_S`."""
        waiter = _Waiter(fd, asyncio.get_running_loop())
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), WAIT_LIMIT_S)
        except BaseException as error:
            waiter.abandon()  # whoever ends up with the descriptor closes it
            if isinstance(error, (TimeoutError, OSError)):
                return  # go on without the lock
            raise
        self._fd = fd

    def _open(self) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        try:
            try:
                return os.open(self._directory, flags)
            except FileNotFoundError:
                os.makedirs(self._directory, exist_ok=True)
                return os.open(self._directory, flags)
        except OSError:
            return -1

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd >= 0:
            unlock_and_close(self._fd)
            self._fd = -1


class _Waiter:
    """``flock(LOCK_EX)`` on ``fd`` in a daemon thread; ``granted`` resolves in ``loop``.

    Exactly one side closes ``fd`` when the waiting coroutine gives up: the thread, if it
    gets the lock afterwards; the delivery callback, if the grant was already on its way; or
    :meth:`abandon` itself, if the grant arrived just before the coroutine gave up.
    """

    __slots__ = ("_abandoned", "_fd", "_loop", "_mutex", "granted")

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._mutex = threading.Lock()
        self._abandoned = False
        self.granted: asyncio.Future[None] = loop.create_future()
        threading.Thread(target=self._block, name="icechunk-commit-lock", daemon=True).start()

    def _block(self) -> None:
        error: OSError | None = None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            error = exc
        with self._mutex:
            if not self._abandoned:
                try:
                    self._loop.call_soon_threadsafe(self._deliver, error)
                    return
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass
        unlock_and_close(self._fd)

    def _deliver(self, error: OSError | None) -> None:
        # runs in the loop, so it cannot interleave with abandon()
        if self._abandoned:
            unlock_and_close(self._fd)
        elif error is not None:
            os.close(self._fd)
            self.granted.set_exception(error)
        else:
            self.granted.set_result(None)

    def abandon(self) -> None:
        """The coroutine stopped waiting (time limit, cancellation or a failed ``flock``)."""
        with self._mutex:
            self._abandoned = True
        granted = self.granted
        if granted.done() and granted.exception() is None:
            unlock_and_close(self._fd)  # granted just as the coroutine gave up: release it here


def unlock_and_close(fd: int) -> None:
    """Unlock, then close: an explicit unlock frees the lock even where a forked child still
    shares the descriptor (closing alone would leave it held until the child exits)."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)
