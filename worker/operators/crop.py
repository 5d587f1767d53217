"""``crop`` on the device: a slice (every item of a batch shares the box)."""

from __future__ import annotations

import torch

from worker.operators import StepBatch, register_kernel


@register_kernel("crop")
def crop(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    left, top, width, height = batch.steps[0].box((x.shape[3], x.shape[2]))
    return x[:, :, top : top + height, left : left + width].contiguous()
