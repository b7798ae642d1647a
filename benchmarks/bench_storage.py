"""Storage benchmark: small-object put/get ops/s and large-object put/get MB/s.

Backends: memory, local disk (a temp dir), and S3 on moto's server on 127.0.0.1 (moto runs
in this process, so it competes with the client for the GIL and CPU: the S3 figures measure
moto more than our client).  Figures are best of ``--repeat`` runs.

    .venv/bin/python benchmarks/bench_storage.py [--small 1000] [--large-mib 64] [--repeat 3]
        [--backends memory,local,s3] [--raw-moto]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable

from icechunk.storage import Storage, in_memory_storage, local_filesystem_storage


def best(repeat: int, run: Callable[[], Awaitable[float]]) -> float:
    return min(asyncio.run(run()) for _ in range(repeat))


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


async def bounded(n: int, inflight: int, op: Callable[[int], Awaitable[object]]) -> None:
    limit = asyncio.Semaphore(inflight)

    async def one(i: int) -> None:
        async with limit:
            await op(i)

    await asyncio.gather(*(one(i) for i in range(n)))


def bench(name: str, make: Callable[[str], Storage], small: int, large_mib: int, repeat: int) -> None:
    payload = os.urandom(1024)
    big = os.urandom(large_mib * 1024 * 1024)
    counter = iter(range(1_000_000))

    def fresh() -> Storage:
        return make(f"bench-{next(counter)}")

    rows: list[tuple[str, str]] = []
    for inflight in (1, 16):
        storage = fresh()

        async def put_small(storage: Storage = storage, inflight: int = inflight) -> float:
            return await timed(lambda: bounded(small, inflight, lambda i: storage.put(f"chunks/{i}", payload)))

        async def get_small(storage: Storage = storage, inflight: int = inflight) -> float:
            return await timed(lambda: bounded(small, inflight, lambda i: storage.get(f"chunks/{i}")))

        put_s = best(repeat, put_small)
        get_s = best(repeat, get_small)
        label = "sequential" if inflight == 1 else f"{inflight} in flight"
        rows.append((f"1 KiB put ({label})", f"{small / put_s:8.0f} ops/s"))
        rows.append((f"1 KiB get ({label})", f"{small / get_s:8.0f} ops/s"))

    storage = fresh()

    async def put_big() -> float:
        return await timed(lambda: storage.put("chunks/big", big))

    async def get_big() -> float:
        async def read() -> None:
            data = await storage.get("chunks/big")
            assert len(data) == len(big)

        return await timed(read)

    put_s = best(repeat, put_big)
    get_s = best(repeat, get_big)
    mb = len(big) / 1e6
    rows.append((f"{large_mib} MiB put", f"{mb / put_s:8.0f} MB/s"))
    rows.append((f"{large_mib} MiB get", f"{mb / get_s:8.0f} MB/s"))

    print(f"\n{name}")
    for what, figure in rows:
        print(f"  {what:<28}{figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000, help="number of 1 KiB objects")
    parser.add_argument("--large-mib", type=int, default=64, help="size of the large object")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--backends", default="memory,local,s3")
    parser.add_argument("--raw-moto", action="store_true", help="also run S3 on moto without request serialization")
    args = parser.parse_args()
    backends = args.backends.split(",")

    print(f"small objects: {args.small} x 1 KiB; large object: {args.large_mib} MiB; best of {args.repeat}")
    if "memory" in backends:
        bench("memory", lambda prefix: in_memory_storage(), args.small, args.large_mib, args.repeat)
    if "local" in backends:
        with tempfile.TemporaryDirectory() as root:
            bench("local disk", lambda prefix: local_filesystem_storage(os.path.join(root, prefix)), args.small, args.large_mib, args.repeat)
            bench(
                "local disk, fsync=True",
                lambda prefix: local_filesystem_storage(os.path.join(root, prefix), fsync=True),
                args.small // 4, args.large_mib, args.repeat,
            )
    if "s3" in backends:
        from icechunk.testing.moto import MotoS3Server

        variants = [True, False] if args.raw_moto else [True]
        for serialized in variants:
            with MotoS3Server(serialize_requests=serialized) as server:
                label = "S3 on moto (127.0.0.1, in-process" + (", requests serialized)" if serialized else ", raw)")
                bench(label, lambda prefix: server.storage(prefix=prefix), args.small, args.large_mib, args.repeat)


if __name__ == "__main__":
    main()
