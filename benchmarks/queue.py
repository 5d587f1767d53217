"""Queue benchmarks (issues 3/6 and 6/6): throughput and latency end to end, the workers alone on a
pre-filled queue, Celery's own cost per message, batching, scaling, API submits.

Starts its own redis-server, an API process and worker processes (local-disk storage unless the case
says S3), and prints a markdown table: each row's target and PASS or MISS, or "report" for a row that
only reports a figure. Run: `python benchmarks/queue.py` (`--quick` for a smoke run with few jobs).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib's `queue`: keep its folder off the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import base64
import io
import json
import logging
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import httpx
import numpy as np
from PIL import Image

from benchmarks._celery_baseline import RESULT_KEY, fill
from benchmarks._cpu import CpuSampler
from benchmarks._services import ROOT, stack
from darkroom.cli.embedded import free_port

log = logging.getLogger("bench.queue")
APP = "fal-ai/post-processing"
ALL_EFFECTS = {
    "enable_grain": True, "enable_color_correction": True, "temperature": 20, "contrast": 10,
    "enable_chromatic": True, "red_shift": 3, "enable_blur": True, "enable_vignette": True,
    "enable_parabolize": True, "enable_tint": True, "tint_strength": 0.5, "enable_dissolve": True,
    "enable_dodge_burn": True, "enable_glow": True, "enable_sharpen": True, "enable_solarize": True,
    "solarize_threshold": 0.9, "enable_desaturate": True, "desaturate_factor": 0.3,
}


def data_uri(size: int, seed: int = 0, fmt: str = "png") -> str:
    """A ``size``² noise image as a data URI: PNG (level 1), or JPEG (quality 95, 4:4:4)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(rgb).save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode()


