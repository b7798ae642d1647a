"""Run a piece of a test in a forked child process and get its answer back."""

from __future__ import annotations

import os
from collections.abc import Callable


def in_forked_child(child: Callable[[], bytes]) -> bytes:
    """Fork, run ``child`` in the child and return the bytes it returned (a short answer).

    The child leaves with ``os._exit`` (no interpreter shutdown, no pytest teardown in a
    copy of this process), status 1 if ``child`` raised; the parent asserts status 0.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read)
            os.write(write, child())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    try:
        answer = os.read(read, 1 << 16)
    finally:
        os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"the forked child failed (wait status {status})"
    return answer
