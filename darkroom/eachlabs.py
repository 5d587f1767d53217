"""The eachlabs prediction API's view of Darkroom jobs (docs/contract.md §4, docs/decisions.md §20).

Torch-free: the API renders predictions with it and workers build eachlabs webhook bodies with it.
"""

from __future__ import annotations

from typing import Any

from darkroom.apps import APPS, POST_PROCESSING, AppSpec
from darkroom.errors import InvalidInput, NotFound, RequestCancelled
from darkroom.job import JobRecord
from darkroom.outputs import UrlFor, first_image_url, public_input
from darkroom.status import JobStatus

SLUG = "post-processing"  # eachlabs' slug of fal-ai/post-processing; `post-processing-blur` etc. too
CANCELLED = RequestCancelled.code


def resolve_model(model: str | None) -> AppSpec:
    """The app behind an eachlabs ``model``: its slug (`post-processing`, `post-processing-blur`, …)
    or a Darkroom app id (`fal-ai/post-processing/blur`)."""
    if not model:
        raise InvalidInput("model field is required")
    if model in APPS:
        return APPS[model]
    if model == SLUG:
        return APPS[POST_PROCESSING]
    if model.startswith(SLUG + "-"):
        app = APPS.get(f"{POST_PROCESSING}/{model[len(SLUG) + 1:]}")
        if app is not None:
            return app
    raise NotFound(f"Model {model!r} not found")


def prediction_status(job: JobRecord) -> str:
    """starting | processing | success | failed | cancelled."""
    if job.status is JobStatus.IN_QUEUE:
        return "starting"
    if job.status is JobStatus.IN_PROGRESS:
        return "processing"
    if job.error is None:
        return "success"
    return "cancelled" if job.error.get("error_type") == CANCELLED else "failed"


def _output(job: JobRecord, url_for: UrlFor) -> str | None:
    """For an image model, the URL of the first image (a string)."""
    if job.status is not JobStatus.COMPLETED or job.error is not None:
        return None
    return first_image_url(job.result, url_for)


def _metrics(job: JobRecord) -> dict[str, Any]:
    return {"predict_time": job.metrics.get("inference_time"), "cost": 0}


def prediction_urls(base_url: str, request_id: str) -> dict[str, str]:
    get = f"{base_url}/v1/prediction/{request_id}"
    return {"cancel": f"{get}/cancel", "get": get}


def prediction_view(job: JobRecord, logs: list[dict], url_for: UrlFor, base_url: str) -> dict[str, Any]:
    """The body of ``GET /v1/prediction/{id}``."""
    view: dict[str, Any] = {
        "id": job.id,
        "input": public_input(job.input, url_for),
        "status": prediction_status(job),
        "output": _output(job, url_for),
        "logs": logs_text(logs),
        "metrics": _metrics(job),
        "urls": prediction_urls(base_url, job.id),
    }
    if job.error is not None:
        view["error"] = job.error.get("detail")
    return view


def logs_text(logs: list[dict]) -> str | None:
    """A job's log lines as eachlabs' ``logs``: one string, a line each (None without lines)."""
    return "\n".join(entry["message"] for entry in logs) or None


def webhook_body(job: JobRecord, url_for: UrlFor, logs: list[dict]) -> dict[str, Any]:
    """What an eachlabs webhook posts: ``{id, status: success|failed, output, input, metrics, logs}``
    (eachlabs' receivers read a failure's reason from ``logs``; ``error`` has it too)."""
    body: dict[str, Any] = {
        "id": job.id,
        "status": "success" if job.error is None else "failed",
        "output": _output(job, url_for),
        "input": public_input(job.input, url_for),
        "metrics": _metrics(job),
        "logs": logs_text(logs),
    }
    if job.error is not None:
        body["error"] = job.error.get("detail")
    return body
