from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from icechunk import Repository, Session, local_filesystem_storage


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    """A fresh repository on local disk."""
    return Repository.create(local_filesystem_storage(str(tmp_path / "repo")))


def _chunk_coords(session: Session, path: str) -> set[tuple[int, ...]]:
    async def collect() -> set[tuple[int, ...]]:
        return {c async for c in session.chunk_coordinates(path)}

    return asyncio.run(collect())


@pytest.fixture
def chunk_coords() -> Callable[[Session, str], set[tuple[int, ...]]]:
    """Every initialised chunk index of an array, through ``Session.chunk_coordinates``."""
    return _chunk_coords
