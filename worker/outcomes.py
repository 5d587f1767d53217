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
        ctx.store.fail(job, exc.code, exc.detail)
    except Exception as exc:
        log.exception("job %s crashed", job.id)
        err = InternalError(f"internal error: {type(exc).__name__}: {exc}")
        ctx.store.add_log(job.id, err.detail, "ERROR")
        ctx.store.fail(job, err.code, err.detail)
