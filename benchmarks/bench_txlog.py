"""Time the transaction-log codec on a commit of 1,000,000 two-dimensional chunk coordinates.

Run with ``.venv/bin/python benchmarks/bench_txlog.py [n0 n1] [--repeat N]``.  Prints the best
of N runs (the machine is shared, so the minimum is the meaningful figure) for: building the
flatbuffer, zstd level-3 compression, the whole encode; zstd decompression, flatbuffer
decoding, the whole decode.  The builder-only path (no numpy block writer) is timed on a
smaller log for comparison.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import icechunk.format.transaction_log as txmod
from icechunk.format.header import FileType, decode_envelope
from icechunk.format.ids import NodeId, SnapshotId
from icechunk.format.transaction_log import (
    TransactionLog,
    decode_transaction_log,
    encode_transaction_log,
    transaction_log_flatbuffer,
)


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", nargs="*", type=int, default=[1000, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n0, n1 = args.shape
    i, j = np.meshgrid(np.arange(n0), np.arange(n1), indexing="ij")
    coords = np.stack([i.ravel(), j.ravel()], axis=1).astype(np.uint32)
    log = TransactionLog(
        SnapshotId.random(), updated_chunks={NodeId.random(): coords}, moved_nodes=[]
    )
    print(f"transaction log with {len(coords):,} chunk coordinates of 2 dimensions")

    t_build, payload = best(lambda: transaction_log_flatbuffer(log), args.repeat)
    t_encode, data = best(lambda: encode_transaction_log(log), args.repeat)
    t_unzip, (_, buf) = best(
        lambda: decode_envelope(data, "bench", FileType.TRANSACTION_LOG), args.repeat
    )
    t_read, _ = best(lambda: txmod._read_log(buf, 2, "bench"), args.repeat)
    t_decode, decoded = best(lambda: decode_transaction_log(data, "bench"), args.repeat)
    assert decoded == log
    print(f"  flatbuffer build (numpy block):      {t_build:7.3f} s  ({len(payload) / 1e6:.1f} MB)")
    print(
        f"  zstd level 3 (encode - build):       {t_encode - t_build:7.3f} s  ({len(data) / 1e6:.1f} MB)"
    )
    print(f"  encode_transaction_log total:        {t_encode:7.3f} s")
    print(f"  zstd decompress + header:            {t_unzip:7.3f} s")
    print(f"  flatbuffer decode (numpy gathers):   {t_read:7.3f} s")
    print(f"  decode_transaction_log total:        {t_decode:7.3f} s")

    small = TransactionLog(
        log.id, updated_chunks={NodeId.random(): coords[:100_000]}, moved_nodes=[]
    )
    txmod_min = txmod._VECTORIZE_MIN
    txmod._VECTORIZE_MIN = 1 << 62
    try:
        t_slow, slow = best(lambda: transaction_log_flatbuffer(small), 1)
        small_buf = slow
        t_loop, _ = best(lambda: txmod._read_log(small_buf, 2, "bench"), 1)
    finally:
        txmod._VECTORIZE_MIN = txmod_min
    t_fast, fast = best(lambda: transaction_log_flatbuffer(small), args.repeat)
    assert fast == slow
    print(
        f"  for comparison, 100k coordinates: builder loop {t_slow:.3f} s, numpy block "
        f"{t_fast:.3f} s (identical bytes); struct-loop decode {t_loop:.3f} s"
    )


if __name__ == "__main__":
    main()
