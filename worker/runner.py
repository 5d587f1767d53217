"""Running jobs, as numbered steps: start -> validate -> fetch -> decode -> effects -> encode -> upload
-> record. Steps 1-3 and 5-7 are per job; step 4 runs on a batch of prepared jobs."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from darkroom.apps import APPS
from darkroom.apps.post_processing import ImageInputBase
from darkroom.errors import InvalidInput, RequestCancelled, RequestTimeout, WorkerCrash
from darkroom.job import JobRecord
from worker import imaging
from worker.context import WorkerContext
from worker.fetch import fetch_input
from worker.outcomes import complete_job, fail_job, record_failure
from worker.pipeline import Chain, chain_key, run_chain

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A started job with its input decoded, ready for the effects step."""

    job: JobRecord
    body: ImageInputBase
    chain: Chain
    image: imaging.DecodedImage
    extra: dict[str, imaging.DecodedImage] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def batch_key(self) -> tuple:
        solo = (self.job.id,) if self.job.crashes else ()  # a suspect in a crash runs alone
        return (self.image.height, self.image.width, chain_key(self.chain), *solo)


def begin(ctx: WorkerContext, request_id: str) -> JobRecord | None:
    """Step 1: start an attempt. None when there is nothing (more) to do for this delivery."""
    job = ctx.store.get(request_id)
    if job is None:
        log.warning("job %s not found (expired or deleted); dropping its message", request_id)
        return None
    started = ctx.store.start(job, ctx.worker_id)
    if started.outcome in ("missing", "completed", "busy"):
        log.info("job %s: %s; nothing to do for this delivery", request_id, started.outcome)
        return None
    job.attempts, job.crashes = started.attempts, started.crashes
    if started.outcome == "crashed":
        ctx.store.add_log(job.id, f"a worker died running this job ({started.crashes} so far)", "WARN")
        if started.crashes >= ctx.settings.max_crashes:
            detail = f"The job crashed its worker {started.crashes} times and was given up"
            fail_job(ctx, job, WorkerCrash.code, detail)
            return None
    if started.outcome == "started" and job.deadline_at and time.time() > job.deadline_at:
        detail = "The request was not started before its X-Fal-Request-Timeout"
        fail_job(ctx, job, RequestTimeout.code, detail)
        return None
    ctx.store.add_log(job.id, f"attempt {started.attempts} started")
    return job


def check_step(ctx: WorkerContext, job: JobRecord) -> None:
    """At every step boundary: stop if the job was cancelled or ran past its soft time limit."""
    if ctx.store.cancel_requested(job.id):
        raise RequestCancelled("The request was cancelled")
    limit = ctx.settings.task_soft_time_limit_s
    if ctx.tracker.elapsed_s(job.id) > limit:
        raise RequestTimeout(f"The job ran longer than its {limit:g}s time limit")


def prepare(ctx: WorkerContext, job: JobRecord) -> Prepared:
    """Steps 2-3: validate the stored input, fetch and decode the images."""
    t0 = time.perf_counter()
    app = APPS.get(job.app_id)
    if app is None:
        raise InvalidInput(f"unknown app {job.app_id}")
    body = app.input_model.model_validate(job.input, context={"trusted": True})
    chain = body.effect_chain()
    image = imaging.decode(fetch_input(body.image_url, ctx.objects, ctx.settings), ctx.limits)
    extra = {}
    if any(name == "dissolve" for name, _ in chain):
        raw = fetch_input(body.dissolve_image_url, ctx.objects, ctx.settings, "dissolve_image_url")
        extra["dissolve"] = imaging.decode(raw, ctx.limits)
    check_step(ctx, job)
    return Prepared(job, body, chain, image, extra, {"prepare_s": time.perf_counter() - t0})


def run_effects(ctx: WorkerContext, batch: list[Prepared]) -> list:
    """Step 4: the effects on one batch of prepared jobs sharing a batch key; uint8 RGB out."""
    first = batch[0]
    if not first.chain and all(p.image.bit_depth == 8 for p in batch):
        return [p.image.rgb for p in batch]  # nothing enabled: pixel-identical, no round trip
    t0 = time.perf_counter()
    with torch.inference_mode():
        x = imaging.to_tensor([p.image for p in batch], ctx.device)
        images = {}
        if "dissolve" in first.extra:
            h, w = first.image.height, first.image.width
            others = [imaging.resize_rgb(p.extra["dissolve"], (h, w)) for p in batch]
            images["dissolve"] = imaging.to_tensor(others, ctx.device)
        y = run_chain(x, [p.chain for p in batch], [p.job.seed for p in batch], images)
        out = imaging.from_tensor(y)
    elapsed = time.perf_counter() - t0
    for p in batch:
        p.timings["effects_s"] = elapsed
    return out


def finish(ctx: WorkerContext, p: Prepared, rgb) -> bool:
    """Steps 5-7: encode, upload (unless sync_mode), record COMPLETED. False if another run won."""
    check_step(ctx, p.job)
    body = p.body
    t0 = time.perf_counter()
    encoded = imaging.encode(rgb, p.image.alpha, p.image.icc_profile, body.output_format, body.output_quality)
    file_name = f"0.{encoded.extension}"
    image = {
        "content_type": encoded.content_type,
        "file_name": file_name,
        "file_size": len(encoded.data),
        "width": encoded.width,
        "height": encoded.height,
    }
    if body.sync_mode:
        image["url"] = imaging.data_uri(encoded)
    else:
        key = f"{p.job.id}/{file_name}"
        ctx.objects.put(key, encoded.data, encoded.content_type)
        image["key"] = key
    p.timings["finish_s"] = time.perf_counter() - t0
    metrics = {"inference_time": round(sum(p.timings.values()), 6), **p.timings}
    won = complete_job(ctx, p.job, {"images": [image], "seed": p.job.seed}, metrics)
    if won:
        ctx.store.add_log(p.job.id, f"completed in {metrics['inference_time'] * 1000:.1f} ms")
    return won


def run_job(ctx: WorkerContext, request_id: str) -> None:
    """Run one job through the batcher; permanent errors are recorded, transient ones propagate."""
    job = begin(ctx, request_id)
    if job is None:
        return
    with record_failure(ctx, job), ctx.tracker.track(job.id):
        ctx.batcher.preparing()
        try:
            prepared = prepare(ctx, job)
        except BaseException:
            ctx.batcher.abandoned()
            raise
        rgb = ctx.batcher.submit(prepared.batch_key, prepared).result()
        finish(ctx, prepared, rgb)
