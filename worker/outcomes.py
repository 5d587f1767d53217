"""Turning exceptions into job outcomes: permanent errors fail the job, transient ones propagate."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from darkroom.errors import DarkroomError, InternalError
from darkroom.job import JobRecord, LogEntry
from storage.jobs import Finished
from worker.context import WorkerContext
from worker.metrics import job_completed

log = logging.getLogger(__name__)


@contextmanager
def record_failure(ctx: WorkerContext, job: JobRecord) -> Iterator[None]:
    try:
        yield
    except DarkroomError as exc:
        if exc.retryable and not job.no_retry:
            ctx.store.add_log(job.id, f"attempt {job.attempts} failed, will retry: {exc.detail}", "WARN")
            raise
        detail = f"{exc.detail} (not retried: x-fal-no-retry)" if exc.retryable else exc.detail
        log.info("job %s failed: %s (%s)", job.id, detail, exc.code)
        fail_job(ctx, job, exc.code, detail, log_entry=LogEntry.now(detail, "ERROR"))
    except Exception as exc:
        log.exception("job %s crashed", job.id)
        err = InternalError(f"internal error: {type(exc).__name__}: {exc}")
        fail_job(ctx, job, err.code, err.detail, log_entry=LogEntry.now(err.detail, "ERROR"))


def complete_job(ctx: WorkerContext, job: JobRecord, result: dict, metrics: dict,
                 log_entry: LogEntry | None = None) -> bool:
    """Record a success (with ``log_entry``, releasing this worker's lease); True only for the first
    completion (the one that may notify)."""
    finished = ctx.store.complete(job, result, metrics, log_entry, ctx.worker_id)
    if finished.won:
        after_completion(ctx, job, None, finished)
    return finished.won


def fail_job(ctx: WorkerContext, job: JobRecord, code: str, detail: str, metrics: dict | None = None,
             log_entry: LogEntry | None = None) -> bool:
    """Record a failure (with ``log_entry``, releasing this worker's lease); True only for the first
    completion."""
    finished = ctx.store.fail(job, code, detail, metrics, log_entry, ctx.worker_id)
    if finished.won:
        after_completion(ctx, job, {"error_type": code, "detail": detail}, finished)
    return finished.won


def after_completion(ctx: WorkerContext, job: JobRecord, error: dict | None, finished: Finished) -> None:
    """Runs once per job, after the transition to COMPLETED won: hands its webhook (if any) to the
    webhook queue. Delivery is a separate task, so it adds no latency here and never changes the job."""
    log.debug("job %s completed", job.id)
    job_completed(job, error, finished)
    if job.webhook_url:
        dispatch_webhook(job.id)


def dispatch_webhook(request_id: str) -> None:
    from darkroom.broker import enqueue_webhook
    from worker.tasks import app

    try:
        enqueue_webhook(app, request_id)
    except Exception:  # the job is complete either way; a lost webhook must not fail it
        log.exception("job %s: could not enqueue its webhook", request_id)
