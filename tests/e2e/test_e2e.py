"""End to end: submit -> Celery worker -> S3 (moto server) -> status -> result -> download."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest

from tests.support.fal_queue import APP, download_png, first_image, run, submit, wait_done
from tests.support.harness import wait_for
from tests.support.images import gradient, png_data_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def test_submit_returns_the_queue_contract(client):
    sub = submit(client, {"image_url": png_data_uri(gradient())})
    assert sub["status"] == "IN_QUEUE"
    assert isinstance(sub["queue_position"], int)
    rid = sub["request_id"]
    for key, suffix in (("response_url", ""), ("status_url", "/status"), ("cancel_url", "/cancel")):
        assert sub[key].endswith(f"/{APP}/requests/{rid}{suffix}")
    status = wait_done(client, sub)
    assert status["metrics"]["inference_time"] > 0
    assert isinstance(status["logs"], list) and status["logs"]
    assert {"message", "level", "source", "timestamp"} <= set(status["logs"][0])


def test_desaturate_makes_the_result_grey(client):
    src = gradient()
    body = {"image_url": png_data_uri(src), "enable_desaturate": True, "desaturate_factor": 1.0}
    _, result = run(client, body)
    img = result["images"][0]
    out = download_png(img)
    assert (img["width"], img["height"], img["content_type"]) == (32, 24, "image/png")
    assert img["file_size"] > 0 and img["file_name"].endswith(".png")
    assert np.abs(out[..., 0].astype(int) - out[..., 1]).max() <= 1
    assert np.abs(out[..., 1].astype(int) - out[..., 2]).max() <= 1
    expected = src.astype(float) @ np.array([0.2126, 0.7152, 0.0722])
    assert np.abs(out[..., 0] - expected).max() <= 1.0


def test_solarize_and_vignette_chain(client):
    src = gradient(40, 30)
    body = {
        "image_url": png_data_uri(src),
        "enable_solarize": True,
        "solarize_threshold": 0.5,
        "enable_vignette": True,
        "vignette_strength": 1.0,
    }
    out = first_image(run(client, body)[1])
    assert out[0, 0].max() == 0  # strength 1: the corners go black
    ys = np.linspace(-1, 1, 30)[:, None]
    xs = np.linspace(-1, 1, 40)[None, :]
    vignetted = src / 255.0 * (1 - np.sqrt(ys**2 + xs**2) / np.sqrt(2))[..., None]
    # schema order: vignette runs before solarize
    expected = np.round(np.where(vignetted > 0.5, 1 - vignetted, vignetted) * 255)
    assert np.abs(out.astype(float) - expected).max() <= 1


def test_no_effect_returns_identical_pixels_and_single_effect_route(client):
    src = gradient(17, 9)
    out = first_image(run(client, {"image_url": png_data_uri(src)})[1])
    assert np.array_equal(out, src)
    body = {"image_url": png_data_uri(src), "solarize_threshold": 0.0}
    out = first_image(run(client, body, f"{APP}/solarize")[1])
    assert np.array_equal(out, np.where(src > 0, 255 - src, 0))  # x > 0 is inverted


def test_result_urls_are_presigned_afresh(client):
    """Records keep object keys, not URLs: every result read signs a new URL for the same object."""
    sub = submit(client, {"image_url": png_data_uri(gradient())})
    wait_done(client, sub)

    def result_url() -> str:
        return client.get(sub["response_url"]).json()["images"][0]["url"]

    first = result_url()
    # SigV4 signs with a timestamp in whole seconds: reads within one second get the same URL
    second = wait_for(lambda: (url := result_url()) != first and url, timeout_s=5, interval_s=0.1)
    first_parts, second_parts = urlsplit(first), urlsplit(second)
    assert first_parts.path == second_parts.path
    first_query, second_query = parse_qs(first_parts.query), parse_qs(second_parts.query)
    assert first_query["X-Amz-Signature"] != second_query["X-Amz-Signature"]
    first_download, second_download = httpx.get(first, timeout=10), httpx.get(second, timeout=10)
    assert first_download.status_code == second_download.status_code == 200
    assert first_download.content == second_download.content


def test_invalid_body_is_422_naming_the_field(client):
    resp = client.post(f"/{APP}", json={"image_url": png_data_uri(gradient()), "grain_scale": 1000})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "grain_scale"]
    resp = client.post(f"/{APP}", json={"enable_grain": True})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "image_url"]
    resp = client.post(f"/{APP}", json={"image_url": "ftp://example.com/x.png"})
    assert resp.status_code == 422 and "http(s) URL or a data: URI" in resp.json()["detail"][0]["msg"]
    resp = client.post(f"/{APP}", json={"image_url": "http://x/y.png", "enable_dissolve": True})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "dissolve_image_url"]


def test_unknown_request_is_404(client):
    rid = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/{APP}/requests/{rid}/status").status_code == 404
    resp = client.get(f"/{APP}/requests/{rid}")
    assert resp.status_code == 404 and resp.json()["error_type"] == "not_found"
    resp = client.put(f"/{APP}/requests/{rid}/cancel")
    assert resp.status_code == 404 and resp.json() == {"status": "NOT_FOUND"}


def test_bad_image_fails_without_retry(client, settings):
    from storage.objects import build_object_store

    body = {"image_url": "data:image/png;base64," + "aGVsbG8gd29ybGQ="}  # "hello world"
    resp = client.post(f"/{APP}", json=body)  # data URIs are screened at submit: no job at all
    assert resp.status_code == 422 and resp.json()["error_type"] == "unsupported_image"
    # an input that only the worker sees (a stored object it reads itself) fails the job instead
    key = f"uploads/not-an-image-{uuid.uuid4()}.png"
    build_object_store(settings).put(key, b"hello world", "image/png")
    sub = submit(client, {"image_url": f"{settings.api_base_url}/files/{key}"})
    status = wait_done(client, sub)
    assert status["error_type"] == "unsupported_image"
    resp = client.get(sub["response_url"])
    assert resp.status_code == 422
    assert resp.json()["error_type"] == "unsupported_image" and resp.json()["detail"]
    attempts = [log for log in status["logs"] if "attempt" in log["message"] and "started" in log["message"]]
    assert len(attempts) == 1


def test_completed_job_cannot_be_cancelled(client):
    sub = submit(client, {"image_url": png_data_uri(gradient())})
    wait_done(client, sub)
    resp = client.put(sub["cancel_url"])
    assert resp.status_code == 400 and resp.json() == {"status": "ALREADY_COMPLETED"}


def test_ready_and_openapi(client):
    assert client.get("/ready").json() == {"status": "ok", "redis": "ok", "storage": "ok"}
    schema = client.get("/openapi.json").json()
    assert f"/{APP}" in schema["paths"]
    assert f"/{APP}/requests/{{request_id}}/status" in schema["paths"]
    props = schema["components"]["schemas"]["ImageProcessingInput"]["properties"]
    assert len([p for p in props if p not in ("seed", "output_format", "output_quality", "sync_mode")]) == 54
