"""Session fixtures: a real redis-server, moto's S3 server, the API over HTTP and a Celery worker.

Everything runs on free loopback ports and is started once per session; tests use unique request ids
instead of flushing, so the worker's queue bindings survive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from darkroom.cli.embedded import free_port, start_redis
from darkroom.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], object], timeout_s: float = 20.0, interval_s: float = 0.02):
    """Poll ``condition`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def api_port() -> int:
    return free_port()


def make_settings(redis_url: str, s3_endpoint: str | None, port: int, **overrides) -> Settings:
    """Settings for tests: real servers, short timeouts."""
    values = dict(
        redis_url=redis_url,
        port=port,
        storage_backend="s3" if s3_endpoint else "local",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_bucket="darkroom-test",
        s3_create_bucket=True,
        s3_connect_timeout_s=1.0,
        s3_read_timeout_s=2.0,
        s3_max_attempts=1,
        visibility_timeout_s=30,
        task_soft_time_limit_s=15,
        task_hard_time_limit_s=20,
        retry_backoff_base_s=0.05,
        retry_backoff_max_s=0.5,
        retry_max=2,
        fetch_connect_timeout_s=1.0,
        fetch_timeout_s=3.0,
        fetch_allow_hosts=["127.0.0.1", "::1", "localhost"],  # local image/webhook servers in tests
        broker_restore_interval_s=1.0,
        recovery_interval_s=0.2,  # webhook retries are sent by the recovery sweep
        recovery_grace_s=2.0,
        webhook_backoff_base_s=0.01,
        webhook_backoff_max_s=0.05,
        webhook_timeout_s=2.0,
        sync_run_timeout_s=30.0,
        metrics_port=0,  # workers serve no metrics unless a test asks for a port
        log_level="INFO",
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(redis_url, s3_endpoint, api_port) -> Settings:
    return make_settings(redis_url, s3_endpoint, api_port)


class ServerThread(threading.Thread):
    """uvicorn serving an app in a background thread of the test process."""

    def __init__(self, app, port: int, **config) -> None:
        import uvicorn

        super().__init__(daemon=True)
        config = {"host": "127.0.0.1", "port": port, "log_level": "warning", **config}
        self.server = uvicorn.Server(uvicorn.Config(app, **config))

    def run(self) -> None:
        self.server.run()

    def stop(self) -> None:
        self.server.should_exit = True
        self.join(timeout=10)


@pytest.fixture(scope="session")
def api_url(settings) -> Iterator[str]:
    from api.app import create_app

    thread = ServerThread(create_app(settings), settings.port)
    thread.start()
    url = settings.api_base_url
    wait_for(lambda: _answers(url + "/health"), timeout_s=15)
    yield url
    thread.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def start_worker(
    settings: Settings, name: str, *extra: str, env: dict | None = None, stderr=None
) -> subprocess.Popen:
    """A real `darkroom worker` process configured by ``settings`` (its log on ``stderr``, when given)."""
    full_env = {**os.environ, **settings.to_env(), **(env or {})}
    full_env.setdefault("DARKROOM_TORCH_THREADS", "1")
    cmd = [sys.executable, "-m", "darkroom.cli", "worker", "--name", name, *extra]
    return subprocess.Popen(cmd, env=full_env, cwd=ROOT, stderr=stderr)


def stop_process(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def worker(settings, api_url) -> Iterator[subprocess.Popen]:
    proc = start_worker(settings, f"test-{os.getpid()}@localhost")
    yield proc
    stop_process(proc)


@pytest.fixture
def client(api_url, worker) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as c:
        yield c


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _is_loopback(host: object) -> bool:
    import ipaddress

    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch) -> Iterator[list[str]]:
    """Fail the test if anything in this process connects to, or asks DNS about, a non-loopback host.

    Connections and look-ups are blocked (OSError) and recorded; the test fails at teardown, even
    when the attempt happened on another thread (uvicorn's) and its error was swallowed.
    """
    import socket

    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create, real_getaddrinfo = socket.create_connection, socket.getaddrinfo

    def refuse(what: str) -> OSError:
        attempts.append(what)
        return OSError(f"loopback_only: blocked {what}")

    def connect(self, address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            raise refuse(f"connect to {address}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            raise refuse(f"connect_ex to {address}")
        return real_connect_ex(self, address)

    def create_connection(address, *args, **kwargs):
        if not _is_loopback(address[0]):
            raise refuse(f"create_connection to {address}")
        return real_create(address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_loopback(name):
            attempts.append(f"DNS look-up of {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"loopback_only: blocked DNS look-up of {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert not attempts, f"non-loopback network access attempted: {attempts}"
