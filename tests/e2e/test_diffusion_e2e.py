"""The diffusion apps end to end: submit to an API -> a real `darkroom worker` -> S3 -> status -> result.

Both run with a models config that registers the tiny random-weight models (tests/support/diffusion_models.py)
and one that is registered but never pulled, on their own Redis database (14) so no other test's
worker takes these jobs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from darkroom.cli.embedded import free_port
from storage.objects import build_object_store
from tests.support.diffusion_models import build_tiny_models
from tests.support.fal_queue import download_png, first_image, log_messages, result, status, submit, wait_done
from tests.support.harness import make_settings, start_worker, stop_process, wait_for
from tests.support.images import gradient, png_data_uri
from tests.support.servers import running_api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
UPSCALE, REFINE = "darkroom/upscale", "darkroom/refine"
ABSENT = "example/not-pulled"
WAIT_S = 90  # seconds a request may take through the queue


@pytest.fixture(scope="module")
def stack(redis_url, s3_endpoint, tmp_path_factory) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("models")
    config = build_tiny_models(folder)
    entries = json.loads(config.read_text())
    entries[ABSENT] = {"repo": ABSENT, "pipeline": "LDMSuperResolutionPipeline"}
    config.write_text(json.dumps(entries))
    settings = make_settings(
        redis_url.rsplit("/", 1)[0] + "/14", s3_endpoint, free_port(),
        models_dir=folder, models_config=config, progress_interval_s=0,
        upscale_tile_px=16, upscale_tile_overlap_px=4, torch_threads=1, worker_concurrency=4, max_wait_ms=50,
    )
    proc = start_worker(settings, f"diffusion-{os.getpid()}@localhost")
    try:
        with running_api(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
            yield SimpleNamespace(client=client, settings=settings, objects=build_object_store(settings))
    finally:
        stop_process(proc)


def test_refine_through_the_queue(stack):
    body = {"image_url": png_data_uri(gradient(32, 24)), "prompt": "a cat", "model": "tiny-refine",
            "num_inference_steps": 4, "strength": 0.75, "num_images": 2, "seed": 42}
    sub = submit(stack.client, body, REFINE)
    assert sub["status_url"].endswith(f"/{REFINE}/requests/{sub['request_id']}/status")
    out = result(stack.client, sub, timeout_s=WAIT_S)
    assert out["seed"] == 42 and len(out["images"]) == 2
    assert {"prepare_s", "run_s", "denoise_s"} <= set(out["timings"])
    first, second = (download_png(img) for img in out["images"])
    assert first.shape == second.shape == (24, 32, 3)
    assert not np.array_equal(first, second)  # image 1 has its own seed (43)
    assert "step 3/3" in log_messages(status(stack.client, sub))  # progress in the status logs


def test_upscale_scale_4_with_a_prompt_and_scale_2_without(stack):
    src = gradient(20, 12)
    four = submit(stack.client, {"image_url": png_data_uri(src), "model": "tiny-sd-upscaler",
                                 "prompt": "a sky", "num_inference_steps": 2, "noise_level": 10}, UPSCALE)
    two = submit(stack.client, {"image_url": png_data_uri(src), "model": "tiny-ldm", "scale": 2,
                                "num_inference_steps": 2}, UPSCALE)
    assert first_image(result(stack.client, four, timeout_s=WAIT_S)).shape == (48, 80, 3)
    assert first_image(result(stack.client, two, timeout_s=WAIT_S)).shape == (24, 40, 3)


def test_sync_run_answers_with_the_output(stack):
    body = {"image_url": png_data_uri(gradient(16, 16)), "model": "tiny-ldm", "num_inference_steps": 2,
            "sync_mode": True, "seed": 5}
    resp = stack.client.post(f"/run/{UPSCALE}", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    image = resp.json()["images"][0]
    assert image["url"].startswith("data:image/png;base64,") and (image["width"], image["height"]) == (64, 64)


@pytest.mark.parametrize("app, body, field", [
    (UPSCALE, {"model": "no-such-model"}, "model"),
    (UPSCALE, {"model": "tiny-ldm", "prompt": "a cat"}, "prompt"),
    (UPSCALE, {"model": "tiny-ldm", "num_inference_steps": 500}, "num_inference_steps"),
    (REFINE, {"model": "tiny-refine"}, "prompt"),
    (REFINE, {"model": "tiny-ldm", "prompt": "x"}, "model"),
])
def test_bad_requests_are_422_naming_the_field(stack, app, body, field):
    resp = stack.client.post(f"/{app}", json={"image_url": png_data_uri(gradient(8, 8)), **body})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == ["body", field]


def test_a_model_that_was_never_pulled_fails_fast(stack):
    sub = submit(stack.client, {"image_url": png_data_uri(gradient(8, 8)), "model": ABSENT}, UPSCALE)
    done = wait_done(stack.client, sub, timeout_s=WAIT_S)
    assert done["error_type"] == "model_unavailable"
    assert f"darkroom models pull {ABSENT}" in done["error"]
    resp = stack.client.get(sub["response_url"])
    assert resp.status_code == 503 and resp.json()["error_type"] == "model_unavailable"


def test_cancel_mid_run_stops_within_a_step_and_stores_nothing(stack):
    body = {"image_url": png_data_uri(gradient(96, 96)), "prompt": "a cat", "model": "tiny-refine",
            "num_inference_steps": 150, "strength": 1.0}
    sub = submit(stack.client, body, REFINE)
    steps = lambda: [m for m in log_messages(status(stack.client, sub)) if m.startswith("step ")]  # noqa: E731
    wait_for(lambda: len(steps()) >= 2, timeout_s=60)
    assert stack.client.put(sub["cancel_url"]).status_code == 202
    seen = len(steps())
    done = wait_done(stack.client, sub, timeout_s=WAIT_S)
    assert done["error_type"] == "request_cancelled"
    final = [m for m in log_messages(done) if m.startswith("step ")]
    assert len(final) <= seen + 1 and final[-1] != "step 150/150"
    assert list(stack.objects.list_objects(f"{sub['request_id']}/")) == []
