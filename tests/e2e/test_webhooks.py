"""Webhooks (docs/decisions.md §16): fal's payload, Ed25519-signed with the key from /.well-known/jwks.json,
retried with backoff until delivered (milliseconds here), never changing the job."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient

from darkroom.broker import WEBHOOK_QUEUE, WEBHOOK_TASK
from darkroom.netguard import UrlPolicy
from darkroom.settings import Settings
from darkroom.webhook_signing import signed_message
from storage import keys
from storage.jobs import JobStore, redis_client
from storage.objects import build_object_store
from storage.webhooks import WebhookStore
from tests.support.fal_queue import APP, log_messages, status, submit
from tests.support.harness import make_settings, wait_for
from tests.support.images import gradient, png_data_uri
from tests.support.servers import WebhookReceiver
from worker.webhooks import DELIVERY_ID_HEADER, WebhookSender, webhook_backoff_s


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(fail_first=2)
    yield r
    r.close()


def public_key(jwks: dict) -> Ed25519PublicKey:
    (key,) = jwks["keys"]
    assert (key["kty"], key["crv"], key["alg"]) == ("OKP", "Ed25519", "EdDSA") and key["kid"]
    raw = base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_signature(jwks: dict, headers: dict[str, str], body: bytes) -> None:
    """As a receiver does: recompute the message, check the timestamp, verify (raises if bad)."""
    assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 300
    message = signed_message(
        headers["x-fal-webhook-request-id"],
        headers["x-fal-webhook-user-id"],
        headers["x-fal-webhook-timestamp"],
        body,
    )
    public_key(jwks).verify(bytes.fromhex(headers["x-fal-webhook-signature"]), message)


def store_for(settings: Settings) -> JobStore:
    return JobStore(redis_client(settings.redis_url, 1.5), settings.retention_s)


def delivery_record(store: JobStore, request_id: str) -> dict[str, str]:
    return WebhookStore(store.r, store.retention_s).get(request_id)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_webhook_is_retried_until_delivered_and_verifies(client, settings, receiver):
    body = {"image_url": png_data_uri(gradient()), "enable_desaturate": True}
    sub = submit(client, body, params={"fal_webhook": receiver.url})
    got = receiver.wait_for_success()
    assert receiver.answered[:3] == [500, 500, 200]

    payload = got.json()
    assert payload["request_id"] == payload["gateway_request_id"] == sub["request_id"]
    assert payload["status"] == "OK" and payload["error"] is None
    image = payload["payload"]["images"][0]
    assert "key" not in image and httpx.get(image["url"], timeout=10).status_code == 200
    assert got.headers["x-fal-webhook-request-id"] == sub["request_id"]
    verify_signature(client.get("/.well-known/jwks.json").json(), got.headers, got.body)

    store = store_for(settings)
    wait_for(lambda: delivery_record(store, sub["request_id"]).get("state") == "delivered")
    record = delivery_record(store, sub["request_id"])
    assert record["attempts"] == "3" and record["last_outcome"] == "HTTP 200"
    assert {r.headers[DELIVERY_ID_HEADER] for r in receiver.received} == {record["delivery_id"]}
    final = status(client, sub)
    assert final["status"] == "COMPLETED" and "error" not in final
    messages = log_messages(final)
    assert any("webhook attempt 1/10 failed, will retry: HTTP 500" in m for m in messages)
    assert any("webhook attempt 3/10 delivered" in m for m in messages)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_failed_job_posts_an_error_payload(client, receiver):
    """An input URL nobody answers fails in the worker (refused, or unreachable after retries)."""
    body = {"image_url": "http://127.0.0.1:1/nothing-here.png"}
    sub = submit(client, body, params={"fal_webhook": receiver.url})
    payload = receiver.wait_for_success().json()
    assert payload["request_id"] == sub["request_id"] and payload["status"] == "ERROR"
    assert payload["payload"]["error_type"] in ("fetch_unavailable", "fetch_refused", "fetch_failed")
    assert payload["error"] == payload["payload"]["detail"] and payload["error"]
    result = client.get(sub["response_url"])
    assert result.status_code >= 400 and result.json() == payload["payload"]


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_delivery_gives_up_after_max_attempts_and_never_touches_the_job(client, settings):
    receiver = WebhookReceiver(fail_first=1000)
    try:
        body = {"image_url": png_data_uri(gradient(8, 8))}
        sub = submit(client, body, params={"fal_webhook": receiver.url})
        store = store_for(settings)
        wait_for(lambda: delivery_record(store, sub["request_id"]).get("state") == "failed", timeout_s=30)
        assert len(receiver.received) == settings.webhook_max_attempts == 10
        job = store.get(sub["request_id"])
        assert job.status == "COMPLETED" and job.error is None and job.result["images"]
    finally:
        receiver.close()


def test_cancelling_a_queued_job_dispatches_its_webhook(redis_url, s3_endpoint, receiver):
    """No worker consumes this database: the cancel route must enqueue the delivery itself."""
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/4", s3_endpoint, 8998)
    with TestClient(create_app(settings)) as api:
        body = {"image_url": png_data_uri(gradient(8, 8))}
        sub = submit(api, body, params={"fal_webhook": receiver.url})
        assert api.put(sub["cancel_url"]).status_code == 202
        jwks = api.get("/.well-known/jwks.json").json()
    store = store_for(settings)
    messages = [json.loads(m) for m in store.r.lrange(WEBHOOK_QUEUE, 0, -1)]
    sent = [m["headers"] for m in messages if m["headers"]["task"] == WEBHOOK_TASK]
    assert any(sub["request_id"] in h["argsrepr"] for h in sent)

    rid = sub["request_id"]
    sender = WebhookSender(settings, store, build_object_store(settings))
    assert sender.deliver(rid).retry  # first answer: 500
    assert delivery_record(store, rid)["state"] == "retrying"
    assert sender.deliver(rid) is None  # a stray message before the retry is due posts nothing
    store.r.hset(keys.job_webhook(rid), "next_at", 0)  # due now
    assert sender.deliver(rid).retry
    store.r.hset(keys.job_webhook(rid), "next_at", 0)
    assert sender.deliver(rid).delivered
    assert sender.deliver(rid) is None  # delivered is final: a message coming back posts nothing
    assert len(receiver.received) == 3
    got = receiver.received[-1]
    payload = got.json()
    assert payload["status"] == "ERROR" and payload["payload"]["error_type"] == "request_cancelled"
    verify_signature(jwks, got.headers, got.body)


def test_a_refused_target_fails_the_delivery_for_good(redis_url, s3_endpoint, receiver):
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/4", s3_endpoint, 8998)
    with TestClient(create_app(settings)) as api:
        body = {"image_url": png_data_uri(gradient(8, 8))}
        sub = submit(api, body, params={"fal_webhook": receiver.url})
        assert api.put(sub["cancel_url"]).status_code == 202
    store = store_for(settings)
    strict = WebhookSender(settings, store, build_object_store(settings), policy=UrlPolicy())
    refused = strict.deliver(sub["request_id"])  # loopback, without the tests' allow-list
    assert not refused.delivered and not refused.retry and "loopback" in refused.detail
    assert delivery_record(store, sub["request_id"])["state"] == "failed"
    assert WebhookSender(settings, store, build_object_store(settings)).deliver(sub["request_id"]) is None
    assert receiver.received == []


def test_webhook_targets_obey_the_address_rules(redis_url, s3_endpoint):
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/4", s3_endpoint, 8998)
    with TestClient(create_app(settings)) as api:
        for target in ("http://169.254.169.254/latest", "ftp://example.com/hook", "http://10.1.2.3/hook"):
            body = {"image_url": png_data_uri(gradient(4, 4))}
            resp = api.post(f"/{APP}", params={"fal_webhook": target}, json=body)
            assert resp.status_code == 422 and resp.json()["error_type"] == "fetch_refused", target


def test_backoff_spreads_ten_attempts_over_about_two_hours():
    s = Settings()
    delays = [webhook_backoff_s(s, n, random.Random(n)) for n in range(s.webhook_max_attempts - 1)]
    assert 0.9 * s.webhook_backoff_base_s <= delays[0] <= s.webhook_backoff_base_s
    assert max(delays) <= s.webhook_backoff_max_s
    assert 1.5 * 3600 < sum(delays) < 2.5 * 3600
