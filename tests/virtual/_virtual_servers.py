"""Test servers for virtual chunks: a counting HTTP file server on 127.0.0.1.

``http.server.SimpleHTTPRequestHandler`` has no ``Range`` support, so this handler serves
files from a directory with single byte ranges, ``ETag`` / ``Last-Modified`` headers and the
``If-Match`` / ``If-Unmodified-Since`` preconditions (412 when they fail), and counts the
requests it receives (per path) so tests can prove that nothing was fetched.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import os
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def file_etag(path: Path) -> str:
    return '"' + hashlib.md5(path.read_bytes()).hexdigest() + '"'


class CountingHTTPServer:
    """Serves ``root`` on an ephemeral port of 127.0.0.1; ``requests`` counts GET/HEADs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self, head: bool) -> None:
                with server._lock:
                    server.requests[self.path] += 1
                target = server.root / self.path.lstrip("/").split("?", 1)[0]
                from urllib.parse import unquote

                target = server.root / unquote(self.path.split("?", 1)[0].lstrip("/"))
                if not target.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = target.read_bytes()
                mtime = int(os.stat(target).st_mtime)
                etag = '"' + hashlib.md5(data).hexdigest() + '"'
                if_match = self.headers.get("If-Match")
                if_unmod = self.headers.get("If-Unmodified-Since")
                failed = if_match is not None and if_match.strip() not in ("*", etag)
                if if_unmod is not None:
                    limit = email.utils.parsedate_to_datetime(if_unmod).timestamp()
                    failed = failed or mtime > limit
                if failed:
                    self.send_response(412)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, body = 200, data
                rng = self.headers.get("Range")
                if rng:
                    m = _RANGE.match(rng.strip())
                    if m is None or int(m.group(1)) >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    start = int(m.group(1))
                    end = min(int(m.group(2)) + 1 if m.group(2) else len(data), len(data))
                    status, body = 206, data[start:end]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._serve(head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve(head=True)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def __enter__(self) -> CountingHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
