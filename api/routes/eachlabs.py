"""eachlabs-compatible prediction routes (docs/contract.md §4, docs/decisions.md §20), over the same queue.

``POST /v1/prediction`` (and ``/v1/prediction/``), ``GET /v1/prediction/{id}``,
``POST /v1/prediction/{id}/cancel`` and ``POST /v1/prediction/run`` (synchronous). Errors answer in
eachlabs' shape, ``{"error": "..."}``, from the same error codes (api.errors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError

from darkroom import eachlabs
from darkroom.apps import AppSpec
from darkroom.errors import DarkroomError, InvalidInput, NotFound, RequestTimeout
from darkroom.job import JobRecord

from ..auth import CallerDep
from ..deps import Services, services
from ..errors import eachlabs_error_response
from ..lifecycle import cancel_request
from ..submit import submit_job
from .queue import REQUEST_ID_HEADER
from .run import run_to_completion, timeout_detail

INVALID = "Invalid input for model"
RUN_MESSAGES = {  # `message` of a synchronous run, by final status
    "success": "Prediction completed successfully",
    "failed": "Prediction failed",
    "cancelled": "Prediction cancelled",
}


class EachlabsRoute(APIRoute):
    """Routes whose errors (ours and FastAPI's validation) answer ``{"error": …}``."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except DarkroomError as exc:
                return eachlabs_error_response(exc.code, exc.detail)
            except RequestValidationError as exc:
                return eachlabs_error_response(InvalidInput.code, f"{INVALID}: {describe(exc.errors())}")

        return route


class PredictionRequest(BaseModel):
    model: str | None = Field(None, description="`post-processing`, `post-processing-<effect>` or an app id")
    version: str | None = Field(None, description="Accepted and ignored")
    input: dict[str, Any] = Field(default_factory=dict, description="The model's input (fal's fields)")
    webhook_url: str | None = Field(None, description="POSTed {id, status, output, input, metrics} when done")
    webhook_secret: str | None = Field(None, description="Key of the X-Signature HMAC-SHA256 header")


def describe(errors: list[Any]) -> str:
    """Validation errors as one line: which field, and why."""
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",)) or "input"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def validated(req: PredictionRequest) -> tuple[AppSpec, BaseModel]:
    app = eachlabs.resolve_model(req.model)
    try:
        return app, app.input_model.model_validate(req.input)
    except ValidationError as exc:
        raise InvalidInput(f"{INVALID}: {describe(exc.errors())}") from exc


def submit_options(req: PredictionRequest) -> dict[str, Any]:
    return {"webhook_url": req.webhook_url or "", "webhook_style": "eachlabs",
            "webhook_secret": req.webhook_secret or ""}


def load_prediction(svc: Services, prediction_id: str, owner: str = "") -> JobRecord:
    job = svc.store.get(prediction_id)
    if job is None or (job.owner and job.owner != owner):
        raise NotFound("Prediction not found")
    return job


def _reply(body: dict[str, Any], request_id: str, status_code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers={REQUEST_ID_HEADER: request_id})


router = APIRouter(prefix="/v1/prediction", tags=["eachlabs"], route_class=EachlabsRoute)
SvcDep = Annotated[Services, Depends(services)]


@router.post("")
@router.post("/", include_in_schema=False)
async def create_prediction(req: PredictionRequest, svc: SvcDep, caller: CallerDep) -> JSONResponse:
    """Create a prediction (asynchronous): answers with its id at once."""
    app, body = validated(req)
    try:
        job, _ = await submit_job(svc, app, body, owner=caller.owner, **submit_options(req))
    except InvalidInput as exc:
        raise InvalidInput(f"{INVALID}: {exc.detail}") from exc
    reply = {"status": "success", "message": "Prediction created successfully", "predictionID": job.id}
    return _reply(reply, job.id)


@router.post("/run")
async def run_prediction(req: PredictionRequest, svc: SvcDep, caller: CallerDep) -> JSONResponse:
    """Run a prediction synchronously: answers when it is done, with its output or, for a failed
    (or cancelled) prediction, its error, in the same body and with 200 (eachlabs: "Prediction
    completed or failed synchronously"); bad input is a 400 before anything runs, as for a create."""
    app, body = validated(req)
    job = await run_to_completion(svc, app, body, owner=caller.owner, **submit_options(req))
    if not job.status.is_terminal():
        return eachlabs_error_response(RequestTimeout.code, timeout_detail(svc), {REQUEST_ID_HEADER: job.id})
    view = eachlabs.prediction_view(job, [], svc.objects.url, svc.settings.api_base_url)
    reply = {"status": view["status"], "message": RUN_MESSAGES[view["status"]], "predictionID": job.id,
             "output": view["output"], "error": view.get("error") or ""}
    return _reply(reply, job.id)


@router.get("/{prediction_id}")
async def get_prediction(prediction_id: str, svc: SvcDep, caller: CallerDep) -> JSONResponse:
    """A prediction's status, output (URL of the first image), logs and metrics."""
    job = load_prediction(svc, prediction_id, caller.owner)
    view = eachlabs.prediction_view(job, svc.store.logs(job.id), svc.objects.url, svc.settings.api_base_url)
    return _reply(view, job.id)


@router.post("/{prediction_id}/cancel")
async def cancel_prediction(prediction_id: str, svc: SvcDep, caller: CallerDep) -> JSONResponse:
    """Cancel a queued or running prediction (best effort; 400 once it has finished)."""
    job = load_prediction(svc, prediction_id, caller.owner)
    outcome = cancel_request(svc, job)
    if outcome == "NOT_FOUND":
        raise NotFound("Prediction not found")
    if outcome == "ALREADY_COMPLETED":
        return _reply({"error": "Prediction has already finished"}, job.id, 400)
    reply = {"status": "cancelled", "message": "Prediction canceled successfully", "predictionID": job.id}
    return _reply(reply, job.id)
