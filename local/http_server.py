"""A threaded HTTP server running in the background, shared by the front door and the invoke API.

The standard library server is enough here: requests are small, the handlers do the work, and it
adds no dependency. Each request gets its own thread (like concurrent Lambda invocations); the
server thread is stoppable, so tests and Ctrl-C shut it down cleanly.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """The request body exceeds the limit of the service being emulated."""


class LocalHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets connections when many clients (or a burst of
    # QPay callbacks) connect at once.
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler_class: type[BaseHTTPRequestHandler], app: Any):
        self.app = app
        super().__init__(address, handler_class)


class BackgroundServer:
    """Owns one LocalHTTPServer and the thread that serves it."""

    def __init__(
        self, name: str, handler_class: type[BaseHTTPRequestHandler], app: Any, host: str, port: int
    ):
        self.name = name
        self.handler_class = handler_class
        self.app = app
        self.host = host
        self.requested_port = port
        self._server: LocalHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        try:
            self._server = LocalHTTPServer((self.host, self.requested_port), self.handler_class, self.app)
        except OSError as error:
            raise OSError(
                f"{self.name} cannot listen on {self.host}:{self.requested_port}: {error}"
            ) from error
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=self.name,
            daemon=True,
        )
        self._thread.start()
        logger.info("%s listening on %s", self.name, self.url)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None


class LocalRequestHandler(BaseHTTPRequestHandler):
    """Body reading with a size limit, plain response helpers, and logging through `logging`."""

    protocol_version = "HTTP/1.1"
    server: LocalHTTPServer
    max_body_bytes = 10 * 1024 * 1024

    def version_string(self) -> str:
        return "qpay-local"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def handle_expect_100(self) -> bool:
        # Refuse an oversized upload before the client sends it (curl asks first above 1 MB).
        length = self.content_length()
        if length is not None and length > self.max_body_bytes:
            self.reply_too_large()
            return False
        return super().handle_expect_100()

    def reply_too_large(self) -> None:
        """Subclasses send the emulated service's 413 body."""
        self.close_connection = True
        self.send_plain(413, b"", [("Connection", "close")])

    def read_body(self) -> bytes:
        """The request body; BodyTooLarge (without reading it all) when over max_body_bytes."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.content_length() or 0
        if length > self.max_body_bytes:
            self.close_connection = True
            raise BodyTooLarge(f"{length} bytes")
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            size = int(size_line or b"0", 16)
            if size == 0:
                # Trailer section ends with an empty line.
                while self.rfile.readline(1024).strip():
                    pass
                return b"".join(chunks)
            total += size
            if total > self.max_body_bytes:
                self.close_connection = True
                raise BodyTooLarge(f"more than {self.max_body_bytes} bytes (chunked)")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)

    def send_plain(self, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = json.dumps(payload).encode()
        self.send_plain(status, body, [("Content-Type", "application/json"), *headers])
