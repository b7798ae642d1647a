"""Manifest splitting: which chunk-index boxes get their own manifest (FORMAT.md §6.4)."""

from __future__ import annotations

import itertools
import re

import numpy as np

from icechunk.config import ManifestSplitDimCondition, ManifestSplittingConfig

__all__ = ["split_edges", "split_extents", "split_ids"]


def _dim_matches(cond: object, axis: int, name: str | None) -> bool:
    if isinstance(cond, ManifestSplitDimCondition.Axis):
        return cond.axis == axis
    if isinstance(cond, ManifestSplitDimCondition.DimensionName):
        return name is not None and re.search(cond.regex, name) is not None
    return isinstance(cond, ManifestSplitDimCondition.Any)


def split_edges(
    path: str,
    dimension_names: tuple[str | None, ...] | None,
    num_chunks: tuple[int, ...],
    config: ManifestSplittingConfig | None,
) -> list[list[int]]:
    """Per dimension, the chunk-index boundaries of the splits (``[0, ..., num_chunks]``)."""
    ndim = len(num_chunks)
    sizes: list[int | None] = [None] * ndim
    for condition, dim_rules in (config.split_sizes if config and config.split_sizes else ()):
        if not condition.matches(path):
            continue
        for axis in range(ndim):
            if sizes[axis] is not None:
                continue
            name = dimension_names[axis] if dimension_names else None
            for dim_cond, size in dim_rules:
                if _dim_matches(dim_cond, axis, name):
                    sizes[axis] = max(int(size), 1)
                    break
    edges = []
    for n, split in zip(num_chunks, sizes, strict=True):
        if split is None or split >= n:
            edges.append([0, n])
        else:
            edges.append([*range(0, n, split), n])
    return edges


def split_extents(edges: list[list[int]]) -> list[tuple[tuple[int, int], ...]]:
    """The split boxes, row-major with the first dimension outermost."""
    per_dim = [list(itertools.pairwise(e)) for e in edges]
    return [tuple(box) for box in itertools.product(*per_dim)]


def split_ids(coords: np.ndarray, edges: list[list[int]]) -> np.ndarray:
    """Row-major split index of each chunk coordinate row."""
    n = coords.shape[0]
    ids = np.zeros(n, dtype=np.int64)
    for axis, e in enumerate(edges):
        inner = np.asarray(e[1:-1], dtype=np.int64)
        idx = np.searchsorted(inner, coords[:, axis].astype(np.int64), side="right")
        ids = ids * (len(e) - 1) + idx
    return ids
