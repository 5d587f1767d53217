"""The submit fast path (api.fast_submit) and pipelined job creates (api.create_batch): the same answers
as FastAPI's route, and every create stored and enqueued, against a real redis-server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse

from api.create_batch import CreateBatcher
from api.fast_submit import FastSubmitMiddleware
from darkroom import broker
from darkroom.cli.embedded import free_port
from darkroom.errors import QueueFull, ServiceUnavailable
from darkroom.job import JobRecord
from storage import keys
from storage.jobs import JobStore, async_redis_client, redis_client
from tests.support.fal_queue import APP
from tests.support.harness import make_settings

pytestmark = pytest.mark.timeout(60)

URL_BODY = {"image_url": "https://images.example.com/photo.png", "enable_solarize": True, "seed": 11}
ROUTED_JSON = "application/vnd.darkroom+json"  # JSON to FastAPI, not a type the fast path takes


def db_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + "/11"


@pytest.fixture(scope="module")
def api(redis_url, tmp_path_factory):
    """An API on its own Redis db, no worker."""
    from api.app import create_app

    objects = tmp_path_factory.mktemp("objects")
    settings = make_settings(db_url(redis_url), None, free_port(), local_storage_dir=objects)
    with TestClient(create_app(settings)) as client:
        yield client


def post(client: TestClient, body, content_type: str = "application/json", **kwargs):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type, **kwargs.pop("headers", {})}
    return client.post(f"/{APP}", content=raw, headers=headers, **kwargs)


def stored(client: TestClient, request_id: str) -> dict:
    """The job's record, less what differs between any two requests (its deadline as a timeout)."""
    job = client.app.state.services.store.get(request_id)
    record = job.model_dump(exclude={"id", "created_at", "seq", "deadline_at"})
    record["timeout_s"] = round(job.deadline_at - job.created_at, 3) if job.deadline_at else None
    return record


def test_fast_path_and_route_give_the_same_answer_and_record(api):
    headers = {"x-fal-queue-priority": "low", "x-fal-no-retry": "1", "x-fal-request-timeout": "60"}
    params = {"fal_webhook": "https://hooks.example.com/done"}
    fast = post(api, URL_BODY, headers=headers, params=params)
    routed = post(api, URL_BODY, ROUTED_JSON, headers=headers, params=params)
    assert fast.status_code == routed.status_code == 200
    a, b = fast.json(), routed.json()
    assert fast.headers["x-fal-request-id"] == a["request_id"] != b["request_id"]
    same_shape = {k: v.replace(a["request_id"], b["request_id"]) if isinstance(v, str) else v
                  for k, v in a.items()}
    same_shape["queue_position"] = b["queue_position"]
    assert same_shape == b
    assert sorted(fast.headers) == sorted(routed.headers)
    record_a, record_b = stored(api, a["request_id"]), stored(api, b["request_id"])
    assert record_a == record_b
    assert record_a["priority"] == "low" and record_a["no_retry"] and record_a["webhook_url"]
    assert record_a["timeout_s"] == 60 and record_a["seed"] == 11


@pytest.mark.parametrize("body", [
    {"image_url": "https://images.example.com/photo.png", "enable_blur": "sometimes"},
    {"enable_blur": True},
    b'{"image_url": "https://images.example.com/photo.png",',
    [1, 2],
])
def test_bad_input_gets_fastapis_own_422(api, body):
    fast = post(api, body)
    routed = post(api, body, ROUTED_JSON)
    assert fast.status_code == routed.status_code == 422
    assert fast.json() == routed.json()
    assert fast.headers["x-fal-error-type"] == "invalid_input"
    if isinstance(body, dict):  # the message names the field to change
        locs = [e["loc"] for e in fast.json()["detail"]]
        assert any(loc[:1] == ["body"] and len(loc) > 1 for loc in locs), locs


def test_errors_after_validation_use_the_apps_handlers(api):
    bad_header = post(api, URL_BODY, headers={"x-fal-queue-priority": "urgent"})
    assert bad_header.status_code == 422 and bad_header.headers["x-fal-error-type"] == "invalid_input"
    assert "X-Fal-Queue-Priority" in bad_header.json()["detail"]
    refused = post(api, {**URL_BODY, "image_url": "http://169.254.169.254/latest/meta-data"})
    assert refused.status_code == 422 and refused.json()["error_type"] == "fetch_refused"


