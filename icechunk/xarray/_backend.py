"""``engine="icechunk"``: open a version of an Icechunk repository with ``xr.open_dataset``.

Registered as the ``icechunk`` entry point of the ``xarray.backends`` group::

    xr.open_dataset("path/to/repo", engine="icechunk", branch="main", chunks={})
    xr.open_dataset("s3://bucket/prefix", engine="icechunk", tag="v1")
    xr.open_dataset(repo, engine="icechunk", as_of=datetime(...))
    xr.open_dataset(session, engine="icechunk", group="forecast")

A string or path is a repository location: ``s3://bucket/prefix`` (credentials from the
environment), ``gs://bucket/prefix`` (likewise), ``file:///path`` or a local path.  A
``Storage``, ``Repository``, ``Session`` or ``IcechunkStore`` is used as it is, and
``storage=`` overrides the location.  Reading goes through xarray's own zarr backend on the
session's store (zarr format 3, never consolidated).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from xarray.backends import BackendEntrypoint
from xarray.backends.zarr import ZarrBackendEntrypoint

from icechunk.config import RepositoryConfig
from icechunk.repository import Repository
from icechunk.session import Session
from icechunk.storage import Storage, gcs_storage, local_filesystem_storage, s3_storage
from icechunk.store import IcechunkStore

__all__ = ["IcechunkBackendEntrypoint", "looks_like_repository", "storage_for"]


def looks_like_repository(path: str | os.PathLike[str]) -> bool:
    """True for a local directory holding an Icechunk repository (spec 2 or spec 1 layout)."""
    root = os.fspath(path)
    return os.path.isfile(os.path.join(root, "repo")) or os.path.isfile(
        os.path.join(root, "refs", "branch.main", "ref.json")
    )


def _bucket_and_prefix(url: str, scheme: str) -> tuple[str, str | None]:
    rest = url[len(scheme) :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, prefix.strip("/") or None


def storage_for(location: str | os.PathLike[str]) -> Storage:
    """The :class:`icechunk.Storage` for a repository URL or local path.

    ``s3://`` and ``gs://`` take their credentials from the environment; ``file://`` and
    plain paths are local directories.
    """
    text = os.fspath(location)
    if text.startswith("s3://"):
        bucket, prefix = _bucket_and_prefix(text, "s3://")
        return s3_storage(bucket=bucket, prefix=prefix, from_env=True)
    if text.startswith(("gs://", "gcs://")):
        bucket, prefix = _bucket_and_prefix(text, text.split("://")[0] + "://")
        return gcs_storage(bucket=bucket, prefix=prefix, from_env=True)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise ValueError(f"engine='icechunk' cannot open {text!r}: unsupported URL scheme")
    return local_filesystem_storage(os.path.abspath(os.path.expanduser(text)))


def _session(
    target: Any,
    *,
    storage: Storage | None,
    config: RepositoryConfig | None,
    branch: str | None,
    tag: str | None,
    snapshot_id: str | None,
    as_of: datetime | None,
) -> Session:
    version_given = any(v is not None for v in (branch, tag, snapshot_id, as_of))
    if isinstance(target, IcechunkStore):
        target = target.session
    if isinstance(target, Session) and storage is None:
        if version_given:
            raise ValueError("branch/tag/snapshot_id/as_of cannot be used when opening a Session")
        return target
    if not isinstance(target, Repository) or storage is not None:
        if storage is None:
            storage = target if isinstance(target, Storage) else storage_for(target)
        target = Repository.open(storage, config=config)
    if branch is None and tag is None and snapshot_id is None:
        branch = "main"
    session: Session = target.readonly_session(branch, tag=tag, snapshot_id=snapshot_id, as_of=as_of)
    return session


class IcechunkBackendEntrypoint(BackendEntrypoint):
    """xarray backend reading a branch, tag, snapshot or point in time of an Icechunk repository."""

    description = "Open a version (branch, tag, snapshot, as_of) of an Icechunk repository"
    url = "https://icechunk.io"
    supports_groups = True

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        if isinstance(filename_or_obj, (Repository, Session, IcechunkStore, Storage)):
            return True
        if isinstance(filename_or_obj, (str, os.PathLike)):
            text = os.fspath(filename_or_obj)
            if "://" in text and not text.startswith("file://"):
                return False  # remote: only with an explicit engine="icechunk"
            return os.path.isdir(text.removeprefix("file://")) and looks_like_repository(
                text.removeprefix("file://")
            )
        return False

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        mask_and_scale: bool = True,
        decode_times: Any = True,
        concat_characters: bool = True,
        decode_coords: Any = True,
        drop_variables: str | Iterable[str] | None = None,
        use_cftime: bool | None = None,
        decode_timedelta: Any = None,
        group: str | None = None,
        branch: str | None = None,
        tag: str | None = None,
        snapshot_id: str | None = None,
        as_of: datetime | None = None,
        storage: Storage | None = None,
        config: RepositoryConfig | None = None,
    ) -> Any:
        """Open one group of a repository version as a Dataset (lazily loaded).

        Parameters
        ----------
        filename_or_obj
            Repository location (local path, ``file://``, ``s3://bucket/prefix``,
            ``gs://bucket/prefix``), or a ``Storage``, ``Repository``, ``Session`` or
            ``IcechunkStore``.
        branch, tag, snapshot_id, as_of
            Which version: a branch tip (``main`` when nothing is given), a tag, a snapshot
            id, or the branch as it was at ``as_of`` (a timezone-aware datetime).
        group
            The group to open (the root when None).
        storage, config
            Open the repository in this storage (instead of ``filename_or_obj``) and with
            this configuration.
        mask_and_scale, decode_times, concat_characters, decode_coords, drop_variables, use_cftime, decode_timedelta
            As for ``xarray.open_dataset``.
        """
        session = _session(
            filename_or_obj, storage=storage, config=config, branch=branch, tag=tag,
            snapshot_id=snapshot_id, as_of=as_of,
        )
        return ZarrBackendEntrypoint().open_dataset(
            session.store,  # type: ignore[arg-type]
            mask_and_scale=mask_and_scale,
            decode_times=decode_times,
            concat_characters=concat_characters,
            decode_coords=decode_coords,
            drop_variables=drop_variables,
            use_cftime=use_cftime,
            decode_timedelta=decode_timedelta,
            group=group,
            consolidated=False,
            zarr_format=3,
        )

    def open_datatree(
        self,
        filename_or_obj: Any,
        *,
        mask_and_scale: bool = True,
        decode_times: Any = True,
        concat_characters: bool = True,
        decode_coords: Any = True,
        drop_variables: str | Iterable[str] | None = None,
        use_cftime: bool | None = None,
        decode_timedelta: Any = None,
        group: str | None = None,
        branch: str | None = None,
        tag: str | None = None,
        snapshot_id: str | None = None,
        as_of: datetime | None = None,
        storage: Storage | None = None,
        config: RepositoryConfig | None = None,
    ) -> Any:
        """Open every group of a repository version as a DataTree (parameters as ``open_dataset``)."""
        session = _session(
            filename_or_obj, storage=storage, config=config, branch=branch, tag=tag,
            snapshot_id=snapshot_id, as_of=as_of,
        )
        return ZarrBackendEntrypoint().open_datatree(
            session.store,  # type: ignore[arg-type]
            mask_and_scale=mask_and_scale,
            decode_times=decode_times,
            concat_characters=concat_characters,
            decode_coords=decode_coords,
            drop_variables=drop_variables,
            use_cftime=use_cftime,
            decode_timedelta=decode_timedelta,
            group=group,
            consolidated=False,
            zarr_format=3,
        )
