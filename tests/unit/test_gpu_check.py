"""benchmarks/gpu_check.py (`make gpu-check`): its whole code path at toy sizes on the CPU, the one-line
answer without CUDA, and the agreement check's verdicts when noise comes from other generator streams."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.effects import params_for
from tests.support.harness import ROOT
from worker.effects import load_all
from worker.effects.registry import EFFECTS

pytestmark = pytest.mark.timeout(150)
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
NO_CUDA = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=140, env=NO_CUDA, cwd=ROOT, check=False)


def table_rows(stdout: str) -> list[list[str]]:
    """The markdown table's body rows, cells stripped (header and separator dropped)."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_quick_cpu_run_prints_one_row_per_case():
    proc = run_script("--allow-cpu", "--quick")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("# Darkroom GPU check")
    rows = table_rows(proc.stdout)
    by_section: dict[str, list[list[str]]] = {}
    for row in rows:
        assert len(row) == 8, row
        by_section.setdefault(row[0], []).append(row)
    assert list(by_section) == ["chain", "io", "agreement", "pipeline", "models", "diffusion"]

    chain = by_section["chain"]
    assert [r[1] for r in chain] == [f"all 13 effects chained, 128², batch {b}" for b in (1, 2)]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 and r[4] == "n/a (CPU)" for r in chain)

    load_all()
    cases = {r[1].split(",")[0]: r for r in by_section["agreement"]}
    ours = set(EFFECTS) - {"fault"}  # the fault tests' plugin registers "fault" when they ran first
    assert ours | {"blur kuwahara", "sharpen smart", "sharpen cas"} <= set(cases)
    assert all(r[6] == "PASS" and float(r[5]) == 0.0 for r in cases.values())  # CPU vs CPU: identical

    pipeline = by_section["pipeline"]
    assert [r[1] for r in pipeline[:2]] == [
        f"pipeline resize→effects→pad→overlay, 256² in, batch {b}" for b in (1, 2)
    ]
    assert all(r[6] == "PASS" for r in pipeline[2:]) and len(pipeline) > 5  # CPU vs CPU agreement rows
    models = [r[1] for r in by_section["models"]]
    for label in ("restore (tiny Swin2SR)", "remove_background (tiny ONNX)"):
        assert f"{label}, 256², batch 8" in models and f"{label}: CUDA vs CPU (64², batch 2)" in models

    diffusion = [r[1] for r in by_section["diffusion"]]
    for name in ("refine 32x32", "upscale (LDM) 32->128", "upscale (SD x4) 32->128"):
        assert [d for d in diffusion if d.startswith(name)] == [
            f"{name}, 2 steps, batch {b}" for b in (1, 2)
        ]
    assert "0 failed or errored" in proc.stdout


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    proc = run_script()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and "no CUDA device" in proc.stdout


def test_other_generator_streams_pass_on_statistics_and_wrong_noise_fails():
    """What a CUDA run sees for grain and dissolve (its generator is another stream), simulated on the
    CPU with other seeds; noise of the wrong strength must still fail."""
    load_all()
    cpu = torch.device("cpu")
    x, other = gpu_check.images(256, 2, cpu), gpu_check.images(256, 2, cpu, seed=99)
    for name in ("grain", "dissolve"):
        row = gpu_check.compare_effect(name, name, params_for(name, {}), x, other, cpu, (5, 6), (0, 1))
        assert row.status == "RNG differs", row
    a = gpu_check.run_effect("grain", params_for("grain", {}), x, other, cpu, (0, 1))
    louder = params_for("grain", {"grain_intensity": 0.44})  # 10% above the default 0.4
    louder = gpu_check.run_effect("grain", louder, x, other, cpu, (5, 6))
    ok, stats = gpu_check.noise_statistics(x, a, louder)
    assert not ok, stats
