"""Synchronous run (docs/decisions.md §13): POST /run/{app_id} answers with the output, or the error body,
and cancels a request that is not done within sync_run_timeout_s (504)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from darkroom.cli.embedded import free_port
from tests.support.fal_queue import APP, download_png
from tests.support.harness import make_settings
from tests.support.images import gradient, png_data_uri
from tests.support.servers import running_api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def test_run_answers_with_the_output(client):
    src = gradient()
    body = {"image_url": png_data_uri(src), "enable_desaturate": True, "desaturate_factor": 1.0}
    resp = client.post(f"/run/{APP}", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    request_id = resp.headers["x-fal-request-id"]
    image = resp.json()["images"][0]
    assert (image["width"], image["height"]) == (32, 24)
    out = download_png(image)
    assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() <= 1 and np.abs(out - src).max() > 10
    status = client.get(f"/{APP}/requests/{request_id}/status").json()
    assert status["status"] == "COMPLETED" and "error" not in status


def test_single_effect_run_route(client):
    resp = client.post(f"/run/{APP}/solarize", json={"image_url": png_data_uri(gradient(8, 8))}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["images"][0]["url"] and resp.headers["x-fal-request-id"]


def test_run_answers_a_failure_with_its_error_body(client):
    resp = client.post(f"/run/{APP}", json={"image_url": "http://127.0.0.1:1/missing.png"}, timeout=30)
    assert resp.status_code in (422, 502), resp.text
    body = resp.json()
    assert body["error_type"] in ("fetch_unavailable", "fetch_refused", "fetch_failed") and body["detail"]
    assert resp.headers["x-fal-error-type"] == body["error_type"] and resp.headers["x-fal-request-id"]
    invalid = client.post(f"/run/{APP}", json={"enable_blur": True})
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"][-1] == "image_url"


@pytest.fixture(scope="module")
def no_worker_api(redis_url, s3_endpoint) -> Iterator[str]:
    db5 = redis_url.rsplit("/", 1)[0] + "/5"
    settings = make_settings(db5, s3_endpoint, free_port(), sync_run_timeout_s=0.3)
    with running_api(settings) as url:
        yield url


def test_run_past_its_deadline_is_cancelled_with_504(no_worker_api):
    resp = httpx.post(f"{no_worker_api}/run/{APP}", json={"image_url": png_data_uri(gradient(4, 4))})
    assert resp.status_code == 504
    assert resp.json()["error_type"] == "request_timeout" and "0.3s" in resp.json()["detail"]
    request_id = resp.headers["x-fal-request-id"]
    status = httpx.get(f"{no_worker_api}/{APP}/requests/{request_id}/status").json()
    assert status["status"] == "COMPLETED" and status["error_type"] == "request_cancelled"
