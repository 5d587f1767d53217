"""Desaturate: blend towards a grey made by one of four methods (per item)."""

from __future__ import annotations

import torch

from worker.effects import fused
from worker.effects.common import REC601, REC709, clamp_finite_, select
from worker.effects.registry import BatchParams, register

WEIGHTS = {
    "luminance (Rec.709)": REC709,
    "luminance (Rec.601)": REC601,
    "average": (1 / 3, 1 / 3, 1 / 3),
    "lightness": (0.0, 0.0, 0.0),  # not a weighted sum: (max + min) / 2
}


def weighted_grey(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The per-item weighted sum of the channels, ``(B, 1, H, W)``, as three adds on single channels."""
    grey = x[:, 0:1] * w[:, 0:1]
    return grey.addcmul_(x[:, 1:2], w[:, 1:2]).addcmul_(x[:, 2:3], w[:, 2:3])


def blend(x: torch.Tensor, grey: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return clamp_finite_(torch.lerp(x, grey.expand_as(x), factor))


@fused.kernel
def blend_to_weighted_grey(x: torch.Tensor, w: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(x, weighted_grey(x, w), factor)


@register("desaturate")
def desaturate(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    w, factor = p.table("desaturate_method", WEIGHTS, 3), p.scalar("desaturate_factor")
    methods = p.values("desaturate_method")
    if "lightness" not in methods:  # the weighted sums: one fused pass
        return blend_to_weighted_grey(x, w, factor)
    is_light = torch.tensor([m == "lightness" for m in methods], device=x.device).view(-1, 1, 1, 1)
    light = (x.amax(dim=1, keepdim=True) + x.amin(dim=1, keepdim=True)) / 2
    return blend(x, select(is_light, light, weighted_grey(x, w)), factor)