def test_idempotency_key_through_the_fast_path(api):
    headers = {"Idempotency-Key": f"speed-{uuid.uuid4()}"}
    first = post(api, URL_BODY, headers=headers)
    again = post(api, URL_BODY, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    other = post(api, {**URL_BODY, "enable_blur": True}, headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]


def call_middleware(client: TestClient, body: bytes, content_type: str) -> tuple[int, list[bytes]]:
    """Run FastSubmitMiddleware over a recording inner app (in the TestClient's event loop); returns the
    status sent and the bodies the inner app received (none: the fast path answered by itself)."""
    reached: list[bytes] = []

    async def inner(scope, receive, send):
        message = await receive()
        reached.append(message["body"])
        await JSONResponse({"routed": True}, status_code=418)(scope, receive, send)

    async def call() -> int:
        scope = {"type": "http", "method": "POST", "path": f"/{APP}", "root_path": "", "query_string": b"",
                 "headers": [(b"content-type", content_type.encode())], "app": client.app}
        chunks = [body[:5], body[5:]]  # a body that arrives in two messages

        async def receive():
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        sent = []

        async def send(message):
            sent.append(message)

        await FastSubmitMiddleware(inner)(scope, receive, send)
        return sent[0]["status"]

    return client.portal.call(call), reached


def test_only_plain_valid_json_skips_the_router(api):
    valid = json.dumps(URL_BODY).encode()
    assert call_middleware(api, valid, "application/json; charset=utf-8") == (200, [])
    invalid = json.dumps({"enable_blur": "x"}).encode()
    assert call_middleware(api, invalid, "application/json") == (418, [invalid])  # replayed whole
    assert call_middleware(api, valid, ROUTED_JSON) == (418, [valid[:5]])  # untouched: not read first


# --- pipelined creates -------------------------------------------------------------------------------


def new_job(app_id: str) -> JobRecord:
    return JobRecord(id=str(uuid.uuid4()), app_id=app_id, base_id=app_id, input={"x": 1},
                     created_at=time.time())


def run_creates(url: str, jobs: list[JobRecord], prepare=None, **store_options) -> tuple[list, int]:
    """Create ``jobs`` concurrently through one CreateBatcher; (positions or exceptions, connections the
    asyncio client opened)."""

    async def main():
        client = async_redis_client(url, 2)
        store = JobStore(redis_client(url, 2), 600, async_client=client, **store_options)
        if prepare:
            prepare(store)
        batcher = CreateBatcher(store, max_batch=64)
        try:
            results = await asyncio.gather(*(batcher.create(job) for job in jobs), return_exceptions=True)
            pool = client.connection_pool
            return results, len(pool._available_connections) + len(pool._in_use_connections)
        finally:
            await client.aclose()
            store.r.close()

    return asyncio.run(main())


def test_concurrent_creates_share_one_connection_and_all_land(redis_url):
    url = db_url(redis_url)
    app_id = f"speed-test/{uuid.uuid4().hex[:8]}"
    jobs = [new_job(app_id) for _ in range(40)]
    plain = redis.Redis.from_url(url)
    before = plain.llen(broker.queue_key("normal"))
    positions, connections = run_creates(url, jobs)
    assert sorted(positions) == list(range(40))
    assert connections == 1  # one pipeline, not 40 round trips on 40 connections
    assert plain.llen(broker.queue_key("normal")) - before == 40
    assert all(plain.hget(keys.job(job.id), "status") == b"IN_QUEUE" for job in jobs)


def test_creates_survive_a_script_flush(redis_url):
    url = db_url(redis_url)
    app_id = f"speed-test/{uuid.uuid4().hex[:8]}"
    jobs = [new_job(app_id) for _ in range(10)]
    positions, _ = run_creates(url, jobs, prepare=lambda store: store.r.script_flush())
    assert sorted(positions) == list(range(10))


def test_queue_full_and_redis_away_are_per_create_errors(redis_url):
    url = db_url(redis_url)
    app_id = f"speed-test/{uuid.uuid4().hex[:8]}"
    results, _ = run_creates(url, [new_job(app_id) for _ in range(8)], max_queue_length=5)
    assert sorted(r for r in results if isinstance(r, int)) == list(range(5))
    assert sum(isinstance(r, QueueFull) for r in results) == 3
    away = f"redis://127.0.0.1:{free_port()}/0"
    results, _ = run_creates(away, [new_job("speed-test/away") for _ in range(3)])
    assert all(isinstance(r, ServiceUnavailable) for r in results)


# --- keys and rate limits on the event loop ------------------------------------------------------------


def test_async_key_checks_and_rate_limits_answer_as_the_sync_ones(redis_url):
    """The asyncio twins the API uses (no threadpool hop per keyed request) against the blocking ones."""
    from storage.apikeys import ApiKeyStore
    from storage.ratelimit import RateLimiter

    url = db_url(redis_url)
    sync_client = redis_client(url, 2)
    store = ApiKeyStore(sync_client)
    _, good = store.create("speed twin")
    revoked_info, revoked = store.create("speed twin, revoked")
    store.revoke(revoked_info.key_id)
    unknown = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    presented = [good, revoked, unknown, "not-a-key", f" {good} "]

    async def both():
        client = async_redis_client(url, 2)
        try:
            twin = ApiKeyStore(sync_client, client)
            answers = [(twin.verify(k), await twin.verify_async(k)) for k in presented]
            limiter = RateLimiter(sync_client, 0.001, 3, client)  # 3 at once, then next to nothing
            bucket = f"speed-{uuid.uuid4().hex[:8]}"
            takes = [limiter.take(bucket).allowed if i % 2 else (await limiter.take_async(bucket)).allowed
                     for i in range(5)]
            return answers, takes
        finally:
            await client.aclose()

    answers, takes = asyncio.run(both())
    for blocking, awaited in answers:
        assert blocking == awaited
    assert [a[0][1] for a in answers] == ["", "this API key has been revoked", "unknown API key",
                                          "malformed API key", ""]
    assert takes == [True, True, True, False, False]  # one bucket, whichever twin spends it
