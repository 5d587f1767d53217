"""What the ``refine`` and ``upscale`` kernels both hand to worker.diffusion.calls (no kernel here)."""

from __future__ import annotations

from typing import Any

from worker.diffusion import calls
from worker.diffusion.loader import process_cache
from worker.diffusion.steps import StepMonitor
from worker.operators import StepBatch


def call_inputs(batch: StepBatch) -> tuple[Any, list[calls.Member], StepMonitor]:
    """The step's pipeline from the worker's process-wide cache (shared with the apps; a model not on
    disk raises ModelUnavailable), one member per item with its own prompts and seed, and a monitor
    with no job to report to."""
    step, s = batch.steps[0], batch.settings
    pipe, _ = process_cache(s.models_dir, batch.device, s.model_cache_mb).get(step.model)
    items = zip(batch.steps, batch.seeds, strict=True)  # prompts and seeds are per item
    members = [calls.Member(seed, item.prompt, item.negative_prompt) for item, seed in items]
    return pipe, members, StepMonitor((), lambda job: None, lambda request_id, message: None)
