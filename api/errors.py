"""The only place error codes become HTTP statuses and bodies."""

from __future__ import annotations

import logging
import math
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from darkroom.errors import DarkroomError, RateLimited, Unauthorized

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
    "rate_limited": 429,
    "unauthorized": 401,
    "service_unavailable": 503,
    "storage_unavailable": 503,
    "fetch_unavailable": 502,
    "device_out_of_memory": 500,
    "transient_error": 503,
    "worker_crash": 500,
    "internal_error": 500,
    "request_not_finished": 400,
    "idempotency_key_in_use": 429,  # fal clients retry 429 by themselves
    "proxy_target_refused": 400,
    "output_too_large": 422,
    "read_only": 409,
}


def status_for(code: str) -> int:
    return HTTP_STATUS.get(code, 500)


def _spelled(number: float) -> float | str:
    """JSON has no NaN or Infinity (Starlette renders with allow_nan=False): echo those as words."""
    if math.isfinite(number):
        return number
    return "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"


def _utf8(text: str) -> str:
    """A lone surrogate (a valid JSON escape) cannot be encoded as UTF-8: echo it backslash-escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


ECHO_ENCODERS = {
    float: _spelled,
    str: _utf8,
    bytes: lambda raw: raw.decode("utf-8", "backslashreplace"),
    Exception: lambda exc: _utf8(str(exc)),
}


def json_safe(content: Any) -> Any:
    """``content`` as JSON can carry it, whatever user input it echoes."""
    return jsonable_encoder(content, custom_encoder=ECHO_ENCODERS)


def error_response(code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {"X-Fal-Error-Type": code, **(headers or {})}
    content = json_safe({"detail": detail, "error_type": code})
    return JSONResponse(content, status_code=status_for(code), headers=headers)


def eachlabs_error_response(code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The eachlabs shape, ``{"error": …}``, with the same statuses except bad input: 400, not 422."""
    status = status_for(code)
    content = json_safe({"error": detail})
    return JSONResponse(content, status_code=400 if status == 422 else status, headers=headers)


async def _darkroom_error(request: Request, exc: DarkroomError) -> JSONResponse:
    headers = {}
    if exc.code in ("queue_full", "idempotency_key_in_use"):
        headers["Retry-After"] = "1"
    elif exc.code in ("service_unavailable", "storage_unavailable"):
        headers["Retry-After"] = "2"
    elif isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Key realm="darkroom"'
    return error_response(exc.code, exc.detail, headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = json_safe(exc.errors())
    for e in errors:
        e.pop("url", None)
    return JSONResponse({"detail": errors}, status_code=422, headers={"X-Fal-Error-Type": "invalid_input"})


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unavailable: %s", exc)
    detail = "The job store is unavailable; retry later"
    return error_response("service_unavailable", detail, {"Retry-After": "2"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DarkroomError, _darkroom_error)
    app.add_exception_handler(redis.RedisError, _redis_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
