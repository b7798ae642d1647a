"""Helpers for distributed writes: pull the session out of a zarr array, merge forks.

Imports neither dask nor distributed, so any scheduler (or none) can use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from icechunk.session import ForkSession, Session

__all__ = ["extract_session", "merge_sessions"]


def extract_session(zarray: Any, axis: Any = None, keepdims: Any = None) -> Session:
    """The session behind a zarr array opened on an ``IcechunkStore``.

    ``axis`` and ``keepdims`` are ignored; they let dask use this as a reduction chunk function.
    """
    return zarray.store.session  # type: ignore[no-any-return]


def _flatten(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def merge_sessions(*sessions: ForkSession | list[ForkSession] | list[list[ForkSession]]) -> ForkSession:
    """Merge forks (nested lists are flattened) into the first one and return it.

    Raises
    ------
    TypeError
        If an element is not a :class:`ForkSession`.
    """
    flat = _flatten(sessions)
    for item in flat:
        if not isinstance(item, ForkSession):
            raise TypeError(
                f"merge_sessions only merges ForkSession objects. Received '{type(item).__name__}'. "
                "To merge forks into a writable session use `Session.merge(*forks)`."
            )
    if not flat:
        raise ValueError("merge_sessions needs at least one ForkSession")
    first: ForkSession = flat[0]
    if len(flat) > 1:
        first.merge(*flat[1:])
    return first
