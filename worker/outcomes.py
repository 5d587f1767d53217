"""Turning exceptions into job outcomes: permanent errors fail the job, transient ones propagate."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from darkroom.errors import DarkroomError, InternalError, Superseded
from darkroom.job import JobRecord, LogEntry
from storage.jobs import Finished
from worker.context import WorkerContext
from worker.metrics import job_completed

log = logging.getLogger(__name__)


@contextmanager
def record_failure(ctx: WorkerContext, job: JobRecord) -> Iterator[None]:
    """Record permanent errors as the job's failure. Transient errors, a lost job store (the recovery
    sweep re-sends the job once its lease lapses) and a takeover propagate."""
    try:
        yield
    except (Superseded, redis.RedisError):
        raise
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
    """Record a success (with ``log_entry``, releasing this worker's lease, creating the webhook's
    delivery); True only for the first completion."""
    return _finished(ctx, job, None, ctx.store.complete(job, result, metrics, log_entry, ctx.worker_id))


def fail_job(ctx: WorkerContext, job: JobRecord, code: str, detail: str, metrics: dict | None = None,
             log_entry: LogEntry | None = None) -> bool:
    """Record a failure (with ``log_entry``, releasing this worker's lease); True only for the first
    completion."""
    finished = ctx.store.fail(job, code, detail, metrics, log_entry, ctx.worker_id)
    return _finished(ctx, job, {"error_type": code, "detail": detail}, finished)


def _finished(ctx: WorkerContext, job: JobRecord, error: dict | None, finished: Finished) -> bool:
    if finished.superseded:
        log.info("job %s was taken over by another worker; this attempt records nothing", job.id)
    elif finished.won:
        job_completed(job, error, finished)
    return finished.won
