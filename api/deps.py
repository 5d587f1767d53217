"""What routes share: the service objects built at start-up, and loading a job by id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from fastapi import Request

from darkroom.errors import NotFound
from darkroom.job import JobRecord
from darkroom.settings import Settings
from storage.jobs import JobStore
from storage.objects import ObjectStore

if TYPE_CHECKING:
    from darkroom.netguard import UrlPolicy

    from .auth import Authenticator
    from .create_batch import CreateBatcher


@dataclass
class Services:
    settings: Settings
    store: JobStore
    objects: ObjectStore
    events: aioredis.Redis | None = None  # async client for pub/sub (status streams, sync runs)
    auth: Authenticator | None = None  # API keys and rate limits (api.auth); None: everyone is anonymous
    creates: CreateBatcher | None = None  # submits' job creates, pipelined; None: store.create_async each
    url_policy: UrlPolicy | None = None  # the fetch allow-list, parsed once; None: from settings each time


async def services(request: Request) -> Services:
    """FastAPI dependency (async: a plain function would cost a threadpool hop per request)."""
    return request.app.state.services


def request_urls(settings: Settings, base_id: str, request_id: str) -> dict[str, str]:
    root = f"{settings.api_base_url}/{base_id}/requests/{request_id}"
    return {"response_url": root, "status_url": f"{root}/status", "cancel_url": f"{root}/cancel"}


def load_job(svc: Services, base_id: str, request_id: str, owner: str = "") -> JobRecord:
    """The job, if it exists under this app and belongs to the caller; else NotFound (404)."""
    job = svc.store.get(request_id)
    if job is None or job.base_id != base_id or (job.owner and job.owner != owner):
        raise NotFound(f"Request {request_id} not found")
    return job
