"""The job message the job store pushes itself must be the one Celery's own send_task pushes.

Both are captured from a real redis-server: Celery publishes through kombu's Redis transport, the
job store through its create script; apart from the per-message ids they must be identical, so a
Celery upgrade that changes the wire format fails here rather than in production.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import redis

from darkroom import broker
from darkroom.job import JobRecord
from darkroom.settings import Settings
from storage.jobs import JobStore

pytestmark = pytest.mark.timeout(30)

PER_MESSAGE = {"id", "root_id", "correlation_id", "delivery_tag", "origin", "reply_to"}


def without_ids(message: dict) -> dict:
    out = json.loads(json.dumps(message))
    for section in ("headers", "properties"):
        for name in PER_MESSAGE:
            out[section].pop(name, None)
    return out


@pytest.fixture
def own_db(redis_url) -> str:
    """Another database of the session's server: its workers consume database 0."""
    return redis_url.rsplit("/", 1)[0] + "/7"


def popped(client: redis.Redis, key: str) -> dict:
    raw = client.rpop(key)
    assert raw is not None, f"nothing was pushed to {key}"
    return json.loads(raw)


@pytest.mark.parametrize("priority", ["normal", "low"])
def test_store_pushes_what_celery_sends(own_db, priority):
    client = redis.Redis.from_url(own_db)
    key = broker.queue_key(priority)
    client.delete(key)
    request_id = str(uuid.uuid4())

    app = broker.make_celery(Settings(redis_url=own_db))
    app.send_task(broker.RUN_JOB_TASK, args=[request_id], queue=broker.EFFECTS_QUEUE,
                  priority=broker.PRIORITY[priority])
    from_celery = popped(client, key)

    job = JobRecord(id=request_id, app_id="fal-ai/post-processing", base_id="fal-ai/post-processing",
                    input={}, priority=priority, created_at=time.time())
    JobStore(client, 60).create(job, enqueue=True)
    from_store = popped(client, key)

    assert without_ids(from_store) == without_ids(from_celery)
    body = json.loads(base64.b64decode(from_store["body"]))
    assert body[0] == [request_id]
    assert from_store["headers"]["id"] == from_store["headers"]["root_id"]
    assert from_store["headers"]["id"] != from_store["properties"]["delivery_tag"]


def test_webhook_message_is_what_celery_sends(own_db):
    client = redis.Redis.from_url(own_db)
    client.delete(broker.WEBHOOK_QUEUE)
    request_id = str(uuid.uuid4())
    app = broker.make_celery(Settings(redis_url=own_db))
    app.send_task(broker.WEBHOOK_TASK, args=[request_id])  # routed to its queue by task_routes
    from_celery = popped(client, broker.WEBHOOK_QUEUE)
    broker.push(client, broker.WEBHOOK_QUEUE, broker.webhook_message(request_id))
    assert without_ids(popped(client, broker.WEBHOOK_QUEUE)) == without_ids(from_celery)


def test_create_without_enqueue_pushes_nothing(own_db):
    client = redis.Redis.from_url(own_db)
    client.delete(broker.queue_key("normal"))
    job = JobRecord(id=str(uuid.uuid4()), app_id="a", base_id="a", input={}, created_at=time.time())
    assert JobStore(client, 60).create(job) == 0
    assert client.llen(broker.queue_key("normal")) == 0
    assert client.hget(f"darkroom:job:{job.id}", "id") == job.id.encode()
