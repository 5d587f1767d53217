"""How `darkroom up` starts: a busy port refused before anything starts, "running at" only once the
API listens, a quiet worker (no Celery banner, no root warning: one line of our own instead) whose
metrics stay on loopback; and a plain `darkroom worker`, which keeps Celery's banner and warning."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from darkroom.cli.embedded import free_port, listening, worker_env
from tests.support.harness import ROOT, make_settings, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RUNNING_AT = "Darkroom is running at"
BANNER_LINE = "[queues]"  # a line of Celery's start-up banner
ROOT_WARNING = "SecurityWarning"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without its DARKROOM_* settings (as a user's shell would be), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    return {**env, "DARKROOM_TORCH_THREADS": "1", "DARKROOM_WORKER_FUSE_EFFECTS": "false", **extra}


class Output:
    """A process's stdout and stderr, read line by line on a thread; ``on_line`` runs as each arrives."""

    def __init__(self, proc: subprocess.Popen, on_line=None) -> None:
        self.lines: list[str] = []
        self.on_line = on_line
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if self.on_line is not None:
                self.on_line(line)
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def darkroom(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "darkroom.cli", *args], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop(proc: subprocess.Popen, output: Output) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)
    output.thread.join(timeout=5)


def test_a_busy_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ran = subprocess.run(
            [sys.executable, "-m", "darkroom.cli", "up", "--port", str(port), "--data-dir", str(tmp_path)],
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
        )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    message = f"port {port} is in use (another darkroom up?); choose one with --port or DARKROOM_PORT"
    assert message in ran.stderr
    assert RUNNING_AT not in ran.stdout + ran.stderr
    assert not (tmp_path / "redis").exists(), "nothing starts (no Redis) when the port is taken"


@pytest.fixture(scope="module")
def up(tmp_path_factory) -> Iterator[dict]:
    """One `darkroom up` with worker metrics on a free port; records whether the API accepted
    connections at the moment "running at" was printed."""
    port, metrics_port = free_port(), free_port()
    seen: dict = {"port": port, "metrics_port": metrics_port}

    def on_line(line: str) -> None:
        if RUNNING_AT in line:
            seen["listening_when_announced"] = listening("127.0.0.1", port)

    data = tmp_path_factory.mktemp("up")
    proc = darkroom("up", "--port", str(port), "--data-dir", str(data),
                    env=clean_env(DARKROOM_METRICS_PORT=str(metrics_port)))
    output = Output(proc, on_line)
    seen["output"] = output
    try:
        wait_for(lambda: output.has(RUNNING_AT) or proc.poll() is not None, timeout_s=60, interval_s=0.1)
        wait_for(lambda: _answers(f"http://127.0.0.1:{metrics_port}/metrics"), timeout_s=60, interval_s=0.2)
        wait_for(lambda: output.has(" started: "), timeout_s=10)
        yield seen
    finally:
        stop(proc, output)
    assert proc.returncode == 0, output.text


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def test_running_at_is_printed_once_the_api_listens(up):
    output = up["output"]
    assert [line for line in output.lines if RUNNING_AT in line] == [
        f"{RUNNING_AT} http://127.0.0.1:{up['port']}  (Ctrl-C to stop)\n"
    ]
    assert up["listening_when_announced"] is True
    assert _answers(f"http://127.0.0.1:{up['port']}/health")


def test_the_worker_starts_quietly_with_one_line_of_its_own(up):
    text = up["output"].text
    assert BANNER_LINE not in text and "-------------- " not in text, text
    assert ROOT_WARNING not in text and "superuser privileges" not in text, text
    started = [line for line in up["output"].lines if "worker.app" in line and " started: " in line]
    assert len(started) == 1, text
    assert "8 job slots, queues darkroom, darkroom.webhooks, broker redis://127.0.0.1:" in started[0]


def test_worker_metrics_listen_on_loopback_only(up):
    metrics_port = up["metrics_port"]
    assert _answers(f"http://127.0.0.1:{metrics_port}/metrics")
    assert listening_addresses(metrics_port) == {"127.0.0.1"}
    assert f"metrics at http://127.0.0.1:{metrics_port}/metrics" in up["output"].text


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on TCP ``port`` (Linux: /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            pytest.skip("needs Linux's /proc/net/tcp")
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(_address(address))
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # four little-endian words
    return socket.inet_ntop(socket.AF_INET6, words)


def test_up_gives_its_worker_the_apis_address_unless_set():
    assert worker_env({}, "127.0.0.1") == {
        "DARKROOM_METRICS_HOST": "127.0.0.1",
        "DARKROOM_WORKER_BANNER": "false",
        "DARKROOM_WORKER_ROOT_WARNING": "false",
    }
    assert worker_env({}, "0.0.0.0")["DARKROOM_METRICS_HOST"] == "0.0.0.0"
    chosen = {"DARKROOM_METRICS_HOST": "10.1.2.3", "DARKROOM_WORKER_BANNER": "true", "PATH": "/bin"}
    assert worker_env(chosen, "127.0.0.1") == {  # what the user set wins; nothing else is touched
        "DARKROOM_METRICS_HOST": "10.1.2.3",
        "DARKROOM_WORKER_BANNER": "true",
        "DARKROOM_WORKER_ROOT_WARNING": "false",
    }


def test_a_plain_worker_keeps_celerys_banner_and_root_warning(redis_url, s3_endpoint):
    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/7", s3_endpoint, free_port())
    proc = darkroom("worker", "--name", f"plain-{os.getpid()}@localhost",
                    env={**clean_env(), **settings.to_env(), "DARKROOM_TORCH_THREADS": "1"})
    output = Output(proc)
    try:
        wait_for(lambda: output.has(" ready.") or proc.poll() is not None, timeout_s=60, interval_s=0.1)
    finally:
        stop(proc, output)
    assert BANNER_LINE in output.text, output.text
    assert not any("worker.app" in line and " started: " in line for line in output.lines)
    if os.geteuid() == 0:  # Celery warns only when the worker runs as root
        assert ROOT_WARNING in output.text and "superuser privileges" in output.text, output.text
