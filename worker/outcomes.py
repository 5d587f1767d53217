"""Turning exceptions into job outcomes: permanent errors fail the job, transient ones propagate."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from darkroom.errors import DarkroomError, InternalError
from darkroom.job import JobRecord
from worker.context import WorkerContext

log = logging.getLogger(__name__)


@contextmanager
def record_failure(ctx: WorkerContext, job: JobRecord) -> Iterator[None]:
    try:
        yield
    except DarkroomError as exc:
        if exc.retryable:
            ctx.store.add_log(job.id, f"attempt {job.attempts} failed, will retry: {exc.detail}", "WARN")
            raise
        log.info("job %s failed: %s (%s)", job.id, exc.detail, exc.code)
        ctx.store.add_log(job.id, exc.detail, "ERROR")
        fail_job(ctx, job, exc.code, exc.detail)
    except Exception as exc:
        log.exception("job %s crashed", job.id)
        err = InternalError(f"internal error: {type(exc).__name__}: {exc}")
        ctx.store.add_log(job.id, err.detail, "ERROR")
        fail_job(ctx, job, err.code, err.detail)


def complete_job(ctx: WorkerContext, job: JobRecord, result: dict, metrics: dict) -> bool:
    """Record a success; True only for the first completion (the one that may notify)."""
    won = ctx.store.complete(job, result, metrics)
    if won:
        after_completion(ctx, job)
    return won


def fail_job(ctx: WorkerContext, job: JobRecord, code: str, detail: str, metrics: dict | None = None) -> bool:
    """Record a failure; True only for the first completion."""
    won = ctx.store.fail(job, code, detail, metrics)
    if won:
        after_completion(ctx, job)
    return won


def after_completion(ctx: WorkerContext, job: JobRecord) -> None:
    """Runs once per job, after the transition to COMPLETED won (webhooks hang off this)."""
    log.debug("job %s completed", job.id)
