"""Write xarray objects into an Icechunk session, in-memory or dask-backed, on any scheduler.

:func:`to_icechunk` is ``Dataset.to_zarr`` for Icechunk: metadata and numpy-backed values are
written straight into the session; dask-backed values are written by the dask tasks into
forks of the session, tree-merged and merged back, so the write also works when the tasks run
in other processes (``dask.distributed``).  Reading needs nothing special:
``xr.open_zarr(session.store, consolidated=False)``, or ``xr.open_dataset(path,
engine="icechunk", branch=...)`` (see :mod:`icechunk.xarray._backend`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping
from typing import Any, Literal

import xarray as xr
from packaging.version import Version

from icechunk.session import Session
from icechunk.store import IcechunkStore

MIN_XARRAY_VERSION = "2024.10.0"
if Version(xr.__version__) < Version(MIN_XARRAY_VERSION):
    raise ValueError(
        f"icechunk.xarray needs xarray >= {MIN_XARRAY_VERSION}, found xarray {xr.__version__}"
    )

from icechunk.xarray._writer import DeferredWrites, choose_mode, write_eagerly  # noqa: E402

__all__ = ["to_icechunk"]

ZarrWriteModes = Literal["w", "w-", "a", "a-", "r+", "r"]

# xarray's names for a DataArray stored as a one-variable Dataset
DATAARRAY_VARIABLE = "__xarray_dataarray_variable__"
DATAARRAY_NAME = "__xarray_dataarray_name__"


def is_dask_collection(x: Any) -> bool:
    """True if ``x`` is a dask collection (False when dask is not installed)."""
    try:
        from dask.base import is_dask_collection as _is_dask
    except ImportError:  # pragma: no cover - dask is an optional dependency
        return False
    return bool(_is_dask(x))


def _as_dataset(obj: xr.DataArray | xr.Dataset) -> xr.Dataset:
    """A DataArray as the Dataset ``DataArray.to_zarr`` would write (same naming rules)."""
    if isinstance(obj, xr.Dataset):
        return obj
    if not isinstance(obj, xr.DataArray):
        raise TypeError(f"to_icechunk writes an xarray Dataset or DataArray, got {type(obj).__name__}")
    if obj.name is None:
        return obj.to_dataset(name=DATAARRAY_VARIABLE)
    if obj.name in obj.coords or obj.name in obj.dims:
        # a variable cannot share its name with a coordinate: store it under the generic
        # name and keep the real one in an attribute (xr.open_dataarray restores it)
        dataset = obj.to_dataset(name=DATAARRAY_VARIABLE)
        dataset.attrs[DATAARRAY_NAME] = obj.name
        return dataset
    return obj.to_dataset()


def to_icechunk(
    obj: xr.DataArray | xr.Dataset,
    session: Session,
    *,
    group: str | None = None,
    mode: ZarrWriteModes | None = None,
    safe_chunks: bool = True,
    align_chunks: bool = False,
    append_dim: Hashable | None = None,
    region: Mapping[str, slice | Literal["auto"]] | Literal["auto"] | None = None,
    encoding: Mapping[Any, Any] | None = None,
    chunkmanager_store_kwargs: MutableMapping[Any, Any] | None = None,
    split_every: int | None = None,
) -> None:
    """Write a Dataset or DataArray into an Icechunk session (zarr format 3); does not commit.

    Metadata and numpy-backed variables are written directly into ``session``.  Dask-backed
    variables are written by dask tasks into forks of ``session`` (so any scheduler works,
    including ``dask.distributed`` with worker processes); the forks are tree-merged and
    merged into ``session``.  Commit ``session`` afterwards.

    Parameters
    ----------
    obj
        What to write.  A DataArray is stored as a one-variable Dataset named after it; an
        unnamed one, or one named like a coordinate or dimension, is stored as
        ``__xarray_dataarray_variable__`` (the clashing name goes in the
        ``__xarray_dataarray_name__`` attribute), as ``DataArray.to_zarr`` does.
    session
        A writable :class:`icechunk.Session` (or :class:`icechunk.ForkSession`).
    group
        Path of the group to write into (the root when None).
    mode
        ``"w"`` replace whatever is there; ``"w-"`` fail if the group already has data;
        ``"a"`` overwrite or append variables, creating missing ones; ``"a-"`` like ``"a"``
        but with ``append_dim`` only variables having that dimension (or new ones) are
        written; ``"r+"`` change values only (no new variables, same shapes).  Default:
        ``"a"`` with ``append_dim``, ``"r+"`` with ``region``, ``"w-"`` otherwise.
    safe_chunks
        Refuse dask chunkings where several dask chunks would write one zarr chunk (and,
        with ``"r+"``, region writes covering zarr chunks partially).
    align_chunks
        Rechunk dask arrays to line up with the zarr chunks first (turns ``safe_chunks`` off;
        needs xarray >= 2025.06, ignored before).
    append_dim
        Dimension to append along (modes ``"a"``/``"a-"``).
    region
        Where to write, per dimension: slices, or ``"auto"`` to find the place from the
        coordinates already stored; ``"auto"`` alone means every dimension.
    encoding
        Per-variable zarr encodings, e.g. ``{"x": {"chunks": (10, 10), "compressors":
        [...], "fill_value": -1}}``; not allowed for variables that already exist.
    chunkmanager_store_kwargs
        Extra keyword arguments for the dask computation (e.g. ``scheduler``);
        ``return_stored``/``load_stored`` are always set to True/False by this function.
    split_every
        Fan-in of the tree reduction that merges the task forks.

    Raises
    ------
    ValueError
        If ``session`` is not an Icechunk session, for invalid mode combinations (see
        ``mode``), for region/append problems, and for dask chunks that do not line up with
        the zarr chunks (unless ``safe_chunks=False`` or ``align_chunks=True``).

    Notes
    -----
    As with ``Dataset.to_zarr``, validation that happens per variable (chunk alignment,
    encodings) can fail after earlier variables' metadata was written; the session then
    holds part of the write (``session.discard_changes()`` drops it).  Dask-backed values
    are merged into ``session`` only when every task succeeded.  ``safe_chunks=False`` with
    several dask chunks per zarr chunk is only safe on the synchronous scheduler: tasks
    writing the same zarr chunk from different forks would overwrite each other.
    """
    if not isinstance(getattr(session, "store", None), IcechunkStore):
        raise ValueError(f"Please pass in an icechunk.Session, got {type(session).__name__}")
    dataset = _as_dataset(obj)
    write_mode = choose_mode(mode, append_dim, region)
    deferred = write_eagerly(
        dataset,
        session.store,
        group=group,
        mode=write_mode,
        safe_chunks=safe_chunks,
        align_chunks=align_chunks,
        append_dim=append_dim,
        region=region,
        encoding=encoding,
    )
    if deferred.sources:
        _write_deferred(session, deferred, split_every, chunkmanager_store_kwargs)


def _write_deferred(
    session: Session,
    deferred: DeferredWrites,
    split_every: int | None,
    store_kwargs: MutableMapping[Any, Any] | None,
) -> None:
    """Write dask-backed values through a fork per task, then merge them into ``session``."""
    import zarr

    from icechunk.dask import store_dask

    not_dask = [type(s).__name__ for s in deferred.sources if not is_dask_collection(s)]
    if not_dask:
        raise TypeError(f"to_icechunk writes chunked arrays with dask only, got {sorted(set(not_dask))}")
    kwargs = dict(store_kwargs or {})
    kwargs.pop("return_stored", None)
    kwargs.pop("load_stored", None)
    fork = session.fork()
    fork_store = fork.store
    targets = [zarr.open_array(fork_store, path=path, mode="a") for path in deferred.paths]
    merged = store_dask(
        sources=deferred.sources,
        targets=targets,
        regions=deferred.regions,
        split_every=split_every,
        **kwargs,
    )
    session.merge(merged)
