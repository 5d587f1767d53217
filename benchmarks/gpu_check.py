"""Darkroom GPU check: what a borrowed CUDA machine can tell us, as one markdown table, in minutes.

    make gpu-check                                     # on the CUDA machine (docs/operations.md, "GPU check")
    python3 benchmarks/gpu_check.py                    # the same with PYTHONPATH set by hand
    python3 benchmarks/gpu_check.py --allow-cpu --quick  # every code path at toy sizes on a CPU

Sections (each a function yielding rows; a new one, e.g. video or codecs, is one more entry in SECTIONS):

  chain      all 13 effects chained (benchmarks/effects.py's "all 13 effects chained" case, with its
             settings) on device tensors at 1024x1024, batch 1/8/32: images/s, ms per batch (median
             after a warm-up; CUDA events), peak device memory (torch.cuda.max_memory_allocated, reset
             before each row, so it counts the row's inputs and outputs).
  agreement  every effect (and the kernels behind other modes: kuwahara, smart and CAS sharpen) on the
             same input, parameters and seeds on the CPU and on the device: max |difference| against
             TOLERANCE. Effects that draw noise (grain, dissolve) seed a torch.Generator on the tensor's
             device, and CUDA's generator is another stream than the CPU's: when their outputs differ the
             row says "RNG differs" and compares the noise's statistics instead (FAIL if those differ).
  pipeline   the darkroom/pipeline app's four-step pipeline (resize -> effects -> pad -> overlay) on
             device tensors, batch 1 and 8; each geometry and compositing kernel's CUDA output against
             the CPU's (max |difference| against TOLERANCE).
  models     the pipeline's model steps with the test suite's tiny models: restore (Swin2SR through
             transformers) and remove_background (an ONNX net through ONNX Runtime; the provider the
             device's onnxruntime has), batch 1 and 8 at 256², and CUDA vs CPU.
  diffusion  the test suite's tiny random models (tests/support/diffusion_models.py), saved with
             save_pretrained and loaded through the worker's loader (fp16 on CUDA), refine and both
             upscalers at batch 1/4/8: images/s, ms per batch, peak device memory (weights included).

Runs in-process with torch, numpy, Pillow and transformers (a CUDA machine's usual stack) plus pydantic
(the effect parameters) and diffusers (the diffusion section): `make gpu-wheels` downloads those as
wheels to carry along. No Redis server, Celery worker, API or network. Without CUDA it says so in one
line and exits 0; otherwise the exit status is 1 when a row FAILs or errors. Rows stop being added
once --budget-s has passed (the remaining sections are listed as skipped).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and benchmarks/queue.py would shadow the
# standard library module of that name: drop the folder, add the root.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager, nullcontext  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

# A quarter of one 8-bit level (1/255 = 3.9e-3): below it, encoding the output to 8 bits changes at most
# a value that sits on a rounding boundary, by one level. Float32 reassociation across devices gives
# ~1e-6; a real kernel difference (wrong padding, an off-by-one tap) gives 1e-2 or more.
TOLERANCE = 1e-3
# Noise statistics for effects whose generator streams differ: per channel, the residual's (output -
# input) mean gap in units of its std, and its std ratio. Between seeds at 2 x 256^2 pixels (grain and
# dissolve with these settings, 10 seed pairs) they stay within 0.025 and 2%; a wrong amplitude, grain
# size or mask rate moves them far more. Smaller images are too noisy for these bounds, so the agreement
# section keeps 256^2 in --quick too.
NOISE_MEAN_TOL = 0.1
NOISE_STD_REL_TOL = 0.05
SEEDS = (0, 1)
ROW_CAP_S = 15.0  # timed calls of one row stop (after at least one) when they would take longer
AGREEMENT_VARIANTS = [  # (label, effect, overrides of benchmarks/effects.py's ENABLED): other kernels
    ("blur kuwahara", "blur", {"blur_type": "kuwahara"}),
    ("sharpen smart", "sharpen", {"sharpen_mode": "smart"}),
    ("sharpen cas", "sharpen", {"sharpen_mode": "cas"}),
]
FAILING = {"FAIL", "ERROR"}
# The CUDA machines have no network; progress bars and advice would bury real errors on stderr.
QUIET_OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                 "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error"}


@dataclass(frozen=True)
class Sizes:
    chain: int = 1024
    chain_batches: tuple[int, ...] = (1, 8, 32)
    agreement: int = 256
    diffusion_batches: tuple[int, ...] = (1, 4, 8)
    diffusion_steps: int = 10
    repeat: int = 10
    diffusion_repeat: int = 3
    io: int = 1024
    io_batch: int = 8


QUICK = Sizes(chain=128, chain_batches=(1, 2), agreement=256, diffusion_batches=(1, 2), diffusion_steps=2,
              repeat=2, diffusion_repeat=1, io=128, io_batch=2)


@dataclass(frozen=True)
class Context:
    device: torch.device
    sizes: Sizes

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


@dataclass
class Row:
    case: str
    images_s: str = ""
    ms: str = ""
    peak_mib: str = ""
    max_diff: str = ""
    status: str = "info"
    note: str = ""
    section: str = ""  # filled in by run_sections


# ---- measuring -------------------------------------------------------------------------------------


def time_ms(fn: Callable[[], object], device: torch.device, repeat: int) -> list[float]:
    """Milliseconds of each of up to ``repeat`` calls of ``fn`` after one warm-up (CUDA events on CUDA);
    fewer when the warm-up says they would take more than ROW_CAP_S (a slow device stays in budget)."""
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    repeat = max(1, min(repeat, int(ROW_CAP_S / max(time.perf_counter() - t0, 1e-9))))
    if device.type != "cuda":
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000)
        return out
    out = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end))
    return out


def reset_peak(ctx: Context) -> None:
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(ctx.device)


def peak_mib(ctx: Context) -> str:
    return f"{torch.cuda.max_memory_allocated(ctx.device) / 2**20:.0f}" if ctx.cuda else "n/a (CPU)"


def throughput_row(case: str, fn: Callable[[], object], batch: int, ctx: Context,
                   repeat: int, note: str = "") -> Row:
    """Time ``fn`` (one batch); the caller reset the peak before building its inputs."""
    with torch.inference_mode():
        ts = time_ms(fn, ctx.device, repeat)
    ms = statistics.median(ts)
    spread = f"median of {len(ts)}, {min(ts):.1f}–{max(ts):.1f} ms"
    return Row(case, f"{batch * 1000 / ms:.1f}", f"{ms:.1f}", peak_mib(ctx),
               note=f"{spread}; {note}" if note else spread)


def images(size: int, batch: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """``(batch, 3, size, size)`` photo-like float32 images (benchmarks/effects.py's), up to 4 distinct."""
    from benchmarks.effects import test_image

    distinct = [torch.from_numpy(test_image(size, size, seed + i)) for i in range(min(batch, 4))]
    base = torch.stack(distinct).permute(0, 3, 1, 2).float().div_(255)
    return base[torch.arange(batch) % len(distinct)].contiguous().to(device)


# ---- section: the effects chain ------------------------------------------------------------------------


def chain_rows(ctx: Context) -> Iterator[Row]:
    from benchmarks.effects import chain_case, params_for
    from worker.effects import load_all
    from worker.effects.chain import run_chain

    load_all()
    case = chain_case(None)
    chain = [(name, params_for(name, overrides)) for name, overrides in case.steps]
    size = ctx.sizes.chain
    for batch in ctx.sizes.chain_batches:
        reset_peak(ctx)
        x, other = images(size, batch, ctx.device), images(size, batch, ctx.device, seed=99)
        chains, seeds = [chain] * batch, list(range(batch))

        def run(x=x, other=other, chains=chains, seeds=seeds) -> torch.Tensor:
            return run_chain(x, chains, seeds, {"dissolve": other})

        yield throughput_row(f"all {len(chain)} effects chained, {size}², batch {batch}", run, batch,
                             ctx, ctx.sizes.repeat)
        del x, other, run


# ---- section: CUDA vs CPU agreement ----------------------------------------------------------------


def run_effect(name: str, params, x: torch.Tensor, other: torch.Tensor, device: torch.device,
               seeds: tuple[int, ...]) -> torch.Tensor:
    """One effect on ``device`` (inputs copied there, generators made there, as the chain does)."""
    from worker.effects.chain import make_generators
    from worker.effects.registry import apply

    with torch.inference_mode():
        y = apply(name, x.to(device, copy=True), [params] * len(seeds), make_generators(seeds, device),
                  {"dissolve": other.to(device, copy=True)})
        return y.to("cpu", torch.float32)


def noise_statistics(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[bool, str]:
    """Do the residuals ``a - x`` and ``b - x`` have the same per-channel mean and std?"""
    ra, rb = (a - x).transpose(0, 1).flatten(1), (b - x).transpose(0, 1).flatten(1)
    mean_gap = ((ra.mean(1) - rb.mean(1)).abs() / ra.std(1).clamp_min(1e-12)).max().item()
    std_ratio = (rb.std(1) / ra.std(1).clamp_min(1e-12)).tolist()
    worst = max(abs(r - 1) for r in std_ratio)
    ok = mean_gap <= NOISE_MEAN_TOL and worst <= NOISE_STD_REL_TOL
    return ok, (f"noise mean gap {mean_gap:.3f} std (≤ {NOISE_MEAN_TOL:g}), std ratio "
                f"{'/'.join(f'{r:.3f}' for r in std_ratio)} (±{NOISE_STD_REL_TOL:.0%})")


@contextmanager
def tf32_off():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def compare_effect(label: str, name: str, params, x: torch.Tensor, other: torch.Tensor, device: torch.device,
                   seeds: tuple[int, ...] = SEEDS, ref_seeds: tuple[int, ...] | None = None) -> Row:
    """CPU (with ``ref_seeds``, default ``seeds``) vs ``device``: max |Δ| and the share of 8-bit values
    that differ; noise statistics where the effect draws random numbers and the outputs differ."""
    from worker.effects.registry import get_effect

    a = run_effect(name, params, x, other, torch.device("cpu"), ref_seeds or seeds)
    b = run_effect(name, params, x, other, device, seeds)
    diff = (a - b).abs().max().item()
    flips = ((a * 255).round() != (b * 255).round()).float().mean().item()
    note = f"8-bit values differing: {flips:.3%}"
    if diff <= TOLERANCE:
        return Row(label, max_diff=f"{diff:.1e}", status="PASS", note=note)
    if get_effect(name).needs_rng:
        ok, stats = noise_statistics(x, a, b)
        why = "generator streams differ per device (torch.Generator on the tensor's device)"
        return Row(label, max_diff=f"{diff:.1e}", status="RNG differs" if ok else "FAIL",
                   note=f"{why}; {stats}")
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        with tf32_off():
            plain = (a - run_effect(name, params, x, other, device, seeds)).abs().max().item()
        note += f"; with TF32 off (the worker leaves it on): max |Δ| {plain:.1e}"
    return Row(label, max_diff=f"{diff:.1e}", status="FAIL", note=note)


def agreement_rows(ctx: Context) -> Iterator[Row]:
    from benchmarks.effects import ENABLED, params_for
    from worker.effects import load_all
    from worker.effects.registry import EFFECTS

    load_all()
    size, cpu = ctx.sizes.agreement, torch.device("cpu")
    x, other = images(size, len(SEEDS), cpu), images(size, len(SEEDS), cpu, seed=99)
    cases = [(name, name, {}) for name in ENABLED] + AGREEMENT_VARIANTS
    cases += [(name, name, {}) for name in EFFECTS if name not in ENABLED]  # registered later, defaults
    for label, name, overrides in cases:
        params = params_for(name, overrides) if name in ENABLED else EFFECTS[name].params()
        case = f"{label}, {size}², batch {len(SEEDS)}, {ctx.device.type} vs cpu"
        yield compare_effect(case, name, params, x, other, ctx.device)


# ---- section: diffusion with the tiny models -----------------------------------------------------------


def diffusion_cases(steps: int) -> list[tuple[str, str, int, Callable]]:
    """(label, tiny model, input side, call(pipe, x, members)) - benchmarks/diffusion.py's CPU cases."""
    from benchmarks.diffusion import quiet_monitor
    from worker.diffusion import calls

    def refine(pipe, x, m):
        return calls.refine(pipe, x, m, calls.Params(steps, 7.5, 1.0), quiet_monitor(len(m)))

    def upscale(pipe, x, m):
        return calls.upscale(pipe, x, m, calls.Params(steps), calls.Tiling(32, 4), quiet_monitor(len(m)))

    return [
        (f"refine 32x32, {steps} steps", "tiny-refine", 32, refine),
        (f"upscale (LDM) 32->128, {steps} steps", "tiny-ldm", 32, upscale),
        (f"upscale (SD x4) 32->128, {steps} steps", "tiny-sd-upscaler", 32, upscale),
    ]


def diffusion_rows(ctx: Context) -> Iterator[Row]:
    import diffusers  # noqa: F401  (first: without it the section's ERROR row names it)

    from benchmarks.diffusion import members
    from darkroom.models import load_models_config, register_model
    from tests.support.diffusion_models import build_tiny_models
    from worker.diffusion.loader import PipelineCache

    with tempfile.TemporaryDirectory(prefix="darkroom-gpu-check-") as tmp:
        config = build_tiny_models(Path(tmp))
        for spec in load_models_config(config):  # use_models_config without Settings (pydantic-settings)
            register_model(spec)
        cache = PipelineCache(Path(tmp), ctx.device, budget_mb=100_000)
        for label, model, side, call in diffusion_cases(ctx.sizes.diffusion_steps):
            for batch in ctx.sizes.diffusion_batches:
                reset_peak(ctx)
                pipe, load_s = cache.get(model)
                gen = torch.Generator().manual_seed(0)
                x = torch.rand(batch, 3, side, side, generator=gen).to(ctx.device)
                reqs = members(batch)

                def run(pipe=pipe, x=x, reqs=reqs, call=call) -> object:
                    return call(pipe, x, reqs)

                dtype = next(pipe.unet.parameters()).dtype
                note = str(dtype).removeprefix("torch.") + (f", loaded in {load_s:.1f} s" if load_s else "")
                yield throughput_row(f"{label}, batch {batch}", run, batch, ctx,
                                     ctx.sizes.diffusion_repeat, note)
                del x, run


# ---- section: pipeline steps ------------------------------------------------------------------------

PIPELINE_STEPS = [  # benchmarks/pipeline.py's four steps
    {"op": "resize", "width": 1024},
    {"op": "effects", "enable_grain": True, "grain_style": "kodak", "enable_vignette": True,
     "enable_color_correction": True, "temperature": 10, "contrast": 8},
    {"op": "pad", "aspect_ratio": "1:1", "color": "white"},
    {"op": "overlay", "text": "© Darkroom", "size_percent": 4, "opacity": 0.6},
]
AGREEMENT_STEPS = [  # (label, step): kernels whose CUDA output should match the CPU's
    ("resize area 2x down", {"op": "resize", "scale": 0.5, "filter": "area"}),
    ("resize bicubic up", {"op": "resize", "scale": 1.7, "filter": "bicubic"}),
    ("resize lanczos down", {"op": "resize", "width": 150, "filter": "lanczos"}),
    ("crop 16:9", {"op": "crop", "aspect_ratio": "16:9"}),
    ("pad 1:1", {"op": "pad", "aspect_ratio": 1, "color": "#ffffff80"}),
    ("composite gradient + shadow", {"op": "composite", "gradient": {"start": "#fff", "end": "#223"},
                                     "scale": 0.8, "shadow": {"blur": 6}}),
    ("overlay text tiled", {"op": "overlay", "text": "Darkroom", "size": 18, "tiled": True, "opacity": 0.5}),
]


def run_steps(steps: list, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every step's kernel in turn on the batch ``x`` (B, 4, H, W), as the worker's pipeline runs them."""
    from worker.operators import StepBatch, get_kernel

    batch = x.shape[0]
    for i, step in enumerate(steps):
        x = get_kernel(step.op).fn(x, StepBatch([step] * batch, device, [i] * batch, [{}] * batch))
    return x


def rgba(size: int, batch: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    x = images(size, batch, device, seed)
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)


def pipeline_rows(ctx: Context) -> Iterator[Row]:
    from darkroom.apps.pipeline import STEP_ADAPTER

    size = 2 * ctx.sizes.chain  # 2048² in, halved by the resize (benchmarks/pipeline.py's case)
    raw = [{**s, "width": size // 2} if s["op"] == "resize" else s for s in PIPELINE_STEPS]
    steps = [STEP_ADAPTER.validate_python(s) for s in raw]
    for batch in ctx.sizes.chain_batches[:2]:
        reset_peak(ctx)
        x = rgba(size, batch, ctx.device)

        def run(x=x) -> torch.Tensor:
            return run_steps(steps, x, ctx.device)

        yield throughput_row(f"pipeline resize→effects→pad→overlay, {size}² in, batch {batch}", run, batch,
                             ctx, ctx.sizes.repeat)
        del x, run
    x_cpu = rgba(ctx.sizes.agreement, 2, torch.device("cpu"), seed=7)
    for label, raw in AGREEMENT_STEPS:
        step = STEP_ADAPTER.validate_python(raw)
        with torch.inference_mode(), tf32_off():
            a = run_steps([step], x_cpu, torch.device("cpu"))
            b = run_steps([step], x_cpu.to(ctx.device), ctx.device).cpu()
        diff = (a - b).abs().max().item()
        yield Row(f"step {label}: CUDA vs CPU", max_diff=f"{diff:.1e}",
                  status="PASS" if diff <= TOLERANCE else "FAIL")


# ---- section: model steps ---------------------------------------------------------------------------


def model_step_rows(ctx: Context) -> Iterator[Row]:
    """The pipeline's restore (tiny Swin2SR, transformers) and remove_background (tiny ONNX net,
    ONNX Runtime) steps through their kernels and loaders: images/s at 256², and CUDA vs CPU."""
    from types import SimpleNamespace

    from darkroom.apps.pipeline import STEP_ADAPTER
    from darkroom.models import ModelSpec, register_model
    from tests.support.tiny_restore import register_tiny_restore

    with tempfile.TemporaryDirectory(prefix="darkroom-gpu-models-") as tmp:
        settings = SimpleNamespace(models_dir=Path(tmp), model_cache_mb=100_000, torch_threads=0,
                                   fonts_dir=None)
        register_tiny_restore(Path(tmp) / "tiny-restore", "gpu-check-restore", upsampler="")
        cases = [("restore (tiny Swin2SR)", {"op": "restore", "model": "gpu-check-restore", "tile_px": 128})]
        try:
            from tests.support.tiny_matting import build_tiny_matting

            build_tiny_matting(Path(tmp) / "tiny-matte")
            register_model(ModelSpec("gpu-check-matte", "onnx-segmentation", path=Path(tmp) / "tiny-matte"))
            cases.append(("remove_background (tiny ONNX)",
                          {"op": "remove_background", "model": "gpu-check-matte", "refine_edges": True}))
        except ImportError as exc:
            yield Row("remove_background (tiny ONNX)", status="SKIP", note=import_hint(exc))
        for label, raw in cases:
            step = STEP_ADAPTER.validate_python(raw)
            for batch in (1, 8):
                reset_peak(ctx)
                x = rgba(256, batch, ctx.device)

                def run(x=x, step=step, batch=batch) -> torch.Tensor:
                    from worker.operators import StepBatch, get_kernel

                    sb = StepBatch([step] * batch, ctx.device, [0] * batch, [{}] * batch, settings)
                    return get_kernel(step.op).fn(x, sb)

                yield throughput_row(f"{label}, 256², batch {batch}", run, batch, ctx,
                                     ctx.sizes.diffusion_repeat)
                del x, run
            x_cpu = rgba(64, 2, torch.device("cpu"), seed=3)
            with torch.inference_mode(), tf32_off():
                from worker.operators import StepBatch, get_kernel

                kernel = get_kernel(step.op).fn
                a = kernel(x_cpu, StepBatch([step] * 2, torch.device("cpu"), [0, 1], [{}, {}], settings))
                dev = StepBatch([step] * 2, ctx.device, [0, 1], [{}, {}], settings)
                b = kernel(x_cpu.to(ctx.device), dev)
            diff = (a - b.cpu()).abs().max().item()
            tol = 1e-2 if ctx.cuda else TOLERANCE  # fp16 weights on CUDA
            yield Row(f"{label}: CUDA vs CPU (64², batch 2)", max_diff=f"{diff:.1e}",
                      status="PASS" if diff <= tol else "FAIL", note=f"tolerance {tol:g}")


# ---- section: device I/O (worker/device_io.py) ----------------------------------------------------------


def io_rows(ctx: Context) -> Iterator[Row]:
    """Copies pinned vs pageable, JPEG on the device (nvJPEG) vs Pillow, the device decoder against
    Pillow's pixels, and one chain batch per thread on the default stream vs a stream per batch."""
    from benchmarks.effects import test_image
    from worker import device_io

    size, batch = ctx.sizes.io, ctx.sizes.io_batch
    arr = np.stack([test_image(size, size, seed) for seed in range(batch)])
    yield from copy_rows(ctx, arr)
    nvjpeg, why = device_io.jpeg_on_device_status(ctx.device)
    yield from jpeg_speed_rows(ctx, arr, nvjpeg, why)
    yield from jpeg_agreement_rows(ctx, nvjpeg, why)
    yield from stream_rows(ctx, arr)


def copy_rows(ctx: Context, arr) -> Iterator[Row]:
    from worker import device_io

    label = f"uint8 {arr.shape[1]}², batch {arr.shape[0]}"
    if not ctx.cuda:
        up = throughput_row(f"upload {label}", lambda: device_io.upload(arr, ctx.device), arr.shape[0], ctx,
                            ctx.sizes.repeat, "CPU: the tensor shares the array, nothing is copied")
        yield up
        x = device_io.upload(arr, ctx.device)
        yield throughput_row(f"download {label}", lambda: device_io.download(x), arr.shape[0], ctx,
                             ctx.sizes.repeat, "CPU: the array shares the tensor")
        return
    for pinned in (True, False):
        kind = "pinned, non_blocking" if pinned else "pageable"
        row = throughput_row(f"upload {label}, {kind}",
                             lambda pinned=pinned: device_io.upload(arr, ctx.device, pinned=pinned),
                             arr.shape[0], ctx, ctx.sizes.repeat)
        row.note = f"{arr.nbytes / max(float(row.ms), 1e-3) / 1e6:.1f} GB/s; {row.note}"
        yield row
    x = device_io.upload(arr, ctx.device)
    for pinned in (True, False):
        kind = "pinned, then the stream synchronised" if pinned else "pageable (.cpu())"
        row = throughput_row(f"download {label}, {kind}",
                             lambda pinned=pinned: device_io.download(x, pinned=pinned),
                             arr.shape[0], ctx, ctx.sizes.repeat)
        row.note = f"{arr.nbytes / max(float(row.ms), 1e-3) / 1e6:.1f} GB/s; {row.note}"
        yield row


def jpeg_files(arr, subsampling: int = 0, orientation: int = 1) -> list[bytes]:
    """Each (H, W, 3) image of ``arr`` as a Pillow JPEG at quality 95, with an EXIF orientation tag."""
    from PIL import Image

    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    out = []
    for rgb in arr:
        buf = io.BytesIO()
        opts = {"quality": 95, "subsampling": subsampling, "exif": exif.tobytes()}
        Image.fromarray(rgb).save(buf, format="JPEG", **opts)
        out.append(buf.getvalue())
    return out


def jpeg_speed_rows(ctx: Context, arr, nvjpeg: bool, why: str) -> Iterator[Row]:
    from darkroom.acceptance import ImageLimits
    from worker import device_io, imaging

    datas, batch, limits = jpeg_files(arr), arr.shape[0], ImageLimits()
    label = f"{arr.shape[1]}², batch {batch}, quality 95 4:4:4"
    yield throughput_row(f"JPEG decode, Pillow (imaging.decode), {label}",
                         lambda: [imaging.decode(d, limits) for d in datas], batch, ctx, ctx.sizes.repeat,
                         "one host thread")
    if nvjpeg:
        yield throughput_row(f"JPEG decode, nvJPEG (decode_jpeg_device), {label}",
                             lambda: device_io.decode_jpeg_device(datas, ctx.device), batch, ctx,
                             ctx.sizes.repeat, "one batched call, pixels left on the device")
    else:
        yield Row(f"JPEG decode, nvJPEG, {label}", status="SKIP", note=why)
    yield throughput_row(f"JPEG encode, host (imaging.encode), {label}",
                         lambda: [imaging.encode(rgb, None, None, "jpeg", 95) for rgb in arr], batch, ctx,
                         ctx.sizes.repeat, "one host thread")
    if nvjpeg:
        x = [t.permute(2, 0, 1).contiguous() for t in device_io.upload(arr, ctx.device)]
        sizes = [len(f) for f in device_io.encode_jpegs_device(x, 95)]
        host = [len(imaging.encode(rgb, None, None, "jpeg", 95).data) for rgb in arr]
        yield throughput_row(f"JPEG encode, nvJPEG (encode_jpegs_device), {label}",
                             lambda: device_io.encode_jpegs_device(x, 95), batch, ctx, ctx.sizes.repeat,
                             f"files {sum(sizes) / sum(host):.2f}× the host encoder's bytes")
    else:
        yield Row(f"JPEG encode, nvJPEG, {label}", status="SKIP", note=why)


def jpeg_agreement_rows(ctx: Context, nvjpeg: bool, why: str) -> Iterator[Row]:
    """The device decoder's pixels against Pillow's (imaging.decode), per chroma subsampling; EXIF
    orientation as the device path applies it (runs on any device); encode, then Pillow reads it."""
    from benchmarks.effects import test_image
    from darkroom.acceptance import ImageLimits
    from worker import device_io, imaging

    size, limits = ctx.sizes.agreement, ImageLimits()
    arr = np.stack([test_image(size, size + 64, seed) for seed in (5, 6)])  # not square: rotations show
    # The same pixels and settings with and without the tag give the same entropy-coded data, so Pillow
    # decodes the same pixels: orient() on the untagged ones must equal Pillow's exif_transpose exactly.
    plain = [imaging.decode(d, limits).rgb for d in jpeg_files(arr)]
    pillow = [imaging.decode(d, limits).rgb for d in jpeg_files(arr, orientation=6)]
    ours = [device_io.orient(device_io.upload(p[None], ctx.device)[0].permute(2, 0, 1), 6) for p in plain]
    worst = max(int(np.abs(o.permute(1, 2, 0).cpu().numpy().astype(np.int16) - p).max())
                for o, p in zip(ours, pillow, strict=True))
    yield Row(f"EXIF orientation 6, orient() on {ctx.device.type} vs Pillow's exif_transpose, "
              f"{size}x{size + 64}", max_diff=f"{worst}", status="PASS" if worst == 0 else "FAIL",
              note="8-bit levels; must be 0")
    if not nvjpeg:
        yield Row("JPEG decode, nvJPEG vs Pillow pixels", status="SKIP", note=why)
        return
    bounds = {0: (device_io.JPEG_DECODE_MAX_LEVELS_444, device_io.JPEG_DECODE_MEAN_LEVELS_444),
              2: (None, device_io.JPEG_DECODE_MEAN_LEVELS_420)}
    for subsampling, (max_tol, mean_tol) in bounds.items():
        files = jpeg_files(arr, subsampling, orientation=6)
        ours = device_io.decode_jpeg_device(files, ctx.device, [6] * len(files))
        diffs = [np.abs(o.permute(1, 2, 0).cpu().numpy().astype(np.int16) - imaging.decode(f, limits).rgb)
                 for o, f in zip(ours, files, strict=True)]
        top, mean = max(int(d.max()) for d in diffs), max(float(d.mean()) for d in diffs)
        ok = mean <= mean_tol and (max_tol is None or top <= max_tol)
        limit = f"max ≤ {max_tol}, " if max_tol is not None else "max reported only, "
        yield Row(f"JPEG decode, nvJPEG vs Pillow pixels, 4:{'4:4' if subsampling == 0 else '2:0'}, "
                  f"orientation 6", max_diff=f"{top}", status="PASS" if ok else "FAIL",
                  note=f"8-bit levels; mean {mean:.2f} ({limit}mean ≤ {mean_tol:g}; worker/device_io.py)")
    yield encode_agreement_row(ctx, arr)


def encode_agreement_row(ctx: Context, arr) -> Row:
    """nvJPEG's file with an ICC profile, read back by Pillow: the profile intact and the loss close
    to the host encoder's at the same quality."""
    from PIL import Image, ImageCms

    from worker import device_io, imaging

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    x = torch.from_numpy(arr[0]).permute(2, 0, 1).contiguous().to(ctx.device)
    im = Image.open(io.BytesIO(device_io.encode_jpeg_device(x, 95, icc)))
    ours = int(np.abs(np.asarray(im.convert("RGB")).astype(np.int16) - arr[0]).max())
    host = Image.open(io.BytesIO(imaging.encode(arr[0], None, None, "jpeg", 95).data))
    theirs = int(np.abs(np.asarray(host.convert("RGB")).astype(np.int16) - arr[0]).max())
    kept = im.info.get("icc_profile") == icc
    return Row("JPEG encode, nvJPEG q95 + ICC, read back by Pillow", max_diff=f"{ours}",
               status="PASS" if kept and ours <= max(2 * theirs, 8) else "FAIL",
               note=f"8-bit levels vs the source (host encoder: {theirs}; bound max(2× host, 8)); "
                    f"ICC profile {'intact' if kept else 'LOST'}")


def stream_rows(ctx: Context, arr) -> Iterator[Row]:
    """uint8 in -> upload -> float32 chain -> uint8 -> download, two batches at once from two threads
    (the worker's batcher beside a slot thread's decode), on the default stream or a stream each."""
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.effects import chain_case, params_for
    from worker import device_io
    from worker.effects import load_all
    from worker.effects.chain import run_chain

    load_all()
    chain = [(name, params_for(name, overrides)) for name, overrides in chain_case(None).steps]
    batch = arr.shape[0]
    other = images(arr.shape[1], batch, ctx.device, seed=99)

    def one(own_stream: bool) -> np.ndarray:
        with torch.inference_mode(), device_io.batch_stream(ctx.device) if own_stream else nullcontext():
            x = device_io.upload(arr, ctx.device).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
            y = run_chain(x, [chain] * batch, list(range(batch)), {"dissolve": other})
            return device_io.download(device_io.to_uint8(y).permute(0, 2, 3, 1).contiguous())

    with ThreadPoolExecutor(2) as pool:
        for own, how in ((False, "default stream"), (True, "a stream per batch (batch_stream)")):
            reset_peak(ctx)
            note = "" if ctx.cuda else "CPU: batch_stream is a no-op"
            label = f"chain uint8→uint8 incl. copies, {arr.shape[1]}², 2 threads × batch {batch}, {how}"
            yield throughput_row(label, lambda own=own: list(pool.map(one, [own, own])), 2 * batch, ctx,
                                 ctx.sizes.repeat, note)


SECTIONS: list[tuple[str, Callable[[Context], Iterator[Row]]]] = [
    ("chain", chain_rows),
    ("io", io_rows),
    ("agreement", agreement_rows),
    ("pipeline", pipeline_rows),
    ("models", model_step_rows),
    ("diffusion", diffusion_rows),
]


# ---- running and printing --------------------------------------------------------------------------


def run_sections(ctx: Context, names: list[str], budget_s: float) -> tuple[list[Row], bool]:
    """Rows of the named sections; an exception ends its section with an ERROR row, and once
    ``budget_s`` has passed no further row is started. Returns the rows and whether the budget ran out."""
    deadline = time.monotonic() + budget_s
    rows: list[Row] = []
    out_of_time = False
    for name, section in SECTIONS:
        if name not in names:
            continue
        it = section(ctx)
        try:
            while True:
                if time.monotonic() > deadline:
                    out_of_time = True
                    rows.append(Row("(rest of section)", section=name, status="SKIP",
                                    note=f"time budget of {budget_s:.0f} s spent"))
                    break
                try:
                    row = next(it)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - one broken part must not lose the whole table
                    hint = import_hint(exc) if isinstance(exc, ImportError) else ""
                    rows.append(Row("(section stopped)", section=name, status="ERROR",
                                    note=f"{type(exc).__name__}: {exc}{hint}"))
                    break
                row.section = name
                rows.append(row)
        finally:
            it.close()
    return rows, out_of_time


def import_hint(exc: ImportError) -> str:
    """Which project modules led to a missing package, and what `make gpu-wheels` covers."""
    files = [Path(f.filename).resolve() for f in traceback.extract_tb(exc.__traceback__)]
    here = Path(__file__).resolve()
    rel = [f.relative_to(ROOT) for f in files if f.is_relative_to(ROOT) and f != here]
    ours = [r.as_posix() for r in rel if not r.parts[0].startswith(".")]  # not .gpu-site, .venv
    via = f"; imported via {' → '.join(ours)}" if ours else ""
    return (f"{via} (`make gpu-wheels` brings diffusers, pydantic, requests and their small dependencies; "
            "anything else is a dependency the imported code should not need here)")


def header(ctx: Context) -> str:
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        device = (f"{props.name} ({props.total_memory / 2**30:.0f} GiB, compute capability "
                  f"{props.major}.{props.minor}); CUDA {torch.version.cuda}; cuDNN "
                  f"{torch.backends.cudnn.version()}; TF32 convolutions "
                  f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}, matmul "
                  f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}")
    else:
        device = f"CPU ({torch.get_num_threads()} torch threads; no CUDA timings or device memory)"
    return (f"# Darkroom GPU check\n\n{device}; torch {torch.__version__} (CUDA build {torch.version.cuda}); "
            f"Python {platform.python_version()}")


def table(rows: list[Row]) -> str:
    lines = ["| section | case | images/s | ms / batch | peak MiB | max abs Δ | status | note |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        cells = [r.section, r.case, r.images_s, r.ms, r.peak_mib, r.max_diff, r.status, r.note]
        lines.append("| " + " | ".join(" ".join(c.replace("|", "/").split()) for c in cells) + " |")
    return "\n".join(lines)


def pick_device(args: argparse.Namespace) -> torch.device | None:
    if args.device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if args.allow_cpu else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cuda (default; without CUDA: one line, exit 0) or cpu (agreement: CPU vs CPU)")
    ap.add_argument("--allow-cpu", action="store_true",
                    help="without CUDA, run on the CPU instead of stopping")
    ap.add_argument("--quick", action="store_true",
                    help="toy sizes: chain 128² batch 1/2, diffusion batch 1/2 at 2 steps (agreement: 256²)")
    ap.add_argument("--budget-s", type=float, default=200.0,
                    help="start no new row after this many seconds (200; the whole run stays under 4 min)")
    ap.add_argument("--section", action="append", choices=[name for name, _ in SECTIONS],
                    help="run only this section (repeatable; default: all)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args)
    if device is None:
        print(f"gpu-check: no CUDA device visible to torch {torch.__version__} (CUDA build "
              f"{torch.version.cuda}); nothing measured (--allow-cpu runs the check on the CPU).")
        return 0
    for key, value in QUIET_OFFLINE.items():  # before the sections import transformers and diffusers
        os.environ.setdefault(key, value)
    started = time.monotonic()
    ctx = Context(device, QUICK if args.quick else Sizes())
    rows, out_of_time = run_sections(ctx, args.section or [name for name, _ in SECTIONS], args.budget_s)
    print(header(ctx) + "\n")
    print(table(rows))
    failed = [r for r in rows if r.status in FAILING]
    stopped = f"; stopped at the {args.budget_s:.0f} s budget" if out_of_time else ""
    print(f"\ntolerance {TOLERANCE:g} (a quarter of an 8-bit level); {len(rows)} rows, {len(failed)} "
          f"failed or errored; {time.monotonic() - started:.0f} s{stopped}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
