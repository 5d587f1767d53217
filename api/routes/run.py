"""Synchronous run (docs/contract.md §3.11, docs/decisions.md §13): ``POST /run/{app_id}`` for every
registered app.

The job goes through the same queue as any other; the route waits for its COMPLETED event (pub/sub)
and answers with the output JSON itself, or with the error body and its status. A job not done within
``sync_run_timeout_s`` is cancelled and answered with 504 ``request_timeout``. A fal client reaches
these routes with ``FAL_RUN_HOST=<host:port>/run``.

No `from __future__ import annotations` here: FastAPI must see the per-app body models themselves.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from darkroom.apps import APPS, AppSpec
from darkroom.errors import NotFound, RequestTimeout
from darkroom.job import JobRecord

from ..deps import Services, services
from ..errors import error_response
from ..events import wait_completed
from ..lifecycle import cancel_request
from ..submit import submit_job
from .queue import REQUEST_ID_HEADER, finished_response, submit_options


async def run_to_completion(svc: Services, app_spec: AppSpec, body: Any, **options: Any) -> JobRecord:
    """Submit a job and wait for it. Returns it COMPLETED or, when ``sync_run_timeout_s`` passed
    first, as it stood (not terminal) after cancelling it."""
    job, _ = await submit_job(svc, app_spec, body, **options)
    done = await wait_completed(svc, job.id, svc.settings.sync_run_timeout_s)
    if done is None:
        raise NotFound(f"Request {job.id} disappeared before it completed")
    if done.status.is_terminal():
        return done
    if cancel_request(svc, done) == "ALREADY_COMPLETED":  # it finished as we gave up on it
        return svc.store.get(job.id) or done
    return done


def timeout_detail(svc: Services) -> str:
    return f"The request did not complete within {svc.settings.sync_run_timeout_s:g}s and was cancelled"


def _run_route(app_spec: AppSpec):
    model = app_spec.input_model

    async def run(
        body: model,  # type: ignore[valid-type]
        svc: Annotated[Services, Depends(services)],
        options: Annotated[dict[str, Any], Depends(submit_options)],
    ) -> JSONResponse:
        job = await run_to_completion(svc, app_spec, body, **options)
        headers = {REQUEST_ID_HEADER: job.id}
        if not job.status.is_terminal():
            return error_response(RequestTimeout.code, timeout_detail(svc), headers)
        return finished_response(svc, job, headers)

    run.__name__ = "run_" + app_spec.app_id.replace("/", "_").replace("-", "_")
    return run


def build_router() -> APIRouter:
    router = APIRouter()
    for app_spec in APPS.values():
        router.add_api_route(
            f"/run/{app_spec.app_id}",
            _run_route(app_spec),
            methods=["POST"],
            summary=f"{app_spec.summary} (synchronous: answers with the output)",
            tags=["run"],
        )
    return router
