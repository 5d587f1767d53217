"""Helpers the tests share: polling, settings with short timeouts, a uvicorn server thread, and
real `darkroom worker` processes. (Fixtures live in tests/conftest.py.)"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from darkroom.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


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


def answers(url: str) -> bool:
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


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
