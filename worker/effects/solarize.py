"""Solarize: invert the values above a threshold (per channel).

``|[x > t] - x|``: ``1 - x`` where the comparison holds and ``x`` elsewhere (inputs are in [0, 1]),
exactly, in about three passes and without ``torch.where`` (slow on the CPU; see common.select).
"""

from __future__ import annotations

import torch

from worker.effects import fused
from worker.effects.common import clamp_finite_
from worker.effects.registry import BatchParams, register


@fused.kernel
def invert_above(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    above = (x > threshold).to(x.dtype)
    return clamp_finite_(above.sub_(x).abs_())


@register("solarize")
def solarize(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    return invert_above(x, p.scalar("solarize_threshold"))
