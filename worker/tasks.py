"""Celery tasks: thin adapters from a message (a job id) to the plain runner functions."""

from __future__ import annotations

import logging

from celery.signals import worker_ready, worker_shutdown

from darkroom.broker import RUN_JOB_TASK, make_celery
from darkroom.errors import DarkroomError
from darkroom.settings import get_settings
from worker.context import WorkerContext, build_context
from worker.outcomes import fail_job
from worker.retry import backoff_s
from worker.runner import run_job

log = logging.getLogger(__name__)

app = make_celery(get_settings())
_context: WorkerContext | None = None


def context() -> WorkerContext:
    """The process's worker context (stores, device, batcher), built once."""
    global _context
    if _context is None:
        _context = build_context(get_settings())
    return _context


@worker_ready.connect
def _on_ready(**_: object) -> None:
    context().start_background()


@worker_shutdown.connect
def _on_shutdown(**_: object) -> None:
    if _context is not None:
        _context.stop()


@app.task(name=RUN_JOB_TASK, bind=True)
def run_job_task(self, request_id: str) -> None:
    ctx = context()
    try:
        run_job(ctx, request_id)
    except DarkroomError as exc:
        if not exc.retryable:
            raise
        retries = self.request.retries
        if retries >= ctx.settings.retry_max:
            job = ctx.store.get(request_id)
            if job is not None:
                fail_job(ctx, job, exc.code, f"{exc.detail} (gave up after {retries + 1} attempts)")
            return
        delay = backoff_s(ctx.settings, retries)
        log.warning("job %s: %s; retry %d in %.2fs", request_id, exc.detail, retries + 1, delay)
        ctx.store.mark_retry(request_id)
        raise self.retry(countdown=delay, exc=exc, max_retries=ctx.settings.retry_max) from exc
