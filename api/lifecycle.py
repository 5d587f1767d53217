"""Ending requests from the API: cancelling them (fal, eachlabs, sync-run timeouts) and deleting them."""

from __future__ import annotations

import logging

from darkroom.errors import RequestCancelled, RequestNotFinished
from darkroom.job import JobRecord
from darkroom.metrics import count_completed
from storage.maintenance import delete_job

from .deps import Services

log = logging.getLogger(__name__)


def cancel_request(svc: Services, job: JobRecord) -> str:
    """Cancel a job: NOT_FOUND | ALREADY_COMPLETED | QUEUED (completed here) | RUNNING (flagged).

    A queued job is completed by the job store right here, not by a worker; the same step creates its
    webhook's delivery (a running job's is created by the worker that stops it).
    """
    outcome = svc.store.cancel(job)
    if outcome == "QUEUED":  # completed here, so counted here (workers count the jobs they complete)
        count_completed(job.app_id, {"error_type": RequestCancelled.code})
    return outcome


def delete_request(svc: Services, job: JobRecord) -> int:
    """Remove a finished request: its objects (inputs and outputs), then its record, logs and webhook
    record. Returns how many objects were deleted."""
    if not job.status.is_terminal():
        detail = f"Request {job.id} is {job.status.value}; cancel it or wait for it to finish"
        raise RequestNotFinished(detail)
    removed = delete_job(svc.store, svc.objects, job.id)
    log.info("deleted request %s (%d objects)", job.id, removed)
    return removed
