"""A GPU worker end to end: one `darkroom worker` on a CUDA device drains a pre-filled queue, through the
real redis-server, API, Celery and local-disk storage; one markdown table.

    make gpu-queue                           # on the CUDA machine (docs/gpu.md, "A GPU worker end to end")
    python3 benchmarks/gpu_queue.py          # the same with PYTHONPATH (and PATH to redis-server) set
    python3 benchmarks/gpu_queue.py --device cpu --quick   # the same cases on a CPU worker, for contrast

`benchmarks/gpu_check.py` times kernels in one process; this times what a client gets: jobs/s of a
worker alone on a queue filled first (benchmarks/queue.py's steady-state drain rate), per job the time
from start to completion and the device and encode parts the worker records, and the mean batch the
batcher formed. Cases: the 13-effect chain at 1024² with PNG in and out (host codecs) and with JPEG q95 in
and out (nvJPEG where torchvision has it), three effects at 256² (batches up to 16) and 64² solarize.
Every row only reports: there are no GPU targets yet. Without CUDA (and no --device cpu) it says so in
one line and exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and benchmarks/queue.py would shadow the
# standard library module of that name: drop the folder, add the root.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import torch  # noqa: E402

from benchmarks._services import stack  # noqa: E402
from benchmarks.queue import ALL_EFFECTS, data_uri, drain  # noqa: E402

log = logging.getLogger("bench.gpu_queue")


@dataclass(frozen=True)
class Case:
    name: str
    body: dict
    n: int  # measured jobs (scaled by --quick)
    warm: int  # warm-up jobs queued before them
    env: dict[str, str] = field(default_factory=dict)


def cases() -> list[Case]:
    chain = {"dissolve_image_url": data_uri(64, 1), **ALL_EFFECTS}
    batch16 = {"DARKROOM_MAX_BATCH_SIZE": "16", "DARKROOM_WORKER_CONCURRENCY": "16"}
    return [
        Case("1024² 13 effects, PNG in, PNG out", {"image_url": data_uri(1024), **chain}, 96, 16),
        Case("1024² 13 effects, JPEG q95 in, JPEG q95 out",
             {"image_url": data_uri(1024, fmt="jpeg"), **chain, "output_format": "jpeg",
              "output_quality": 95}, 96, 16,
             {"DARKROOM_LOG_LEVEL": "INFO"}),  # the worker logs which path JPEG takes
        Case("256² 3 effects, PNG, batches ≤ 16, 16 slots",
             {"image_url": data_uri(256), "enable_color_correction": True, "brightness": 10,
              "enable_blur": True, "enable_vignette": True}, 400, 32, batch16),
        Case("64² solarize, PNG", {"image_url": data_uri(64), "enable_solarize": True}, 1000, 32),
    ]


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}" if values else "—"


def jpeg_path(data: Path) -> str:
    """What the workers logged about JPEG's path (worker/device_io.py logs it once at INFO)."""
    for log_file in sorted(data.glob("worker-*.log")):
        for line in log_file.read_text(errors="replace").splitlines():
            if "JPEG decode and encode on" in line or "JPEG stays on the host" in line:
                return " ".join(line.split())[-160:]
    return "the worker logged no JPEG path"


def run_case(case: Case, device: str, k: float, worker_env: dict[str, str]) -> str:
    n, warm = max(8, int(case.n * k)), max(4, int(case.warm * k))
    with stack(device=device) as st:
        st.start_api()
        log.info("%s: %d jobs after %d warm-up jobs ...", case.name, n, warm)
        t0 = time.monotonic()
        rate, jobs, _ = drain(st, case.body, warm, n, 1, 16, **{**case.env, **worker_env})
        spent = time.monotonic() - t0
        note = ""
        if "JPEG" in case.name:
            note = jpeg_path(st.data) if device == "cuda" else "host codecs (CPU worker)"
    per_job = [j.completed_at - j.started_at for j in jobs]
    prepare_s = [j.metrics.get("prepare_s", 0.0) for j in jobs]
    run_s = [j.metrics.get("run_s", 0.0) for j in jobs]
    finish_s = [j.metrics.get("finish_s", 0.0) for j in jobs]
    batch = statistics.mean(j.metrics["batch_sizes"][-1] for j in jobs)
    cells = [case.name, f"{rate:.1f}", median_ms(per_job), median_ms(prepare_s), median_ms(run_s),
             median_ms(finish_s),
             f"{batch:.1f}", f"{n} jobs, {spent:.0f} s with start-up; {note}".rstrip("; ")]
    return "| " + " | ".join(cells) + " |"


def header(device: str, worker_env: dict[str, str]) -> str:
    extra = "".join(f"; {k}={v}" for k, v in worker_env.items())
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        what = f"{props.name} ({props.total_memory / 2**30:.0f} GiB); CUDA {torch.version.cuda}"
    else:
        what = "CPU worker"
    return (f"# Darkroom GPU worker, end to end\n\n{what}; {os.cpu_count()} CPU cores; torch "
            f"{torch.__version__}; Python {platform.python_version()}; one worker, default slots "
            f"unless the case says otherwise, local-disk storage{extra}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="the worker's DARKROOM_DEVICE (cpu: the same cases on a CPU worker, for contrast)")
    ap.add_argument("--quick", action="store_true", help="a fifth of the jobs (a smoke run)")
    ap.add_argument("--case", action="append", default=None, metavar="TEXT",
                    help="run only the cases whose name contains TEXT (repeatable)")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the workers of every case (repeatable), e.g. "
                    "DARKROOM_WORKER_SWITCH_INTERVAL_MS=0.5")
    args = ap.parse_args()
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"no CUDA device here (torch {torch.__version__}): nothing to measure; --device cpu runs the "
              "same cases on a CPU worker")
        return 0
    chosen = [c for c in cases() if not args.case or any(t in c.name for t in args.case)]
    rows = [header(args.device, worker_env),
            "| case | jobs/s alone | per job, start → completed, ms (median) | fetch + decode ms | "
            "device step ms | encode + store ms | mean batch | note |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for case in chosen:
        rows.append(run_case(case, args.device, 0.2 if args.quick else 1.0, worker_env))
        print(rows[-1], flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
