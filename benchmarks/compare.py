"""This package side by side with the reference icechunk and plain zarr, in one run.

Every workload runs on (a) this package, (b) the reference ``icechunk`` (2.2.0 on Python 3.12,
1.1.21 when 3.12 is absent) in its own throwaway virtualenv, and (c) a plain
``zarr.storage.LocalStore`` where the workload applies.  Each run is a fresh subprocess of
``benchmarks/compare_worker.py`` (the same script for all three, so the harness is identical)
that prints one JSON line of phase timings.  Repetitions are interleaved — every repetition
runs every workload on every implementation, rotating which goes first — so machine noise
hits all alike; the table shows medians and the ratios ours/reference and ours/zarr.  Each
read phase (cold open + read), the bulk write and the fork/merge run 3 times back to back
within each repetition and contribute the median of the 3, since single runs swing 2-3x on a
shared VM; the full-size xarray read back (2-4 s) runs once.  Below the table, each row whose median
ours/reference is over its target also gets its per-repetition ratios (each repetition's
pair ran seconds apart), to tell a steady miss from noise.

This package and plain zarr run on the reference's interpreter and package versions (a peer
virtualenv: the reference's ``pip freeze`` minus the reference, plus our dependencies; ours
is imported from this worktree), so that a ratio measures the implementations rather than
two Pythons or two numcodecs (the reference needs Python 3.12, where numcodecs 0.17 and numpy
2.5 install, and the project's default is 3.11).  ``--python project`` runs them on this
interpreter instead.

Workloads (full size; ``--quick`` shrinks them):
  bulk       256 x 1 MiB chunks: write+commit; cold open + read
  small      10,000 chunks of 100 B: write+commit; cold open + full read; cold open + 1,000 point reads
  virtual    1,000,000 virtual refs: set+commit (+ peak RSS); cold open + 1,000 reads
  commits    200 sequential one-chunk commits; cold open + full ancestry walk
  xarray     600 MB dask-backed Dataset: to_icechunk (to_zarr for plain zarr) + commit; read back
  contended  4 processes x 10 commits on one branch (rebase on conflict); lost commits counted
  forkmerge  a session forked to 4 processes writing 64 MiB each, merged and committed

Usage: python benchmarks/compare.py [--quick] [--reps N] [--only w1,w2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "benchmarks" / "compare_worker.py"
# the same third-party stack as ours (dask imports distributed whenever it is installed)
BENCH_EXTRAS = ("xarray", "dask[array]", "distributed", "pandas")
IO_WORKLOADS = {"bulk", "small", "xarray", "forkmerge"}  # where plain zarr is the yardstick
CPU_RESOLUTION = 0.05  # s; process CPU times advance in 10 ms ticks, so shorter phases get no CPU ratio


@dataclass
class Workload:
    name: str
    full: dict[str, Any]
    quick: dict[str, Any]
    zarr: bool  # does a plain LocalStore run make sense?


WORKLOADS = [
    Workload("bulk", {"n": 256}, {"n": 64}, True),
    Workload("small", {"n": 10_000, "points": 1000}, {"n": 1500, "points": 250}, True),
    Workload("virtual", {"n": 1_000_000, "points": 1000}, {"n": 200_000, "points": 250}, False),
    Workload("commits", {"n": 200}, {"n": 50}, False),
    # a full-size read back takes 2-4 s, long enough for one run per repetition (3 would add
    # ~90 s to a full run, which has to fit in 15 minutes on a busy 2-core machine)
    Workload("xarray", {"mb": 600, "read_repeats": 1}, {"mb": 100}, True),
    Workload("contended", {"procs": 4, "n": 10}, {"procs": 4, "n": 5}, False),
    Workload("forkmerge", {"procs": 4, "nchunks": 64}, {"procs": 4, "nchunks": 8}, True),
]


@dataclass
class Impl:
    key: str  # ours | ref | zarr
    label: str
    python: str
    env: dict[str, str]
    mode: str  # the worker's impl argument


@dataclass
class Runs:
    """All results of one (workload, implementation)."""

    phases: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    by_rep: dict[str, dict[int, float]] = field(default_factory=dict)  # phase -> repetition -> wall
    extra: list[dict[str, Any]] = field(default_factory=list)
    notes: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def _clean_env() -> dict[str, str]:
    """The workers' environment: no inherited interpreter settings, and bytecode cached.

    Bytecode goes to one cache under ``.cache/`` (kept out of the tree) even where
    ``PYTHONDONTWRITEBYTECODE`` is set: the reference and zarr come with compiled bytecode
    from their installs, while this package is imported from source, and compiling it again
    in every worker cost ~0.6 s per run (~35 s of a quick run).  Only start-up is affected:
    imports happen before any timed phase.
    """
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPYCACHEPREFIX"] = str(ROOT / ".cache" / "pycache")
    return env


def find_reference() -> tuple[str | None, str | None, str]:
    """(python, version, why-not) of the reference virtualenv, building it on first use."""
    sys.path.insert(0, str(ROOT))
    from tests.interop.reference import ReferenceUnavailable, ensure_reference

    reasons = []
    for version in ("2.2.0", "1.1.21"):
        try:
            return str(ensure_reference(version, BENCH_EXTRAS, "bench")), version, ""
        except ReferenceUnavailable as exc:
            reasons.append(str(exc))
    return None, None, "; ".join(reasons)


def _runtime_dependencies() -> tuple[str, ...]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return tuple(project["dependencies"])


def find_peer(ref_python: str | None, ref_version: str | None) -> tuple[str, str]:
    """(python, note) for this package and plain zarr: the reference's interpreter and
    package versions when they can be had (see ``ensure_peer``), else this interpreter."""
    if not ref_python:
        return sys.executable, ""
    from tests.interop.reference import ReferenceUnavailable, ensure_peer

    try:
        return str(ensure_peer(Path(ref_python), _runtime_dependencies(), f"peer-of-{ref_version}-bench")), ""
    except ReferenceUnavailable as exc:
        return sys.executable, f"ours and zarr run on this interpreter instead of the reference's: {exc}"


def implementations(
    ref_python: str | None, ref_version: str | None, baseline: str | None, python: str
) -> list[Impl]:
    ours_env = _clean_env()
    ours_env["PYTHONPATH"] = str(ROOT)
    impls = [Impl("ours", "this package", python, ours_env, "icechunk")]
    if baseline:  # another checkout of this package (e.g. before an optimization)
        base_env = _clean_env()
        base_env["PYTHONPATH"] = str(Path(baseline).resolve())
        impls.append(Impl("base", "baseline", python, base_env, "icechunk"))
    if ref_python:
        impls.append(Impl("ref", f"icechunk {ref_version}", ref_python, _clean_env(), "icechunk"))
    impls.append(Impl("zarr", "zarr LocalStore", python, _clean_env(), "zarr"))
    return impls


def environment(python: str) -> str:
    """``Python x.y.z, zarr a, numcodecs b, numpy c`` of an interpreter."""
    probe = (
        "import platform, zarr, numcodecs, numpy; "
        "print(f'Python {platform.python_version()}, zarr {zarr.__version__}, "
        "numcodecs {numcodecs.__version__}, numpy {numpy.__version__}')"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=_clean_env(), cwd="/")
    return done.stdout.strip() or f"unknown ({done.stderr.strip()[-200:]})"


def run_one(impl: Impl, workload: str, params: dict[str, Any], base: Path, timeout: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"{impl.key}-{workload}-", dir=base))
    try:
        proc = subprocess.run(
            [impl.python, str(WORKER), impl.mode, workload, json.dumps(params), str(workdir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=impl.env,
            cwd=workdir,  # never the repository root: the reference must not import our package
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARN" not in ln][-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)[:300]}"}
    return json.loads(lines[-1])


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def _over(a: float | None, b: float | None, limit: float) -> bool:
    """Whether the ratio ``a / b`` exists and is over ``limit``."""
    return a is not None and b is not None and b != 0 and a / b > limit


def _ratio(a: float | None, b: float | None, limit: float) -> str:
    if a is None or b is None or b == 0:
        return "  -  "
    return f"{a / b:.2f}x{'!' if _over(a, b, limit) else ' '}"


def paired_ratios(ours: Runs | None, other: Runs | None, phase: str) -> list[float]:
    """``ours / other`` for each repetition both ran ``phase`` in, in repetition order.

    Interleaving runs the two within seconds of each other, so a pair shares the machine's
    state of the moment; the spread of these ratios shows how much of a median ratio is noise.
    """
    if ours is None or other is None:
        return []
    mine, theirs = ours.by_rep.get(phase, {}), other.by_rep.get(phase, {})
    return [mine[k] / theirs[k] for k in sorted(mine.keys() & theirs.keys()) if theirs[k] > 0]


def _paired_lines(results: dict[tuple[str, str], Runs], flagged: list[tuple[str, str]]) -> list[str]:
    """Per-repetition ratios of the rows whose median ours/ref is over its target."""
    lines = []
    for workload, phase in flagged:
        ratios = paired_ratios(results.get((workload, "ours")), results.get((workload, "ref")), phase)
        if ratios:
            within = sum(r <= 1.0 for r in ratios)
            lines.append(
                f"ours/ref per repetition, {workload} {phase.strip()}: "
                + " ".join(f"{r:.2f}" for r in ratios)
                + f" ({within} of {len(ratios)} at or under 1.0)"
            )
    return lines


def report(results: dict[tuple[str, str], Runs], impls: list[Impl], meta: dict[str, Any]) -> str:
    have = {i.key for i in impls}
    ref_label = next((i.label for i in impls if i.key == "ref"), "reference")
    out = []
    out.append(
        f"machine: {meta['cpus']} CPUs, load average (1 min) {meta['load_start'][0]:.2f} at start, "
        f"{meta['load_end'][0]:.2f} at end (5/15 min at end: {meta['load_end'][1]:.2f}/{meta['load_end'][2]:.2f}); "
        f"wall {meta['wall']:.0f} s, child CPU {meta['child_cpu']:.0f} s"
    )
    out.append(
        f"reps: {meta['reps']} ({'quick' if meta['quick'] else 'full'} sizes), interleaved; "
        f"medians of wall time per phase; '!' marks a ratio over its target "
        f"(ours/ref <= 1.0, ours/zarr <= 1.1 on I/O workloads)"
    )
    for key, env in meta.get("environments", {}).items():
        out.append(f"environment, {key}: {env}")
    if meta.get("ref_missing"):
        out.append(f"reference not run: {meta['ref_missing']}")
    if meta.get("peer_note"):
        out.append(f"note: {meta['peer_note']}")
    base = "base" in have
    head = (
        f"{'workload':10s} {'phase':28s} {'ours':>9s} {ref_label:>15s} {'zarr':>9s} {'ours/ref':>9s} "
        f"{'ours/zarr':>9s}  {'CPU ours/ref':>12s}" + (f"  {'baseline':>9s} {'ours/base':>9s}" if base else "")
    )
    out.append(head)
    out.append("-" * len(head))
    flagged: list[tuple[str, str]] = []
    for wl in WORKLOADS:
        runs = {k: results.get((wl.name, k)) for k in ("ours", "ref", "zarr", "base")}
        phases = list(dict.fromkeys(p for r in runs.values() if r for p in r.phases))
        for phase in phases:
            med = {k: _median(r.phases.get(phase, [])) if r else None for k, r in runs.items()}
            cpu = {k: _median(r.cpu.get(phase, [])) if r else None for k, r in runs.items()}
            if min((c for c in (cpu["ours"], cpu["ref"]) if c is not None), default=0.0) < CPU_RESOLUTION:
                cpu["ours"] = None  # a few clock ticks: the ratio would be noise (or 0.00x)
            zr = _ratio(med["ours"], med["zarr"], 1.1 if wl.name in IO_WORKLOADS else float("inf"))
            vs_ref = _ratio(med["ours"], med["ref"], 1.0)
            if _over(med["ours"], med["ref"], 1.0):
                flagged.append((wl.name, phase))
            out.append(
                f"{wl.name:10s} {phase:28s} {_fmt_s(med['ours']):>9s} {_fmt_s(med['ref']):>15s} "
                f"{_fmt_s(med['zarr']) if 'zarr' in have and wl.zarr else '-':>9s} "
                f"{vs_ref:>9s} {zr if wl.zarr else '  -  ':>9s}  "
                f"{_ratio(cpu['ours'], cpu['ref'], float('inf')).rstrip():>12s}"
                + (
                    f"  {_fmt_s(med['base']):>9s} {_ratio(med['ours'], med['base'], float('inf')).rstrip():>9s}"
                    if base
                    else ""
                )
            )
    out.append("")
    out.extend(_paired_lines(results, flagged))
    labels = (("ours", "this package"), ("ref", ref_label), ("base", "baseline"))
    for key, label in labels:
        v = results.get(("virtual", key))
        if v and v.extra:
            peak = _median([e["peak_rss_mb"] for e in v.extra if "peak_rss_mb" in e])
            before = _median([e["rss_before_mb"] for e in v.extra if "rss_before_mb" in e])
            out.append(f"peak RSS, virtual set+commit, {label}: {peak:.0f} MB (RSS {before:.0f} MB before the timed phase)")
    for key, label in labels:
        c = results.get(("contended", key))
        if c and c.extra:
            rep = sum(e["reported"] for e in c.extra)
            lost = sum(e["lost"] for e in c.extra)
            failed = sum(e["failed"] for e in c.extra)
            missing = sum(e["values_missing"] for e in c.extra)
            out.append(
                f"contended commits, {label}: {rep} reported successful over {len(c.extra)} runs, "
                f"{lost} lost (not in the branch history), {missing} written values missing, {failed} raised"
            )
    for (wl, key), r in sorted(results.items()):
        for note in sorted(r.notes):
            out.append(f"note [{wl}, {key}]: {note}")
        for err in r.errors:
            out.append(f"error [{wl}, {key}]: {err}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, 3 repetitions (< 3 min)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3 quick, 5 full)")
    parser.add_argument("--only", help="comma-separated workload names")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--timeout", type=float, default=600, help="per run, seconds")
    parser.add_argument(
        "--baseline", help="another checkout of this package to run side by side (before/after figures)"
    )
    parser.add_argument(
        "--python",
        choices=("peer", "project"),
        default="peer",
        help="interpreter for ours and zarr: 'peer' (default) is the reference's Python and package "
        "versions, so that the ratios compare implementations, not environments; 'project' is this one",
    )
    args = parser.parse_args()
    reps = args.reps or (3 if args.quick else 5)
    chosen = [w for w in WORKLOADS if not args.only or w.name in args.only.split(",")]

    started, load_start, cpu0 = time.perf_counter(), os.getloadavg(), os.times()
    ref_python, ref_version, ref_missing = find_reference()
    python, peer_note = find_peer(ref_python, ref_version) if args.python == "peer" else (sys.executable, "")
    impls = implementations(ref_python, ref_version, args.baseline, python)
    environments = {"ours and zarr": environment(python)}
    if ref_python:
        environments[f"icechunk {ref_version}"] = environment(ref_python)
    print(
        f"{environments['ours and zarr']} (ours, zarr) / reference: "
        f"{ref_version or 'unavailable'}; workloads: {', '.join(w.name for w in chosen)}; reps: {reps}",
        file=sys.stderr,
    )
    results: dict[tuple[str, str], Runs] = {}
    base = Path(tempfile.mkdtemp(prefix="icechunk-compare-"))
    try:
        for rep in range(reps):
            for wl in chosen:
                runnable = [i for i in impls if i.key != "zarr" or wl.zarr]
                shift = rep % len(runnable)
                for impl in runnable[shift:] + runnable[:shift]:  # rotate who goes first
                    params = wl.quick if args.quick else wl.full
                    t0 = time.perf_counter()
                    res = run_one(impl, wl.name, params, base, args.timeout)
                    runs = results.setdefault((wl.name, impl.key), Runs())
                    if "error" in res:
                        runs.errors.append(res["error"])
                        status = "ERROR " + res["error"][:120]
                    else:
                        for phase, secs in res["phases"].items():
                            runs.phases.setdefault(phase, []).append(secs)
                            runs.by_rep.setdefault(phase, {})[rep] = secs
                        for phase, secs in res["cpu"].items():
                            runs.cpu.setdefault(phase, []).append(secs)
                        runs.extra.append(res["extra"])
                        runs.notes.update(res["notes"])
                        status = ", ".join(f"{p} {_fmt_s(s)}" for p, s in res["phases"].items())
                    print(
                        f"[rep {rep + 1}/{reps} {time.perf_counter() - started:5.0f}s] "
                        f"{wl.name:9s} {impl.key:4s} ({time.perf_counter() - t0:4.1f}s) {status}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    cpu1 = os.times()
    meta = {
        "cpus": os.cpu_count(),
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "wall": time.perf_counter() - started,
        "child_cpu": (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system),
        "reps": reps,
        "quick": args.quick,
        "ref_missing": ref_missing if not ref_python else "",
        "environments": environments,
        "peer_note": peer_note,
    }
    print(report(results, impls, meta))
    if args.json:
        raw = {f"{w}/{k}": vars(r) | {"notes": sorted(r.notes)} for (w, k), r in results.items()}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": raw}, indent=1))


if __name__ == "__main__":
    main()
