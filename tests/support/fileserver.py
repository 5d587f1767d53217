"""A loopback HTTP(S) server for fetch tests: fixed files, redirects, slow and oversized bodies.

Routes: ``/file/<name>`` (a registered body and content type), ``/redirect?to=<url>`` (302),
``/loop`` (redirects to itself forever), ``/status/<code>``, ``/slow`` (drips a byte every 0.2 s),
``/big?n=<bytes>`` (chunked, no Content-Length), ``/gzip``. Every request is recorded with its Host.
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field


@dataclass
class Hit:
    path: str
    host: str


@dataclass
class FileServer:
    host: str = "127.0.0.1"
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.hits.append(Hit(self.path, self.headers.get("Host", "")))
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                route = getattr(owner, "_" + url.path.strip("/").split("/", 1)[0], None)
                if route is None:
                    self._send(404, b"no such route")
                else:
                    route(self, url.path, query)

            def _send(self, code: int, body: bytes, ctype: str = "text/plain", **headers: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str, host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{name}:{self.port}{path}"

    def add(self, name: str, body: bytes, content_type: str = "image/png") -> str:
        self.files[name] = (body, content_type)
        return f"/file/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- routes ---

    def _file(self, h, path: str, query: dict) -> None:
        found = self.files.get(path.split("/", 2)[-1])
        if found is None:
            h._send(404, b"not found")
        else:
            h._send(200, found[0], found[1])

    def _redirect(self, h, path: str, query: dict) -> None:
        h._send(int(query.get("code", 302)), b"", Location=query["to"])

    def _loop(self, h, path: str, query: dict) -> None:
        h._send(302, b"", Location="/loop")

    def _status(self, h, path: str, query: dict) -> None:
        h._send(int(path.rsplit("/", 1)[-1]), b"status")

    def _gzip(self, h, path: str, query: dict) -> None:
        import gzip

        h._send(200, gzip.compress(b"\0" * 10000), "image/png", Content_Encoding="gzip")

    def _slow(self, h, path: str, query: dict) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        for _ in range(1000):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.2)

    def _big(self, h, path: str, query: dict) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"x" * 4096
        for _ in range(int(query.get("n", 1_000_000)) // len(chunk) + 1):
            try:
                h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:  # the client stopped reading: that is the point
                return
        h.wfile.write(b"0\r\n\r\n")
