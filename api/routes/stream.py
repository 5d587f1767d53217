"""Status streams (docs/contract.md §3.5): ``GET /{base}/requests/{id}/status/stream`` as server-sent events.

One ``data: <status json>`` event per change, pushed by the job's pub/sub channel: the first at once
with the current status, then one per transition (and, with ``logs=1``, one per batch of new log
lines). Each event's ``logs`` holds only the entries new since the previous event — fal's JS client
concatenates them, so what it accumulates equals the status endpoint's ``logs``. A comment line
(``: keep-alive``) goes out every ``sse_keepalive_s``; the stream closes after the COMPLETED event.

No `from __future__ import annotations`: FastAPI must see the per-app job dependency itself.
"""

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from darkroom.apps import base_app_ids
from darkroom.job import JobRecord

from ..auth import owned_job
from ..deps import Services, services
from ..events import subscribe
from .queue import REQUEST_ID_HEADER, parse_flag, status_body

KEEPALIVE = ": keep-alive\n\n"


def sse_event(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"


async def status_events(svc: Services, job: JobRecord, with_logs: bool) -> AsyncIterator[str]:
    """The event stream of one job, ending after its COMPLETED event (or when the job disappears)."""
    sent_logs = 0
    last_status = None
    async with subscribe(svc, job.id) as events:
        while True:
            current = svc.store.get(job.id)
            if current is None:
                return
            body = status_body(svc, current, with_logs=False)
            new_logs = svc.store.logs(job.id)[sent_logs:] if with_logs else []
            if with_logs:
                body["logs"] = new_logs
            if current.status != last_status or new_logs:
                yield sse_event(body)
                last_status, sent_logs = current.status, sent_logs + len(new_logs)
            if current.status.is_terminal():
                return
            if await events.next(svc.settings.sse_keepalive_s) is None:
                yield KEEPALIVE


def _stream_route(router: APIRouter, base_id: str) -> None:
    @router.get(
        f"/{base_id}/requests/{{request_id}}/status/stream",
        name=f"status stream {base_id}",
        tags=[base_id],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "Status events"}},
    )
    async def status_stream(
        job: Annotated[JobRecord, Depends(owned_job(base_id))],
        svc: Annotated[Services, Depends(services)],
        logs: Annotated[str | None, Query(description="Include logs: 1|0|true|false")] = None,
    ) -> StreamingResponse:
        headers = {REQUEST_ID_HEADER: job.id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        events = status_events(svc, job, parse_flag(logs, "logs"))
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def build_router() -> APIRouter:
    router = APIRouter()
    for base_id in base_app_ids():
        _stream_route(router, base_id)
    return router
