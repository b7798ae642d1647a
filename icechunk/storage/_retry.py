"""Retries of transient storage failures with jittered exponential backoff.

A failure is *transient* when retrying the same request may succeed: connection errors,
timeouts, throttling and 5xx answers.  Backends mark them by raising
:class:`TransientStorageError` (a :class:`icechunk.StorageError`); missing objects, lost
conditional writes and bad arguments are never retried.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from icechunk._errors import ErrorKind, StorageError
from icechunk.config import StorageRetriesSettings

__all__ = ["RetryPolicy", "TransientStorageError", "is_transient", "retrying"]

T = TypeVar("T")

# reference defaults (API.md §7.5): 10 tries, 100 ms initial, 180 s maximum backoff
DEFAULT_MAX_TRIES = 10
DEFAULT_INITIAL_BACKOFF_MS = 100
DEFAULT_MAX_BACKOFF_MS = 180_000


class TransientStorageError(StorageError):
    """A storage failure worth retrying (connection, timeout, throttling, 5xx)."""

    def __init__(self, message: str = "", kind: ErrorKind | str | None = None) -> None:
        super().__init__(message, kind or ErrorKind.OBJECT_STORE)



def is_transient(error: BaseException) -> bool:
    """Whether ``error`` may go away if the same request is sent again."""
    return isinstance(error, (TransientStorageError, ConnectionError, TimeoutError))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try and how long to wait between tries.

    The wait before try ``n + 1`` is drawn uniformly from
    ``[0, min(max_backoff_ms, initial_backoff_ms * 2**(n - 1))]`` ("full jitter").
    """

    max_tries: int = DEFAULT_MAX_TRIES
    initial_backoff_ms: int = DEFAULT_INITIAL_BACKOFF_MS
    max_backoff_ms: int = DEFAULT_MAX_BACKOFF_MS

    @classmethod
    def from_settings(cls, retries: StorageRetriesSettings | None) -> RetryPolicy:
        """Build from settings; unset fields take the reference defaults."""
        retries = retries or StorageRetriesSettings()

        def pick(value: int | None, default: int) -> int:
            return default if value is None else max(0, int(value))

        return cls(
            max_tries=max(1, pick(retries.max_tries, DEFAULT_MAX_TRIES)),
            initial_backoff_ms=pick(retries.initial_backoff_ms, DEFAULT_INITIAL_BACKOFF_MS),
            max_backoff_ms=pick(retries.max_backoff_ms, DEFAULT_MAX_BACKOFF_MS),
        )

    def backoff_seconds(self, failed_tries: int) -> float:
        """The (random) wait after ``failed_tries`` failures."""
        ceiling = min(self.max_backoff_ms, self.initial_backoff_ms * 2 ** (failed_tries - 1))
        return random.uniform(0, ceiling) / 1000 if ceiling > 0 else 0.0


async def retrying(
    policy: RetryPolicy,
    operation: Callable[[int], Awaitable[T]],
    *,
    transient: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Await ``operation(attempt)`` (attempt = 1, 2, ...) until it succeeds or must give up.

    Transient failures are retried up to ``policy.max_tries`` tries in total; the last one
    is re-raised.  Any other exception propagates at once.  ``operation`` receives the
    attempt number so that it can tell a first try from a retry (conditional writes use it
    to recognise their own earlier, unacknowledged write).
    """
    attempt = 1
    while True:
        try:
            return await operation(attempt)
        except Exception as error:
            if attempt >= policy.max_tries or not transient(error):
                raise
        delay = policy.backoff_seconds(attempt)
        if delay > 0:
            await asyncio.sleep(delay)
        attempt += 1
