"""Pipelines with diffusion steps end to end: submit to an API -> a real `darkroom worker` -> S3 -> result.

The stack runs with a models config that registers the tiny random-weight models
(tests/support/diffusion_models.py), one model that is registered but never pulled and one whose
folder is there but does not load, on its own Redis database (12) so no other test's worker takes
these jobs.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from PIL import Image

from darkroom.cli.embedded import free_port
from tests.support.diffusion_models import build_tiny_models
from tests.support.fal_queue import download, result, submit, wait_done
from tests.support.harness import make_settings, start_worker, stop_process
from tests.support.images import gradient, png_data_uri
from tests.support.servers import running_api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
APP = "darkroom/pipeline"
ABSENT = "example/not-pulled"
BROKEN = "example/broken"
WAIT_S = 90  # seconds a request may take through the queue
UPSCALE = {"op": "upscale", "model": "tiny-ldm", "num_inference_steps": 2}


@pytest.fixture(scope="module")
def stack(redis_url, s3_endpoint, tmp_path_factory) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("models")
    config = build_tiny_models(folder)
    (folder / "broken").mkdir()
    (folder / "broken" / "model_index.json").write_text("{}")
    entries = json.loads(config.read_text())
    entries[ABSENT] = {"repo": ABSENT, "pipeline": "LDMSuperResolutionPipeline"}
    entries[BROKEN] = {"path": "broken", "pipeline": "LDMSuperResolutionPipeline"}
    config.write_text(json.dumps(entries))
    settings = make_settings(
        redis_url.rsplit("/", 1)[0] + "/12", s3_endpoint, free_port(),
        models_dir=folder, models_config=config, upscale_tile_px=16, upscale_tile_overlap_px=4,
        torch_threads=1, worker_concurrency=4, max_wait_ms=200,
    )
    proc = start_worker(settings, f"pipeline-diffusion-{os.getpid()}@localhost")
    try:
        with running_api(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
            yield SimpleNamespace(client=client, settings=settings)
    finally:
        stop_process(proc)


def rgba_image(output: dict) -> Image.Image:
    return Image.open(io.BytesIO(download(output["images"][0])))


def half_transparent(width: int, height: int) -> np.ndarray:
    """The gradient with its left half fully transparent and its right half opaque."""
    alpha = np.full((height, width, 1), 255, np.uint8)
    alpha[:, : width // 2] = 0
    return np.concatenate([gradient(width, height), alpha], axis=-1)


def test_resize_upscale_effects_keeps_alpha(stack):
    body = {
        "image_url": png_data_uri(half_transparent(40, 24)),
        "steps": [
            {"op": "resize", "width": 20},
            UPSCALE,
            {"op": "effects", "enable_grain": True, "grain_intensity": 0.1, "enable_vignette": True},
        ],
        "seed": 3,
    }
    out = result(stack.client, submit(stack.client, body, APP), timeout_s=WAIT_S)
    assert [s["op"] for s in out["metrics"]["steps"]] == ["resize", "upscale", "effects"]
    image = rgba_image(out)
    assert image.mode == "RGBA" and image.size == (80, 48)  # 40x24 -> 20x12 -> x4
    alpha = np.asarray(image)[..., 3]
    assert alpha[:, :36].max() == 0 and alpha[:, 44:].min() == 255  # the edge, at x = 40, resized


def test_the_same_request_gives_the_same_image_alone_or_batched(stack):
    """Requests submitted together may share the upscale step's batch; each keeps its own seed."""
    def body(seed: int) -> dict:
        return {"image_url": png_data_uri(gradient(24, 16)), "seed": seed,
                "steps": [{"op": "resize", "width": 12}, UPSCALE]}

    subs = [submit(stack.client, body(seed), APP) for seed in (1, 2, 1)]
    outs = [result(stack.client, sub, timeout_s=WAIT_S) for sub in subs]
    alone = result(stack.client, submit(stack.client, body(1), APP), timeout_s=WAIT_S)
    first, second, third, solo = (np.asarray(rgba_image(o), dtype=int) for o in (*outs, alone))
    assert first.shape == (32, 48, 3)
    assert np.abs(first - third).max() <= 1 and np.abs(first - solo).max() <= 1  # float rounding at most
    assert np.abs(first - second).max() > 1  # another seed, other noise
    assert all(s["batch_size"] >= 1 for o in outs for s in o["metrics"]["steps"])


@pytest.mark.parametrize(("step", "field", "message"), [
    ({"op": "upscale", "model": ABSENT}, "model", f"darkroom models pull {ABSENT}"),
    ({"op": "upscale", "model": "no-such-model"}, "model", "unknown model"),
    ({"op": "upscale", "model": "tiny-ldm", "prompt": "a cat"}, "prompt", "takes no prompt"),
    ({"op": "refine", "model": "tiny-refine"}, "prompt", "Field required"),
])
def test_bad_model_steps_are_refused_at_submit(stack, step, field, message):
    body = {"image_url": png_data_uri(gradient(8, 8)), "steps": [{"op": "resize", "width": 4}, step]}
    resp = stack.client.post(f"/{APP}", json=body)
    assert resp.status_code == 422, resp.text
    assert message in resp.text and "steps" in resp.text and field in resp.text


def test_a_model_that_does_not_load_fails_the_job_and_the_worker_goes_on(stack):
    bad = {"image_url": png_data_uri(gradient(8, 8)), "steps": [{**UPSCALE, "model": BROKEN}]}
    done = wait_done(stack.client, submit(stack.client, bad, APP), timeout_s=WAIT_S)
    assert done["error_type"] == "model_unavailable" and BROKEN in done["error"]
    refine = {"op": "refine", "model": "tiny-refine", "prompt": "a cat", "num_inference_steps": 4,
              "strength": 0.5}
    good = {"image_url": png_data_uri(gradient(16, 12)), "seed": 5,
            "steps": [refine, {"op": "crop", "aspect_ratio": "1:1"}]}
    out = result(stack.client, submit(stack.client, good, APP), timeout_s=WAIT_S)
    assert rgba_image(out).size == (12, 12)
