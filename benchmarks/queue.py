"""Queue benchmarks (issue 3/6): end-to-end throughput and latency, batching, scaling, API submits.

Starts its own redis-server, an API process and worker processes (local-disk storage unless --s3),
and prints a markdown table with each target and PASS/MISS. Run: `python benchmarks/queue.py`.
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
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from PIL import Image

from benchmarks._services import stack
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


def data_uri(size: int, seed: int = 0) -> str:
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


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


def drain_rate(st, body: dict, warm: int, n: int, workers: int, threads: int, **env: str) -> float:
    """Worker throughput alone: ``warm`` + ``n`` jobs are queued first, then the workers start. Jobs/s
    from the first start to the last completion of the ``n`` measured jobs (the warm-up ones are
    older, so they run first). Nothing else runs meanwhile: no API ingest, no load generator."""
    warm_ids = submit_many(st.url, body, warm, threads)
    ids = submit_many(st.url, body, n, threads)
    st.start_workers(workers, **env)
    jobs = st.wait_done(ids)
    st.wait_done(warm_ids)
    check_ok(jobs)
    st.stop_workers()
    return n / (max(j.completed_at for j in jobs) - min(j.started_at for j in jobs))


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
        out[f"drain_{size}"] = drain_rate(st, body, 32, n, 1, 16, **env)
    return out


def bench_scaling(st, n: int) -> dict:
    body = {"image_url": data_uri(1024), "dissolve_image_url": data_uri(64, 1), **ALL_EFFECTS}
    out = {}
    for workers in (1, 2):
        env = {"DARKROOM_TORCH_THREADS": "1", "DARKROOM_WORKER_CONCURRENCY": "1"}
        jobs = end_to_end(st, body, 2 * workers, n, workers, 4, **env)
        st.stop_workers()
        out[workers] = throughput(jobs)
        out[f"drain_{workers}"] = drain_rate(st, body, 2 * workers, n, workers, 4, **env)
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


def row(name: str, value: str, target: str, ok: bool) -> str:
    return f"| {name} | {value} | {target} | {'PASS' if ok else 'MISS'} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small job counts (a smoke run)")
    parser.add_argument("--skip", default="", help="comma list of: small,s3,batching,scaling,api")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    skip = set(args.skip.split(","))
    k = 0.2 if args.quick else 1.0
    rows = ["| case | measured | target | |", "|---|---|---|---|"]
    if "small" not in skip:
        with stack() as st:
            st.start_api()
            log.info("small jobs, local storage ...")
            r = bench_small(st, int(1000 * k))
        rows.append(row("64² solarize, 1 worker, local: jobs/s", f"{r['jobs_s']:.0f}", "≥ 150",
                        r["jobs_s"] >= 150))
        rows.append(row("idle submit→COMPLETED p50 / p99 ms", f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}",
                        "p50 ≤ 30", r["p50_ms"] <= 30))
    if "s3" not in skip:
        moto, endpoint = moto_server()
        try:
            with stack(storage_backend="s3", s3_endpoint_url=endpoint, s3_create_bucket=True,
                       s3_access_key_id="bench", s3_secret_access_key="bench") as st:
                st.start_api()
                log.info("small jobs, S3 (moto) ...")
                r = bench_small(st, int(600 * k))
            rows.append(row("64² solarize, 1 worker, S3 (moto): jobs/s", f"{r['jobs_s']:.0f}",
                            "(report)", True))
            rows.append(row("S3 idle submit→COMPLETED p50 ms", f"{r['p50_ms']:.1f}", "(report)", True))
        finally:
            moto.terminate()
    if "batching" not in skip:
        with stack() as st:
            st.start_api()
            log.info("batching ...")
            r = bench_batching(st, int(400 * k))
        gain = r[16] / r[1]
        rows.append(row("256² 3 effects, batch 16 vs 1: jobs/s end to end",
                        f"{r[16]:.0f} vs {r[1]:.0f} = {gain:.2f}× (mean batch {r['mean_batch_16']:.1f})",
                        "≥ 1.5×", gain >= 1.5))
        drained = r["drain_16"] / r["drain_1"]
        rows.append(row("  same, worker alone (queue filled first)",
                        f"{r['drain_16']:.0f} vs {r['drain_1']:.0f} = {drained:.2f}×", "≥ 1.5×",
                        drained >= 1.5))
    if "scaling" not in skip:
        with stack() as st:
            st.start_api()
            log.info("scaling ...")
            r = bench_scaling(st, max(8, int(40 * k)))
        gain = r[2] / r[1]
        rows.append(row("1024² full chain, 2 vs 1 workers (1 thread each), end to end",
                        f"{r[2]:.2f} vs {r[1]:.2f} jobs/s = {gain:.2f}×", "(report)", True))
        drained = r["drain_2"] / r["drain_1"]
        rows.append(row("  same, workers alone (queue filled first)",
                        f"{r['drain_2']:.2f} vs {r['drain_1']:.2f} jobs/s = {drained:.2f}×", "≥ 1.6×",
                        drained >= 1.6))
    if "api" not in skip:
        with stack() as st:
            st.start_api()
            log.info("API submits ...")
            r = bench_api(st, int(8000 * k))
        c, o = r["closed"], r["open"]
        rows.append(row("API submits/s, 50 clients, closed loop", f"{c['rate']:.0f}", "≥ 800",
                        c["rate"] >= 800))
        rows.append(row("  closed loop p50 / p99 ms", f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f}",
                        "(report)", True))
        rows.append(row("API at 800/s due, 50 clients: achieved/s, p50 / p99 ms",
                        f"{o['rate']:.0f}, {o['p50_ms']:.1f} / {o['p99_ms']:.1f}", "p99 ≤ 25",
                        o["p99_ms"] <= 25 and o["rate"] >= 780))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
