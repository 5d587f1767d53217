"""Running jobs, as numbered steps: 1 start -> 2 validate -> 3 fetch and decode -> 4 run (batched) ->
5 encode -> 6 store -> 7 record. Steps 3-6 belong to the app's pipeline (worker/pipelines/); the
runner adds starting, cancellation and time limits at every step boundary, the batcher and the
guarded completion."""

from __future__ import annotations

import logging
import time

import redis
import torch

from darkroom.apps import APPS
from darkroom.errors import (
    DarkroomError,
    InvalidInput,
    RequestTimeout,
    Superseded,
    WorkerCrash,
)
from darkroom.job import JobRecord, LogEntry
from darkroom.logs import request_context
from worker import device_io
from worker.context import WorkerContext
from worker.metrics import batch_ran, job_started
from worker.outcomes import complete_job, fail_job, record_failure
from worker.pipelines import Prepared, get_pipeline

log = logging.getLogger(__name__)


def begin(ctx: WorkerContext, request_id: str) -> JobRecord | None:
    """Step 1: start an attempt. None when there is nothing (more) to do for this delivery.

    A duplicate delivery of a job that a live worker holds is dropped: if that worker dies, its lease
    lapses and the recovery sweep sends the job again."""
    job, started = ctx.store.begin(request_id, ctx.worker_id, ctx.settings.heartbeat_ttl_s)
    if job is None:
        log.warning("job %s not found (expired or deleted); dropping its message", request_id)
        return None
    if started.outcome in ("missing", "completed", "busy"):
        log.info("job %s: %s; nothing to do for this delivery", request_id, started.outcome)
        return None
    job.attempts, job.crashes = started.attempts, started.crashes
    job_started(job, started.outcome)
    if started.outcome == "crashed":
        ctx.store.add_log(job.id, f"a worker died running this job ({started.crashes} so far)", "WARN")
        if started.crashes >= ctx.settings.max_crashes:
            detail = f"The job crashed its worker {started.crashes} times and was given up"
            fail_job(ctx, job, WorkerCrash.code, detail)
            return None
        ctx.store.add_log(job.id, f"attempt {started.attempts} started")
    if started.outcome == "started" and job.deadline_at and time.time() > job.deadline_at:
        detail = "The request was not started before its X-Fal-Request-Timeout"
        fail_job(ctx, job, RequestTimeout.code, detail)
        return None
    return job


def check_step(ctx: WorkerContext, job: JobRecord) -> None:
    """At every step boundary: stop if another worker took the job over, if it was cancelled or if it
    ran past its soft time limit."""
    stop = check_steps(ctx, [job])[0]
    if stop is not None:
        raise stop


def check_steps(ctx: WorkerContext, jobs: list[JobRecord]) -> list[Exception | None]:
    """:func:`check_step` for a batch's jobs at once (one round trip): each job's reason to stop, or
    None. The batcher asks it before a job's first batch runs and after its last one."""
    stops = ctx.step_stops([job.id for job in jobs])
    for i, (job, stop) in enumerate(zip(jobs, stops, strict=True)):
        if isinstance(stop, RequestTimeout):
            # Read again: a process stopped (SIGSTOP) since the read above counts the stopped time
            # here, and another worker may have taken the job over meanwhile.
            latest = ctx.store.step_check(job.id)[1]
            if latest and latest != ctx.worker_id:
                stops[i] = Superseded(f"another attempt of job {job.id} started on {latest}")
    return stops


def prepare(ctx: WorkerContext, job: JobRecord) -> Prepared:
    """Steps 2-3: validate the stored input, then the pipeline fetches and decodes what it needs. (The
    step boundary after it is checked by the batcher, for the whole batch, right before it runs.)"""
    app = APPS.get(job.app_id)
    if app is None:
        raise InvalidInput(f"unknown app {job.app_id}")
    body = app.input_model.model_validate(job.input, context={"trusted": True})
    return get_pipeline(app.pipeline).prepare(ctx, job, body)


def run_batch(ctx: WorkerContext, batch: list[Prepared]) -> list:
    """Step 4 (the batcher's thread): one batch of prepared jobs sharing a batch key, on the device."""
    for p in batch:
        p.batch_sizes.append(len(batch))
    batch_ran(batch[0].pipeline, len(batch))
    t0 = time.perf_counter()
    ids = [p.job.id for p in batch]
    with torch.inference_mode(), device_io.batch_stream(ctx.device), ctx.tracker.track(*ids):
        out = get_pipeline(batch[0].pipeline).run(ctx, batch)
    elapsed = time.perf_counter() - t0
    for p in batch:  # a multi-step item runs in several batches: its run time adds up
        p.timings["run_s"] = p.timings.get("run_s", 0.0) + elapsed
    return out


def finish(ctx: WorkerContext, p: Prepared, output, checked: bool = False) -> bool:
    """Steps 5-7: encode and store the outputs, record COMPLETED. False if another run won.
    ``checked``: the step boundary before it was checked already (the batcher does, after a batch)."""
    if not checked:
        check_step(ctx, p.job)
    t0 = time.perf_counter()
    result = get_pipeline(p.pipeline).finish(ctx, p, output)
    p.timings["finish_s"] = time.perf_counter() - t0
    metrics = {
        "inference_time": round(sum(p.timings.values()), 6),
        **p.timings,
        "batch_sizes": p.batch_sizes,
    }
    done = LogEntry.now(f"completed in {metrics['inference_time'] * 1000:.1f} ms")
    return complete_job(ctx, p.job, result, metrics, done)


def run_job(ctx: WorkerContext, request_id: str) -> None:
    """Run one job through the batcher; permanent errors are recorded, transient ones propagate."""
    with request_context(request_id):  # every log line of the job carries its id
        _run_job(ctx, request_id)


def _run_job(ctx: WorkerContext, request_id: str) -> None:
    job = begin(ctx, request_id)
    if job is None:
        return
    ctx.tracker.begin(job.id)  # from here on the heartbeat keeps the job's lease alive
    try:
        with record_failure(ctx, job):
            ctx.batcher.preparing()
            try:
                with ctx.tracker.track(job.id):
                    prepared = prepare(ctx, job)
            except BaseException:
                ctx.batcher.abandoned()
                raise
            rgb = ctx.batcher.submit(prepared.batch_key, prepared).result()
            with ctx.tracker.track(job.id):
                finish(ctx, prepared, rgb, checked=True)
        # Here the job completed (or failed for good): that step released the lease. A heartbeat
        # that raced it may have set the lease once more; it expires unused, as a completed job's
        # lease is never consulted.
    except Superseded as exc:
        log.info("dropping this attempt of %s: %s", request_id, exc)
    except DarkroomError as exc:
        if not exc.retryable:
            release(ctx, request_id)
        raise  # a retry: the task hands the lease to the retry (JobStore.mark_retry)
    except BaseException:  # an outage: the lease lapses or goes, and the recovery sweep re-sends the job
        release(ctx, request_id)
        raise
    finally:
        ctx.tracker.forget(request_id)


def release(ctx: WorkerContext, request_id: str) -> None:
    try:
        ctx.store.release(request_id, ctx.worker_id)
    except redis.RedisError as exc:  # the lease expires by itself
        log.warning("could not release the lease of %s: %s", request_id, exc)
