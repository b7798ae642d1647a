"""Linux libc calls that ``os`` does not offer, through ctypes (``renameat2``, ``linkat``)."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["AT_FDCWD", "libc_function"]

AT_FDCWD = -100
"""The ``dirfd`` that makes a ``*at`` call resolve relative paths from the working directory."""


def libc_function(name: str, argtypes: list[Any]) -> Callable[..., int] | None:
    """libc's ``name`` returning a C int, with ``errno`` kept for ``ctypes.get_errno()``; None
    off Linux or where this libc lacks it (callers then fall back to portable calls)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]
