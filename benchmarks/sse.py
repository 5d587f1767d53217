"""Status-stream latency: from a job's status change (the Redis PUBLISH) to the SSE client reading it.

Starts its own redis-server, two `darkroom api` processes (one on a Redis database no worker
consumes; local storage in a temporary directory) and one `darkroom worker`, then measures, over
``--jobs`` requests each:

* ``IN_PROGRESS`` / ``COMPLETED`` (store): the benchmark drives the transitions itself through the
  job store (on a Redis database no worker consumes) and times from just before the Lua script that
  publishes to the moment the client parses the event;
* ``COMPLETED`` (worker): real jobs on the worker; latency = client receipt - ``completed_at`` (the
  worker's clock at the transition; same machine, so same clock). Jobs that finished before the
  stream subscribed are not pushed and are left out (the count is printed).

    python benchmarks/sse.py               # 50 jobs
    python benchmarks/sse.py --jobs 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a plain script from a checkout (and never shadow stdlib modules)

from darkroom.cli.embedded import free_port, start_redis  # noqa: E402
from darkroom.settings import Settings  # noqa: E402
from storage.jobs import JobStore, redis_client  # noqa: E402

APP = "fal-ai/post-processing"


class Stream(threading.Thread):
    """Reads one status stream; records (receipt time, event) pairs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: list[tuple[float, dict]] = []

    def run(self) -> None:
        with httpx.stream("GET", self.url, params={"logs": "0"}, timeout=60) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    self.events.append((time.time(), json.loads(line[6:])))

    def wait_events(self, count: int, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.events) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url}: {len(self.events)} of {count} events")
            time.sleep(0.0005)


def png_data_uri(size: int = 64) -> str:
    import base64
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def start_api(settings: Settings) -> subprocess.Popen:
    """`darkroom api` in its own process, so the client here measures only the stream."""
    env = {**os.environ, **settings.to_env()}
    proc = subprocess.Popen([sys.executable, "-m", "darkroom.cli", "api"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(settings.api_base_url + "/health", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the API did not start")


def submit(base: str, body: dict) -> dict:
    resp = httpx.post(f"{base}/{APP}", json=body, timeout=10)
    resp.raise_for_status()
    return resp.json()


def store_driven(base: str, store: JobStore, jobs: int) -> dict[str, list[float]]:
    """Transitions made here: publish time known to the microsecond."""
    out: dict[str, list[float]] = {"IN_PROGRESS (store)": [], "COMPLETED (store)": []}
    body = {"image_url": png_data_uri(8)}
    for _ in range(jobs):
        sub = submit(base, body)
        stream = Stream(sub["status_url"] + "/stream")
        stream.start()
        stream.wait_events(1)  # IN_QUEUE: subscribed
        job = store.get(sub["request_id"])
        t0 = time.time()
        store.start(job)
        stream.wait_events(2)
        out["IN_PROGRESS (store)"].append(stream.events[1][0] - t0)
        t0 = time.time()
        store.complete(job, {"images": []}, {"inference_time": 0.0})
        stream.wait_events(3)
        out["COMPLETED (store)"].append(stream.events[2][0] - t0)
        stream.join(timeout=5)
    return out


def worker_driven(base: str, store: JobStore, jobs: int) -> tuple[list[float], int]:
    """Submit real jobs one after the other, opening each one's stream as soon as it is accepted (the
    job takes longer than the subscription, so its COMPLETED is pushed); latency = client receipt -
    completed_at."""
    body = {"image_url": png_data_uri(512), "enable_grain": True, "enable_blur": True, "blur_radius": 5}
    subs, streams = [], []
    for _ in range(jobs):
        subs.append(submit(base, body))
        streams.append(Stream(subs[-1]["status_url"] + "/stream"))
        streams[-1].start()
    latencies = []
    for sub, stream in zip(subs, streams, strict=True):
        stream.join(timeout=120)
        if len(stream.events) > 1:  # the COMPLETED event was pushed, not the first read
            latencies.append(stream.events[-1][0] - store.get(sub["request_id"]).completed_at)
    return latencies, jobs - len(latencies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(rows: dict[str, list[float]]) -> str:
    lines = ["| event | n | p50 ms | p99 ms | max ms | mean ms |", "|---|---:|---:|---:|---:|---:|"]
    for name, values in rows.items():
        if not values:
            continue
        ms = [v * 1000 for v in values]
        lines.append(f"| {name} | {len(ms)} | {percentile(ms, 0.5):.2f} | {percentile(ms, 0.99):.2f} "
                     f"| {max(ms):.2f} | {statistics.fmean(ms):.2f} |")
    return "\n".join(lines)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, url = start_redis(Path(tmp) / "redis", appendonly=False)
        objects = Path(tmp) / "objects"
        base_settings = dict(storage_backend="local", local_storage_dir=objects, log_level="WARNING")
        live = Settings(redis_url=url, port=free_port(), **base_settings)
        idle = Settings(redis_url=url.rsplit("/", 1)[0] + "/1", port=free_port(), **base_settings)
        env = {**os.environ, **live.to_env(), "DARKROOM_TORCH_THREADS": "1"}
        procs = [subprocess.Popen([sys.executable, "-m", "darkroom.cli", "worker", "--name", "bench@sse"],
                                  env=env, cwd=ROOT)]
        try:
            procs += [start_api(live), start_api(idle)]
            client = redis_client(url, 1.5)
            idle_store = JobStore(redis_client(idle.redis_url, 1.5), 3600)
            rows = store_driven(idle.api_base_url, idle_store, args.jobs)
            worker_driven(live.api_base_url, JobStore(client, 3600), 3)  # warm-up: model load, first batch
            latencies, not_pushed = worker_driven(live.api_base_url, JobStore(client, 3600), args.jobs)
            rows["COMPLETED (worker)"] = latencies
            print(table(rows))
            print(f"\n{args.jobs} jobs per row; worker jobs finished before the stream subscribed "
                  f"(not pushed, left out): {not_pushed}. Load average: {os.getloadavg()[0]:.2f}")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
            redis_proc.terminate()


if __name__ == "__main__":
    main()
