"""``refine`` on the device: the darkroom/refine app's image-to-image call, on a step's batch.

The RGB channels go through :func:`worker.diffusion.calls.refine` as the app's images do: one pipeline
call for the batch, each item with its own prompts and its own generator seeded from ``batch.seeds``,
so an item's output does not depend on its batch-mates. The result comes back to the device (diffusers
hands it over on the CPU) and alpha passes through unchanged: refine keeps the size.

The model comes from the worker's process-wide cache (shared with the apps); one that is not on disk
or does not load raises ModelUnavailable, which fails the job with ``model_unavailable``.
"""

from __future__ import annotations

import torch

from worker.diffusion import calls
from worker.diffusion.loader import process_cache
from worker.diffusion.steps import StepMonitor
from worker.operators import StepBatch, register_kernel


@register_kernel("refine")
def refine(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    step, s = batch.steps[0], batch.settings
    pipe, _ = process_cache(s.models_dir, batch.device, s.model_cache_mb).get(step.model)
    items = zip(batch.steps, batch.seeds, strict=True)  # prompts and seeds are per item
    members = [calls.Member(seed, item.prompt, item.negative_prompt) for item, seed in items]
    params = calls.Params(step.num_inference_steps, step.guidance_scale, step.strength)
    monitor = StepMonitor((), lambda job: None, lambda request_id, message: None)  # no job to report to
    outputs = calls.refine(pipe, x[:, :3], members, params, monitor)
    rgb = torch.cat(outputs).to(x.device, torch.float32)
    return torch.cat([rgb, x[:, 3:]], dim=1)
