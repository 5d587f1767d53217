"""The diffusion pipeline (darkroom/upscale and darkroom/refine).

prepare: check the model is on disk (fails fast with model_unavailable, before any download), fetch
and decode the input. run: one pipeline call for the batch (same model, size, steps, strength,
guidance; see ``batch_key``), each request with its own generators. finish: encode and store.

Cancellation inside a batch: the step callback checks every member at every step. When some must
stop, the call is abandoned at that step and the remaining members are run again as a smaller batch
from the start, with fresh generators from the same seeds, so their outputs are exactly what they
would have been (the alternative, cutting rows out of the latents mid-run, depends on each
pipeline's internals and would not cover the tiled upscales). A stopped member's output is its error,
which ``finish`` raises; nothing of it is stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from darkroom.apps.diffusion import RefineInput, UpscaleInput
from darkroom.errors import InvalidInput
from darkroom.job import JobRecord
from worker import imaging
from worker.context import WorkerContext
from worker.diffusion import calls
from worker.diffusion.loader import PipelineCache, process_cache, require_model
from worker.diffusion.steps import MembersStopped, StepMonitor
from worker.fetch import fetch_input
from worker.pipelines import Pipeline, Prepared, register_pipeline
from worker.results import store_image
from worker.runner import check_step

log = logging.getLogger(__name__)


@dataclass
class DiffusionJob(Prepared):
    image: imaging.DecodedImage | None = None
    details: dict[str, float] = field(default_factory=dict)  # reported in the result's timings


def pipeline_cache(ctx: WorkerContext) -> PipelineCache:
    """The worker's loaded models, shared with the pipeline's upscale and refine steps."""
    s = ctx.settings
    return process_cache(s.models_dir, ctx.device, s.model_cache_mb)


def batch_key(body: UpscaleInput | RefineInput, image: imaging.DecodedImage) -> tuple:
    common = (body.model, image.height, image.width, body.num_inference_steps, body.guidance_scale)
    if isinstance(body, RefineInput):
        return ("refine", *common, body.strength)
    return ("upscale", *common, body.scale, body.noise_level)


def prepare(ctx: WorkerContext, job: JobRecord, body: UpscaleInput | RefineInput) -> DiffusionJob:
    t0 = time.perf_counter()
    require_model(body.model, ctx.settings.models_dir)
    image = imaging.decode(fetch_input(body.image_url, ctx.objects, ctx.settings), ctx.limits)
    if isinstance(body, UpscaleInput):
        longest = max(image.width, image.height) * body.scale
        if longest > ctx.settings.max_side_px:
            raise InvalidInput(
                f"the upscaled image would be {image.width * body.scale}x{image.height * body.scale}; "
                f"the longest side allowed is {ctx.settings.max_side_px} px: use a smaller input or scale 2"
            )
    key = batch_key(body, image)
    return DiffusionJob(job, body, "diffusion", key, {"prepare_s": time.perf_counter() - t0}, image=image)


def _call(ctx: WorkerContext, pipe, batch: list[DiffusionJob], monitor: StepMonitor) -> list:
    body = batch[0].body
    images = imaging.to_tensor([p.image for p in batch], ctx.device)
    if isinstance(body, RefineInput):
        members = [
            calls.Member(p.job.seed, p.body.prompt, p.body.negative_prompt, p.body.num_images) for p in batch
        ]
        params = calls.Params(body.num_inference_steps, body.guidance_scale, body.strength)
        return calls.refine(pipe, images, members, params, monitor)
    members = [calls.Member(p.job.seed, p.body.prompt, p.body.negative_prompt) for p in batch]
    params = calls.Params(body.num_inference_steps, body.guidance_scale, noise_level=body.noise_level)
    tiling = calls.Tiling(ctx.settings.upscale_tile_px, ctx.settings.upscale_tile_overlap_px)
    return calls.upscale(pipe, images, members, params, tiling, monitor, body.scale)


def run(ctx: WorkerContext, batch: list[DiffusionJob]) -> list:
    """One output per item: a tensor of its images, or the error that stopped it."""
    pipe, load_s = pipeline_cache(ctx).get(batch[0].body.model)
    outputs: list = [None] * len(batch)
    active = list(range(len(batch)))
    while active:
        members = [batch[i] for i in active]
        monitor = StepMonitor(
            [p.job for p in members], lambda job: check_step(ctx, job), ctx.store.add_log,
            ctx.settings.progress_interval_s,
        )
        t0 = time.perf_counter()
        try:
            results = _call(ctx, pipe, members, monitor)
        except MembersStopped as stop:
            for k, exc in stop.stopped.items():
                outputs[active[k]] = exc
            active = [i for k, i in enumerate(active) if k not in stop.stopped]
            for i in active:
                ctx.store.add_log(batch[i].job.id, "a batch-mate stopped; running this request again")
            continue
        for i, out in zip(active, results, strict=True):
            outputs[i] = out
            batch[i].details.update(model_load_s=load_s, denoise_s=time.perf_counter() - t0)
        break
    return outputs


def finish(ctx: WorkerContext, p: DiffusionJob, output) -> dict:
    if isinstance(output, BaseException):
        raise output
    body = p.body
    stored = []
    for index, rgb in enumerate(imaging.from_tensor(output)):
        height, width = rgb.shape[:2]
        alpha = p.image.alpha
        if alpha is not None and alpha.shape != (height, width):
            alpha = imaging.resize_rgb(p.image, (height, width)).alpha
        encoded = imaging.encode(rgb, alpha, p.image.icc_profile, body.output_format, body.output_quality)
        stored.append(store_image(ctx, p.job, encoded, index, body.sync_mode))
    timings = {k: round(v, 6) for k, v in {**p.timings, **p.details}.items()}
    return {"images": stored, "seed": p.job.seed, "timings": timings}


register_pipeline(Pipeline("diffusion", prepare, run, finish))
