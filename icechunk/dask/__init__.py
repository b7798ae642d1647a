"""Store dask arrays into Icechunk: every task writes into a fork, the forks are tree-merged.

Use :func:`store_dask` instead of ``dask.array.store`` for targets on an Icechunk session;
``Dataset`` users want :func:`icechunk.xarray.to_icechunk`, which calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from icechunk.dask._reduce import (
    SimpleGraph,
    computing_meta,
    merge_sessions_array_kwargs,
    session_merge_reduction,
)

if TYPE_CHECKING:
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

    if Version(dask.__version__) < Version(MIN_DASK_VERSION):
        raise ValueError(
            f"icechunk.dask needs dask >= {MIN_DASK_VERSION}, found dask {dask.__version__}"
        )


def store_dask(
    *,
    sources: list[Any],
    targets: list[Any],
    regions: list[tuple[slice, ...] | None] | None = None,
    split_every: int | None = None,
    **store_kwargs: Any,
) -> ForkSession:
    """Write dask arrays into zarr arrays opened on a ForkSession's store; return the merged fork.

    The write runs now, as ``dask.array.store(..., compute=False, return_stored=True,
    load_stored=False, lock=False)`` followed by a tree reduction that collects the fork
    each task wrote into (see :func:`session_merge_reduction`).

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
        With dask older than 2025.2.0, or if a reserved keyword is passed.
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

    stored = da.store(
        sources,
        targets,
        regions=regions,
        compute=False,
        return_stored=True,
        load_stored=False,
        lock=False,
    )
    if not isinstance(stored, (list, tuple)):
        stored = [stored]
    return session_merge_reduction(list(stored), split_every=split_every, **store_kwargs)
