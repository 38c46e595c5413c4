"""A webhook receiver on 127.0.0.1 for the delivery tests: it records requests and answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Receiver:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    endless_body: bool = False

    def url(self, path: str = "/hooks/engine") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def webhook_server(settings) -> Iterator[Receiver]:
    """A local receiver; the settings let webhooks reach it (http, loopback), as a test site would."""
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = True
    settings.ALERTS_WEBHOOK_ALLOW_HTTP = True
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
            if state.delay:
                time.sleep(state.delay)
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            if state.endless_body:
                self.send_header("Content-Length", str(10**12))
                self.end_headers()
                try:
                    chunk = b"x" * 65536
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline:
                        self.wfile.write(chunk)
                except OSError:
                    return  # the client hung up without reading: what we want
                return
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self) -> None:
            state.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": b""})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
