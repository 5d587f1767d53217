"""`darkroom up`: the whole service on one machine with nothing else installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from darkroom.cli.embedded import free_port
from tests.support.fal_queue import download_png, result, submit, wait_done
from tests.support.harness import ROOT, wait_for
from tests.support.images import gradient, png_data_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def start_up(tmp_path) -> tuple[subprocess.Popen, int, str]:
    """`darkroom up` with none of this environment's DARKROOM_* settings, waiting until ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    env["DARKROOM_TORCH_THREADS"] = "1"
    env["DARKROOM_WORKER_FUSE_EFFECTS"] = "false"  # no compiler runs in the background of these tests
    proc = subprocess.Popen(
        [sys.executable, "-m", "darkroom.cli", "up", "--port", str(port), "--data-dir", str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return proc, port, f"http://127.0.0.1:{port}"


def test_up_serves_a_job_and_stops_cleanly(tmp_path):
    proc, port, base = start_up(tmp_path)
    try:
        wait_for(lambda: _ok(base + "/ready"), timeout_s=60, interval_s=0.2)
        body = {"image_url": png_data_uri(gradient()), "enable_desaturate": True}
        sub = submit(base, body)
        wait_done(base, sub, interval_s=0.1)
        image = result(base, sub)["images"][0]
        assert image["url"].startswith(f"{base}/files/")
        out = download_png(image)
        assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() <= 1
        # the job reached Redis' append-only file, so a restart of `darkroom up` keeps it
        wait_for(lambda: sub["request_id"].encode() in _aof(tmp_path / "redis"), timeout_s=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0, output
    assert f"Darkroom is running at http://127.0.0.1:{port}" in output
    assert not _ok(base + "/health")


def _aof(redis_dir: Path) -> bytes:
    """The append-only file's contents: appendonly.aof (Redis 6) or the parts in appendonlydir/ (7+)."""
    files = [redis_dir / "appendonly.aof", *sorted((redis_dir / "appendonlydir").glob("*.aof"))]
    return b"".join(f.read_bytes() for f in files if f.is_file())


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def test_up_restarts_a_dead_worker(tmp_path):
    proc, _, base = start_up(tmp_path)
    try:
        wait_for(lambda: _ok(base + "/ready"), timeout_s=60, interval_s=0.2)
        workers = _children(proc.pid, "worker")
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: (w := _children(proc.pid, "worker")) and w != workers, timeout_s=30, interval_s=0.2)
        body = {"image_url": png_data_uri(gradient()), "enable_solarize": True}
        sub = submit(base, body)
        assert "error" not in wait_done(base, sub, interval_s=0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=40)
    assert proc.returncode == 0


def _children(pid: int, role: str) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line.split()[0]) for line in out.stdout.splitlines() if f"darkroom.cli {role}" in line]
