"""Fast helpers match their straightforward definitions (np.unique, Crockford base32)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from icechunk.format._manifest_wire import sorted_unique


@given(hnp.arrays(st.sampled_from([np.int64, np.uint32, np.uint8]), st.integers(0, 50)))
def test_matches_numpy_unique(values: np.ndarray) -> None:
    got = sorted_unique(values)
    assert got.dtype == values.dtype
    np.testing.assert_array_equal(got, np.unique(values))


@given(st.binary(max_size=40))
def test_crockford_encode_matches_its_definition(raw: bytes) -> None:
    from icechunk.format.ids import _crockford_encode_slow, crockford_decode, crockford_encode

    assert crockford_encode(raw) == _crockford_encode_slow(raw)
    assert crockford_decode(crockford_encode(raw)) == raw


@given(st.lists(st.binary(min_size=12, max_size=12), max_size=30))
def test_batch_id_encoding_matches_one_by_one(ids: list[bytes]) -> None:
    from icechunk.format.ids import _crockford_encode_slow, crockford_encode_ids12

    assert crockford_encode_ids12(ids) == [_crockford_encode_slow(raw) for raw in ids]


def test_batch_id_encoding_refuses_other_sizes() -> None:
    import pytest

    from icechunk.format.ids import crockford_encode_ids12

    with pytest.raises(ValueError, match="12 bytes"):
        crockford_encode_ids12([b"\x00" * 12, b"\x00" * 8])


@given(st.integers(0, 2**62))
def test_datetime_from_us_matches_its_definition(us: int) -> None:
    from datetime import UTC, datetime

    from icechunk.snapshots import datetime_from_us

    try:
        expected = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
    except (OverflowError, ValueError, OSError):
        return  # past year 9999: no datetime either way
    assert datetime_from_us(us) == expected


def test_reused_compressors_give_the_bytes_of_a_fresh_one() -> None:
    """Envelopes share one zstd compressor per thread; the output must not depend on it."""
    import threading

    import zstandard

    from icechunk.format.header import HEADER_SIZE, FileType, encode_envelope

    payloads = [bytes(range(256)) * k for k in (1, 7, 300)]

    def fresh(payload: bytes, level: int) -> bytes:
        cobj = zstandard.ZstdCompressor(level=level).compressobj()
        return cobj.compress(payload) + cobj.flush()

    results: dict[int, list[bytes]] = {}

    def encode_all(tag: int) -> None:
        results[tag] = [
            encode_envelope(p, FileType.SNAPSHOT, 2, level=level)[HEADER_SIZE:]
            for _ in range(3)
            for level in (1, 3)
            for p in payloads
        ]

    threads = [threading.Thread(target=encode_all, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = [fresh(p, level) for _ in range(3) for level in (1, 3) for p in payloads]
    assert all(results[k] == expected for k in range(4))


def test_reused_decompressor_recovers_from_broken_streams_and_serves_threads() -> None:
    """Envelopes share one zstd decompressor per thread: a truncated or corrupt stream must
    not leak state into the next decode, and threads decoding at once must not mix."""
    import threading

    import pytest

    from icechunk._errors import FormatError
    from icechunk.format.header import HEADER_SIZE, FileType, decode_envelope, encode_envelope

    payloads = [bytes(range(256)) * k for k in (1, 7, 300)]
    files = [encode_envelope(p, FileType.SNAPSHOT, 2) for p in payloads]
    big = files[-1]
    corrupt = big[:HEADER_SIZE] + bytes(b ^ 0x5A for b in big[HEADER_SIZE:])
    for broken in (big[:-7], corrupt):
        with pytest.raises(FormatError):
            decode_envelope(broken, "x", FileType.SNAPSHOT)
        assert [decode_envelope(f, "x", FileType.SNAPSHOT)[1] for f in files] == payloads

    results: dict[int, bool] = {}

    def decode_all(tag: int) -> None:
        results[tag] = all(
            decode_envelope(f, "x", FileType.SNAPSHOT)[1] == p
            for _ in range(50)
            for f, p in zip(files, payloads, strict=True)
        )

    threads = [threading.Thread(target=decode_all, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: True for k in range(4)}


def test_flex_dumps_memo_tells_apart_what_the_encoder_tells_apart() -> None:
    from icechunk.format import values

    values._DUMPS_MEMO.clear()
    samples: list[object] = [1, 1.0, True, "1", None, [1], (1,), {"a": 1}, {"a": 1.0}, {"b": 1, "a": 2}, {"a": 2, "b": 1}]
    first = [values.flex_dumps(v) for v in samples]
    assert len(values._DUMPS_MEMO) == len(samples)  # every plain value was memoized
    again = [values.flex_dumps(v) for v in reversed(samples)][::-1]  # served from the memo
    assert again == first
    for value, data in zip(samples, first, strict=True):
        back = values.flex_loads(data)
        assert back == (list(value) if isinstance(value, tuple) else value)
        assert type(back) is (list if isinstance(value, tuple) else type(value))
    # unsorted keys are a different encoding, and never served for the sorted one
    assert values.flex_dumps({"b": 1, "a": 2}, sort_keys=False) != values.flex_dumps({"b": 1, "a": 2})


def test_flex_dumps_memo_skips_non_builtin_values_and_big_outputs() -> None:
    from collections import OrderedDict

    from icechunk.format import values

    values._DUMPS_MEMO.clear()
    assert values.flex_dumps(OrderedDict(a=1)) == values.flex_dumps({"a": 1})  # not memoized
    values.flex_dumps({"big": "x" * 10_000})
    assert list(values._DUMPS_MEMO) == [("{'a': 1}", True)]  # only the plain dict


def test_flex_loads_memo_hands_out_independent_copies() -> None:
    from icechunk.format import values

    values._LOADS_MEMO.clear()
    value = {"author": "a", "nested": {"k": [1, 2, {"deep": [True, None]}], "blob": b"\x00\x01"}}
    data = values.flex_dumps(value)
    first = values.flex_loads(data)
    assert first == value
    first["nested"]["k"][2]["deep"].append("mutated by a caller")
    first["author"] = "someone else"
    second = values.flex_loads(data)  # from the memo
    assert data in values._LOADS_MEMO
    assert second == value
    assert second["nested"] is not first["nested"]
    with pytest.raises(ValueError):
        values.flex_loads(b"\xff\xff\xff")  # corrupt input is never memoized, always refused
    with pytest.raises(ValueError):
        values.flex_loads(b"\xff\xff\xff")


def test_fast_snapshot_info_is_the_dataclass_instance() -> None:
    import dataclasses
    from datetime import UTC, datetime

    from icechunk.snapshots import SnapshotInfo, snapshot_info

    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    args = ("ID", "PARENT", when, "message", {"k": [1]})
    fast, slow = snapshot_info(*args), SnapshotInfo(*args)
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.message = "changed"  # type: ignore[misc]


def test_datetimes_are_shared_once_made() -> None:
    from icechunk.snapshots import datetime_from_us

    first = datetime_from_us(1_775_664_957_464_123)
    assert datetime_from_us(1_775_664_957_464_123) is first
    assert first.isoformat() == "2026-04-08T16:15:57.464123+00:00"


def test_random_ids_are_unique_and_a_forked_child_does_not_repeat_its_parent() -> None:
    import os

    from icechunk.format.ids import ChunkId, SnapshotId

    ids = {ChunkId.random() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(len(i) == 12 for i in list(ids)[:10])
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    from tests.forking import in_forked_child

    # the child's next ids, to the parent
    child = in_forked_child(lambda: b"".join(SnapshotId.random() for _ in range(4)))
    ours = b"".join(SnapshotId.random() for _ in range(4))
    assert len(child) == 48
    assert child != ours  # without the reseed both would draw the very same bytes


# ---- column-wise table reading (format/_columns.py) ---------------------------------------------


@pytest.mark.parametrize("small_grouping", [0, 1024])
@given(values=st.lists(st.integers(0, 50), min_size=1, max_size=60))
def test_distinct_groups_values_either_way(small_grouping: int, values: list[int]) -> None:
    """Both the dict grouping (small inputs) and ``np.unique`` (large ones) give each value
    the index of its distinct value."""
    import icechunk.format._columns as columns

    saved = columns.SMALL_GROUPING
    columns.SMALL_GROUPING = small_grouping
    try:
        distinct, which = columns._distinct(np.array(values, dtype=np.int64))
    finally:
        columns.SMALL_GROUPING = saved
    assert sorted(distinct) == sorted(set(values))
    assert [distinct[i] for i in which.tolist()] == values


def test_columns_read_short_and_full_vtables() -> None:
    """A vtable lists only the slots up to the last field written; later slots read 0."""
    import flatbuffers

    from icechunk.format._columns import Columns

    b = flatbuffers.Builder(64)
    b.StartObject(1)
    b.PrependUint32Slot(0, 7, 0)
    short = b.EndObject()
    b.StartObject(3)
    b.PrependUint32Slot(2, 9, 0)
    b.PrependUint32Slot(0, 8, 0)
    full = b.EndObject()
    b.Finish(full)
    buf = bytes(b.Output())
    end = len(b.Bytes)
    head = end - len(buf)
    pos = np.array([end - short - head, end - full - head], dtype=np.int64)
    cols = Columns(buf, pos, 3)
    assert cols.scalar_field(0, "<u4").tolist() == [7, 8]
    assert cols.scalar_field(1, "<u4").tolist() == [0, 0]
    assert cols.scalar_field(2, "<u4").tolist() == [0, 9]
