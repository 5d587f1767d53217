"""Celery tasks: thin adapters from a message (a job id) to the plain runner functions."""

from __future__ import annotations

import logging

from celery.signals import worker_process_init

from darkroom.broker import RUN_JOB_TASK, make_celery
from darkroom.errors import DarkroomError
from darkroom.settings import get_settings
from worker.context import WorkerContext, build_context
from worker.outcomes import fail_job
from worker.retry import backoff_s

log = logging.getLogger(__name__)

app = make_celery(get_settings())
_context: WorkerContext | None = None


def context() -> WorkerContext:
    """The process's worker context, built once (after fork, so each process has its own clients)."""
    global _context
    if _context is None:
        _context = build_context(get_settings())
    return _context


@worker_process_init.connect
def _reset_after_fork(**_: object) -> None:
    global _context
    _context = None


@app.task(name=RUN_JOB_TASK, bind=True)
def run_job_task(self, request_id: str) -> None:
    from worker.runner import run_job

    ctx = context()
    try:
        run_job(ctx, request_id)
    except DarkroomError as exc:
        retries = self.request.retries
        if retries >= ctx.settings.retry_max:
            job = ctx.store.get(request_id)
            if job is not None:
                fail_job(ctx, job, exc.code, f"{exc.detail} (gave up after {retries + 1} attempts)")
            return
        delay = backoff_s(ctx.settings, retries)
        log.warning("job %s: %s; retry %d in %.2fs", request_id, exc.detail, retries + 1, delay)
        raise self.retry(countdown=delay, exc=exc, max_retries=ctx.settings.retry_max) from exc
