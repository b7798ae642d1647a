"""The side-by-side benchmark's report: paired per-repetition ratios of rows over target."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

COMPARE = Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py"


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare_under_test", COMPARE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _runs(compare: ModuleType, walls: dict[str, dict[int, float]]) -> Any:
    runs = compare.Runs()
    for phase, by_rep in walls.items():
        runs.phases[phase] = list(by_rep.values())
        runs.by_rep[phase] = dict(by_rep)
    return runs


def test_paired_ratios_pair_the_same_repetitions(compare: ModuleType) -> None:
    ours = _runs(compare, {"write": {0: 2.0, 1: 3.0, 3: 1.0}})
    ref = _runs(compare, {"write": {0: 1.0, 1: 4.0, 2: 9.0, 3: 2.0}})
    # repetition 2 has no run of ours (an error): it is left out, not misaligned
    assert compare.paired_ratios(ours, ref, "write") == [2.0, 0.75, 0.5]
    assert compare.paired_ratios(ours, None, "write") == []
    assert compare.paired_ratios(ours, ref, "read") == []


def test_report_lists_per_repetition_ratios_of_rows_over_target(compare: ModuleType) -> None:
    results = {
        ("bulk", "ours"): _runs(compare, {"write+commit": {0: 1.1, 1: 0.9, 2: 1.2}, "read": {0: 1.0, 1: 1.0}}),
        ("bulk", "ref"): _runs(compare, {"write+commit": {0: 1.0, 1: 1.0, 2: 1.0}, "read": {0: 2.0, 1: 2.0}}),
    }
    impls = [
        compare.Impl("ours", "ours", sys.executable, {}, "icechunk"),
        compare.Impl("ref", "icechunk 2.2.0", sys.executable, {}, "icechunk"),
    ]
    meta = {
        "cpus": 2, "load_start": (0.0, 0.0, 0.0), "load_end": (0.0, 0.0, 0.0),
        "wall": 1.0, "child_cpu": 1.0, "reps": 3, "quick": True,
    }
    text = compare.report(results, impls, meta)
    assert "1.10x!" in text  # median 1.1 s against 1.0 s
    assert "ours/ref per repetition, bulk write+commit: 1.10 0.90 1.20 (1 of 3 at or under 1.0)" in text
    assert "per repetition, bulk read" not in text  # 0.50x: within target, not listed
