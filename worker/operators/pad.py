"""``pad`` on the device: a canvas of each item's colour with the image placed on it."""

from __future__ import annotations

import torch

from darkroom.apps.pipeline.base import parse_color
from worker.operators import StepBatch, register_kernel


@register_kernel("pad")
def pad(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    b, c, h, w = x.shape
    (cw, ch), (left, top) = batch.steps[0].placement((w, h))
    fill = batch.colors([parse_color(step.color) for step in batch.steps])
    out = fill.expand(b, c, ch, cw).contiguous()
    out[:, :, top : top + h, left : left + w] = x
    return out
