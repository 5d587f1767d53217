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
* **model steps** (issue 5/6; the test suite's tiny Swin2SR and ONNX matting net, CPU): each step's
  kernel on a batch of 8 images in one call against the same 8 one at a time (images/s), and the
  queue overhead of a one-step pipeline (job time outside the step, median) through a real API and
  worker.
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


# ---- model steps (issue 5/6): tiny models of the defaults' architectures, on the CPU ----------------

MODEL_STEPS = {
    "restore": {"op": "restore", "model": "tiny-restore", "tile_px": 64, "overlap_px": 16},
    "remove_background": {"op": "remove_background", "model": "tiny-matte", "refine_edges": True},
}


def tiny_models(folder: Path) -> Path:
    """The test suite's tiny Swin2SR and ONNX matting net, saved and named in a models config."""
    import json

    from tests.support.tiny_matting import build_tiny_matting
    from tests.support.tiny_restore import build_tiny_restore

    build_tiny_restore(folder / "tiny-restore")
    build_tiny_matting(folder / "tiny-matte")
    config = folder / "models.json"
    config.write_text(json.dumps({
        "tiny-restore": {"path": "tiny-restore", "pipeline": "Swin2SRForImageSuperResolution"},
        "tiny-matte": {"path": "tiny-matte", "pipeline": "onnx-segmentation"},
    }))
    return config


def kernel_batching(config: Path, size: int, batch: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Images/s of each model step's kernel in-process: ``batch`` images in one call, and one at a time."""
    from types import SimpleNamespace

    import torch

    from darkroom.apps.pipeline import STEP_ADAPTER
    from darkroom.models import load_models_config, register_model
    from worker.operators import StepBatch, get_kernel

    torch.set_num_threads(2)
    for spec in load_models_config(config):
        register_model(spec)
    settings = SimpleNamespace(models_dir=config.parent, model_cache_mb=4096, torch_threads=2, fonts_dir=None)
    x = torch.rand(batch, 4, size, size)
    x[:, 3] = 1
    out = {}
    for name, raw in MODEL_STEPS.items():
        step = STEP_ADAPTER.validate_python(raw)
        kernel = get_kernel(step.op).fn

        def call(images: torch.Tensor, step=step, kernel=kernel) -> None:
            n = images.shape[0]
            with torch.inference_mode():
                kernel(images, StepBatch([step] * n, torch.device("cpu"), [0] * n, [{}] * n, settings))

        call(x[:1])  # load the model
        together = min(_seconds(lambda: call(x)) for _ in range(repeat))
        alone = min(_seconds(lambda: [call(x[i : i + 1]) for i in range(batch)]) for _ in range(repeat))
        out[name] = (batch / together, batch / alone)
    return out


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def queue_overhead(config: Path, n: int) -> dict[str, float]:
    """Median ms per job outside its model step (submit, queue, fetch, decode, encode, store, record) for
    a one-step pipeline on a 64² image, through a real API and worker."""
    body = {"image_url": "", "output": {"format": "png"}}
    out = {}
    with stack(torch_threads=2, models_config=config, models_dir=config.parent) as st:
        st.start_api()
        st.start_workers(1)
        with httpx.Client(base_url=st.url, timeout=120) as c:
            body["image_url"] = upload(c, photo_like(64))
            for name, step in MODEL_STEPS.items():
                overheads = []
                for i in range(n + 2):
                    r = c.post(f"/{APP}", json={**body, "steps": [step]})
                    r.raise_for_status()
                    (job,) = st.wait_done([r.json()["request_id"]])
                    if job.error:
                        raise RuntimeError(f"{name}: {job.error}")
                    step_ms = sum(s["ms"] for s in job.result["metrics"]["steps"])
                    if i >= 2:  # the first runs load the model
                        overheads.append((job.completed_at - job.created_at) * 1000 - step_ms)
                out[name] = statistics.median(overheads)
    return out


def model_rows(quick: bool) -> list[str]:
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-models-") as tmp:
        config = tiny_models(Path(tmp))
        size, batch = (128, 8) if quick else (256, 8)
        for name, (together, alone) in kernel_batching(config, size, batch, 1 if quick else 3).items():
            gain = together / alone
            rows.append(row(f"{name} (tiny model), batch of {batch} vs one at a time, {size}²",
                            f"{together:.1f} vs {alone:.1f} img/s = {gain:.2f}×", "≥ 1.5×", gain >= 1.5))
        for name, ms in queue_overhead(config, 5 if quick else 20).items():
            rows.append(row(f"{name}: queue overhead per job (median, 64², one step)",
                            f"{ms:.1f} ms", "≤ 15 ms", ms <= 15))
    return rows


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs and a 1024² input (a smoke run)")
    parser.add_argument("--jobs", type=int, default=16, help="pipelines in the batching comparison")
    parser.add_argument("--only", choices=["steps", "models"], default=None,
                        help="only the classical-steps rows, or only the model-step rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    rows = ["| case | measured | target | |", "|---|---|---|---|"]
    if args.only != "models":
        rows += step_rows(args)
    if args.only != "steps":
        rows += model_rows(args.quick)
    print("\n".join(rows))


def step_rows(args: argparse.Namespace) -> list[str]:
    size, runs = (1024, 2) if args.quick else (2048, 5)
    rows = []
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
    return rows


if __name__ == "__main__":
    main()
