"""Optional progress bars for long maintenance operations.

A bar is shown only when ``tqdm`` is installed (extra ``icechunk[progress]``) and stderr is
an interactive terminal; otherwise every call is a no-op.  ``ICECHUNK_NO_PROGRESS=1`` turns
bars off.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["Progress", "progress_enabled"]


def progress_enabled() -> bool:
    """Whether bars should be drawn (tqdm importable, stderr a TTY, not disabled)."""
    if os.environ.get("ICECHUNK_NO_PROGRESS"):
        return False
    try:
        if not sys.stderr.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class Progress:
    """A counter that drives a tqdm bar when enabled (``enabled=None``: auto-detect)."""

    def __init__(self, desc: str, total: int | None = None, *, unit: str = "it", enabled: bool | None = None) -> None:
        self.count = 0
        self._bar: Any = None
        if enabled if enabled is not None else progress_enabled():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False)

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
