"""benchmarks/gpu_queue.py (`make gpu-queue`): the one-line answer without CUDA, and one case end to end on
a CPU worker (real redis-server, API, Celery worker and local disk); the worker setting it is used to
try (DARKROOM_WORKER_SWITCH_INTERVAL_MS)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from darkroom.settings import Settings
from tests.support.harness import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_queue.py"
NO_CUDA = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 60
               ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env=env or NO_CUDA, cwd=ROOT, check=False)


@pytest.mark.timeout(90)
def test_without_cuda_it_says_so_and_exits_0():
    proc = run_script()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no CUDA device here") and "--device cpu" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_one_case_on_a_cpu_worker_end_to_end():
    env = {**NO_CUDA, "DARKROOM_WORKER_FUSE_EFFECTS": "false"}  # no compiles at the worker's start
    proc = run_script("--device", "cpu", "--quick", "--case", "64²",
                      "--worker-env", "DARKROOM_WORKER_SWITCH_INTERVAL_MS=0.5", env=env, timeout=220)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    table = proc.stdout[proc.stdout.index("# Darkroom GPU worker"):]
    assert "CPU worker" in table and "DARKROOM_WORKER_SWITCH_INTERVAL_MS=0.5" in table
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| 64²")]
    assert len(rows) == 1, table
    name, rate, per_job, decode, step, encode, batch, note = rows[0]
    assert name == "64² solarize, PNG" and note.startswith("200 jobs")
    assert float(rate) > 0 and float(batch) >= 1
    assert float(per_job) >= float(step) > 0 and float(decode) > 0 and float(encode) > 0


def test_switch_interval_setting_is_applied_by_the_worker(tmp_path):
    from worker.context import build_context

    before = sys.getswitchinterval()
    settings = Settings(redis_url="redis://127.0.0.1:1/0", local_storage_dir=tmp_path, device="cpu",
                        worker_fuse_effects=False, worker_switch_interval_ms=0.5)
    try:
        build_context(settings)  # connects to nothing yet
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        sys.setswitchinterval(before)
        build_context(settings.model_copy(update={"worker_switch_interval_ms": 0.0}))
        assert sys.getswitchinterval() == pytest.approx(before)  # 0 leaves Python's interval alone
    finally:
        sys.setswitchinterval(before)
