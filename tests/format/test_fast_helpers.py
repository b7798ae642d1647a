"""Fast helpers match their straightforward definitions (np.unique, Crockford base32)."""

from __future__ import annotations

import numpy as np
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
