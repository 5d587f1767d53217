"""Solarize: invert the values above a threshold (per channel)."""

from __future__ import annotations

import torch

from worker.effects.common import clamp01_, select
from worker.effects.registry import BatchParams, register


@register("solarize")
def solarize(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    t = p.scalar("solarize_threshold")
    return clamp01_(select(x > t, torch.rsub(x, 1.0), x))
