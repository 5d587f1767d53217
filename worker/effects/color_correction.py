"""Colour correction: brightness, contrast, temperature, gamma, saturation, all in float.

Same operations and order as the node pack (PIL brightness and contrast around the global BT.601 luma
mean, temperature gains, ``x ** gamma``, HLS saturation), without its two uint8 truncations
(decisions.md §3). HLS saturation scaling at fixed hue and lightness is a point-wise formula:
``out = L + (x - L) * min(k, 1 / S)``.
"""

from __future__ import annotations

import torch

from worker.effects.common import REC601, clamp01_, luma_mean
from worker.effects.registry import BatchParams, register


def _brightness_contrast(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    """A new tensor: ``clamp(x * (1 + b))``, then ``clamp(mean + c (x - mean))`` in place."""
    x = torch.mul(x, 1 + p.scalar("brightness") / 100).clamp_(0, 1)
    mean = luma_mean(x, REC601)
    c = 1 + p.scalar("contrast") / 100
    return x.lerp_(mean.expand_as(x), 1 - c).clamp_(0, 1)  # = mean + c (x - mean)


def _temperature_(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    t = p.scalar("temperature") / 100
    warm = t.clamp(min=0)
    cool = (-t).clamp(min=0)
    zero = torch.zeros_like(t)
    gains = torch.cat([1 + warm, 1 + 0.4 * warm, 1 + cool + zero], dim=1)
    return x.mul_(gains).clamp_(0, 1)


def _gamma_(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    """``x ** gamma`` in place, as ``exp(gamma log x)``: torch's pow with a per-item exponent tensor is
    not vectorised on the CPU (about 3x slower). ``log 0 = -inf`` and gamma > 0, so 0 stays 0."""
    gamma = p.scalar("gamma")
    if bool((gamma == 1).all()):
        return x
    return x.log_().mul_(gamma).exp_()


def _saturation_(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    k = 1 + p.scalar("saturation") / 100
    mx = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    light = (mx + mn) / 2
    denom = 1 - (2 * light - 1).abs()
    sat = mx.sub_(mn).div_(denom.clamp(min=1e-6)).mul_(denom > 1e-6)  # 0 where the HLS S is undefined
    scale = torch.minimum(k.expand_as(sat), sat.clamp_(min=1e-6).reciprocal_())
    return x.lerp_(light.expand_as(x), scale.neg_().add_(1))  # = light + (x - light) * scale


@register("color_correction")
def color_correction(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    x = _brightness_contrast(x, p)  # a new tensor; the other steps work on it in place
    x = _temperature_(x, p)
    x = _gamma_(x, p)
    return clamp01_(_saturation_(x, p))
