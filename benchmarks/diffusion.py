"""Diffusion benchmarks (issue 5/6), printed as a markdown table.

    python benchmarks/diffusion.py               # CPU, tiny random models: batching gain, queue overhead
    python benchmarks/diffusion.py --gpu         # CUDA: real-size architectures, random fp16 weights
    python benchmarks/diffusion.py --gpu --smoke # the --gpu code path at toy sizes, on any device

Default mode: the tiny models of the test suite (tests/support/diffusion_models.py). *Batching*: the same
requests run one per pipeline call and four per call through worker/diffusion/calls.py, the code the
worker runs (per-step checks are no-ops here). *Queue overhead*: a redis-server, an API process and
one worker process; sequential synchronous runs (`POST /run/darkroom/refine`), overhead = end-to-end
latency minus the pipeline call (the result's ``timings.denoise_s``).

``--gpu``: SD1.5-shaped UNet (320/640/1280/1280, cross-attention 768), CLIP-L-shaped text encoder and
SD VAE, and the two 4x upscalers' shapes, built from configs with random weights (nothing is
downloaded), in fp16: refine 512x512 at 25 steps (batch 1/4/8), 4x upscale 256->1024 at 25 steps,
images/s and peak GPU memory per image. Without CUDA it stops with a clear message.
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
import base64  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from worker.diffusion import calls  # noqa: E402
from worker.diffusion.steps import StepMonitor  # noqa: E402

Row = tuple[str, str, str, str]  # case, result, target, status


def quiet_monitor(n: int) -> StepMonitor:
    jobs = [SimpleNamespace(id=f"bench-{i}") for i in range(n)]
    return StepMonitor(jobs, lambda job: None, lambda rid, msg: None, interval_s=3600)


def members(n: int, prompt: str = "a cat") -> list[calls.Member]:
    return [calls.Member(seed=i, prompt=prompt) for i in range(n)]


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn``, after a warm-up call (the minimum is the
    estimate least disturbed by other load on a shared machine)."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Fastest seconds of each of ``fns``, timed in turns so drifting load hits them alike."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --- CPU: tiny models ------------------------------------------------------------------------------


def batching_rows(models_dir: Path, repeats: int) -> list[Row]:
    from worker.diffusion.loader import PipelineCache

    cache = PipelineCache(models_dir, torch.device("cpu"), 10_000)
    cases = [
        ("refine 32x32, 10 steps", "tiny-refine", 32,
         lambda pipe, x, m: calls.refine(pipe, x, m, calls.Params(10, 7.5, 1.0), quiet_monitor(len(m)))),
        ("upscale (LDM) 32->128, 10 steps", "tiny-ldm", 32,
         lambda pipe, x, m: calls.upscale(pipe, x, m, calls.Params(10), calls.Tiling(32, 4),
                                          quiet_monitor(len(m)))),
    ]
    rows: list[Row] = []
    for name, model, side, call in cases:
        pipe, _ = cache.get(model)
        x = torch.rand(4, 3, side, side, generator=torch.Generator().manual_seed(0))
        reqs = members(4)

        def run(batch: int, pipe=pipe, x=x, reqs=reqs, call=call) -> None:
            for i in range(0, 4, batch):
                call(pipe, x[i:i + batch], reqs[i:i + batch])

        with torch.inference_mode():
            solo, batched = interleaved([lambda run=run: run(1), lambda run=run: run(4)], repeats)
        one, four = 4 / solo, 4 / batched
        rows += [
            (f"{name}: batch 1", f"{one:.1f} images/s", "", ""),
            (f"{name}: batch 4", f"{four:.1f} images/s", "", ""),
            (f"{name}: batch 4 / batch 1", f"{four / one:.2f}x", ">= 1.3x", status(four / one >= 1.3)),
        ]
    return rows


def png_uri(side: int, seed: int = 0) -> str:
    rgb = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def overhead_rows(models_dir: Path, config: Path, jobs: int) -> list[Row]:
    import httpx

    from benchmarks._services import stack

    with stack(models_dir=models_dir, models_config=config) as st:
        st.start_api()
        st.start_workers(1)
        body = {"image_url": png_uri(32), "prompt": "a cat", "model": "tiny-refine",
                "num_inference_steps": 4, "strength": 1.0}
        latency, pipeline = [], []
        with httpx.Client(base_url=st.url, timeout=120) as client:
            client.post("/run/darkroom/refine", json=body).raise_for_status()  # loads the model
            for seed in range(jobs):
                t0 = time.perf_counter()
                resp = client.post("/run/darkroom/refine", json={**body, "seed": seed})
                latency.append(time.perf_counter() - t0)
                resp.raise_for_status()
                pipeline.append(resp.json()["timings"]["denoise_s"])
    overhead = sorted(a - b for a, b in zip(latency, pipeline, strict=True))
    p90 = overhead[min(len(overhead) - 1, int(0.9 * len(overhead)))]
    ms = 1000
    return [
        (f"queue: end-to-end latency, refine 32x32, 4 steps (median of {jobs})",
         f"{statistics.median(latency) * ms:.1f} ms", "", ""),
        ("queue: pipeline call (timings.denoise_s, median)",
         f"{statistics.median(pipeline) * ms:.1f} ms", "", ""),
        ("queue: overhead per diffusion job (median / p90)",
         f"{statistics.median(overhead) * ms:.1f} / {p90 * ms:.1f} ms", "", ""),
    ]


def cpu_rows(args) -> list[Row]:
    from tests.support.diffusion_models import build_tiny_models

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="darkroom-diffusion-bench-") as tmp:
        config = build_tiny_models(Path(tmp))
        from darkroom.models import use_models_config
        from darkroom.settings import Settings

        use_models_config(Settings(models_config=config))
        rows = batching_rows(Path(tmp), args.repeats)
        if not args.no_queue:
            rows += overhead_rows(Path(tmp), config, args.jobs)
    return rows


# --- GPU: real-size architectures with random weights -----------------------------------------------


def _clip_text(hidden: int, layers: int, heads: int, act: str = "quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers, num_attention_heads=heads,
        max_position_embeddings=77, vocab_size=49408, hidden_act=act,
    ))


def _kl_vae(blocks: tuple[int, ...], scaling_factor: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=blocks, down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks), latent_channels=4, layers_per_block=2,
        sample_size=512, scaling_factor=scaling_factor,
    )


def build_sd15_img2img(scratch: Path, smoke: bool):
    """SD1.5-shaped image-to-image pipeline (random weights); a narrow version with ``smoke``."""
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel

    from tests.support.diffusion_models import tiny_tokenizer

    width = (32, 64, 64, 64) if smoke else (320, 640, 1280, 1280)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=width,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=8,
    )
    return StableDiffusionImg2ImgPipeline(
        vae=_kl_vae((128, 256, 512, 512), 0.18215), text_encoder=_clip_text(768, 2 if smoke else 12, 12),
        tokenizer=tiny_tokenizer(scratch, 77), unet=unet,
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def build_ldm_sr(scratch: Path, smoke: bool):
    """Shaped like CompVis/ldm-super-resolution-4x-openimages (UNet2DModel + VQ-f4), random weights."""
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    width = (32, 64, 64, 64) if smoke else (160, 320, 320, 640)
    unet = UNet2DModel(
        sample_size=64, in_channels=6, out_channels=3, layers_per_block=2, block_out_channels=width,
        down_block_types=("DownBlock2D",) + ("AttnDownBlock2D",) * 3,
        up_block_types=("AttnUpBlock2D",) * 3 + ("UpBlock2D",), attention_head_dim=32,
    )
    vqvae = VQModel(
        block_out_channels=(128, 256, 512), down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=3, layers_per_block=2,
        num_vq_embeddings=8192, vq_embed_dim=3,
    )
    return LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler(steps_offset=1))


def build_sd_x4(scratch: Path, smoke: bool):
    """Shaped like stabilityai/stable-diffusion-x4-upscaler (7-channel UNet, OpenCLIP-H text)."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel

    from tests.support.diffusion_models import tiny_tokenizer

    width = (32, 64, 64, 64) if smoke else (256, 512, 512, 1024)
    unet = UNet2DConditionModel(
        sample_size=128, in_channels=7, out_channels=4, layers_per_block=2, block_out_channels=width,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
        cross_attention_dim=1024, attention_head_dim=8, num_class_embeds=1000,
        only_cross_attention=(True, True, True, False), use_linear_projection=True,
    )
    return StableDiffusionUpscalePipeline(
        vae=_kl_vae((128, 256, 512), 0.08333), text_encoder=_clip_text(1024, 2 if smoke else 23, 16, "gelu"),
        tokenizer=tiny_tokenizer(scratch, 77), unet=unet, low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction", steps_offset=1), max_noise_level=350,
    )


