"""Colour correction: brightness, contrast, temperature, gamma, saturation, all in float.

Same operations and order as the node pack (PIL brightness and contrast around the global BT.601 luma
mean, temperature gains, ``x ** gamma``, HLS saturation), without its two uint8 truncations
(decisions.md §3). HLS saturation scaling at fixed hue and lightness is a point-wise formula:
``out = L + (x - L) * min(k, 1 / S)``.
"""

from __future__ import annotations

import torch

from worker.effects.common import REC601, clamp01, luma
from worker.effects.registry import BatchParams, register


def _brightness_contrast(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    x = (x * (1 + p.scalar("brightness") / 100)).clamp_(0, 1)
    mean = luma(x, REC601).mean(dim=(1, 2, 3), keepdim=True)
    c = 1 + p.scalar("contrast") / 100
    return (mean + c * (x - mean)).clamp_(0, 1)


def _temperature(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    t = p.scalar("temperature") / 100
    warm = t.clamp(min=0)
    cool = (-t).clamp(min=0)
    zero = torch.zeros_like(t)
    gains = torch.cat([1 + warm, 1 + 0.4 * warm, 1 + cool + zero], dim=1)
    return (x * gains).clamp_(0, 1)


def _saturation(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    k = 1 + p.scalar("saturation") / 100
    mx = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    light = (mx + mn) / 2
    denom = 1 - (2 * light - 1).abs()
    sat = torch.where(denom > 1e-6, (mx - mn) / denom.clamp(min=1e-6), torch.zeros_like(denom))
    scale = torch.minimum(k.expand_as(sat), 1 / sat.clamp(min=1e-6))
    return light + (x - light) * scale


@register("color_correction")
def color_correction(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    x = _brightness_contrast(x, p)
    x = _temperature(x, p)
    x = x.pow(p.scalar("gamma"))
    return clamp01(_saturation(x, p))
