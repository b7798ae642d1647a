from __future__ import annotations

from collections.abc import Iterator

import pytest

from icechunk.testing.moto import MotoS3Server


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoS3Server]:
    """A moto S3 server on 127.0.0.1 (ephemeral port) for the module's tests."""
    pytest.importorskip("moto.server")
    with MotoS3Server(bucket="icechunk-concurrency") as server:
        yield server
