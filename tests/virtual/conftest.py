from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _virtual_servers import CountingHTTPServer

from icechunk.testing.moto import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3Server


@pytest.fixture(scope="session")
def moto_virtual() -> Iterator[MotoS3Server]:
    """A moto S3 server on 127.0.0.1 with the bucket ``testbucket`` (virtual chunk sources)."""
    pytest.importorskip("moto.server")
    with MotoS3Server(bucket="testbucket") as server:
        yield server


@pytest.fixture(scope="session")
def s3_client(moto_virtual: MotoS3Server) -> Any:
    """A boto3 client on the moto server (to upload the objects virtual refs point to)."""
    boto3 = pytest.importorskip("boto3")
    return boto3.client(
        "s3",
        endpoint_url=moto_virtual.endpoint_url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
    )


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[CountingHTTPServer]:
    """A counting HTTP file server on 127.0.0.1 serving ``tmp_path / "www"``."""
    root = tmp_path / "www"
    root.mkdir()
    with CountingHTTPServer(root) as server:
        yield server
