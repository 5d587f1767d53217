"""The darkroom/pipeline app end to end: submit -> worker (steps batched through the batcher) -> S3."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from storage.jobs import JobStore
from tests.support.fal_queue import run_image
from tests.support.harness import wait_for
from tests.support.images import gradient, png_data_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
APP = "darkroom/pipeline"


def run(client: httpx.Client, body: dict) -> tuple[dict, Image.Image]:
    return run_image(client, body, APP)


def test_four_steps_in_one_request(client):
    body = {
        "image_url": png_data_uri(gradient(400, 300)),
        "steps": [
            {"op": "resize", "width": 200},
            {"op": "effects", "enable_grain": True, "grain_style": "kodak", "enable_vignette": True},
            {"op": "pad", "aspect_ratio": "1:1", "color": "white"},
            {"op": "crop", "aspect_ratio": "4:3"},
        ],
        "output": {"format": "webp", "quality": 80},
    }
    result, image = run(client, body)
    assert image.format == "WEBP" and image.size == (200, 150)
    assert result["images"][0]["content_type"] == "image/webp"
    assert [s["op"] for s in result["metrics"]["steps"]] == ["resize", "effects", "pad", "crop"]
    assert all(s["batch_size"] >= 1 and s["ms"] >= 0 for s in result["metrics"]["steps"])


def test_transparent_padding_keeps_alpha(client):
    body = {
        "image_url": png_data_uri(gradient(64, 32)),
        "steps": [{"op": "pad", "aspect_ratio": 1, "color": "transparent"}],
    }
    _, image = run(client, body)
    assert image.mode == "RGBA" and image.size == (64, 64)
    alpha = np.asarray(image)[..., 3]
    assert alpha[0].max() == 0 and alpha[32].min() == 255


def test_step_errors_name_the_step_and_field(client):
    uri = png_data_uri(gradient(8, 8))
    cases = [
        ({"op": "resiz", "width": 3}, "steps"),
        ({"op": "resize", "width": 3, "colour": "red"}, "colour"),
        ({"op": "pad", "top": 2, "color": "blurple"}, "color"),
        ({"op": "overlay", "text": "x", "font": "no-such-font"}, "font"),
    ]
    for step, field in cases:
        steps = [{"op": "crop", "aspect_ratio": 1}, step]
        resp = client.post(f"/{APP}", json={"image_url": uri, "steps": steps})
        assert resp.status_code == 422, resp.text
        assert field in resp.text and ("steps" in resp.text), resp.text


def test_builtin_recipes_are_listed_and_read_only(client):
    names = [r["name"] for r in client.get("/darkroom/recipes").json()["recipes"]]
    assert {"web-optimise", "film-look", "square-product", "social-watermark"} <= set(names)
    assert not {"ecommerce-white", "restore-photo"} & set(names), "their models are not on this server"
    body = {"image_url": png_data_uri(gradient(8, 8)), "recipe": "ecommerce-white"}
    refused = client.post(f"/{APP}", json=body)
    assert refused.status_code == 422 and "darkroom models pull u2net" in refused.text
    resp = client.put("/darkroom/recipes/film-look", json={"steps": [{"op": "crop", "aspect_ratio": 1}]})
    assert resp.status_code == 409 and "built-in" in resp.json()["detail"]
    assert client.delete("/darkroom/recipes/web-optimise").status_code == 409


def test_saved_recipe_versions_and_expansion(client):
    name = f"thumb-{uuid.uuid4().hex[:8]}"
    v1 = {"description": "square thumbnail", "steps": [{"op": "crop", "aspect_ratio": "1:1"},
                                                         {"op": "resize", "width": 64}]}
    first = client.put(f"/darkroom/recipes/{name}", json=v1)
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    v2 = {**v1, "output": {"format": "jpeg", "quality": 80}}
    assert client.put(f"/darkroom/recipes/{name}", json=v2).json()["version"] == 2
    assert client.get(f"/darkroom/recipes/{name}", params={"version": 1}).json()["output"]["format"] == "png"

    body = {"image_url": png_data_uri(gradient(120, 80)), "recipe": name, "overrides": {"1": {"width": 40}}}
    result, image = run(client, body)
    assert image.format == "JPEG" and image.size == (40, 40)
    assert [s["op"] for s in result["metrics"]["steps"]] == ["crop", "resize"]

    bad = client.post(f"/{APP}", json={**body, "overrides": {"1": {"width": -4}}})
    assert bad.status_code == 422 and "width" in bad.text and "steps" in bad.text
    missing = client.post(f"/{APP}", json={**body, "recipe": "no-such-recipe"})
    assert missing.status_code == 422 and "no-such-recipe" in missing.text
    assert client.delete(f"/darkroom/recipes/{name}").json() == {"deleted": name}
    assert client.get(f"/darkroom/recipes/{name}").status_code == 404


def test_job_keeps_the_version_it_was_submitted_with(client, settings):
    name = f"pin-{uuid.uuid4().hex[:8]}"
    client.put(f"/darkroom/recipes/{name}", json={"steps": [{"op": "resize", "width": 32}]})
    resp = client.post(f"/{APP}", json={"image_url": png_data_uri(gradient(64, 64)), "recipe": name})
    assert resp.status_code == 200, resp.text
    client.put(f"/darkroom/recipes/{name}", json={"steps": [{"op": "resize", "width": 16}]})
    sub = resp.json()
    store = JobStore(redis.Redis.from_url(settings.redis_url), retention_s=60)
    stored = store.get(sub["request_id"]).input
    assert stored["from_recipe"] == {"name": name, "version": 1}
    assert stored["steps"][0]["width"] == 32
    assert stored.get("recipe") is None
    wait_for(lambda: client.get(sub["status_url"]).json()["status"] == "COMPLETED", timeout_s=60)
    image = client.get(sub["response_url"]).json()["images"][0]
    assert (image["width"], image["height"]) == (32, 32)


def test_sync_run_and_idempotency_work_for_pipelines(client):
    body = {
        "image_url": png_data_uri(gradient(48, 32)),
        "steps": [{"op": "crop", "aspect_ratio": 1}, {"op": "resize", "width": 16}],
        "output": {"format": "png"},
        "sync_mode": True,
    }
    resp = client.post(f"/run/{APP}", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    image = resp.json()["images"][0]
    assert image["url"].startswith("data:image/png;base64,") and (image["width"], image["height"]) == (16, 16)

    key = {"Idempotency-Key": f"pipe-{uuid.uuid4()}"}
    first = client.post(f"/{APP}", json=body, headers=key)
    again = client.post(f"/{APP}", json=body, headers=key)
    assert first.status_code == again.status_code == 200
    assert first.json()["request_id"] == again.json()["request_id"]


def test_max_bytes_that_cannot_be_met_fails_the_job_with_output_too_large(client):
    noise = np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    body = {"image_url": png_data_uri(noise), "steps": [{"op": "pad", "top": 1}],
            "output": {"format": "jpeg", "quality": 90, "max_bytes": 1024}}
    resp = client.post(f"/{APP}", json=body)
    assert resp.status_code == 200, resp.text
    sub = resp.json()
    status = wait_for(lambda: (s := client.get(sub["status_url"]).json())["status"] == "COMPLETED" and s)
    assert status.get("error_type") == "output_too_large", status
    result = client.get(sub["response_url"])
    assert result.status_code == 422 and "max_bytes" in result.json()["detail"]


def test_a_running_pipeline_stops_at_its_next_step_when_cancelled(client):
    big = np.random.default_rng(2).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    slow = [{"op": "resize", "scale": 2, "filter": "lanczos"},
            {"op": "resize", "scale": 0.5, "filter": "lanczos"}]
    resp = client.post(f"/{APP}", json={"image_url": png_data_uri(big), "steps": slow * 8})
    assert resp.status_code == 200, resp.text
    sub = resp.json()
    wait_for(lambda: client.get(sub["status_url"]).json()["status"] == "IN_PROGRESS", timeout_s=30)
    time.sleep(1.5)  # past fetching and decoding (well under 0.5 s): the steps are running
    assert client.put(sub["cancel_url"]).json()["status"] == "CANCELLATION_REQUESTED"
    status = wait_for(lambda: (s := client.get(sub["status_url"], params={"logs": 1}).json())["status"]
                      == "COMPLETED" and s, timeout_s=30)
    assert status.get("error_type") == "request_cancelled", status
    stopped = [e["message"] for e in status["logs"] if e["message"].startswith("stopped before step")]
    assert stopped and not stopped[0].startswith("stopped before step 16 "), status["logs"]


def test_recipe_versions_are_pruned_and_never_reused(client):
    from storage.recipes import KEEP_VERSIONS

    name = f"many-{uuid.uuid4().hex[:8]}"
    body = {"steps": [{"op": "effects", "enable_color_correction": True, "temperature": 1.2345678901234567}]}
    for _ in range(KEEP_VERSIONS + 1):
        last = client.put(f"/darkroom/recipes/{name}", json=body).json()
    assert last["version"] == KEEP_VERSIONS + 1
    assert last["steps"][0]["temperature"] == 1.2345678901234567  # stored as Python wrote it
    assert client.get(f"/darkroom/recipes/{name}", params={"version": 1}).status_code == 404
    assert client.get(f"/darkroom/recipes/{name}", params={"version": 2}).status_code == 200
    client.delete(f"/darkroom/recipes/{name}")
    again = client.put(f"/darkroom/recipes/{name}", json=body).json()
    assert again["version"] == KEEP_VERSIONS + 2, "a version number always means one content"


def test_a_stored_recipe_that_no_longer_validates_is_a_4xx_not_a_5xx(client, settings):
    from storage import keys

    name = f"stale-{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(settings.redis_url)
    stale = {"name": name, "version": 1, "updated_at": 0, "description": "",
             "steps": [{"op": "no-longer-an-op"}], "output": {"format": "png"}}
    r.hset(keys.recipe("", name), mapping={"v1": json.dumps(stale), "latest": 1})
    r.sadd(keys.recipe_index(""), name)
    try:
        listed = client.get("/darkroom/recipes")
        assert listed.status_code == 200 and name not in {x["name"] for x in listed.json()["recipes"]}
        got = client.get(f"/darkroom/recipes/{name}")
        assert got.status_code == 422 and "no longer validates" in got.text
        sub = client.post(f"/{APP}", json={"image_url": png_data_uri(gradient(8, 8)), "recipe": name})
        assert sub.status_code == 422 and "save it again" in sub.text
    finally:
        r.delete(keys.recipe("", name))
        r.srem(keys.recipe_index(""), name)
