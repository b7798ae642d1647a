"""glibc malloc tuning: chunk-sized buffers are reused instead of faulted in afresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False


pytestmark = pytest.mark.skipif(not _glibc(), reason="the tuning applies to glibc's malloc only")

# Makes a store (which tunes malloc), then allocates and copies 1 MiB buffers the way a chunk
# write does (the chunk, its encoded copy), counting the page faults of the loop.
_CHILD = """
import json, resource, sys
import numpy as np
import icechunk as ic
from icechunk import _malloc

repo = ic.Repository.create(ic.in_memory_storage())
repo.writable_session("main").store
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(32):
    chunk = np.full(2**17, float(i))
    encoded = chunk.tobytes()
    del chunk, encoded
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"tuned": _malloc._tuned, "faults": faults}))
"""


def _run(**env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    environ.pop("ICECHUNK_MALLOC_TUNING", None)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_store_tunes_malloc_so_chunk_buffers_stop_faulting() -> None:
    tuned, untuned = _run(), _run(ICECHUNK_MALLOC_TUNING="0")
    assert tuned["tuned"] is True and untuned["tuned"] is False
    # untuned: every 1 MiB buffer is fresh pages (256 faults each, 2 buffers x 32 rounds)
    assert isinstance(untuned["faults"], int) and untuned["faults"] > 32 * 256
    assert isinstance(tuned["faults"], int) and tuned["faults"] < untuned["faults"] / 4


def test_malloc_settings_the_user_made_are_left_alone() -> None:
    result = _run(MALLOC_TRIM_THRESHOLD_="131072")
    assert result["tuned"] is False


def test_malloc_tunables_the_user_set_are_left_alone() -> None:
    result = _run(GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert result["tuned"] is False


def test_which_glibc_tunables_count_as_malloc_settings() -> None:
    from icechunk._malloc import _user_tuned_malloc

    assert _user_tuned_malloc({"GLIBC_TUNABLES": "glibc.pthread.rseq=0:glibc.malloc.mmap_threshold=1"})
    assert _user_tuned_malloc({"MALLOC_MMAP_MAX_": "0"})
    # tunables of other glibc parts leave the tuning on
    assert not _user_tuned_malloc({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
    assert not _user_tuned_malloc({"GLIBC_TUNABLES": ""})
    assert not _user_tuned_malloc({})


def test_no_tuning_off_glibc_or_when_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from icechunk import _malloc

    called: list[tuple[int, int]] = []

    def fake_mallopt(param: int, value: int) -> int:
        called.append((param, value))
        return 1

    def fake_libc_function(name: str, argtypes: object) -> object:
        assert name == "mallopt"
        return fake_mallopt

    monkeypatch.setattr(_malloc, "libc_function", fake_libc_function)
    for name in _malloc._USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)

    monkeypatch.setattr(_malloc, "_tuned", None)
    monkeypatch.setenv("ICECHUNK_MALLOC_TUNING", "0")
    assert _malloc.tune_for_chunk_buffers() is False

    monkeypatch.setattr(_malloc, "_tuned", None)
    monkeypatch.delenv("ICECHUNK_MALLOC_TUNING")
    monkeypatch.setattr(_malloc, "_is_glibc", lambda: False)
    assert _malloc.tune_for_chunk_buffers() is False
    assert called == []

    monkeypatch.setattr(_malloc, "_tuned", None)
    monkeypatch.setattr(_malloc, "_is_glibc", lambda: True)
    assert _malloc.tune_for_chunk_buffers() is True
    assert _malloc.tune_for_chunk_buffers() is True  # once per process
    # the trim threshold first, then the mmap threshold, each set once
    assert called == [(-1, _malloc.TRIM_THRESHOLD), (-3, _malloc.MMAP_THRESHOLD)]
