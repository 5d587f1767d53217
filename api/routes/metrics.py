"""Prometheus metrics of the API at ``/metrics`` (no key needed, like /health; turn off with
``DARKROOM_API_METRICS=false`` or keep it off the public side of the proxy)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from darkroom.metrics import render_api_metrics

from ..deps import Services, services

router = APIRouter(tags=["system"])


@router.get("/metrics", include_in_schema=False)
def metrics(svc: Annotated[Services, Depends(services)]) -> Response:
    """This process's counters plus the queue depth per app and priority, read from Redis now."""
    return Response(render_api_metrics(svc.store.queue_depths), media_type=CONTENT_TYPE_LATEST)
