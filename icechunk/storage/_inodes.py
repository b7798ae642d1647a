"""Unnamed files made ahead of time, so that local writes skip allocating an inode.

Why: creating a file on ext4 costs 0.2-0.6 ms on the machines we measure on, and nearly all of
it is allocating the inode: ``open(O_TMPFILE)`` (an unnamed file) costs the same, while giving
an already allocated file its name with ``linkat`` costs 0.02-0.05 ms.  A commit creates four
files (manifest, snapshot, transaction log, the repo object's temp file), one after the
other, so a background thread keeps a few unnamed files open for each directory written to
recently, and a write takes one, fills it and links it in under its name.

The thread refills when a session opens (``serve``) or a directory runs out, not after
every write, and it runs under ``SCHED_IDLE``: refilling while a commit runs took CPU and
the GIL from it (four processes committing to one branch on two cores spent ~20% longer
holding the commit lock, waiting to run).

Unnamed files disappear when closed or when the process ends: nothing is left behind for a
listing, a garbage collection or an ``rmtree`` to find, even after a crash.  They do keep the
filesystem busy while held (at most ``MAX_DIRECTORIES * PER_DIRECTORY`` descriptors per
process), so a filesystem written to cannot be unmounted until the process ends.  Linux only
(the link goes through ``/proc/self/fd``); elsewhere, where ``/proc`` is missing, or in a
directory whose filesystem refuses ``O_TMPFILE``, files are created as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections import OrderedDict

from icechunk.storage._libc import AT_FDCWD, libc_function

__all__ = ["CannotLink", "link", "serve", "take"]

PER_DIRECTORY = 2
"""Unnamed files kept ready per directory: a commit takes one from each of its directories
(one per changed array from manifests/; beyond two, those are created as before), and every
file made for a new repository or left unused at exit is work done for nothing."""
MAX_DIRECTORIES = 16
"""Directories served at once; the least recently written to is dropped beyond this."""

_AT_SYMLINK_FOLLOW = 0x400


class CannotLink(Exception):
    """The unnamed file cannot be linked there (another filesystem, no support): create."""


# unnamed files need O_TMPFILE, and linking one in goes through its /proc/self/fd entry
_LINKAT = (
    libc_function("linkat", [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int])
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
    else None
)


def link(fd: int, path: str) -> None:
    """Give the unnamed file ``fd`` the name ``path`` (it must not exist).

    Raises
    ------
    FileExistsError
        ``path`` exists.
    FileNotFoundError
        Its directory does not exist (any more).
    CannotLink
        The file cannot be linked there; create the file the usual way instead.
    OSError
        Any other failure.
    """
    assert _LINKAT is not None  # take() hands out no file otherwise
    if _LINKAT(AT_FDCWD, b"/proc/self/fd/%d" % fd, AT_FDCWD, os.fsencode(path), _AT_SYMLINK_FOLLOW) == 0:
        return
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise FileExistsError(code, os.strerror(code), path)
    if code == errno.ENOENT:
        raise FileNotFoundError(code, os.strerror(code), path)
    if code in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
        raise CannotLink(os.strerror(code))
    raise OSError(code, os.strerror(code), path)


class _Pool:
    """Unnamed files per directory, refilled by one daemon thread."""

    def __init__(self) -> None:
        self.changed = threading.Condition(threading.Lock())
        self.spare: OrderedDict[str, list[int]] = OrderedDict()
        self.refused: set[str] = set()  # directories whose filesystem has no O_TMPFILE
        self.thread: threading.Thread | None = None

    def take(self, directory: str) -> int | None:
        """An unnamed file in ``directory`` ready to be written, or None (create one)."""
        with self.changed:
            fds = self.spare.get(directory)
            if fds is None:
                return None
            self.spare.move_to_end(directory)
            fd = fds.pop() if fds else None
            if not fds:
                # only when nothing is left: a commit takes one file per directory, and
                # refilling while it runs would compete with it for the CPU and the GIL
                # (``serve``, called when the next session opens, refills the rest)
                self._wake()
            return fd

    def serve(self, directory: str) -> None:
        """Keep unnamed files ready for ``directory`` from now on (one that does not exist is
    dropped again by the refill thread)."""
        with self.changed:
            if directory in self.spare:
                self.spare.move_to_end(directory)
                if len(self.spare[directory]) < PER_DIRECTORY:
                    self._wake()
                return
            if directory in self.refused:
                return
            self.spare[directory] = []
            while len(self.spare) > MAX_DIRECTORIES:
                _close_all(self.spare.popitem(last=False)[1])
            self._wake()

    def _wake(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._refill, name="icechunk-inodes", daemon=True)
            self.thread.start()
        self.changed.notify()

    def _wanted(self) -> list[str]:
        return [d for d, fds in self.spare.items() if len(fds) < PER_DIRECTORY]

    def _refill(self) -> None:
        _yield_to_everything()
        try:
            self._refill_forever()
        finally:  # never expected; should it happen, the next take() starts a new thread
            with self.changed:
                self.thread = None

    def _refill_forever(self) -> None:
        while True:
            with self.changed:
                while not (wanted := self._wanted()):
                    self.changed.wait()
            for directory in wanted:
                try:
                    fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
                except OSError as error:
                    with self.changed:  # gone, full, or refused: stop serving it for now
                        _close_all(self.spare.pop(directory, []))
                        if error.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                            self.refused.add(directory)
                    continue
                with self.changed:
                    fds = self.spare.get(directory)
                    if fds is not None and len(fds) < PER_DIRECTORY:
                        fds.append(fd)
                        fd = -1
                if fd >= 0:  # dropped meanwhile
                    os.close(fd)


def _yield_to_everything() -> None:
    """Run the calling thread only when a CPU would otherwise idle (``SCHED_IDLE``).

    Why: the refill can still overlap writes (a directory that ran out, a session opened
    while another commits), and on a busy machine (more runnable threads than cores, e.g.
    several processes committing to one branch) it would take CPU from the writes it is
    meant to speed up; an unfilled pool only means creating the file as before.  Where
    ``SCHED_IDLE`` is unavailable, nice 19 (the lowest priority) is the fallback.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread on Linux
        return
    except (AttributeError, OSError):
        pass
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


_POOL = _Pool()


def take(directory: str) -> int | None:
    """An unnamed file, open for writing, in ``directory``'s filesystem; None if there is none
    ready (or the system cannot do this), in which case the caller creates its file and then
    calls :func:`serve`."""
    if _LINKAT is None:
        return None
    return _POOL.take(directory)


def serve(directory: str) -> None:
    """Have unnamed files made ahead for ``directory`` (served until it is found missing or
    evicted as the least recently used)."""
    if _LINKAT is not None:
        _POOL.serve(directory)


def _after_fork_in_child() -> None:
    # the parent's unnamed files must not be written twice: the child starts its own pool
    global _POOL
    old, _POOL = _POOL, _Pool()
    for fds in old.spare.values():
        _close_all(fds)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
