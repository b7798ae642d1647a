"""``sorted_unique`` is ``np.unique`` for 1-d arrays (without importing ``numpy.ma``)."""

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
