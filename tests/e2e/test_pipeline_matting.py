"""``remove_background`` end to end: submit to an API -> a real `darkroom worker` loading a tiny ONNX
segmentation net through its models config -> S3 -> status -> result.

The worker runs on its own Redis database (11) so no other test's worker takes these jobs; its models
config registers the tiny net (tests/support/tiny_matting.py), a corrupt ``model.onnx`` and a model
that was never pulled.
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
from tests.support.fal_queue import download, result, submit, wait_done
from tests.support.harness import make_settings, start_worker, stop_process
from tests.support.images import png_data_uri
from tests.support.servers import running_api
from tests.support.tiny_matting import build_tiny_matting

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
APP = "darkroom/pipeline"
TINY, CORRUPT, ABSENT = "tiny-matte", "corrupt-matte", "example/matte-not-pulled"
WAIT_S = 60


@pytest.fixture(scope="module")
def stack(redis_url, s3_endpoint, tmp_path_factory) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("matte-models")
    build_tiny_matting(folder / "tiny")
    (folder / "corrupt").mkdir()
    (folder / "corrupt" / "model.onnx").write_bytes(b"not an onnx graph" * 64)
    config = folder / "models.json"
    config.write_text(json.dumps({
        TINY: {"path": "tiny", "pipeline": "onnx-segmentation"},
        CORRUPT: {"path": "corrupt", "pipeline": "onnx-segmentation"},
        ABSENT: {"repo": ABSENT, "pipeline": "onnx-segmentation"},
    }))
    settings = make_settings(
        redis_url.rsplit("/", 1)[0] + "/11", s3_endpoint, free_port(),
        models_dir=folder, models_config=config, torch_threads=1, max_wait_ms=50,
    )
    proc = start_worker(settings, f"matting-{os.getpid()}@localhost")
    try:
        with running_api(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
            yield SimpleNamespace(client=client, settings=settings)
    finally:
        stop_process(proc)


def product_shot(w: int = 96, h: int = 72) -> np.ndarray:
    """A bright box on a dark, noisy backdrop."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(10, 50, (h, w, 3), dtype=np.uint8)
    rgb[18:54, 30:66] = (235, 200, 150)
    return rgb


def body(*steps: dict, **rest) -> dict:
    return {"image_url": png_data_uri(product_shot()), "steps": list(steps), **rest}


def fetch(output: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(download(output["images"][0]))))


def test_cut_out_and_composited_on_white_with_a_shadow(stack):
    steps = ({"op": "remove_background", "model": TINY, "refine_edges": True},
             {"op": "composite", "color": "white", "shadow": {"offset_y": 6, "blur": 3, "opacity": 0.5}})
    out = result(stack.client, submit(stack.client, body(*steps), APP), timeout_s=WAIT_S)
    assert [s["op"] for s in out["metrics"]["steps"]] == ["remove_background", "composite"]
    image = fetch(out).astype(int)
    assert image.shape == (72, 96, 3)  # opaque on white: no alpha left
    assert image[2, 2].min() >= 250  # the dark backdrop is gone
    assert np.abs(image[36, 48] - (235, 200, 150)).max() <= 3  # the box stays
    assert image[58, 48].max() < 245  # its shadow falls below it


def test_a_hard_matte_leaves_binary_alpha(stack):
    steps = ({"op": "remove_background", "model": TINY, "threshold": 0.5},)
    out = result(stack.client, submit(stack.client, body(*steps), APP), timeout_s=WAIT_S)
    image = fetch(out)
    assert image.shape == (72, 96, 4)
    assert set(np.unique(image[..., 3]).tolist()) == {0, 255}
    assert image[36, 48, 3] == 255 and image[2, 2, 3] == 0


def test_a_model_that_was_never_pulled_is_refused_at_submit(stack):
    resp = stack.client.post(f"/{APP}", json=body({"op": "remove_background", "model": ABSENT}))
    assert resp.status_code == 422, resp.text
    assert f"darkroom models pull {ABSENT}" in resp.text and "steps.0.remove_background.model" in resp.text


def test_a_corrupt_model_fails_the_job_and_the_worker_carries_on(stack):
    bad = submit(stack.client, body({"op": "remove_background", "model": CORRUPT}), APP)
    done = wait_done(stack.client, bad, timeout_s=WAIT_S)
    assert done["error_type"] == "model_unavailable" and "could not be loaded" in done["error"]
    assert stack.client.get(bad["response_url"]).status_code == 503
    good = submit(stack.client, body({"op": "remove_background", "model": TINY}), APP)
    assert fetch(result(stack.client, good, timeout_s=WAIT_S)).shape == (72, 96, 4)
