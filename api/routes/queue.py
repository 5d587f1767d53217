"""The fal queue protocol (docs/contract.md §3): submit, status, result and cancel, per registered app.

No `from __future__ import annotations` here: FastAPI must see the per-app body models themselves.
"""


from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from darkroom.apps import APPS, AppSpec, base_app_ids
from darkroom.errors import InvalidInput, NotFound, RequestNotFinished
from darkroom.job import JobRecord
from darkroom.outputs import public_result
from darkroom.status import JobStatus

from ..auth import Caller, CallerDep, caller_of, owned_job
from ..deps import Services, load_job, request_urls, services
from ..errors import error_response
from ..idempotency import fingerprint, submit_once
from ..lifecycle import cancel_request, delete_request
from ..submit import submit_job

REQUEST_ID_HEADER = "x-fal-request-id"
TRUE_WORDS = {"1", "true", "yes"}
FALSE_WORDS = {"0", "false", "no", ""}


def parse_flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidInput(f"{name} must be one of 1, 0, true, false; got {value!r}")


def parse_priority(value: str | None) -> str:
    word = (value or "normal").strip().lower()
    if word not in ("normal", "low"):
        raise InvalidInput(f"X-Fal-Queue-Priority must be 'normal' or 'low', got {value!r}")
    return word


