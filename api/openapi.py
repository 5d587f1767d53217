"""The OpenAPI document, made to describe the error bodies the API really sends.

FastAPI documents every 422 as a list of validation errors (``{"detail": [...]}``), but Darkroom's
own errors answer ``{"detail": "<message>", "error_type": "<code>"}`` with the same status (a bad
header, an unacceptable image). The shared ``HTTPValidationError`` schema is widened to allow both,
so clients and schema-driven tests (schemathesis) see what is sent.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Darkroom's error body: a message and the stable code of docs/decisions.md §11."""

    detail: str
    error_type: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting ``ErrorBody`` for ``codes``."""
    return {code: {"model": ErrorBody, "description": "Error (`error_type` says which)"} for code in codes}


def _widen_validation_error(schema: dict[str, Any]) -> None:
    component = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
    if not component:
        return
    props = component.setdefault("properties", {})
    detail = props.get("detail", {})
    props["detail"] = {"anyOf": [detail, {"type": "string"}], "title": detail.get("title", "Detail")}
    props["error_type"] = {"type": "string", "title": "Error Type"}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            _widen_validation_error(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
