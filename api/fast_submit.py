"""The submit fast path: a plain JSON ``POST /<app id>`` served in front of FastAPI's routing.

A queue submit is the API's hottest request, and FastAPI's handling of it (its middleware layers,
routing, a Request, dependency solving for the body, the query and five headers) cost about as much
CPU as accepting the job. This ASGI middleware serves the common case itself: it reads the body,
parses it and validates it with the app's input model exactly as FastAPI does (``json.loads``, then
the model with ``from_attributes``), finds the caller like :func:`api.auth.authenticate` and hands
both to the route's own :func:`api.routes.queue.accept_submit`. Errors raised on the way go to the
app's registered exception handlers, as they would from the route.

Everything else goes on to FastAPI untouched, with the body already read replayed: other paths and
methods, a content type other than ``application/json``, and any body that does not parse or
validate, so FastAPI still words every 422 (``loc``, ``msg``) and the OpenAPI schema still comes
from the route.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darkroom.apps import APPS, AppSpec

from .auth import caller_for, presented_key
from .routes.queue import accept_submit

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
_HEADERS = frozenset({
    b"content-type", b"authorization", b"x-api-key", b"idempotency-key", b"x-fal-queue-priority",
    b"x-fal-request-timeout", b"x-fal-no-retry",
})


class FastSubmitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: dict[str, AppSpec] = {f"/{spec.app_id}": spec for spec in APPS.values()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            spec = self.routes.get(scope["path"])
        if spec is None:
            await self.app(scope, receive, send)
            return
        headers = request_headers(scope)
        if headers.get("content-type", "").partition(";")[0].strip().lower() != JSON_TYPE:
            await self.app(scope, receive, send)  # FastAPI decides what other types mean
            return
        body = await read_body(receive)
        if body is None:  # the client went away before sending its body: nobody to answer
            return
        model = validated(spec, body)
        if model is None:  # FastAPI words the 422 (or whatever else this body deserves)
            await self.app(scope, replayed(body, receive), send)
            return
        try:
            response = await self.accept(scope, spec, model, headers)
        except Exception as exc:
            handler = exception_handler(scope, exc)
            if handler is None:
                raise
            request = Request(scope, receive)
            if is_async_callable(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)

    @staticmethod
    async def accept(scope: Scope, spec: AppSpec, model: Any, headers: dict[str, str]):
        svc = scope["app"].state.services
        caller = await caller_for(svc, presented_key(headers.get("authorization"), headers.get("x-api-key")))
        return await accept_submit(
            svc, spec, model, caller, query_value(scope, "fal_webhook"), headers.get("idempotency-key"),
            headers.get("x-fal-queue-priority"), headers.get("x-fal-request-timeout"),
            headers.get("x-fal-no-retry"),
        )


def request_headers(scope: Scope) -> dict[str, str]:
    """The headers the submit reads, first value of each, decoded as Starlette does (latin-1)."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _HEADERS:
            out.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return out


def query_value(scope: Scope, name: str) -> str | None:
    """A query parameter as FastAPI reads it (the last value of a repeated one), or None."""
    query = scope.get("query_string", b"")
    if not query:
        return None
    value = None
    for key, item in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == name:
            value = item
    return value


async def read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def validated(spec: AppSpec, body: bytes) -> Any:
    """The body as the app's input model, or None when it does not parse or validate."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return spec.input_model.model_validate(data, from_attributes=True)
    except ValidationError:
        return None


def replayed(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read in front of it again."""
    pending = True

    async def again() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def exception_handler(scope: Scope, exc: Exception):
    """The app's handler for ``exc`` (the most specific registered class), or None."""
    handlers = scope["app"].exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
