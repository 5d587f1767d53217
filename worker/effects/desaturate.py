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


def _weighted_gray(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    gray = x[:, 0:1] * w[:, 0:1]  # the weighted sum as three adds on single channels
    return gray.addcmul_(x[:, 1:2], w[:, 1:2]).addcmul_(x[:, 2:3], w[:, 2:3])


def blend_weighted(x: torch.Tensor, w: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Towards the weighted grey, for batches without the lightness method."""
    return clamp_finite_(torch.lerp(x, _weighted_gray(x, w).expand_as(x), factor))


def blend_any(x: torch.Tensor, w: torch.Tensor, is_light: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Towards the weighted grey, or ``(max + min) / 2`` for the items where ``is_light`` is 1."""
    light = (x.amax(dim=1, keepdim=True) + x.amin(dim=1, keepdim=True)) / 2
    gray = select(is_light, light, _weighted_gray(x, w))
    return clamp_finite_(torch.lerp(x, gray.expand_as(x), factor))


@register("desaturate")
def desaturate(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    w = p.table("desaturate_method", WEIGHTS, 3)
    factor = p.scalar("desaturate_factor")
    methods = p.values("desaturate_method")
    if "lightness" not in methods:
        return blend_weighted(x, w, factor)
    is_light = torch.tensor([float(m == "lightness") for m in methods], device=x.device).view(-1, 1, 1, 1)
    return blend_any(x, w, is_light, factor)
