"""Failed eachlabs predictions: a synchronous run answers eachlabs' body (``status: failed`` and the
``error``) instead of a bare error, and the failure's webhook carries ``logs`` as eachlabs' does."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pytest

from tests.support.fileserver import FileServer
from tests.support.images import gradient, png_data_uri
from tests.support.servers import WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

RUN_KEYS = {"status", "message", "predictionID", "output", "error"}


@pytest.fixture(scope="module")
def broken_image_url() -> Iterator[str]:
    """An input URL that answers, with bytes that are no image: the job fails in the worker."""
    server = FileServer()
    yield server.url(server.add("broken.png", b"these bytes are not an image" * 10))
    server.close()


def test_a_failed_synchronous_run_answers_eachlabs_body(client, broken_image_url):
    body = {"model": "post-processing", "input": {"image_url": broken_image_url, "enable_grain": True}}
    resp = client.post("/v1/prediction/run", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert set(data) == RUN_KEYS, data
    assert data["status"] == "failed" and data["message"] == "Prediction failed"
    assert data["output"] is None and data["error"], data
    assert resp.headers["x-fal-request-id"] == data["predictionID"]
    view = client.get(f"/v1/prediction/{data['predictionID']}").json()
    assert view["status"] == "failed" and view["error"] == data["error"]


def test_a_successful_synchronous_run_keeps_its_body(client):
    body = {"model": "post-processing", "input": {"image_url": png_data_uri(gradient(8, 8))}}
    data = client.post("/v1/prediction/run", json=body, timeout=30).json()
    assert set(data) == RUN_KEYS and data["status"] == "success" and data["error"] == ""


def test_a_failed_predictions_webhook_carries_its_logs(client, broken_image_url):
    receiver = WebhookReceiver()
    try:
        created = client.post("/v1/prediction", json={
            "model": "post-processing", "input": {"image_url": broken_image_url},
            "webhook_url": receiver.url, "webhook_secret": "s3cret",
        }).json()
        got = receiver.wait_for_success()
    finally:
        receiver.close()
    assert hmac.compare_digest(got.headers["x-signature"],
                               hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest())
    payload = got.json()
    assert payload["id"] == created["predictionID"] and payload["status"] == "failed"
    assert payload["output"] is None and payload["error"]
    assert isinstance(payload["logs"], str) and "attempt 1 started" in payload["logs"]
    assert payload["error"] in payload["logs"], payload["logs"]  # the reason, where eachlabs puts it
    view = client.get(f"/v1/prediction/{created['predictionID']}").json()
    assert payload["logs"] == view["logs"] or view["logs"].startswith(payload["logs"])
