"""The one module that talks to xarray's zarr backend when writing.

It does what ``Dataset.to_zarr`` does up to the point where chunked data would be stored:
open the group through ``xarray.backends.ZarrStore``, validate/auto-detect the region, write
every variable's metadata (creating, resizing for appends), write in-memory (numpy) values
right away, and hand back the chunked (dask) values with their target paths and regions
instead of storing them.  :func:`icechunk.xarray.to_icechunk` writes those through forks.

Everything here uses xarray's backend classes (``ZarrStore``, ``ArrayWriter``,
``dump_to_store``); the few methods with a leading underscore are looked up defensively so an
xarray upgrade that moves them fails with a clear message, not a TypeError deep inside.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import xarray as xr
from xarray.backends import ZarrStore
from xarray.backends.common import ArrayWriter

try:  # xarray >= 2025.10 keeps the writing helpers in backends.writers
    from xarray.backends.writers import dump_to_store
except ImportError:  # pragma: no cover - older xarray
    from xarray.backends.api import dump_to_store  # type: ignore[attr-defined,no-redef]

__all__ = ["DeferredWrites", "choose_mode", "write_eagerly"]

WRITE_MODES = ("w", "w-", "a", "a-", "r+")


def choose_mode(mode: str | None, append_dim: Hashable | None, region: Any) -> str:
    """The effective write mode (API §12): default by arguments, then validate the combination.

    Raises
    ------
    ValueError
        ``append_dim`` without ``a``/``a-``, ``region`` without ``a``/``a-``/``r+``, or an
        unknown mode (``"r"`` included).
    """
    if mode is None:
        mode = "a" if append_dim is not None else "r+" if region is not None else "w-"
    if append_dim is not None and mode not in ("a", "a-"):
        raise ValueError(f"append_dim can only be used with mode='a' or 'a-' (or mode=None), got mode={mode!r}")
    if region is not None and mode not in ("a", "a-", "r+"):
        raise ValueError(
            f"region can only be used with mode='a', 'a-' or 'r+' (or mode=None), got mode={mode!r}"
        )
    if mode not in WRITE_MODES:
        raise ValueError(f"mode must be one of 'w', 'w-', 'a', 'a-' or 'r+', got mode={mode!r}")
    return mode


@dataclass
class DeferredWrites:
    """Chunked values xarray would have stored: source arrays, target array paths, regions."""

    sources: list[Any] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    regions: list[tuple[slice, ...] | None] = field(default_factory=list)


def _check_names(dataset: xr.Dataset) -> None:
    # zarr keys must be non-empty strings; xarray's own writer checks the same before writing
    for name in dataset.variables:
        if not isinstance(name, str):
            raise TypeError(f"variable names must be strings to be stored in zarr, got {name!r}")
        if not name:
            raise ValueError("variable names must not be empty strings")


def _open_store(store: Any, *, align_chunks: bool, **kwargs: Any) -> ZarrStore:
    # align_chunks exists from xarray 2025.06 on; older versions write without alignment
    if "align_chunks" in inspect.signature(ZarrStore.open_group).parameters:
        kwargs["align_chunks"] = align_chunks
    zstore: ZarrStore = ZarrStore.open_group(store, **kwargs)
    return zstore


def _private(obj: Any, name: str) -> Any:
    method = getattr(obj, name, None)
    if method is None:  # pragma: no cover - depends on the installed xarray
        raise RuntimeError(
            f"this version of xarray ({xr.__version__}) has no ZarrStore.{name}; "
            "icechunk.xarray needs updating for it"
        )
    return method


def write_eagerly(
    dataset: xr.Dataset,
    store: Any,
    *,
    group: str | None,
    mode: str,
    safe_chunks: bool,
    align_chunks: bool,
    append_dim: Hashable | None,
    region: Mapping[str, slice | str] | str | None,
    encoding: Mapping[str, Any] | None,
) -> DeferredWrites:
    """Write metadata and in-memory values of ``dataset`` into ``store``; defer chunked values.

    ``mode`` must already be validated by :func:`choose_mode`.  Always zarr format 3 and
    never consolidated.
    """
    _check_names(dataset)
    for var in dataset.variables.values():
        if var.size == 0:  # zero-length dask arrays cannot be stored chunk-wise
            var.load()
    zstore = _open_store(
        store,
        mode=mode,
        group=group,
        consolidated=False,
        consolidate_on_close=False,
        append_dim=append_dim,
        write_region=dict(region) if isinstance(region, Mapping) else region,
        safe_chunks=safe_chunks,
        align_chunks=align_chunks,
        zarr_format=3,
    )
    dataset = _private(zstore, "_validate_and_autodetect_region")(dataset)
    encoding = dict(encoding or {})
    _private(zstore, "_validate_encoding")(encoding)

    writer = ArrayWriter()  # type: ignore[no-untyped-call]  # writes numpy data on ``add``; queues chunked data (never synced)
    dump_to_store(dataset, zstore, writer, encoding=encoding)  # type: ignore[no-untyped-call]
    deferred = DeferredWrites()
    for source, target, target_region in zip(writer.sources, writer.targets, writer.regions, strict=True):
        deferred.sources.append(source)
        deferred.paths.append(target.path)
        deferred.regions.append(tuple(target_region) if target_region else None)
    return deferred
