"""``restore`` end to end: submit to an API -> a real `darkroom worker` loading a tiny Swin2SR through its
models config -> S3 -> status -> result.

The worker runs on its own Redis database (10) so no other test's worker takes these jobs; its models
config registers the tiny model (tests/support/tiny_restore.py), one with corrupt weights and one that
was never pulled. The output is compared with the kernel run in this process on the same pixels.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from darkroom.apps.pipeline import STEP_ADAPTER
from darkroom.cli.embedded import free_port
from tests.support.fal_queue import download, result, submit, wait_done
from tests.support.harness import make_settings, start_worker, stop_process
from tests.support.images import gradient, png_data_uri
from tests.support.servers import running_api
from tests.support.tiny_restore import build_tiny_restore, models_config_entry
from worker.imaging import DecodedImage, from_rgba_tensor, to_rgba_tensor
from worker.operators import StepBatch, get_kernel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
APP = "darkroom/pipeline"
TINY, CORRUPT, ABSENT = "tiny-restore", "corrupt-restore", "example/restore-not-pulled"
WAIT_S = 60


@pytest.fixture(scope="module")
def stack(redis_url, s3_endpoint, tmp_path_factory) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("restore-models")
    build_tiny_restore(folder / "tiny")
    build_tiny_restore(folder / "corrupt")
    (folder / "corrupt" / "model.safetensors").write_bytes(b"not safetensors" * 64)
    config = folder / "models.json"
    config.write_text(json.dumps({
        TINY: models_config_entry("tiny"), CORRUPT: models_config_entry("corrupt"),
        ABSENT: {"repo": ABSENT, "pipeline": "Swin2SRForImageSuperResolution"},
    }))
    settings = make_settings(
        redis_url.rsplit("/", 1)[0] + "/10", s3_endpoint, free_port(),
        models_dir=folder, models_config=config, torch_threads=1, max_wait_ms=200,
    )
    proc = start_worker(settings, f"restore-{os.getpid()}@localhost")
    try:
        with running_api(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
            yield SimpleNamespace(client=client, settings=settings)
    finally:
        stop_process(proc)


def photo(w: int = 40, h: int = 28) -> np.ndarray:
    """A gradient with a little noise (what a JPEG-damaged photo is to a random model)."""
    noise = np.random.default_rng(1).integers(-12, 13, (h, w, 3))
    return np.clip(gradient(w, h).astype(int) + noise, 0, 255).astype(np.uint8)


def fetch(output: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(download(output["images"][0]))))


def in_process(rgb: np.ndarray, settings, **fields) -> np.ndarray:
    """The restore kernel run here on the same pixels, as uint8 RGB."""
    cpu = torch.device("cpu")
    x = to_rgba_tensor([DecodedImage(rgb, None, None, rgb.shape[1], rgb.shape[0], "PNG")], cpu)
    s = STEP_ADAPTER.validate_python({"op": "restore", "model": TINY, **fields})
    y = get_kernel("restore").fn(x, StepBatch([s], cpu, [0], [{}], settings))
    return from_rgba_tensor(y)[0][0]


def test_restore_in_a_pipeline_batched_across_requests(stack):
    src = photo()
    steps = [{"op": "restore", "model": TINY, "scale": 2, "tile_px": 32, "overlap_px": 8},
             {"op": "resize", "width": 60}]
    subs = [submit(stack.client, {"image_url": png_data_uri(src), "steps": steps}, APP) for _ in range(3)]
    outputs = [result(stack.client, sub, timeout_s=WAIT_S) for sub in subs]
    images = [fetch(out) for out in outputs]
    assert all(im.shape == (42, 60, 3) for im in images)  # 40x28 -> x2 -> 60 wide
    assert all(np.array_equal(images[0], im) for im in images[1:])  # alone or batched: the same
    assert [s["op"] for s in outputs[0]["metrics"]["steps"]] == ["restore", "resize"]
    alone = submit(stack.client, {"image_url": png_data_uri(src), "steps": steps[:1]}, APP)
    restored = fetch(result(stack.client, alone, timeout_s=WAIT_S)).astype(int)
    expected = in_process(src, stack.settings, scale=2, tile_px=32, overlap_px=8).astype(int)
    assert restored.shape == (56, 80, 3) and np.abs(restored - expected).max() <= 1


def test_alpha_passes_through(stack):
    rgba = np.dstack([photo(), np.tile(np.linspace(0, 255, 40).astype(np.uint8), (28, 1))])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    out = result(stack.client, submit(stack.client, {"image_url": uri, "steps": [
        {"op": "restore", "model": TINY, "tile_px": 32, "overlap_px": 8}]}, APP), timeout_s=WAIT_S)
    image = fetch(out)
    assert image.shape == (28, 40, 4) and np.array_equal(image[..., 3], rgba[..., 3])


def test_a_model_that_was_never_pulled_is_refused_at_submit(stack):
    resp = stack.client.post(f"/{APP}", json={"image_url": png_data_uri(photo()),
                                              "steps": [{"op": "restore", "model": ABSENT}]})
    assert resp.status_code == 422, resp.text
    assert f"darkroom models pull {ABSENT}" in resp.text and "steps.0.restore.model" in resp.text


def test_a_corrupt_model_fails_the_job_and_the_worker_carries_on(stack):
    body = {"image_url": png_data_uri(photo()), "steps": [{"op": "restore", "model": CORRUPT}]}
    done = wait_done(stack.client, submit(stack.client, body, APP), timeout_s=WAIT_S)
    assert done["error_type"] == "model_unavailable" and "could not be loaded" in done["error"]
    good = {"image_url": png_data_uri(photo()), "steps": [{"op": "restore", "model": TINY}]}
    assert fetch(result(stack.client, submit(stack.client, good, APP), timeout_s=WAIT_S)).shape == (28, 40, 3)
