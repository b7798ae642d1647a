"""Store dask arrays into Icechunk: every task writes into a fork, the forks are tree-merged.

Use :func:`store_dask` instead of ``dask.array.store`` for targets on an Icechunk session;
``Dataset`` users want :func:`icechunk.xarray.to_icechunk`, which calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from icechunk.dask._reduce import (
    SimpleGraph,
    computing_meta,
    merge_sessions_array_kwargs,
    session_merge_reduction,
)
from icechunk.session import ForkSession

__all__ = [
    "SimpleGraph",
    "computing_meta",
    "merge_sessions_array_kwargs",
    "session_merge_reduction",
    "store_dask",
]

MIN_DASK_VERSION = "2025.2.0"
_RESERVED = ("compute", "return_stored", "load_stored", "lock")


def _check_dask_version() -> None:
    import dask
    from packaging.version import Version

    found = str(getattr(dask, "__version__", "0"))
    if Version(found) < Version(MIN_DASK_VERSION):
        raise ValueError(f"icechunk.dask needs dask >= {MIN_DASK_VERSION}, found dask {found}")


def _fork_of(target: Any) -> ForkSession | None:
    """The ForkSession behind a zarr array target (None for other kinds of targets)."""
    session = getattr(getattr(target, "store", None), "session", None)
    if session is None:
        return None
    if not isinstance(session, ForkSession):
        raise ValueError(
            "store_dask writes into forks: open each target on `fork.store` for a "
            f"`fork = session.fork()` (got a target on a {type(session).__name__}), then "
            "`session.merge(result)`; or use icechunk.xarray.to_icechunk"
        )
    return session


def _shares_memory(sources: list[Any], store_kwargs: dict[str, Any]) -> bool:
    """True when the tasks will run in this process on the very objects of the graph."""
    from dask import local, threaded
    from dask.base import get_scheduler

    get = get_scheduler(scheduler=store_kwargs.get("scheduler"), collections=sources)  # type: ignore[no-untyped-call]
    return get is threaded.get or get is local.get_sync


def store_dask(
    *,
    sources: list[Any],
    targets: list[Any],
    regions: Sequence[tuple[slice, ...] | None] | None = None,
    split_every: int | None = None,
    **store_kwargs: Any,
) -> ForkSession:
    """Write dask arrays into zarr arrays opened on a ForkSession's store; return the merged fork.

    The write runs now, as ``dask.array.store(..., compute=False, return_stored=True,
    load_stored=False, lock=False)`` followed by a tree reduction that collects the fork
    each task wrote into (see :func:`session_merge_reduction`).  On schedulers that run the
    tasks in this process on the graph's own objects (threads, synchronous) every task writes
    into the targets' fork itself, so the reduction is skipped and the fork is returned.

    Parameters
    ----------
    sources
        Dask arrays to write.
    targets
        Zarr arrays, one per source, opened on ``fork.store`` for a ``fork = session.fork()``.
    regions
        Optional region (tuple of slices) of each target to write into.
    split_every
        Fan-in of the merge tree.
    **store_kwargs
        Passed to ``dask.compute`` (e.g. ``scheduler``).  ``compute``, ``return_stored``,
        ``load_stored`` and ``lock`` are set by this function and may not be given.

    Returns
    -------
    ForkSession
        Every task's writes; ``session.merge(result)`` and then commit ``session``.

    Raises
    ------
    ValueError
        With dask older than 2025.2.0, if a reserved keyword is passed, or if a target is
        not opened on a ForkSession's store.
    """
    _check_dask_version()
    reserved = sorted(k for k in _RESERVED if k in store_kwargs)
    if reserved:
        raise ValueError(
            f"store_dask sets {', '.join(_RESERVED)} itself; do not pass {', '.join(reserved)}"
        )
    if not sources:
        raise ValueError("store_dask needs at least one source array (and its target)")
    import dask.array as da

    forks = [f for f in (_fork_of(t) for t in targets) if f is not None]
    if forks and len(forks) == len(targets) and _shares_memory(list(sources), store_kwargs):
        da.store(sources, targets, regions=cast("Any", regions), lock=False, compute=True, **store_kwargs)
        return merge_sessions_array_kwargs(*forks)

    stored = da.store(
        sources,
        targets,
        regions=cast("Any", regions),
        compute=False,
        return_stored=True,
        load_stored=False,
        lock=False,
    )
    if not isinstance(stored, (list, tuple)):
        stored = [stored]
    return session_merge_reduction(list(stored), split_every=split_every, **store_kwargs)
