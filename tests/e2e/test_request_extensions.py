"""Request extensions: Idempotency-Key, x-fal-no-retry, and DELETE of a finished request."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient

from darkroom.errors import StorageUnavailable
from storage import keys
from tests.support.fal_queue import APP, image_body, result, submit
from tests.support.harness import make_settings
from tests.support.images import gradient, png_data_uri


@pytest.fixture(scope="module")
def paused(redis_url, s3_endpoint):
    """An API whose jobs no worker picks up (Redis db 7)."""
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/7", s3_endpoint, 8997)
    with TestClient(create_app(settings)) as client:
        yield client


def body(**fields) -> dict:
    return image_body(4, 4, seed=7, **fields)


def test_same_idempotency_key_and_body_is_the_same_request(paused):
    headers = {"Idempotency-Key": "order-1234"}
    first = paused.post(f"/{APP}", json=body(enable_solarize=True), headers=headers)
    again = paused.post(f"/{APP}", json=body(enable_solarize=True), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["x-fal-request-id"] == first.json()["request_id"]
    other_key = paused.post(f"/{APP}", json=body(enable_solarize=True), headers={"Idempotency-Key": "o-9"})
    assert other_key.json()["request_id"] != first.json()["request_id"]
    no_key = paused.post(f"/{APP}", json=body(enable_solarize=True))
    assert no_key.json()["request_id"] not in (first.json()["request_id"], other_key.json()["request_id"])


def test_same_idempotency_key_with_another_body_is_a_422(paused):
    headers = {"Idempotency-Key": "order-77"}
    assert paused.post(f"/{APP}", json=body(), headers=headers).status_code == 200
    changed = paused.post(f"/{APP}", json=body(enable_blur=True), headers=headers)
    assert changed.status_code == 422
    assert changed.json()["error_type"] == "invalid_input" and "Idempotency-Key" in changed.json()["detail"]
    other_app = paused.post(f"/{APP}/blur", json=body(), headers=headers)
    assert other_app.status_code == 422


def test_a_key_still_being_accepted_answers_a_retryable_429(paused):
    store = paused.app.state.services.store
    key = keys.idempotency("", hashlib.sha256(b"in-flight").hexdigest())
    from api.idempotency import fingerprint
    from darkroom.apps import APPS

    model = APPS[APP].input_model.model_validate(body())
    store.r.set(key, json.dumps({"state": "pending", "fingerprint": fingerprint(APP, model)}), ex=60)
    resp = paused.post(f"/{APP}", json=body(), headers={"Idempotency-Key": "in-flight"})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
    assert resp.json()["error_type"] == "idempotency_key_in_use"


def test_a_failed_submit_releases_its_idempotency_key(paused):
    headers = {"Idempotency-Key": "bad-then-good"}
    huge = "data:image/png;base64,AAAA"  # not an image: refused at submit
    assert paused.post(f"/{APP}", json={"image_url": huge}, headers=headers).status_code == 422
    assert paused.post(f"/{APP}", json=body(), headers=headers).status_code == 200


def test_no_retry_header_is_stored_and_checked(paused):
    store = paused.app.state.services.store
    for value, expected in (("1", True), ("true", True), ("yes", True), ("0", False)):
        sub = submit(paused, body(), headers={"x-fal-no-retry": value})
        assert store.get(sub["request_id"]).no_retry is expected
    bad = paused.post(f"/{APP}", json=body(), headers={"x-fal-no-retry": "sometimes"})
    assert bad.status_code == 422 and "x-fal-no-retry" in bad.json()["detail"]


@pytest.mark.parametrize("no_retry", [True, False])
def test_worker_fails_a_no_retry_job_on_a_transient_error(paused, no_retry):
    from worker.outcomes import record_failure

    store = paused.app.state.services.store
    header = {"x-fal-no-retry": "1"} if no_retry else {}
    job = store.get(submit(paused, body(), headers=header)["request_id"])
    store.start(job, "w1")
    ctx = SimpleNamespace(store=store, worker_id="w1")
    if not no_retry:
        with pytest.raises(StorageUnavailable), record_failure(ctx, job):
            raise StorageUnavailable("S3 is down")
        assert store.get(job.id).status == "IN_PROGRESS"  # left for Celery's retry
        return
    with record_failure(ctx, job):
        raise StorageUnavailable("S3 is down")
    done = store.get(job.id)
    assert done.status == "COMPLETED" and done.error["error_type"] == "storage_unavailable"
    assert "x-fal-no-retry" in done.error["detail"]
    assert not store.r.exists(keys.job_lease(job.id))  # the failing step released the lease


def test_delete_refuses_unfinished_and_unknown_requests(paused):
    sub = submit(paused, body())
    resp = paused.delete(sub["response_url"])
    assert resp.status_code == 400 and resp.json()["error_type"] == "request_not_finished"
    assert resp.headers["x-fal-request-id"] == sub["request_id"]
    assert paused.delete(f"/{APP}/requests/00000000-0000-0000-0000-000000000000").status_code == 404


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_delete_removes_record_logs_and_objects(client, settings):
    from storage.objects import build_object_store

    noise = png_data_uri(gradient(16, 16))
    sub = submit(client, {"image_url": noise, "enable_solarize": True})
    image_url = result(client, sub, timeout_s=20)["images"][0]["url"]
    assert httpx.get(image_url, timeout=10).status_code == 200
    objects = build_object_store(settings)
    rid = sub["request_id"]
    assert objects.get(f"inputs/{rid}/image_url") and objects.get(f"{rid}/0.png")

    resp = client.delete(sub["response_url"])
    assert resp.status_code == 200 and resp.headers["x-fal-request-id"] == rid
    assert resp.json() == {"status": "DELETED", "request_id": rid, "objects_deleted": 2}
    assert objects.delete_prefix(f"inputs/{rid}/") == 0 and objects.delete_prefix(f"{rid}/") == 0
    assert httpx.get(image_url, timeout=10).status_code == 404
    assert client.get(sub["status_url"]).status_code == 404
    assert client.get(sub["response_url"]).status_code == 404
    assert client.delete(sub["response_url"]).status_code == 404
