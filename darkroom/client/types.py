"""What the Darkroom client (``darkroom.client``) returns and raises, and the wire details both of its
classes share: URLs, answers turned into models or errors, server-sent-event parsing.

Torch-free and free of I/O, so it is cheap to import and easy to test.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from darkroom.apps.post_processing import Image as ContractImage
from darkroom.client.errors import DarkroomClientError, WaitTimedOut

__all__ = ["DarkroomClientError", "WaitTimedOut"]  # re-exported: they lived here first

TERMINAL = "COMPLETED"
REQUEST_ID_HEADER = "x-fal-request-id"
CANCEL_OUTCOMES = ("CANCELLATION_REQUESTED", "ALREADY_COMPLETED", "OK")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestLog(_Model):
    message: str = ""
    level: str = "INFO"
    source: str = "USER"
    timestamp: str | None = None


class SubmitHandle(_Model):
    """The answer to a submit: the request id and the URLs to follow it."""

    app: str = ""
    request_id: str
    status: str = "IN_QUEUE"
    response_url: str | None = None
    status_url: str | None = None
    cancel_url: str | None = None
    queue_position: int | None = None


Request = SubmitHandle  # fal-client's name for the same thing


class Status(_Model):
    """A request's status (docs/contract.md §3.4); a failed request is COMPLETED with ``error`` and
    ``error_type``."""

    status: str
    request_id: str | None = None
    queue_position: int | None = None
    logs: list[RequestLog] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    response_url: str | None = None
    status_url: str | None = None
    cancel_url: str | None = None

    @property
    def done(self) -> bool:
        return self.status == TERMINAL

    @property
    def failed(self) -> bool:
        return self.done and bool(self.error or self.error_type)


class Image(_Model, ContractImage):
    """An output image, as the apps' output contract defines it."""


class Result(_Model):
    """A request's output: the images (and the seed used, when the app reports one)."""

    images: list[Image] = Field(default_factory=list)
    seed: int | None = None
    request_id: str | None = None


class Upload(Image):
    """The answer of ``POST /storage/upload``; ``url`` goes into ``image_url``."""


def base_id(app: str) -> str:
    """owner/alias of an app id: status, result and cancel live under it (docs/contract.md §3.1)."""
    parts = app.strip("/").split("/")
    return "/".join(parts[:2])


def request_url(server: str, app: str, request_id: str, suffix: str = "") -> str:
    return f"{server}/{base_id(app)}/requests/{request_id}{suffix}"


def raise_for_answer(resp: httpx.Response) -> None:
    """DarkroomClientError for any non-2xx answer, carrying the server's detail and error_type."""
    if resp.is_success:
        return
    try:
        body = resp.json()
    except ValueError:
        body = None
    detail: Any = resp.text or resp.reason_phrase
    error_type = resp.headers.get("x-fal-error-type")
    if isinstance(body, dict):
        detail = body.get("detail", body.get("status", body.get("error", detail)))
        error_type = body.get("error_type") or error_type
    raise DarkroomClientError(resp.status_code, detail, error_type, resp.headers.get(REQUEST_ID_HEADER))


def status_from(data: dict[str, Any]) -> Status:
    data = dict(data)
    if data.get("logs") is None:
        data["logs"] = []
    if data.get("metrics") is None:
        data["metrics"] = {}
    return Status.model_validate(data)


def result_from(resp: httpx.Response) -> Result:
    raise_for_answer(resp)
    result = Result.model_validate(resp.json())
    result.request_id = result.request_id or resp.headers.get(REQUEST_ID_HEADER)
    return result


def cancel_outcome(resp: httpx.Response, app: str, request_id: str) -> str:
    """CANCELLATION_REQUESTED or ALREADY_COMPLETED; DarkroomClientError otherwise (404 included)."""
    try:
        outcome = resp.json().get("status")
    except (ValueError, AttributeError):
        outcome = None
    if resp.status_code in (200, 202, 400) and outcome in CANCEL_OUTCOMES:
        return outcome
    if resp.status_code == 404 and outcome == "NOT_FOUND":
        detail = f"no request {request_id} in app {base_id(app)} (unknown, deleted, expired or another key's)"
        raise DarkroomClientError(404, detail, "not_found", request_id)
    raise_for_answer(resp)
    raise DarkroomClientError(resp.status_code, resp.text)


class SSEParser:
    """Feeds on the lines of a ``text/event-stream``; returns each event's ``data`` as JSON."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        line = line.rstrip("\r\n")
        if line == "":
            if not self._data:
                return None
            text, self._data = "\n".join(self._data), []
            return json.loads(text)
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


class LogAccumulator:
    """Status events carry only the log lines new since the previous one; hand on all of them."""

    def __init__(self) -> None:
        self.logs: list[RequestLog] = []

    def merge(self, event: dict[str, Any]) -> Status:
        status = status_from(event)
        self.logs.extend(status.logs)
        status.logs = list(self.logs)
        return status
