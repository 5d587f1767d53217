"""Pipeline benchmarks (issue 4/6): one request of many steps vs chained requests, and batching
across requests.

Starts its own redis-server, an API process and one worker (local-disk storage, 2 torch threads),
uploads one 2048² photo-like image, and prints a markdown table with each target and PASS/MISS.
Run: `python benchmarks/pipeline.py` (`--quick` for a smoke run).

* **one vs chained**: resize 1024 -> effects (grain, vignette, colour correction) -> pad 1:1 ->
  overlay text -> webp 90, as one request, against the same four steps as four requests, each
  submitted when the previous one completed and reading its result URL (PNG between them, as a
  script chaining calls would keep them lossless). Wall time from the first submit to the last
  result downloaded, median of several runs.
* **16 at once vs one after another**: images per second for 16 such pipelines submitted together
  (they batch per step) against 16 submitted each after the previous completed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/queue.py is named like the stdlib's `queue`: keep this folder off the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import io
import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from PIL import Image

from benchmarks._services import stack

log = logging.getLogger("bench.pipeline")
APP = "darkroom/pipeline"
STEPS = [
    {"op": "resize", "width": 1024},
    {"op": "effects", "enable_grain": True, "grain_style": "kodak", "enable_vignette": True,
     "enable_color_correction": True, "temperature": 10, "contrast": 8},
    {"op": "pad", "aspect_ratio": "1:1", "color": "white"},
    {"op": "overlay", "text": "© Darkroom", "size_percent": 4, "opacity": 0.6},
]
FINAL = {"format": "webp", "quality": 90}


def photo_like(size: int, seed: int = 0) -> bytes:
    """Smooth gradients, a few soft shapes and sensor-like noise, as a PNG (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([0.6 * x + 0.2, 0.5 * y + 0.3 * x, 0.7 - 0.4 * y], axis=-1)
    for _ in range(12):
        cx, cy, r = rng.random(3) * [1, 1, 0.25]
        blob = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (r * r + 1e-3)))[..., None]
        img = img * (1 - 0.5 * blob) + rng.random(3) * 0.5 * blob
    img = img + rng.normal(0, 0.02, img.shape)
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def upload(c: httpx.Client, data: bytes) -> str:
    r = c.post("/storage/upload", files={"file": ("photo.png", data, "image/png")})
    r.raise_for_status()
    return r.json()["url"]


def run_one(c: httpx.Client, body: dict) -> dict:
    """Submit, wait on the status stream (no polling to compete for the CPU) until it closes after
    COMPLETED, fetch the result and download its image."""
    r = c.post(f"/{APP}", json=body)
    r.raise_for_status()
    sub = r.json()
    with c.stream("GET", f"{sub['status_url']}/stream") as events:
        for _ in events.iter_lines():
            pass
    result = c.get(sub["response_url"]).json()
    if "images" not in result:
        raise RuntimeError(f"job failed: {result}")
    image = result["images"][0]
    c.get(image["url"], follow_redirects=True).raise_for_status()
    return result


def one_request(c: httpx.Client, url: str) -> float:
    t0 = time.perf_counter()
    run_one(c, {"image_url": url, "steps": STEPS, "output": FINAL})
    return time.perf_counter() - t0


def chained(c: httpx.Client, url: str) -> float:
    t0 = time.perf_counter()
    for i, step in enumerate(STEPS):
        output = FINAL if i == len(STEPS) - 1 else {"format": "png"}
        url = run_one(c, {"image_url": url, "steps": [step], "output": output})["images"][0]["url"]
    return time.perf_counter() - t0


def together(base: str, url: str, n: int) -> tuple[float, list[int]]:
    body = {"image_url": url, "steps": STEPS, "output": FINAL}

    def one(_: int) -> dict:
        with httpx.Client(base_url=base, timeout=300) as c:
            return run_one(c, body)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - t0
    sizes = [s["batch_size"] for r in results for s in r["metrics"]["steps"]]
    return n / elapsed, sizes


def one_after_another(c: httpx.Client, url: str, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        run_one(c, {"image_url": url, "steps": STEPS, "output": FINAL})
    return n / (time.perf_counter() - t0)


def row(name: str, value: str, target: str, ok: bool) -> str:
    return f"| {name} | {value} | {target} | {'PASS' if ok else 'MISS'} |"


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs and a 1024² input (a smoke run)")
    parser.add_argument("--jobs", type=int, default=16, help="pipelines in the batching comparison")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    size, runs = (1024, 2) if args.quick else (2048, 5)
    rows = ["| case | measured | target | |", "|---|---|---|---|"]
    with stack(torch_threads=2, max_batch_size=16, worker_concurrency=16, max_input_bytes=64 << 20) as st:
        st.start_api()
        st.start_workers(1)
        with httpx.Client(base_url=st.url, timeout=300) as c:
            url = upload(c, photo_like(size))
            log.info("input: %dx%d photo-like PNG at %s", size, size, url)
            one_request(c, url), chained(c, url)  # warm up: imports, first allocations
            single = statistics.median(one_request(c, url) for _ in range(runs))
            chain = statistics.median(chained(c, url) for _ in range(runs))
            log.info("one request %.0f ms, four chained %.0f ms", single * 1000, chain * 1000)
            seq = one_after_another(c, url, args.jobs)
            rate, sizes = together(st.url, url, args.jobs)
            log.info("%d one after another %.2f img/s; together %.2f img/s (batch sizes seen: %s)",
                     args.jobs, seq, rate, sorted(set(sizes)))
    ratio = chain / single
    rows.append(row(f"one request vs 4 chained ({size}² in, 4 steps + webp)",
                    f"{single * 1000:.0f} ms vs {chain * 1000:.0f} ms = {ratio:.2f}×", "≥ 3×", ratio >= 3))
    gain = rate / seq
    rows.append(row(f"{args.jobs} at once vs one after another",
                    f"{rate:.2f} vs {seq:.2f} img/s = {gain:.2f}× (mean batch {statistics.mean(sizes):.1f})",
                    "≥ 1.3×", gain >= 1.3))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
