"""Run a coroutine to completion from sync code, even inside a running event loop.

The storage layer must not use the package's sync bridge (``icechunk._sync`` sits above it),
and its few sync methods are rare (listing for users), so each call gets a fresh event loop
in a short-lived worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_in_fresh_loop"]

T = TypeVar("T")


def run_in_fresh_loop(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``factory()`` on a new event loop in a worker thread and return its result."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(factory())
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="icechunk-storage-sync", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]
