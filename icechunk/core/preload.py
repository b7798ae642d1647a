"""Manifest preloading when a session starts (API.md §6.4 ``ManifestPreloadConfig``).

A hint: the manifests of arrays matching ``preload_if`` are fetched into the asset cache in
the background, scanning at most ``max_arrays_to_scan`` arrays and stopping once
``max_total_refs`` refs are loaded.  Failures are ignored (a later read fetches again).
Preloading only runs when the repository config sets ``manifest.preload`` explicitly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Awaitable

from icechunk.config import ManifestPreloadCondition, ManifestPreloadConfig
from icechunk.core.aio import start_detached
from icechunk.core.session import SessionEngine
from icechunk.format.ids import ManifestId

__all__ = ["DEFAULT_PRELOAD_IF", "preload_manifests", "schedule_preload"]

_log = logging.getLogger("icechunk")

# CF-style coordinate names (after cf-xarray's criteria): time, latitude/longitude, vertical
_COORDINATE_NAMES = (
    r"^(time|t|date|datetime)$",
    r"^x?(lat|latitude|nav_lat|rlat|y|yc|grid_latitude)$",
    r"^x?(lon|longitude|nav_lon|rlon|x|xc|grid_longitude)$",
    r"^(z|lev|level|levels|plev|depth|height|altitude|pressure|isobaric|sigma)$",
)
DEFAULT_PRELOAD_IF = ManifestPreloadCondition.and_conditions(
    [
        ManifestPreloadCondition.or_conditions(
            [ManifestPreloadCondition.name_matches(r) for r in _COORDINATE_NAMES]
        ),
        ManifestPreloadCondition.num_refs(None, 1001),
    ]
)

_jobs: set[asyncio.Task[int] | concurrent.futures.Future[int]] = set()


async def preload_manifests(engine: SessionEngine, config: ManifestPreloadConfig) -> int:
    """Fetch the manifests the preload config selects into the cache; returns refs loaded."""
    condition = config.preload_if or DEFAULT_PRELOAD_IF
    max_refs = 10_000 if config.max_total_refs is None else config.max_total_refs
    max_arrays = 50 if config.max_arrays_to_scan is None else config.max_arrays_to_scan
    sizes = {info.id: info.num_chunk_refs for info in engine.base.snapshot.manifest_files}
    chosen: list[ManifestId] = []
    loaded = 0
    scanned = 0
    for node in engine.base.snapshot.nodes:
        if node.array is None or not node.array.manifests:
            continue
        if scanned >= max_arrays:
            break
        scanned += 1
        mids = [m.manifest_id for m in node.array.manifests]
        refs = sum(sizes.get(mid, 0) for mid in mids)
        if not condition.matches(node.path, refs) or loaded + refs > max_refs:
            continue
        loaded += refs
        chosen.extend(mids)
    await asyncio.gather(*(engine.assets.fetch_manifest(mid) for mid in dict.fromkeys(chosen)))
    return loaded


def schedule_preload(engine: SessionEngine, config: ManifestPreloadConfig | None) -> None:
    """Start :func:`preload_manifests` in the background (no-op without a preload config)."""
    if config is None or not engine.base.snapshot.manifest_files:
        return
    try:
        job = start_detached(preload_manifests(engine, config))
    except RuntimeError:  # no running loop
        return
    _jobs.add(job)

    def done(j: asyncio.Task[int] | concurrent.futures.Future[int]) -> None:
        _jobs.discard(j)
        if not j.cancelled() and j.exception() is not None:
            _log.debug("manifest preload failed: %s", j.exception())

    job.add_done_callback(done)


async def wait_for_preloads() -> None:
    """Wait for the preloads started on this loop or handed to a background loop (tests)."""
    loop = asyncio.get_running_loop()
    pending: list[Awaitable[int]] = [
        asyncio.wrap_future(j) if isinstance(j, concurrent.futures.Future) else j
        for j in list(_jobs)
        if isinstance(j, concurrent.futures.Future) or j.get_loop() is loop
    ]
    with contextlib.suppress(Exception):
        await asyncio.gather(*pending, return_exceptions=True)
