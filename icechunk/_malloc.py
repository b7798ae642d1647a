"""Keep glibc's malloc from handing chunk-sized buffers back to the kernel after every use.

Writing or reading a Zarr chunk allocates a few buffers of the chunk's size (the chunk, its
encoded bytes, the bytes read).  glibc serves blocks above ``M_MMAP_THRESHOLD`` with a fresh
``mmap`` and gives heap memory back once more than ``M_TRIM_THRESHOLD`` sits free at the top.
Its defaults adapt upward after a large free, but only to one block's size (trim: twice that),
and a chunk plus its encoded copy already reach that, so every chunk's buffers come from fresh
pages: one page fault per 4 KiB.  On the VMs we measured, a fault costs ~2 µs, ~0.5 ms per
MiB; the faults were about a fifth of the CPU time of writing 1 MiB chunks, and a 10 MB
allocate-and-copy loop took 4x the CPU with the defaults (``docs/architecture.md``, "Memory").

``tune_for_chunk_buffers`` raises both thresholds once, the first time an ``IcechunkStore``
is made, so buffers up to ``MMAP_THRESHOLD`` are reused from the heap.  The cost is memory a
process keeps after using it: up to ``TRIM_THRESHOLD`` free at the top of each malloc arena.
It does nothing off glibc, when the user tuned malloc through its ``MALLOC_*_`` environment
variables or ``glibc.malloc.*`` entries of ``GLIBC_TUNABLES``, or when
``ICECHUNK_MALLOC_TUNING=0``.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

from icechunk.storage._libc import libc_function

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_for_chunk_buffers"]

MMAP_THRESHOLD = 16 * 2**20
"""Blocks up to this size come from the heap, not from their own ``mmap``."""
TRIM_THRESHOLD = 64 * 2**20
"""Free memory at the top of a heap is given back to the kernel only above this."""

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)

_tuned: bool | None = None  # None: not tried yet


def tune_for_chunk_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds, once per process; whether they were raised."""
    global _tuned
    if _tuned is None:
        _tuned = _tune()
    return _tuned


def _tune() -> bool:
    if os.environ.get("ICECHUNK_MALLOC_TUNING", "1") == "0":
        return False
    if _user_tuned_malloc(os.environ):
        return False  # the user chose; glibc has applied it
    if not _is_glibc():
        return False
    mallopt = libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    # trim first: raising the mmap threshold alone would let heaps shrink on every free
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )


def _user_tuned_malloc(environ: Mapping[str, str]) -> bool:
    """Whether malloc settings were given through the environment, either way glibc reads."""
    if any(name in environ for name in _USER_SETTINGS):
        return True
    # GLIBC_TUNABLES="glibc.malloc.trim_threshold=...:glibc.pthread.x=..." (colon-separated)
    tunables = environ.get("GLIBC_TUNABLES", "")
    return any(item.strip().startswith("glibc.malloc.") for item in tunables.split(":"))


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None  # musl and others lack it
    except (ValueError, OSError):
        return False
