"""Extra servers for tests: another Darkroom API with its own settings, and a webhook receiver."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from darkroom.settings import Settings
from tests.support.harness import ServerThread, wait_for


@contextmanager
def running_api(settings: Settings, verify: str | bool = True, **uvicorn_config) -> Iterator[str]:
    """A Darkroom API for ``settings`` served by uvicorn in a thread; yields its base URL."""
    from api.app import create_app

    thread = ServerThread(create_app(settings), settings.port, **uvicorn_config)
    thread.start()
    url = settings.api_base_url
    wait_for(lambda: _answers(url + "/health", verify), timeout_s=15)
    try:
        yield url
    finally:
        thread.stop()


def _answers(url: str, verify: str | bool) -> bool:
    try:
        return httpx.get(url, timeout=0.5, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST; answers 500 to the first ``fail_first`` of them, then 200 (after
    ``delay_s``: a slow receiver keeps deliveries in flight)."""

    fail_first: int = 0
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.delay_s)
                code = 500 if len(receiver.answered) < receiver.fail_first else 200
                receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.answered.append(code)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for_success(self, timeout_s: float = 20) -> Received:
        wait_for(lambda: 200 in self.answered, timeout_s=timeout_s)
        return self.received[self.answered.index(200)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