def parse_timeout(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise InvalidInput(f"X-Fal-Request-Timeout must be a positive number of seconds, got {value!r}")
    return seconds


def status_body(svc: Services, job: JobRecord, with_logs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": job.status.value,
        "request_id": job.id,
        **request_urls(svc.settings, job.base_id, job.id),
        "logs": svc.store.logs(job.id) if with_logs else None,
    }
    if job.status is JobStatus.IN_QUEUE:
        body["queue_position"] = svc.store.position(job)
    elif job.status is JobStatus.COMPLETED:
        body["metrics"] = {k: v for k, v in job.metrics.items() if k == "inference_time"}
        if job.error:
            body["error"] = job.error["detail"]
            body["error_type"] = job.error["error_type"]
    return body


def finished_response(svc: Services, job: JobRecord, headers: dict[str, str]) -> JSONResponse:
    """A completed job's answer: its error body with the error's status, or its output with object
    URLs presigned afresh (records keep keys, not URLs)."""
    if job.error:
        return error_response(job.error["error_type"], job.error["detail"], headers)
    return JSONResponse(public_result(job.result or {}, svc.objects.url), headers=headers)


async def submit_options(
    caller: CallerDep,
    x_fal_queue_priority: Annotated[str | None, Header()] = None,
    x_fal_request_timeout: Annotated[str | None, Header()] = None,
    x_fal_no_retry: Annotated[str | None, Header(description="1|true|yes: never retry this job")] = None,
) -> dict[str, Any]:
    """submit_job's options from the caller and fal's request headers (queue submits and sync runs)."""
    return {
        "owner": caller.owner,
        "priority": parse_priority(x_fal_queue_priority),
        "timeout_s": parse_timeout(x_fal_request_timeout),
        "no_retry": parse_flag(x_fal_no_retry, "x-fal-no-retry"),
    }


async def accept_submit(
    svc: Services, app_spec: AppSpec, body: Any, caller: Caller, fal_webhook: str | None = None,
    idempotency_key: str | None = None, x_fal_queue_priority: str | None = None,
    x_fal_request_timeout: str | None = None, x_fal_no_retry: str | None = None,
) -> JSONResponse:
    """A validated queue submit, from the caller and fal's request headers to fal's answer: the one
    body behind both the FastAPI route and the fast path in front of it (api.fast_submit)."""
    options = await submit_options(caller, x_fal_queue_priority, x_fal_request_timeout, x_fal_no_retry)

    def response(job: JobRecord) -> dict[str, Any]:
        return {
            "status": JobStatus.IN_QUEUE.value, "request_id": job.id, "gateway_request_id": job.id,
            **request_urls(svc.settings, job.base_id, job.id),
        }

    async def accept(record=None) -> dict[str, Any]:
        idempotency = (lambda job: record(response(job))) if record else None
        job, position = await submit_job(svc, app_spec, body, webhook_url=fal_webhook or "",
                                         idempotency=idempotency, **options)
        return {**response(job), "queue_position": position}

    if idempotency_key:
        body_fingerprint = fingerprint(app_spec.app_id, body)
        content = await submit_once(svc, idempotency_key, body_fingerprint, accept, owner=caller.owner)
    else:
        content = await accept()
    return JSONResponse(content, headers={REQUEST_ID_HEADER: content["request_id"]})


def _submit_route(app_spec: AppSpec):
    """The route (and OpenAPI entry) of a submit: its parameters are declared flat and the caller
    comes from the router's ``authenticate`` (no second CallerDep node). Plain JSON submits are
    served before they get here, by api.fast_submit; this route answers the rest (and every
    malformed one, so FastAPI words the 422s)."""
    model = app_spec.input_model

    async def submit(
        request: Request,
        body: model,  # type: ignore[valid-type]
        fal_webhook: Annotated[str | None, Query(description="URL to POST the result to")] = None,
        idempotency_key: Annotated[str | None, Header(description="Same key and body: same request")] = None,
        x_fal_queue_priority: Annotated[str | None, Header()] = None,
        x_fal_request_timeout: Annotated[str | None, Header()] = None,
        x_fal_no_retry: Annotated[str | None, Header(description="1|true|yes: never retry this job")] = None,
    ) -> JSONResponse:
        return await accept_submit(
            request.app.state.services, app_spec, body, caller_of(request), fal_webhook, idempotency_key,
            x_fal_queue_priority, x_fal_request_timeout, x_fal_no_retry,
        )

    submit.__name__ = "submit_" + app_spec.app_id.replace("/", "_").replace("-", "_")
    return submit


def _request_routes(router: APIRouter, base_id: str) -> None:
    prefix = f"/{base_id}/requests/{{request_id}}"

    JobDep = Annotated[JobRecord, Depends(owned_job(base_id))]

    @router.get(prefix + "/status", name=f"status {base_id}", tags=[base_id])
    def status(
        job: JobDep,
        svc: Annotated[Services, Depends(services)],
        logs: Annotated[str | None, Query(description="Include logs: 1|0|true|false")] = None,
    ) -> JSONResponse:
        code = 200 if job.status.is_terminal() else 202
        body = status_body(svc, job, parse_flag(logs, "logs"))
        return JSONResponse(body, status_code=code, headers={REQUEST_ID_HEADER: job.id})

    @router.get(prefix, name=f"result {base_id}", tags=[base_id])
    def result(job: JobDep, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
        headers = {REQUEST_ID_HEADER: job.id}
        if not job.status.is_terminal():
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400, headers=headers)
        return finished_response(svc, job, headers)

    @router.put(prefix + "/cancel", name=f"cancel {base_id}", tags=[base_id])
    def cancel(
        request_id: str, svc: Annotated[Services, Depends(services)], caller: CallerDep
    ) -> JSONResponse:
        try:
            job = load_job(svc, base_id, request_id, caller.owner)
        except NotFound:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        outcome = cancel_request(svc, job)
        headers = {REQUEST_ID_HEADER: job.id}
        if outcome == "ALREADY_COMPLETED":
            return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400, headers=headers)
        if outcome == "NOT_FOUND":
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404, headers=headers)
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202, headers=headers)

    @router.delete(prefix, name=f"delete {base_id}", tags=[base_id])
    def delete(job: JobDep, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
        """Extension: remove a finished request's record, logs and objects (400 while unfinished)."""
        headers = {REQUEST_ID_HEADER: job.id}
        try:
            removed = delete_request(svc, job)
        except RequestNotFinished as exc:
            return error_response(exc.code, exc.detail, headers)
        body = {"status": "DELETED", "request_id": job.id, "objects_deleted": removed}
        return JSONResponse(body, headers=headers)


def build_router() -> APIRouter:
    router = APIRouter()
    for app_spec in APPS.values():  # submits first: routes are matched in order, and they are hot
        router.add_api_route(
            f"/{app_spec.app_id}",
            _submit_route(app_spec),
            methods=["POST"],
            summary=app_spec.summary,
            tags=[app_spec.base_id],
        )
    for base_id in base_app_ids():
        _request_routes(router, base_id)
    return router