def submit_many(base: str, body: dict, n: int, threads: int = 16) -> list[str]:
    local = threading.local()

    def one(_: int) -> str:
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=base, timeout=60)
        r = local.c.post(f"/{APP}", json=body)
        r.raise_for_status()
        return r.json()["request_id"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def throughput(jobs: list) -> float:
    span = max(j.completed_at for j in jobs) - min(j.created_at for j in jobs)
    return len(jobs) / span


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def check_ok(jobs: list) -> None:
    bad = [j for j in jobs if j.error]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs failed, e.g. {bad[0].error}")


def end_to_end(st, body: dict, warm: int, n: int, workers: int, threads: int, **env: str) -> list:
    """Start the workers, run ``warm`` jobs, then submit ``n`` jobs while the workers run; returns the
    ``n`` finished jobs (the workers keep running)."""
    st.start_workers(workers, **env)
    submit_many(st.url, body, warm, threads)
    time.sleep(1)
    jobs = st.wait_done(submit_many(st.url, body, n, threads))
    check_ok(jobs)
    return jobs


class Drained(NamedTuple):
    rate: float  # completions per second of the measured jobs
    jobs: list  # the measured jobs
    cores: tuple[float, float] | None  # busy cores over the measured window: the machine's, the workers'


def drain(st, body: dict, warm: int, n: int, workers: int, threads: int, **env: str) -> Drained:
    """Worker throughput alone, in steady state: ``warm`` + ``n`` jobs are queued first, then the workers
    start (the warm-up jobs are older, so they are taken first). Completions per second of the measured
    jobs that finish after the last warm-up job, from the first of them to the last: with several job
    slots, measured jobs start beside warm-up ones, whose first-use costs (allocations, compiles) stay
    out of the window. Nothing else runs meanwhile: no API ingest, no load generator. Also how many
    cores the machine and the workers kept busy over that window (:mod:`benchmarks._cpu`)."""
    warm_ids = submit_many(st.url, body, warm, threads)
    ids = submit_many(st.url, body, n, threads)
    with CpuSampler(lambda: [p.pid for p in st.procs[1:]]) as cpu:
        st.start_workers(workers, **env)
        jobs = st.wait_done(ids)
        warmed = max((j.completed_at for j in st.wait_done(warm_ids)), default=0.0)
    check_ok(jobs)
    st.stop_workers()
    done = sorted(j.completed_at for j in jobs if j.completed_at > warmed)
    if len(done) < max(3, n // 2):  # too few after the warm-up: the whole run, first start to last end
        t0, t1 = min(j.started_at for j in jobs), max(j.completed_at for j in jobs)
        return Drained(n / (t1 - t0), jobs, cpu.cores(t0, t1))
    return Drained((len(done) - 1) / (done[-1] - done[0]), jobs, cpu.cores(done[0], done[-1]))


def drain_rate(st, body: dict, warm: int, n: int, workers: int, threads: int, **env: str) -> float:
    """:func:`drain`'s rate alone."""
    return drain(st, body, warm, n, workers, threads, **env).rate


def busy(cores: tuple[float, float] | None) -> str:
    """``cores`` as a cell's note: how busy the machine was, and the workers' share of it."""
    if cores is None:
        return ""
    return f"; busy {cores[0]:.2f} of {os.cpu_count()} cores, workers {cores[1]:.2f}"


def bench_small(st, n: int) -> dict:
    body = {"image_url": data_uri(64), "enable_solarize": True}
    jobs = end_to_end(st, body, 20, n, 1, 16)
    lat = []
    with httpx.Client(base_url=st.url, timeout=30) as c:
        for _ in range(60):
            rid = c.post(f"/{APP}", json=body).json()["request_id"]
            (job,) = st.wait_done([rid])
            lat.append((job.completed_at - job.created_at) * 1000)
    st.stop_workers()
    return {"jobs_s": throughput(jobs), "p50_ms": statistics.median(lat), "p99_ms": pct(lat, 0.99)}


def bench_overhead(st, n: int, warm: int = 20) -> dict:
    """Darkroom's 64² jobs and a no-op Celery task, each drained by one worker from a pre-filled
    queue, on the same Redis with the same broker settings, pool and job slots."""
    body = {"image_url": data_uri(64), "enable_solarize": True}
    drained = drain(st, body, warm, n, 1, 16)
    return {"darkroom": drained.rate, "cores": drained.cores, "celery": celery_drain_rate(st, warm, n)}


def celery_drain_rate(st, warm: int, n: int, timeout_s: float = 300) -> float:
    """Tasks/s of the no-op baseline (benchmarks/_celery_baseline.py), counted like :func:`drain_rate`:
    ``warm`` + ``n`` messages queued first, then one worker starts; from the first measured task to the
    last."""
    client = st.store.r
    labels = [f"warm-{i}" for i in range(warm)] + [f"m-{i}" for i in range(n)]
    client.delete(RESULT_KEY)
    fill(client, labels)
    cmd = [sys.executable, "-m", "benchmarks._celery_baseline", "--expect", str(len(labels))]
    errors = st.data / "celery-baseline.log"
    with errors.open("w") as err:
        proc = subprocess.Popen(cmd, env=st.env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + timeout_s
        # the last task writes the times, then its message is acked: wait for both
        while client.get(RESULT_KEY) is None or client.hlen("unacked"):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = errors.read_text()[-2000:]
                raise RuntimeError(f"the no-op Celery worker did not drain its queue: {tail}")
            time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    times = [t for label, t in json.loads(client.get(RESULT_KEY)) if label.startswith("m-")]
    return n / (max(times) - min(times))


def bench_batching(st, n: int) -> dict:
    body = {"image_url": data_uri(256), "enable_color_correction": True, "brightness": 10,
            "enable_blur": True, "enable_vignette": True}
    out = {}
    for size in (1, 16):
        env = {"DARKROOM_MAX_BATCH_SIZE": str(size), "DARKROOM_WORKER_CONCURRENCY": "16"}
        jobs = end_to_end(st, body, 16, n, 1, 16, **env)
        st.stop_workers()
        out[size] = throughput(jobs)
        out[f"mean_batch_{size}"] = statistics.mean(j.metrics["batch_sizes"][-1] for j in jobs)
        drained = drain(st, body, 32, n, 1, 16, **env)
        out[f"drain_{size}"], out[f"cores_{size}"] = drained.rate, drained.cores
    return out


def bench_scaling(st, n: int) -> dict:
    body = {"image_url": data_uri(1024), "dissolve_image_url": data_uri(64, 1), **ALL_EFFECTS}
    out = {}
    for workers in (1, 2):
        env = {"DARKROOM_TORCH_THREADS": "1", "DARKROOM_WORKER_CONCURRENCY": "1"}
        jobs = end_to_end(st, body, 2 * workers, n, workers, 4, **env)
        st.stop_workers()
        out[workers] = throughput(jobs)
        drained = drain(st, body, 2 * workers, n, workers, 4, **env)
        out[f"drain_{workers}"], out[f"cores_{workers}"] = drained.rate, drained.cores
    # one worker as deployed (its job slots and torch's threads): decode and encode of some jobs overlap
    # the effects of another
    out["drain_default"] = drain_rate(st, body, 16, n, 1, 16)  # warm-up: two jobs per slot
    return out


API_BODY = json.dumps({"image_url": "https://images.example.com/photo.png", "enable_solarize": True})


def loadgen(st, n: int, clients: int, rate: float = 0.0) -> dict:
    """benchmarks/loadgen.py in its own process (a raw-socket client, light enough to leave the
    API most of the CPU on 2 cores)."""
    cmd = [sys.executable, str(_HERE / "loadgen.py"), f"{st.url}/{APP}", "--body", API_BODY,
           "-n", str(n), "--clients", str(clients), "--rate", str(rate)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    res = json.loads(out.stdout)
    if res["errors"]:
        raise RuntimeError(f"{res['errors']} submits were refused")
    return res


def bench_api(st, n: int, concurrency: int = 50) -> dict:
    """Closed loop (50 clients as fast as answers come: the most the process sustains; latency there
    is Little's law, 50 / rate) and open loop (800 submits/s due, spread over 50 clients: the
    latency at the target rate, counted from when each request was due)."""
    loadgen(st, 1000, 10)  # warm up
    closed = loadgen(st, n, concurrency)
    opened = loadgen(st, n, concurrency, rate=800)
    return {"closed": closed, "open": opened}


def moto_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url, timeout=0.5)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def row(name: str, value: str, target: str, ok: bool | None) -> str:
    """A table row; ``ok`` None: the row has no target and only reports ``value``."""
    verdict = "report" if ok is None else "PASS" if ok else "MISS"
    return f"| {name} | {value} | {target} | {verdict} |"


def measured(what: str, bench: Callable[[Any, int], dict], n: int, **overrides) -> dict:
    """``bench(stack, n)`` on a fresh stack (Redis, object store, API) built with ``overrides``."""
    with stack(**overrides) as st:
        st.start_api()
        log.info("%s ...", what)
        return bench(st, n)


def case_small(k: float, args: argparse.Namespace) -> list[str]:
    r = measured("small jobs, local storage", bench_small, int(1000 * k))
    return [
        row("64² solarize, 1 worker, local: jobs/s end to end", f"{r['jobs_s']:.0f}", "≥ 150",
            r["jobs_s"] >= 150),
        row("idle submit→COMPLETED p50 / p99 ms", f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}", "p50 ≤ 30",
            r["p50_ms"] <= 30),
    ]


def case_overhead(k: float, args: argparse.Namespace) -> list[str]:
    r = measured("queue overhead: 64² jobs vs no-op Celery tasks, queue filled first", bench_overhead,
                 int(1000 * k))
    ratio = r["darkroom"] / r["celery"]
    return [
        row("64² jobs/s vs no-op Celery baseline (1 worker alone, queue filled first)",
            f"{r['darkroom']:.0f} vs {r['celery']:.0f} tasks/s = {ratio:.2f}×{busy(r['cores'])}",
            "≥ 0.8× baseline", ratio >= 0.8),
    ]


def case_s3(k: float, args: argparse.Namespace) -> list[str]:
    moto, endpoint = moto_server()
    try:
        r = measured("small jobs, S3 (moto)", bench_small, int(600 * k), storage_backend="s3",
                     s3_endpoint_url=endpoint, s3_create_bucket=True, s3_access_key_id="bench",
                     s3_secret_access_key="bench")
    finally:
        moto.terminate()
    return [
        row("64² solarize, 1 worker, S3 (moto): jobs/s end to end", f"{r['jobs_s']:.0f}", "—", None),
        row("S3 idle submit→COMPLETED p50 ms", f"{r['p50_ms']:.1f}", "—", None),
    ]


def versus_baseline(value: float, ref: float | None, option: str) -> tuple[str, str, bool | None]:
    """(" = N× baseline", target text, verdict) for a row whose target is 2× the baseline commit's
    figure, measured in the same sitting and given with ``option``; without it the row only reports."""
    if not ref:
        return "", f"≥ 2× baseline commit (give {option})", None
    return f" = {value / ref:.2f}× baseline", f"≥ 2× baseline commit ({ref:.2f})", value >= 2 * ref


def case_batching(k: float, args: argparse.Namespace) -> list[str]:
    r = measured("batching", bench_batching, int(400 * k))
    gain, drained = r[16] / r[1], r["drain_16"] / r["drain_1"]
    vs, target, ok = versus_baseline(r["drain_16"], args.ref_256_images_s, "--ref-256-images-s")
    return [
        row("256² 3 effects, 1 worker, batch 16: jobs/s end to end / alone",
            f"{r[16]:.0f} / {r['drain_16']:.0f}{vs}{busy(r['cores_16'])}", f"alone {target}", ok),
        row("256² 3 effects, batch 16 vs 1: jobs/s end to end",
            f"{r[16]:.0f} vs {r[1]:.0f} = {gain:.2f}× (mean batch {r['mean_batch_16']:.1f})",
            "≥ 1.5×", gain >= 1.5),
        row("  same, worker alone (queue filled first)",
            f"{r['drain_16']:.0f} vs {r['drain_1']:.0f} = {drained:.2f}×", "≥ 1.5×", drained >= 1.5),
    ]


def case_scaling(k: float, args: argparse.Namespace) -> list[str]:
    r = measured("scaling", bench_scaling, max(8, int(40 * k)))
    gain, drained = r[2] / r[1], r["drain_2"] / r["drain_1"]
    ref = args.ref_1024_images_s
    vs_d, target_d, ok_d = versus_baseline(r["drain_default"], args.ref_1024_default_images_s,
                                           "--ref-1024-default-images-s")
    vs_1, target_1, ok_1 = versus_baseline(r["drain_1"], ref, "--ref-1024-images-s")
    return [
        row("1024² full chain, 1 worker (default slots and threads), alone: images/s",
            f"{r['drain_default']:.2f}{vs_d}", target_d, ok_d),
        row("1024² full chain, 1 worker (1 slot, 1 thread): images/s end to end / alone",
            f"{r[1]:.2f} / {r['drain_1']:.2f}{vs_1}", f"alone {target_1}", ok_1),
        row("1024² full chain, 2 vs 1 workers (1 thread each), end to end",
            f"{r[2]:.2f} vs {r[1]:.2f} jobs/s = {gain:.2f}×", "—", None),
        row("  same, workers alone (queue filled first)",
            f"{r['drain_2']:.2f} vs {r['drain_1']:.2f} jobs/s = {drained:.2f}×{busy(r['cores_2'])} "
            f"(1 worker: {busy(r['cores_1']).removeprefix('; ') or 'not measured'})", "≥ 1.9×",
            drained >= 1.9),
    ]


def case_api(k: float, args: argparse.Namespace) -> list[str]:
    r = measured("API submits", bench_api, int(8000 * k))
    c, o = r["closed"], r["open"]
    return [
        row("API submits/s, 50 clients, closed loop", f"{c['rate']:.0f}", "≥ 3000", c["rate"] >= 3000),
        row("  closed loop p50 / p99 ms", f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f}", "—", None),
        row("API open loop, 800/s due over 50 clients: achieved/s, p50 / p99 ms",
            f"achieved {o['rate']:.0f}/s, p50 {o['p50_ms']:.1f} / p99 {o['p99_ms']:.1f} ms",
            "achieved ≥ 780/s and p99 ≤ 10 ms", o["rate"] >= 780 and o["p99_ms"] <= 10),
    ]


CASES = {"small": case_small, "overhead": case_overhead, "s3": case_s3, "batching": case_batching,
         "scaling": case_scaling, "api": case_api}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small job counts (a smoke run)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="workers run effects eagerly (DARKROOM_WORKER_FUSE_EFFECTS=false); by default "
                        "they compile the fused kernels before taking jobs")
    parser.add_argument("--skip", default="", help=f"comma list of cases to leave out: {','.join(CASES)}")
    parser.add_argument("--ref-1024-images-s", type=float, default=None, metavar="IMAGES_S",
                        help="1024² full chain, 1 worker (1 slot, 1 thread) alone, images/s at the baseline "
                        "commit: the row's target is 2× it")
    parser.add_argument("--ref-1024-default-images-s", type=float, default=None, metavar="IMAGES_S",
                        help="the same with the worker's default slots and threads, at the baseline commit")
    parser.add_argument("--ref-256-images-s", type=float, default=None, metavar="JOBS_S",
                        help="256² three effects, 1 worker alone (batch 16), jobs/s at the baseline commit")
    args = parser.parse_args()
    if args.no_fuse:
        os.environ["DARKROOM_WORKER_FUSE_EFFECTS"] = "false"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    skip = set(filter(None, args.skip.split(",")))
    if skip - set(CASES):
        parser.error(f"unknown cases in --skip: {','.join(sorted(skip - set(CASES)))}")
    k = 0.2 if args.quick else 1.0
    rows = ["| case | measured | target | |", "|---|---|---|---|"]
    for name, case in CASES.items():
        if name not in skip:
            rows += case(k, args)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
