"""Celery tasks: thin adapters from a message (a request id) to the plain runner functions.

Nothing here reads settings or builds anything at import: :func:`worker.app.create_worker` registers
these on the app it builds, with the process (:class:`worker.app.WorkerProcess`) they run in.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from celery import Task

from darkroom.errors import DarkroomError
from worker.metrics import job_retried
from worker.outcomes import fail_job
from worker.retry import backoff_s
from worker.runner import run_job

if TYPE_CHECKING:
    from worker.app import WorkerProcess

log = logging.getLogger(__name__)


def run_job_task(task: Task, process: WorkerProcess, request_id: str) -> None:
    """``darkroom.run_job``: run the job; a transient failure is retried with backoff (the job is
    held by a retry lease meanwhile), a permanent one was recorded by the runner."""
    ctx = process.context()
    try:
        run_job(ctx, request_id)
    except DarkroomError as exc:
        if not exc.retryable:
            raise
        retries = task.request.retries
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
        raise task.retry(countdown=delay, exc=exc, max_retries=ctx.settings.retry_max) from exc


def deliver_webhook_task(process: WorkerProcess, request_id: str) -> None:
    """``darkroom.deliver_webhook``: one delivery attempt (retries are sent by the recovery sweep)."""
    process.webhook_sender().deliver(request_id)
