"""Desaturate: blend towards a grey made by one of four methods (per item)."""

from __future__ import annotations

import torch

from worker.effects.common import REC601, REC709, clamp01
from worker.effects.registry import BatchParams, register

WEIGHTS = {
    "luminance (Rec.709)": REC709,
    "luminance (Rec.601)": REC601,
    "average": (1 / 3, 1 / 3, 1 / 3),
    "lightness": (0.0, 0.0, 0.0),  # not a weighted sum: (max + min) / 2
}


@register("desaturate")
def desaturate(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    w = p.table("desaturate_method", WEIGHTS, 3)
    gray = (x * w).sum(dim=1, keepdim=True)
    methods = p.values("desaturate_method")
    if "lightness" in methods:
        is_light = torch.tensor([m == "lightness" for m in methods], device=x.device).view(-1, 1, 1, 1)
        light = (x.amax(dim=1, keepdim=True) + x.amin(dim=1, keepdim=True)) / 2
        gray = torch.where(is_light, light, gray)
    f = p.scalar("desaturate_factor")
    return clamp01(x + f * (gray - x))
