"""Solarize: invert the values above a threshold (per channel)."""

from __future__ import annotations

import torch

from worker.effects.common import clamp01
from worker.effects.registry import BatchParams, register


@register("solarize")
def solarize(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    t = p.scalar("solarize_threshold")
    return clamp01(torch.where(x > t, 1 - x, x))
