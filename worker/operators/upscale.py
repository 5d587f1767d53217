"""``upscale`` on the device: the darkroom/upscale app's diffusion call, on a step's batch.

The RGB channels go through :func:`worker.diffusion.calls.upscale` exactly as the app's images do:
overlapping tiles of ``upscale_tile_px``, one pipeline call per tile for the whole batch, and one
generator per item seeded from ``batch.seeds``, so an item's output does not depend on its batch-mates.
The tiler accumulates on the CPU (device memory stays that of one tile); the result comes back to the
device, where alpha, resized bilinearly as the app resizes it, is put back.

The model comes from the worker's process-wide cache (shared with the apps); one that is not on disk
or does not load raises ModelUnavailable, which fails the job with ``model_unavailable``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from worker.diffusion import calls
from worker.operators import StepBatch, register_kernel
from worker.operators._diffusion import call_inputs


@register_kernel("upscale")
def upscale(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    step, s = batch.steps[0], batch.settings
    pipe, members, monitor = call_inputs(batch)
    params = calls.Params(step.num_inference_steps, step.guidance_scale, noise_level=step.noise_level)
    tiling = calls.Tiling(s.upscale_tile_px, s.upscale_tile_overlap_px)
    outputs = calls.upscale(pipe, x[:, :3], members, params, tiling, monitor, step.scale)
    rgb = torch.cat(outputs).to(x.device, torch.float32)
    return torch.cat([rgb, resize_alpha(x[:, 3:], (rgb.shape[2], rgb.shape[3]))], dim=1)


def resize_alpha(alpha: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, 1, H, W)`` alpha to ``size`` (H, W), bilinear (the app's filter); an opaque item stays
    exactly opaque."""
    opaque = (alpha >= 1).flatten(1).all(dim=1).view(-1, 1, 1, 1)
    if bool(opaque.all()):
        return torch.ones((alpha.shape[0], 1, *size), dtype=alpha.dtype, device=alpha.device)
    y = F.interpolate(alpha, size=size, mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return torch.where(opaque, torch.ones_like(y), y)
