"""Soak test: no lost commits under contention, and crash safety, across processes.

Runs (with the ``spawn`` start method, like the tests in ``tests/concurrency``):

1. **Contention**: ``--writers`` processes each make ``--commits`` commits to ``main`` of one
   repository, each commit writing its own chunk and rebasing on conflicts
   (``commit(rebase_with=ConflictDetector())``), on local disk and on S3 (a moto server on
   127.0.0.1).  Afterwards main's ancestry must hold every commit and every chunk its
   writer's value.  ``--naive`` also runs the reference's retry loop (commit, on
   ConflictError rebase and retry at once: no tip pre-check, no backoff) for comparison.
2. **Crash safety**: ``--trials`` times, a child process commits in a loop and is killed with
   SIGKILL at a random moment (or kills itself at a random storage write of its commit);
   afterwards the repository must open, every ref must point to a complete snapshot with
   a history reaching the root, no reported commit may be lost, and a new commit must work.

Prints figures and timings; exits with status 1 if anything was lost.

Examples
--------
    python benchmarks/soak_commits.py                      # 8 x 25, 50 crash trials, local + s3
    python benchmarks/soak_commits.py --backends local --trials 100 --naive
    python benchmarks/soak_commits.py --writers 4 --commits 8 --trials 6   # CI size
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import icechunk as ic
from icechunk.testing._concurrency import (
    make_crash_repo,
    run_crash_trial,
    run_writers,
    verify_repository,
)


@contextlib.contextmanager
def _storages(backend: str, workdir: Path) -> Iterator[object]:
    """Yields a factory ``name -> Storage`` (a fresh location each call)."""
    if backend == "local":
        counter = iter(range(1_000_000))
        yield lambda: ic.local_filesystem_storage(str(workdir / f"repo-{next(counter)}"))
        return
    from icechunk.testing.moto import MotoS3Server

    with MotoS3Server(bucket="icechunk-soak") as server:
        yield server.storage


def contention(backend: str, factory, writers: int, commits: int, solver: str) -> bool:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    storage = factory()
    report = run_writers(storage, writers, commits, solver=solver)
    verify_repository(storage)
    ok = (
        not report.errors
        and not report.lost
        and not report.wrong_chunks
        and len(report.reported) == writers * commits
        and len(report.history) == writers * commits + 2
    )
    print(f"[{backend:5s} {solver:8s}] {report.summary()} (total {time.perf_counter() - start:.1f}s incl. spawn)")
    for error in report.errors[:5]:
        print(f"    error: {error}")
    return ok


def crashes(backend: str, factory, trials: int, workdir: Path, seed: int) -> bool:  # type: ignore[no-untyped-def]
    storage = factory()
    make_crash_repo(storage, trials)
    workdir = Path(tempfile.mkdtemp(prefix=f"crash-{backend}-", dir=workdir))  # the children's logs
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    outcomes = []
    failures = []
    for trial in range(trials):
        mode = "timer" if trial % 2 == 0 else "write"
        try:
            outcomes.append(run_crash_trial(storage, trial, mode, rng, str(workdir)))
        except AssertionError as err:
            failures.append(f"trial {trial} ({mode}): {err}")
    elapsed = time.perf_counter() - start
    killed = sum(o.exit_code == -9 for o in outcomes)
    reported = sum(len(o.reported) for o in outcomes)
    unreported = sum(o.unreported_commits for o in outcomes)
    mid_commit = sum(1 for o in outcomes if o.mode == "write" or not o.reported)
    print(
        f"[{backend:5s} crash   ] {trials} trials in {elapsed:.1f}s: {len(failures)} failed checks, "
        f"{killed} children died of SIGKILL, {reported} commits reported and found, "
        f"{unreported} landed just before the kill (unreported, found), "
        f"{mid_commit} kills inside a commit's writes or the first commit; "
        f"history now {outcomes[-1].history_length if outcomes else 0} snapshots"
    )
    for failure in failures[:5]:
        print(f"    FAILED {failure}")
    return not failures and killed == trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=8, help="0 skips the contention run")
    parser.add_argument("--commits", type=int, default=25)
    parser.add_argument("--trials", type=int, default=50, help="0 skips the crash trials")
    parser.add_argument("--backends", nargs="+", default=["local", "s3"], choices=["local", "s3"])
    parser.add_argument("--solver", default="detector", choices=["detector", "basic"])
    parser.add_argument("--naive", action="store_true", help="also run the reference-style retry loop")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    ok = True
    with tempfile.TemporaryDirectory(prefix="icechunk-soak-") as tmp:
        workdir = Path(tmp)
        for backend in args.backends:
            with _storages(backend, workdir) as factory:
                if args.writers > 0:
                    ok &= contention(backend, factory, args.writers, args.commits, args.solver)
                if args.naive and args.writers > 0:
                    ok &= contention(backend, factory, args.writers, args.commits, "naive")
                if args.trials:
                    ok &= crashes(backend, factory, args.trials, workdir, args.seed)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
