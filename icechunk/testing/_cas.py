"""Compare-and-swap torture: several processes increment one counter object.

Each increment is ``get_with_version`` → +1 → ``put(mode=token)``, retried on conflict.  The
object is JSON ``{"count": n, "log": ["<worker>:<i>", ...]}``, so a lost update shows both as
a short count and as a missing log entry.  Workers are started with ``spawn`` (never fork
once event loops or native threads exist).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pickle
import time
from typing import Any

from icechunk.storage import Storage

__all__ = ["cas_increment_worker", "run_cas_torture"]

_start: Any = None  # the pool workers' start barrier (set by the pool initializer)


def _set_start_barrier(barrier: Any) -> None:
    global _start
    _start = barrier


def cas_increment_worker(pickled_storage: bytes, key: str, worker: int, increments: int) -> dict[str, int]:
    """Do ``increments`` successful CAS increments of ``key``; returns success/conflict counts."""
    storage: Storage = pickle.loads(pickled_storage)
    if _start is not None:
        # start together: a worker that finished before the next one had even imported
        # would leave nothing to contend with
        _start.wait()

    async def run() -> dict[str, int]:
        conflicts = 0
        for i in range(increments):
            while True:
                data, version = await storage.get_with_version(key)
                doc = json.loads(data)
                doc["count"] += 1
                doc["log"].append(f"{worker}:{i}")
                result = await storage.put(key, json.dumps(doc).encode(), mode=version)
                if result.ok:
                    break
                conflicts += 1
        return {"successes": increments, "conflicts": conflicts}

    return asyncio.run(run())


def run_cas_torture(
    storage: Storage, *, processes: int = 4, increments: int = 100, key: str = "counter"
) -> dict[str, Any]:
    """Run the torture and return the final document plus per-worker statistics.

    The caller checks ``result["doc"]["count"] == processes * increments`` and that
    ``result["doc"]["log"]`` holds every ``"<worker>:<i>"`` exactly once.
    """

    async def init() -> None:
        created = await storage.put(key, json.dumps({"count": 0, "log": []}).encode(), mode="create")
        if not created.ok:
            raise RuntimeError(f"counter object {key!r} already exists")

    asyncio.run(init())
    payload = pickle.dumps(storage)
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    barrier = context.Barrier(processes)
    with context.Pool(processes, initializer=_set_start_barrier, initargs=(barrier,)) as pool:
        stats = pool.starmap(
            cas_increment_worker, [(payload, key, worker, increments) for worker in range(processes)]
        )
    elapsed = time.perf_counter() - started

    async def final() -> dict[str, Any]:
        return json.loads(await storage.get(key))  # type: ignore[no-any-return]

    return {"doc": asyncio.run(final()), "stats": stats, "seconds": elapsed}
