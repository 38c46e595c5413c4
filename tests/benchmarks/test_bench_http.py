"""The HTTP benchmark's servers take turns in rounds, so a change of load falls on each alike."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

from benchmarks import bench_http


def _server(name: str, seen: list[str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(name)
            self.send_response(200 if name == "a" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_servers_take_turns_and_each_gets_its_total(monkeypatch):
    monkeypatch.setattr(bench_http, "ROUND", 5)
    seen: list[str] = []
    servers = {name: _server(name, seen) for name in ("a", "b")}
    try:
        targets: dict[str, tuple[object, str, list[bytes], dict[str, str]]] = {
            name: (SimpleNamespace(port=server.server_address[1]), "/", [b"{}"], {}) for name, server in servers.items()
        }
        figures = bench_http.drive_in_turns(targets, clients=2, total=12)
    finally:
        for server in servers.values():
            server.shutdown()
    assert "".join(seen) == "aaaaabbbbbaaaaabbbbbaabb"
    assert (figures["a"]["ok"], figures["a"]["errors"]) == (12, 0)
    assert (figures["b"]["ok"], figures["b"]["errors"], figures["b"]["statuses"]) == (0, 12, {503: 12})
    assert all(figures[name]["throughput"] > 0 and figures[name]["p99"] >= figures[name]["p50"] for name in figures)
