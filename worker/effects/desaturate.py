"""Desaturate: blend towards a grey made by one of four methods (per item)."""

from __future__ import annotations

import torch

from worker.effects.common import REC601, REC709, clamp_finite_, select
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
    gray = x[:, 0:1] * w[:, 0:1]  # the weighted sum as three adds on single channels
    gray.addcmul_(x[:, 1:2], w[:, 1:2]).addcmul_(x[:, 2:3], w[:, 2:3])
    methods = p.values("desaturate_method")
    if "lightness" in methods:
        is_light = torch.tensor([m == "lightness" for m in methods], device=x.device).view(-1, 1, 1, 1)
        light = (x.amax(dim=1, keepdim=True) + x.amin(dim=1, keepdim=True)) / 2
        gray = select(is_light, light, gray)
    return clamp_finite_(torch.lerp(x, gray.expand_as(x), p.scalar("desaturate_factor")))
