"""eachlabs-compatible routes (docs/contract.md §4, docs/decisions.md §20), end to end, with HMAC-signed
webhooks."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from darkroom.cli.embedded import free_port
from tests.support.harness import make_settings, wait_for
from tests.support.images import decode_png, gradient, png_data_uri
from tests.support.servers import WebhookReceiver, running_api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def create(client: httpx.Client, **body) -> str:
    resp = client.post("/v1/prediction", json={"version": "0.0.1", **body})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["status"] == "success" and data["message"] == "Prediction created successfully"
    assert resp.headers["x-fal-request-id"] == data["predictionID"]
    return data["predictionID"]


def wait_finished(client: httpx.Client, prediction_id: str) -> dict:
    def finished():
        view = client.get(f"/v1/prediction/{prediction_id}").json()
        return view if view["status"] in ("success", "failed", "cancelled") else None

    return wait_for(finished, timeout_s=30)


def test_prediction_lifecycle(client, api_url):
    src = gradient()
    pid = create(client, model="post-processing",
                 input={"image_url": png_data_uri(src), "enable_desaturate": True, "desaturate_factor": 1.0})
    view = wait_finished(client, pid)
    assert view["id"] == pid and view["status"] == "success"
    assert isinstance(view["output"], str)
    out = decode_png(httpx.get(view["output"], timeout=10).content)
    assert np.abs(out[..., 0].astype(int) - out[..., 1]).max() <= 1
    assert view["metrics"]["predict_time"] > 0 and view["metrics"]["cost"] == 0
    get = f"{api_url}/v1/prediction/{pid}"
    assert view["urls"] == {"get": get, "cancel": f"{get}/cancel"}
    assert isinstance(view["logs"], str) and "attempt 1 started" in view["logs"]
    assert view["input"]["enable_desaturate"] is True and view["input"]["image_url"].startswith("http")


@pytest.mark.parametrize("model", ["post-processing-solarize", "fal-ai/post-processing/solarize"])
def test_slugs_and_app_ids_select_the_app(client, model):
    image = {"image_url": png_data_uri(gradient(8, 8))}
    resp = client.post("/v1/prediction/", json={"model": model, "input": image})
    assert resp.status_code == 200, resp.text
    assert wait_finished(client, resp.json()["predictionID"])["status"] == "success"


def test_synchronous_run(client):
    image = {"image_url": png_data_uri(gradient(8, 8)), "enable_solarize": True}
    body = {"model": "post-processing", "input": image}
    resp = client.post("/v1/prediction/run", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["status"] == "success" and data["message"] == "Prediction completed successfully"
    assert data["error"] == "" and httpx.get(data["output"], timeout=10).status_code == 200


def test_errors_answer_in_eachlabs_shape(client):
    cases = [
        ({"input": {"image_url": "https://x/y.png"}}, 400, "model field is required"),
        ({"model": "no-such-model", "input": {}}, 404, "Model 'no-such-model' not found"),
        ({"model": "post-processing", "input": {"enable_blur": True}}, 400,
         "Invalid input for model: image_url: Field required"),
        ({"model": "post-processing", "input": {"image_url": "https://x/y.png", "blur_radius": 1000}}, 400,
         "Invalid input for model: blur_radius:"),
    ]
    for body, code, message in cases:
        resp = client.post("/v1/prediction", json=body)
        assert resp.status_code == code, (body, resp.text)
        assert set(resp.json()) == {"error"} and resp.json()["error"].startswith(message), resp.text
    not_json = client.post("/v1/prediction", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"].startswith("Invalid input for model")
    missing = client.get("/v1/prediction/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json() == {"error": "Prediction not found"}
    assert client.post("/v1/prediction/nope/cancel").json() == {"error": "Prediction not found"}


def test_webhook_is_signed_with_the_secret(client):
    receiver = WebhookReceiver()
    try:
        pid = create(client, model="post-processing", input={"image_url": png_data_uri(gradient(8, 8))},
                     webhook_url=receiver.url, webhook_secret="s3cret")
        got = receiver.wait_for_success()
        expected = hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(got.headers["x-signature"], expected)
        payload = got.json()
        assert {"id", "status", "output", "input", "metrics"} <= set(payload)
        assert payload["id"] == pid and payload["status"] == "success"
        assert httpx.get(payload["output"], timeout=10).status_code == 200
        assert "x-fal-webhook-signature" not in got.headers
    finally:
        receiver.close()


@pytest.fixture(scope="module")
def no_worker_api(redis_url, s3_endpoint) -> Iterator[str]:
    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/6", s3_endpoint, free_port())
    with running_api(settings) as url:
        yield url


def test_cancel_a_waiting_prediction(no_worker_api):
    with httpx.Client(base_url=no_worker_api) as c:
        pid = create(c, model="post-processing", input={"image_url": png_data_uri(gradient(4, 4))})
        assert c.get(f"/v1/prediction/{pid}").json()["status"] == "starting"
        resp = c.post(f"/v1/prediction/{pid}/cancel")
        assert resp.status_code == 200
        assert resp.json() == {"status": "cancelled", "message": "Prediction canceled successfully",
                               "predictionID": pid}
        view = c.get(f"/v1/prediction/{pid}").json()
        assert view["status"] == "cancelled" and view["output"] is None
        again = c.post(f"/v1/prediction/{pid}/cancel")
        assert again.status_code == 400 and "error" in again.json()
