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
from worker.operators import StepBatch, register_kernel
from worker.operators._diffusion import call_inputs


@register_kernel("refine")
def refine(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    step = batch.steps[0]
    pipe, members, monitor = call_inputs(batch)
    params = calls.Params(step.num_inference_steps, step.guidance_scale, step.strength)
    outputs = calls.refine(pipe, x[:, :3], members, params, monitor)
    rgb = torch.cat(outputs).to(x.device, torch.float32)
    return torch.cat([rgb, x[:, 3:]], dim=1)
