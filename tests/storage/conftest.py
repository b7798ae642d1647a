from __future__ import annotations

from collections.abc import Iterator

import pytest

from icechunk.testing.moto import MotoS3Server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoS3Server]:
    """A moto S3 server on 127.0.0.1 (ephemeral port) with one bucket, for the whole session."""
    pytest.importorskip("moto.server")
    with MotoS3Server(bucket="icechunk-test") as server:
        yield server
