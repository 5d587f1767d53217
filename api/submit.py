"""Accepting a job: draw its seed, move inline inputs to object storage, store it, enqueue it."""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from darkroom.acceptance import CONTENT_TYPES, ImageLimits, parse_data_uri, screen
from darkroom.apps import AppSpec
from darkroom.apps.pipeline import PipelineInput
from darkroom.apps.post_processing import ImageInputBase
from darkroom.errors import InvalidInput
from darkroom.job import JobRecord, Priority, WebhookStyle
from darkroom.metrics import count_submitted
from darkroom.netguard import precheck_url
from darkroom.refs import OBJECT_REF_PREFIX, own_file_key
from storage.jobs import IdempotentWrite
from storage.objects import input_key

from .deps import Services
from .recipes import expand_recipe

log = logging.getLogger(__name__)

IMAGE_FIELDS = ("image_url", "dissolve_image_url")
SEED_BOUND = 2**31


def stash_inline_inputs(svc: Services, request_id: str, data: dict) -> dict:
    """Check image inputs before a job exists and move data URIs to object storage.

    Data URIs are screened (format sniffed from the bytes, size caps, truncation; docs/decisions.md §7) and
    stored, so records never hold megabytes of base64; http(s) URLs are checked against the address
    rules that need no DNS (docs/decisions.md §18). Either way a bad input is a synchronous 422 with its
    ``error_type``; the worker checks again (with DNS) when it fetches.
    """
    out = dict(data)
    for field in IMAGE_FIELDS:
        if field in out:
            out[field] = _stash_one(svc, request_id, field, out[field])
    if isinstance(out.get("images"), dict):  # a pipeline's named images
        out["images"] = {
            name: _stash_one(svc, request_id, f"images.{name}", url) for name, url in out["images"].items()
        }
    return out


def _stash_one(svc: Services, request_id: str, field: str, value: object) -> object:
    if not (isinstance(value, str) and value):
        return value
    settings = svc.settings
    if value.startswith("data:"):
        return _stash_data_uri(svc, request_id, field, value)
    if own_file_key(value, settings.api_base_url, settings.storage_backend) is None:
        precheck_url(value, svc.url_policy or settings, what=field)
    return value


def has_inline_inputs(data: dict) -> bool:
    values = [data.get(field) for field in IMAGE_FIELDS]
    if isinstance(data.get("images"), dict):
        values += list(data["images"].values())
    return any(str(v or "").startswith("data:") for v in values)


def _stash_data_uri(svc: Services, request_id: str, field: str, value: str) -> str:
    try:
        raw, _declared = parse_data_uri(value, svc.settings.max_input_bytes)
    except InvalidInput as exc:
        raise type(exc)(f"{field}: {exc.detail}") from None
    info = screen(raw, ImageLimits.from_settings(svc.settings), field)
    key = input_key(request_id, field)
    svc.objects.put(key, raw, CONTENT_TYPES[info.format])
    return OBJECT_REF_PREFIX + key


async def submit_job(
    svc: Services,
    app: AppSpec,
    body: ImageInputBase,
    *,
    owner: str = "",
    priority: Priority = "normal",
    timeout_s: float | None = None,
    webhook_url: str = "",
    webhook_style: WebhookStyle = "fal",
    webhook_secret: str = "",
    no_retry: bool = False,
    idempotency: Callable[[JobRecord], IdempotentWrite] | None = None,
) -> tuple[JobRecord, int]:
    """Store and enqueue one job; returns it with its queue position. ``idempotency(job)``: the
    Idempotency-Key record to write in the same step as the job.

    Runs on the event loop: the record and its broker message go to Redis in one script (sent in one
    pipeline with the other submits of the same loop turn, api.create_batch), and only inline images
    (screening, an object-store upload) move to the threadpool."""
    if webhook_url:  # same address rules as input URLs (docs/decisions.md §16); the worker checks with DNS
        precheck_url(webhook_url, svc.url_policy or svc.settings, what="webhook URL")
    request_id = str(uuid.uuid4())
    if isinstance(body, PipelineInput):
        body = await expand_recipe(svc, body, owner)
    data = body.model_dump(mode="json")
    if data.get("seed") is None:
        data["seed"] = secrets.randbelow(SEED_BOUND)
    if app.check is not None:  # checks that need the settings (e.g. a pipeline's fonts and sizes)
        app.check(body, svc.settings)
    if has_inline_inputs(data):
        data = await run_in_threadpool(stash_inline_inputs, svc, request_id, data)
    else:
        data = stash_inline_inputs(svc, request_id, data)
    now = time.time()
    job = JobRecord(
        id=request_id,
        app_id=app.app_id,
        base_id=app.base_id,
        input=data,
        owner=owner,
        priority=priority,
        seed=data["seed"],
        created_at=now,
        deadline_at=now + timeout_s if timeout_s else None,
        webhook_url=webhook_url,
        webhook_style=webhook_style,
        webhook_secret=webhook_secret,
        no_retry=no_retry,
    )
    write = idempotency(job) if idempotency else None
    create = svc.creates.create if svc.creates is not None else svc.store.create_async
    position = await create(job, write)  # stored and enqueued together, or neither
    log.info("accepted %s for %s at position %d", request_id, app.app_id, position)
    count_submitted(app.app_id)
    return job, position
