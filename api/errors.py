"""The only place error codes become HTTP statuses and bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from darkroom.errors import DarkroomError

log = logging.getLogger(__name__)

HTTP_STATUS = {
    "invalid_input": 422,
    "image_too_large": 422,
    "unsupported_image": 422,
    "fetch_refused": 422,
    "fetch_failed": 422,
    "not_found": 404,
    "request_cancelled": 400,
    "request_timeout": 504,
    "model_unavailable": 503,
    "queue_full": 429,
    "service_unavailable": 503,
    "storage_unavailable": 503,
    "fetch_unavailable": 502,
    "device_out_of_memory": 500,
    "transient_error": 503,
    "worker_crash": 500,
    "internal_error": 500,
}


def status_for(code: str) -> int:
    return HTTP_STATUS.get(code, 500)


def error_response(code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {"X-Fal-Error-Type": code, **(headers or {})}
    return JSONResponse({"detail": detail, "error_type": code}, status_code=status_for(code), headers=headers)


async def _darkroom_error(request: Request, exc: DarkroomError) -> JSONResponse:
    headers = {}
    if exc.code == "queue_full":
        headers["Retry-After"] = "1"
    elif exc.code in ("service_unavailable", "storage_unavailable"):
        headers["Retry-After"] = "2"
    return error_response(exc.code, exc.detail, headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
    for e in errors:
        e.pop("url", None)
    return JSONResponse({"detail": errors}, status_code=422, headers={"X-Fal-Error-Type": "invalid_input"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DarkroomError, _darkroom_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
