"""Transient failures are retried with backoff up to ``settings.retries.max_tries``.

Failures are injected by real components: a wrapper storage raising transient errors, and
an HTTP proxy in front of moto that answers 503 (before or after forwarding the request).
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from icechunk._errors import NotFoundError, StorageError
from icechunk.storage import (
    StorageRetriesSettings,
    StorageSettings,
    in_memory_storage,
)
from icechunk.storage._retry import RetryPolicy, TransientStorageError, is_transient, retrying
from icechunk.testing._wrappers import FlakyStorage
from icechunk.testing.moto import MotoS3Server


def _settings(max_tries: int, initial_ms: int = 1, max_ms: int = 5) -> StorageSettings:
    return StorageSettings(
        retries=StorageRetriesSettings(max_tries=max_tries, initial_backoff_ms=initial_ms, max_backoff_ms=max_ms)
    )


# ---- the retry loop -------------------------------------------------------------------------


def test_policy_from_settings_fills_reference_defaults() -> None:
    assert RetryPolicy.from_settings(None) == RetryPolicy(10, 100, 180_000)
    assert RetryPolicy.from_settings(StorageRetriesSettings(max_tries=3)) == RetryPolicy(3, 100, 180_000)
    assert RetryPolicy.from_settings(StorageRetriesSettings(max_tries=0)).max_tries == 1


def test_backoff_is_jittered_exponential_and_capped() -> None:
    policy = RetryPolicy(10, initial_backoff_ms=100, max_backoff_ms=1000)
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        waits = [policy.backoff_seconds(failures) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # jitter spreads over the range
    assert RetryPolicy(3, 0, 0).backoff_seconds(5) == 0.0


def test_transient_classification() -> None:
    assert is_transient(TransientStorageError("x"))
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert not is_transient(StorageError("x"))
    assert not is_transient(NotFoundError("x"))
    assert isinstance(TransientStorageError("x"), StorageError)


async def test_retrying_gives_up_after_max_tries_and_reraises_the_last_error() -> None:
    calls: list[int] = []

    async def always_failing(attempt: int) -> None:
        calls.append(attempt)
        raise TransientStorageError(f"failure {attempt}")

    with pytest.raises(TransientStorageError, match="failure 4"):
        await retrying(RetryPolicy(4, 1, 2), always_failing)
    assert calls == [1, 2, 3, 4]


async def test_retrying_does_not_retry_permanent_errors() -> None:
    calls: list[int] = []

    async def missing(attempt: int) -> None:
        calls.append(attempt)
        raise NotFoundError("gone")

    with pytest.raises(NotFoundError):
        await retrying(RetryPolicy(5, 1, 1), missing)
    assert calls == [1]


async def test_retrying_waits_between_tries() -> None:
    async def fail_twice(attempt: int) -> int:
        if attempt < 3:
            raise TransientStorageError("flaky")
        return attempt

    started = time.perf_counter()
    # full jitter: the two waits are each drawn from [0, 40ms] and [0, 80ms]
    assert await retrying(RetryPolicy(3, 40, 1000), fail_twice) == 3
    assert time.perf_counter() - started < 0.5


# ---- a wrapper storage injecting transient failures -----------------------------------------


async def test_flaky_storage_recovers_within_max_tries() -> None:
    inner = in_memory_storage()
    flaky = FlakyStorage(inner, failures=3, settings=_settings(max_tries=4))
    assert (await flaky.put("k", b"v", mode="create")).ok
    assert flaky.injected == 3
    assert flaky.attempts == 4
    assert await inner.get("k") == b"v"


async def test_flaky_storage_fails_when_tries_run_out() -> None:
    inner = in_memory_storage()
    flaky = FlakyStorage(inner, failures=3, operations=["get"], settings=_settings(max_tries=3))
    await inner.put("k", b"v")
    with pytest.raises(StorageError):
        await flaky.get("k")
    assert flaky.attempts == 3
    # the next call gets through (the fault budget is spent)
    assert await flaky.get("k") == b"v"


async def test_flaky_storage_with_max_tries_one_does_not_retry() -> None:
    flaky = FlakyStorage(in_memory_storage(), failures=1, settings=_settings(max_tries=1))
    with pytest.raises(TransientStorageError):
        await flaky.head("k")
    assert flaky.attempts == 1


async def test_not_found_is_not_retried_through_the_wrapper() -> None:
    flaky = FlakyStorage(in_memory_storage(), failures=0, settings=_settings(max_tries=5))
    with pytest.raises(NotFoundError):
        await flaky.get("missing")
    assert flaky.attempts == 1


# ---- S3 behind a proxy that answers 503 -----------------------------------------------------


class _FaultyProxy:
    """HTTP proxy to moto; the next ``fail_before`` requests get 503 without reaching moto,
    the next ``fail_after`` requests reach moto but their answer is replaced by a 503."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.fail_before = 0
        self.fail_after = 0
        self.requests: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.requests.append(self.command)
                    before = proxy.fail_before > 0
                    after = not before and proxy.fail_after > 0
                    if before:
                        proxy.fail_before -= 1
                    elif after:
                        proxy.fail_after -= 1
                if not before:
                    conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                    conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                    answer = conn.getresponse()
                    payload = answer.read()
                    conn.close()
                if before or after:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(moto_server: MotoS3Server) -> Iterator[_FaultyProxy]:
    p = _FaultyProxy(moto_server.endpoint_url)
    yield p
    p.close()


