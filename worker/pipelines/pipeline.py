"""The ``darkroom/pipeline`` app: a request's steps, each batched with other requests at the same
step (docs/pipelines.md).

``prepare`` fetches and decodes every named image and checks the steps against their real sizes.
``run`` runs one step for a batch whose items share that step's key and image size, then answers
each item with :class:`~worker.batcher.Requeue` (its next step's key) or, after its last step, its
uint8 RGBA arrays. Between steps an item's image stays a tensor on the device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from darkroom.apps.pipeline import PipelineInput, check_fonts, check_models, check_sizes
from darkroom.apps.post_processing import MAX_SEED
from darkroom.errors import InvalidInput, ModelUnavailable, RequestTimeout
from darkroom.job import JobRecord
from worker import imaging
from worker.batcher import Requeue
from worker.context import WorkerContext
from worker.fetch import fetch_input
from worker.operators import StepBatch, get_kernel
from worker.pipelines import Pipeline, Prepared, register_pipeline
from worker.pipelines.effects import chunk_size
from worker.results import store_image


@dataclass
class PipelineJob(Prepared):
    steps: list[Any] = field(default_factory=list)
    index: int = 0  # the next step to run
    source: imaging.DecodedImage | None = None
    refs: dict[str, imaging.DecodedImage] = field(default_factory=dict)
    tensor: torch.Tensor | None = None  # (1, 4, H, W) on the device once the first step ran
    step_log: list[dict] = field(default_factory=list)

    def size(self) -> tuple[int, int]:
        """(H, W) of the image the next step gets."""
        if self.tensor is not None:
            return int(self.tensor.shape[2]), int(self.tensor.shape[3])
        return self.source.height, self.source.width

    def next_key(self) -> tuple:
        return self.key_for(self.index, self.size())

    def key_for(self, index: int, size: tuple[int, int]) -> tuple:
        """What batch-mates at step ``index`` share: the step's key, the size (H, W) it gets and the
        size it makes (which, for a composite onto a reference image, is the reference's)."""
        step = self.steps[index]
        h, w = size
        refs = {name: (im.width, im.height) for name, im in self.refs.items()}
        return (get_kernel(step.op).batch_key(step), (h, w), step.output_size((w, h), refs))


def prepare(ctx: WorkerContext, job: JobRecord, body: PipelineInput) -> PipelineJob:
    t0 = time.perf_counter()
    steps = list(body.steps or ())
    try:  # a model gone since submit fails the job before any fetch
        check_models(steps, ctx.settings)
    except InvalidInput as exc:
        raise ModelUnavailable(exc.detail) from None
    decoded = {}
    for name, url in body.image_urls().items():
        what = f"images.{name}" if body.images else "image_url"
        decoded[name] = imaging.decode(fetch_input(url, ctx.objects, ctx.settings, what), ctx.limits)
    source = decoded[body.source_name()]
    check_fonts(steps, ctx.settings.fonts_dir)
    sizes = {name: (im.width, im.height) for name, im in decoded.items()}
    check_sizes(steps, (source.width, source.height), sizes, ctx.settings.max_output_pixels)
    p = PipelineJob(
        job, body, "pipeline", (), {"prepare_s": time.perf_counter() - t0},
        steps=steps, source=source, refs=decoded,
    )
    p.key = p.next_key()
    return p


STOPPED = "stopped at a step boundary"  # the output of an item cancelled, superseded or over its limit


def run(ctx: WorkerContext, batch: list[PipelineJob]) -> list:
    """One step for the batch. Items cancelled, taken over or past their soft time limit stop here
    (their output is STOPPED; the runner's step check then ends them). Nothing about an item changes
    until everything that can fail has run, so a batch the batcher re-runs (item by item, or in
    halves after running out of memory) starts from the same state."""
    active = []
    for p in batch:
        if ctx.step_stop(p.job.id) is not None:  # the runner's step check then ends the job
            where = f"step {p.index + 1} of {len(p.steps)} ({p.steps[p.index].op})"
            ctx.store.add_log(p.job.id, f"stopped before {where}")
        else:
            active.append(p)
    outputs = dict(zip(map(id, active), _step(ctx, active), strict=True)) if active else {}
    return [outputs.get(id(p), STOPPED) for p in batch]


def _step(ctx: WorkerContext, batch: list[PipelineJob]) -> list:
    t0 = time.perf_counter()
    h, w = batch[0].size()
    size = chunk_size(ctx, h * w, len(batch))
    images: list[torch.Tensor] = []  # per item, views of their chunk's output: no batch-sized copy
    for i in range(0, len(batch), size):
        y = _run_step(ctx, batch[i : i + size])
        images.extend(y[j : j + 1] for j in range(y.shape[0]))
    ms = round((time.perf_counter() - t0) * 1000, 3)
    plans = []  # first everything that can fail, items untouched
    for p, image in zip(batch, images, strict=True):
        last = p.index + 1 == len(p.steps)
        key = None if last else p.key_for(p.index + 1, (int(image.shape[2]), int(image.shape[3])))
        pair = imaging.from_rgba_tensor(image)[0] if last else None
        plans.append((p, image, key, pair))
    out: list = []
    for p, image, key, pair in plans:  # then the changes, which cannot fail
        p.step_log.append({"op": p.steps[p.index].op, "ms": ms, "batch_size": len(batch)})
        p.index += 1
        if pair is None:
            p.tensor, p.key = image, key
            out.append(Requeue(p.batch_key))
        else:  # done: the device memory goes with the batch
            p.tensor = None
            out.append(pair)
    return out


def _run_step(ctx: WorkerContext, chunk: list[PipelineJob]) -> torch.Tensor:
    parts = [_image(ctx, p) for p in chunk]
    x = parts[0] if len(parts) == 1 else torch.cat(parts)
    steps = [p.steps[p.index] for p in chunk]
    seeds = [(p.job.seed + p.index) % MAX_SEED for p in chunk]
    step_batch = StepBatch(steps, ctx.device, seeds, [p.refs for p in chunk], ctx.settings)
    return get_kernel(steps[0].op).fn(x, step_batch)


def _image(ctx: WorkerContext, p: PipelineJob) -> torch.Tensor:
    return p.tensor if p.tensor is not None else imaging.to_rgba_tensor([p.source], ctx.device)


def finish(ctx: WorkerContext, p: PipelineJob, output: tuple | str) -> dict:
    if output == STOPPED:  # the runner's step check ends such a job first; this is a safety net
        raise RequestTimeout("the job stopped at a step boundary before its last step")
    rgb, alpha = output
    keep_alpha = p.source.alpha is not None or bool((alpha < 255).any())
    spec = p.body.output
    encoded = imaging.encode_within(
        rgb, alpha if keep_alpha else None, p.source.icc_profile, spec.format, spec.quality, spec.max_bytes
    )
    metrics = {"inference_time": round(sum(p.timings.values()), 6), "steps": p.step_log}
    return {"images": [store_image(ctx, p.job, encoded, 0, p.body.sync_mode)], "seed": p.job.seed,
            "metrics": metrics}


register_pipeline(Pipeline("pipeline", prepare, run, finish))
