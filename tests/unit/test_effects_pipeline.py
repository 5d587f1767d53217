"""The effects pipeline's batch step: on the CPU a batch runs in cache-sized chunks, with the same
outputs as the whole batch at once and as each item alone."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from darkroom.apps import APPS
from darkroom.job import JobRecord
from darkroom.settings import Settings
from worker import imaging
from worker.pipelines.effects import EffectsJob, chunk_size, run

APP = "fal-ai/post-processing"
BODY = {"enable_grain": True, "enable_color_correction": True, "brightness": 10, "enable_blur": True}


def ctx_with(chunk_mib: float, device: str = "cpu") -> SimpleNamespace:
    return SimpleNamespace(settings=Settings(cpu_chunk_mib=chunk_mib), device=torch.device(device))


def prepared(seed: int, size: int = 32, brightness: float = 10) -> EffectsJob:
    app = APPS[APP]
    body = app.input_model.model_validate(
        {"image_url": "https://images.example.com/a.png", **BODY, "brightness": brightness},
        context={"trusted": True},
    )
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    image = imaging.DecodedImage(rgb, None, None, size, size, "png")
    job = JobRecord(id=f"job-{seed}", app_id=APP, base_id=APP, input={}, created_at=time.time(), seed=seed)
    return EffectsJob(job, body, "effects", chain=body.effect_chain(), image=image)


def test_chunk_size_follows_the_cache_budget_on_cpu_only() -> None:
    pixels = 256 * 256  # 768 KiB of float32 RGB
    assert chunk_size(ctx_with(3.0), pixels, 16) == 4
    assert chunk_size(ctx_with(3.0), 16 * 16, 16) == 16  # small images: the whole batch
    assert chunk_size(ctx_with(3.0), 2048 * 2048, 16) == 1  # never below one image
    assert chunk_size(ctx_with(0), pixels, 16) == 16  # 0 turns chunking off
    assert chunk_size(ctx_with(3.0, "meta"), pixels, 16) == 16  # a GPU takes the whole batch


@pytest.mark.parametrize("chunk_mib", [0.0, 0.02, 0.03, 3.0])  # whole, 1, 2 (+ a partial chunk), whole
def test_chunked_batches_equal_whole_batches_and_items_alone(chunk_mib: float) -> None:
    batch = [prepared(seed, brightness=5 * seed) for seed in range(5)]  # per-item parameters differ
    with torch.inference_mode():
        chunked = run(ctx_with(chunk_mib), batch)
        alone = [run(ctx_with(0), [p])[0] for p in batch]
    assert len(chunked) == len(batch)
    for got, want in zip(chunked, alone, strict=True):
        assert got.dtype == np.uint8 and np.array_equal(got, want)