def gpu_case(name: str, pipe, call: Callable, batch: int, repeats: int, device: torch.device) -> Row:
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        seconds = timed(lambda: call(pipe, batch), repeats, sync)
    memory = ""
    if cuda:  # peak allocated during the case, weights included
        peak = torch.cuda.max_memory_allocated() / 2**30
        memory = f"; peak GPU memory {peak:.2f} GiB = {peak / batch:.2f} GiB/image"
    return (f"{name}: batch {batch}", f"{batch / seconds:.2f} images/s{memory}", "", "")


def gpu_rows(args) -> list[Row]:
    from worker.diffusion.loader import configure

    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit(
            f"--gpu needs a CUDA device, and torch {torch.__version__} sees none "
            f"(built for CUDA {torch.version.cuda}). Run it on a GPU machine, or add --smoke to try the "
            "code path at toy sizes on the CPU."
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    side, low, steps = (64, 32, 2) if args.smoke else (512, 256, 25)
    batches = (1, 2) if args.smoke else (1, 4, 8)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="darkroom-diffusion-gpu-") as tmp:
        pipe = configure(build_sd15_img2img(Path(tmp), args.smoke).to(dtype=dtype), device)
        params = calls.Params(steps, 7.5, 1.0)

        def refine(pipe, batch: int) -> None:
            x = torch.rand(batch, 3, side, side, device=device)
            calls.refine(pipe, x, members(batch), params, quiet_monitor(batch))

        for batch in batches:
            name = f"refine {side}x{side}, {steps} steps"
            rows.append(gpu_case(name, pipe, refine, batch, args.repeats, device))
        del pipe
        tiling = calls.Tiling(args.tile, 16 if args.tile >= 64 else 4)
        for label, build in (("LDM", build_ldm_sr), ("SD x4", build_sd_x4)):
            pipe = configure(build(Path(tmp), args.smoke).to(dtype=dtype), device)

            def upscale(pipe, batch: int) -> None:
                x = torch.rand(batch, 3, low, low, device=device)
                reqs = members(batch, "a photo")
                calls.upscale(pipe, x, reqs, calls.Params(steps), tiling, quiet_monitor(batch))

            name = f"upscale 4x ({label}) {low}->{low * 4}, {steps} steps, tiles of {args.tile}"
            rows.append(gpu_case(name, pipe, upscale, 1, args.repeats, device))
            del pipe
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpu", action="store_true", help="real-size architectures on CUDA (fp16)")
    parser.add_argument("--smoke", action="store_true", help="with --gpu: toy widths and sizes, any device")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (after a warm-up)")
    parser.add_argument("--jobs", type=int, default=20, help="queued jobs timed for the overhead")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU mode; workers use 1 here)")
    parser.add_argument("--tile", type=int, default=128, help="--gpu: upscale tile side (input px)")
    parser.add_argument("--no-queue", action="store_true", help="skip the queue-overhead rows")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = gpu_rows(args) if args.gpu else cpu_rows(args)
    device = torch.cuda.get_device_name() if args.gpu and torch.cuda.is_available() else (
        f"CPU, {torch.get_num_threads()} torch thread(s)")
    print(f"\nDarkroom diffusion benchmark ({'--gpu' if args.gpu else 'tiny models'}; {device}; "
          f"torch {torch.__version__}; {time.perf_counter() - started:.0f}s)\n")
    print("| Case | Result | Target | Status |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
