"""Accepting a job: draw its seed, move inline inputs to object storage, store it, enqueue it."""

from __future__ import annotations

import logging
import secrets
import time
import uuid

from worker.imaging import parse_data_uri

from darkroom.apps import AppSpec
from darkroom.apps.post_processing import ImageInputBase
from darkroom.broker import enqueue
from darkroom.errors import InvalidInput, ServiceUnavailable
from darkroom.job import JobRecord, Priority
from darkroom.refs import OBJECT_REF_PREFIX

from .deps import Services

log = logging.getLogger(__name__)

IMAGE_FIELDS = ("image_url", "dissolve_image_url")
SEED_BOUND = 2**31


def stash_inline_inputs(svc: Services, request_id: str, data: dict) -> dict:
    """Replace data-URI inputs by references to objects, so records never hold megabytes of base64."""
    out = dict(data)
    for field in IMAGE_FIELDS:
        value = out.get(field)
        if not (isinstance(value, str) and value.startswith("data:")):
            continue
        raw, mime = parse_data_uri(value)
        if len(raw) > svc.settings.max_input_bytes:
            raise InvalidInput(
                f"{field} is {len(raw)} bytes; the limit is {svc.settings.max_input_bytes} bytes"
            )
        key = f"inputs/{request_id}/{field}"
        svc.objects.put(key, raw, mime or "application/octet-stream")
        out[field] = OBJECT_REF_PREFIX + key
    return out


def submit_job(
    svc: Services,
    app: AppSpec,
    body: ImageInputBase,
    *,
    owner: str = "",
    priority: Priority = "normal",
    timeout_s: float | None = None,
    webhook_url: str = "",
) -> tuple[JobRecord, int]:
    """Store and enqueue one job; returns it with its queue position."""
    request_id = str(uuid.uuid4())
    data = body.model_dump(mode="json")
    if data.get("seed") is None:
        data["seed"] = secrets.randbelow(SEED_BOUND)
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
    )
    position = svc.store.create(job)
    try:
        enqueue(svc.celery, request_id, priority)
    except Exception as exc:  # broker down after the record was written: undo, hand out no id
        log.warning("enqueue of %s failed: %s", request_id, exc)
        svc.store.delete(request_id)
        raise ServiceUnavailable("the queue is unavailable; retry later") from exc
    log.info("accepted %s for %s at position %d", request_id, app.app_id, position)
    return job, position
