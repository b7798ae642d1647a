"""Tree-merge of the forks that dask tasks wrote into, built on ``dask.array.reduction``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypeVar, cast

import numpy as np

from icechunk.distributed import extract_session, merge_sessions
from icechunk.session import ForkSession

__all__ = ["SimpleGraph", "computing_meta", "merge_sessions_array_kwargs", "session_merge_reduction"]

SimpleGraph: TypeAlias = Mapping[tuple[str, int], tuple[Any, ...]]

F = TypeVar("F", bound=Callable[..., Any])


def computing_meta(func: F) -> F:
    """Decorate a reduction function so dask's meta inference never runs it.

    While inferring the output type, dask calls reduction functions with
    ``computing_meta=True`` on an empty placeholder; the wrapper answers with a one-element
    object array instead (sessions cannot be built from placeholders).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, computing_meta: bool = False, **kwargs: Any) -> Any:
        if computing_meta:
            return np.array([object()], dtype=object)
        return func(*args, **kwargs)

    return cast("F", wrapper)


def _unique(sessions: list[Any]) -> list[Any]:
    """Drop repeated objects: tasks sharing one unpickled fork return the same session."""
    seen: set[int] = set()
    out = []
    for item in sessions:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


def _flatten(items: Any) -> list[Any]:
    if isinstance(items, (list, tuple)):
        return [leaf for item in items for leaf in _flatten(item)]
    return [items]


@computing_meta
def merge_sessions_array_kwargs(*sessions: Any, axis: Any = None, keepdims: Any = None) -> ForkSession:
    """:func:`icechunk.distributed.merge_sessions` with dask's ``axis``/``keepdims`` ignored.

    The same fork object may arrive several times (threads, or tasks on one worker sharing
    an unpickled target); each distinct fork is merged once.
    """
    return merge_sessions(*_unique(_flatten(sessions)))


@computing_meta
def _extract_session(zarray: Any, axis: Any = None, keepdims: Any = None) -> Any:
    return extract_session(zarray, axis=axis, keepdims=keepdims)


def session_merge_reduction(arrays: Any, *, split_every: int | None, **store_kwargs: Any) -> ForkSession:
    """Run the stored arrays' writes and merge every task's fork into one ForkSession.

    Parameters
    ----------
    arrays
        One dask array or a list of them, as returned by ``dask.array.store(...,
        compute=False, return_stored=True, load_stored=False)``: each block evaluates to the
        zarr array (on a fork's store) that the block was written into.
    split_every
        Fan-in of the tree reduction (dask's default when None).
    **store_kwargs
        Passed to ``dask.compute`` (e.g. ``scheduler``).

    Returns
    -------
    ForkSession
        A fork holding the writes of every task; merge it into the parent session.
    """
    import dask
    import dask.array as da

    if not isinstance(arrays, (list, tuple)):
        arrays = [arrays]
    meta = np.array([object()], dtype=object)
    reductions = [
        da.reduction(  # type: ignore[no-untyped-call]
            array,
            name="ice-changeset",
            chunk=_extract_session,
            aggregate=merge_sessions_array_kwargs,
            split_every=split_every,
            concatenate=False,
            keepdims=False,
            dtype=object,
            meta=meta,
        )
        for array in arrays
    ]
    forks = dask.compute(*reductions, **store_kwargs)  # type: ignore[attr-defined,no-untyped-call]
    return merge_sessions_array_kwargs(*forks)
