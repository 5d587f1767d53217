"""Session fixtures: a real redis-server, moto's S3 server, the API over HTTP and a Celery worker.

Everything runs on free loopback ports and is started once per session; tests use unique request ids
instead of flushing, so the worker's queue bindings survive.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from darkroom.cli.embedded import free_port, start_redis
from darkroom.settings import Settings
from tests.support.harness import (
    ServerThread,
    answers,
    is_loopback,
    make_settings,
    start_worker,
    stop_process,
    wait_for,
)


def _session_env(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment (so in every process the tests start) until the
    session ends, then what it was."""
    old = os.environ.get(name)
    os.environ[name] = value
    yield
    if old is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = old


@pytest.fixture(scope="session", autouse=True)
def private_state_home(tmp_path_factory) -> Iterator[None]:
    """The CLI keeps per-user records under $XDG_STATE_HOME (the embedded Redis, submit manifests):
    tests, and the processes they start, write them to a temporary folder, never the real home."""
    yield from _session_env("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session", autouse=True)
def eager_effects() -> Iterator[None]:
    """Workers the tests start run effects eagerly: compiling fused kernels (worker.effects.fused) costs
    each worker process seconds of CPU. tests/unit/test_fused.py turns fusing on in its own process."""
    yield from _session_env("DARKROOM_WORKER_FUSE_EFFECTS", "false")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict]:
    """moto's S3 server, in this process: ``{"port": ..., "server": ...}``. A fault test that restarts
    it on the same port puts the new server under "server", which is stopped at the end."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    holder = {"port": port, "server": ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)}
    holder["server"].start()
    yield holder
    holder["server"].stop()


@pytest.fixture(scope="session")
def s3_endpoint(s3_server) -> str:
    return f"http://127.0.0.1:{s3_server['port']}"


@pytest.fixture(scope="session")
def api_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def settings(redis_url, s3_endpoint, api_port) -> Settings:
    return make_settings(redis_url, s3_endpoint, api_port)


@pytest.fixture(scope="session")
def api_url(settings) -> Iterator[str]:
    from api.app import create_app

    thread = ServerThread(create_app(settings), settings.port)
    thread.start()
    url = settings.api_base_url
    wait_for(lambda: answers(url + "/health"), timeout_s=15)
    yield url
    thread.stop()


@pytest.fixture(scope="session")
def worker(settings, api_url) -> Iterator[subprocess.Popen]:
    proc = start_worker(settings, f"test-{os.getpid()}@localhost")
    yield proc
    stop_process(proc)


@pytest.fixture
def client(api_url, worker) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as c:
        yield c


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
        if isinstance(address, tuple) and not is_loopback(address[0]):
            raise refuse(f"connect to {address}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if isinstance(address, tuple) and not is_loopback(address[0]):
            raise refuse(f"connect_ex to {address}")
        return real_connect_ex(self, address)

    def create_connection(address, *args, **kwargs):
        if not is_loopback(address[0]):
            raise refuse(f"create_connection to {address}")
        return real_create(address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not is_loopback(name):
            attempts.append(f"DNS look-up of {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"loopback_only: blocked DNS look-up of {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert not attempts, f"non-loopback network access attempted: {attempts}"