def _s3(moto_server: MotoS3Server, proxy: _FaultyProxy, max_tries: int):
    return moto_server.storage(endpoint_url=proxy.endpoint_url).with_settings(_settings(max_tries))


def test_s3_requests_are_retried_after_503s(moto_server: MotoS3Server, proxy: _FaultyProxy) -> None:
    storage = _s3(moto_server, proxy, max_tries=4)
    proxy.fail_before = 3
    assert asyncio.run(storage.put("k", b"value")).ok
    assert proxy.requests == ["PUT"] * 4
    proxy.fail_before = 3
    assert asyncio.run(storage.get("k")) == b"value"
    proxy.fail_before = 2
    assert [i.key for i in storage.list_objects_metadata()] == ["k"]
    proxy.fail_before = 3
    assert asyncio.run(storage.delete_many(["k"])) == 1


def test_s3_gives_up_after_max_tries(moto_server: MotoS3Server, proxy: _FaultyProxy) -> None:
    storage = _s3(moto_server, proxy, max_tries=2)
    proxy.fail_before = 5
    with pytest.raises(StorageError) as error:
        asyncio.run(storage.put("k", b"value"))
    assert "503" in str(error.value)
    assert proxy.requests == ["PUT", "PUT"]


def test_s3_not_found_is_not_retried(moto_server: MotoS3Server, proxy: _FaultyProxy) -> None:
    storage = _s3(moto_server, proxy, max_tries=5)
    with pytest.raises(NotFoundError):
        asyncio.run(storage.get("missing"))
    assert len(proxy.requests) == 1


def test_s3_conditional_create_whose_answer_was_lost_reports_success(
    moto_server: MotoS3Server, proxy: _FaultyProxy
) -> None:
    """The create landed but its answer was a 503; the retry sees our own write id."""
    storage = _s3(moto_server, proxy, max_tries=3)
    proxy.fail_after = 1
    result = asyncio.run(storage.put("tag", b"mine", mode="create"))
    assert result.ok
    _, version = asyncio.run(storage.get_with_version("tag"))
    assert result.version == version
    # someone else's existing object is still a lost race after a retried attempt
    proxy.fail_before = 1
    assert not asyncio.run(storage.put("tag", b"theirs", mode="create")).ok


def test_s3_compare_and_swap_whose_answer_was_lost_reports_success(
    moto_server: MotoS3Server, proxy: _FaultyProxy
) -> None:
    storage = _s3(moto_server, proxy, max_tries=3)
    asyncio.run(storage.put("repo", b"v1"))
    _, token = asyncio.run(storage.get_with_version("repo"))
    proxy.fail_after = 1
    assert asyncio.run(storage.put("repo", b"v2", mode=token)).ok
    assert asyncio.run(storage.get("repo")) == b"v2"
    proxy.fail_after = 1
    assert not asyncio.run(storage.put("repo", b"v3", mode=token)).ok  # stale: really lost
