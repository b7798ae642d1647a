"""An S3 API server on 127.0.0.1 for tests and benchmarks (moto in server mode).

Needs the test dependency ``moto[server]``.  Nothing leaves the loopback interface.

moto handles requests on parallel threads without locking its store: a conditional PUT
checks ``If-Match`` / ``If-None-Match`` and then stores the object in a separate step, so two
concurrent PUTs conditioned on the same ETag can both succeed (observed here: about one lost
update per two 4x100 compare-and-swap runs, always two successes from the same base ETag),
and a GET racing with an overwrite of the same key can fail with a 500.  Real S3 is atomic.
By default the helper therefore runs moto's WSGI application under one lock
(``serialize_requests=True``), which gives S3's atomicity without changing anything else;
pass False to see raw moto.

Examples
--------
>>> with MotoS3Server() as server:                      # doctest: +SKIP
...     storage = server.storage(prefix="my-repo")
"""

from __future__ import annotations

import logging
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from icechunk.storage import Storage, s3_storage

__all__ = ["MotoS3Server"]

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # dummy credentials: moto does not check them
REGION = "us-east-1"


class MotoS3Server:
    """A threaded moto S3 server on an ephemeral port of 127.0.0.1, with one bucket.

    Parameters
    ----------
    bucket
        Name of the bucket created on start.
    """

    def __init__(self, bucket: str = "icechunk-test", *, serialize_requests: bool = True) -> None:
        self.bucket = bucket
        self.serialize_requests = serialize_requests
        self._server: Any = None
        self.endpoint_url = ""

    def start(self) -> MotoS3Server:
        """Start the server and create the bucket."""
        from moto.server import ThreadedMotoServer

        # moto's werkzeug server logs every request at INFO
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server_class = _serialized_server_class() if self.serialize_requests else ThreadedMotoServer
        self._server = server_class(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self.create_bucket(self.bucket)
        return self

    def create_bucket(self, name: str) -> None:
        """Create a bucket (a plain path-style ``PUT /<bucket>``)."""
        request = urllib.request.Request(f"{self.endpoint_url}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def stop(self) -> None:
        """Stop the server (its data is lost)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def storage(self, prefix: str | None = None, **kwargs: Any) -> Storage:
        """An ``s3_storage`` on this server (a fresh random prefix unless one is given)."""
        options: dict[str, Any] = {
            "bucket": self.bucket,
            "prefix": prefix if prefix is not None else f"test-{uuid.uuid4().hex}",
            "endpoint_url": self.endpoint_url,
            "allow_http": True,
            "force_path_style": True,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
        }
        options.update(kwargs)
        return s3_storage(**options)


def _serialized_server_class() -> type:
    """``ThreadedMotoServer`` whose WSGI application runs one request at a time."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class SerializedMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            lock = threading.Lock()

            def serialized(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
                with lock:  # the whole request, body included, under one lock
                    result = app(environ, start_response)
                    try:
                        return list(result)
                    finally:
                        close = getattr(result, "close", None)
                        if close is not None:
                            close()

            self._server = make_server(
                self._ip_address, self._port, serialized, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return SerializedMotoServer
