"""Hypothesis strategies shared by the format tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def map_keys(max_size: int) -> st.SearchStrategy[str]:
    """Map keys: FlexBuffers keys are NUL-terminated, so they cannot hold NUL (same in Rust)."""
    return st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=max_size
    )


def json_values(*, key_size: int, dict_size: int, max_leaves: int) -> st.SearchStrategy[Any]:
    """JSON-like values: null, bools, 64-bit integers, finite floats, strings, lists, maps."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=False)
        | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(map_keys(key_size), inner, max_size=dict_size),
        max_leaves=max_leaves,
    )
