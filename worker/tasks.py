"""Celery tasks: thin adapters from a message (a job id) to the plain runner functions."""

from __future__ import annotations

import logging

from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown

from darkroom.broker import RUN_JOB_TASK, make_celery
from darkroom.errors import DarkroomError
from darkroom.logs import TASK_PREFIX, bind_request_id
from darkroom.settings import get_settings
from worker.context import WorkerContext, build_context
from worker.metrics import job_retried
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


@task_prerun.connect
def _tag_logs(task=None, args=None, **_: object) -> None:
    """Every line logged while a Darkroom task runs, Celery's own included, carries its request id."""
    name = getattr(task, "name", "") or ""
    bind_request_id(str(args[0]) if args and name.startswith(TASK_PREFIX) else None)


@task_postrun.connect
def _untag_logs(**_: object) -> None:
    bind_request_id(None)


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
        if not ctx.store.mark_retry(request_id, ctx.worker_id, delay + ctx.settings.heartbeat_ttl_s):
            log.info("job %s was taken over or finished meanwhile; no retry from here", request_id)
            return
        log.warning("job %s: %s; retry %d in %.2fs", request_id, exc.detail, retries + 1, delay)
        job_retried(exc.code)
        raise self.retry(countdown=delay, exc=exc, max_retries=ctx.settings.retry_max) from exc
