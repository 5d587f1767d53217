"""Colour correction: brightness, contrast, temperature, gamma, saturation, all in float.

Same operations and order as the node pack (PIL brightness and contrast around the global BT.601 luma
mean, temperature gains, ``x ** gamma``, HLS saturation), without its two uint8 truncations
(decisions.md §3). HLS saturation scaling at fixed hue and lightness is a point-wise formula:
``out = L + (x - L) * min(k, 1 / S)``.
"""

from __future__ import annotations

import functools

import torch

from worker.effects import fused
from worker.effects.common import REC601, clamp_finite_, luma_mean
from worker.effects.registry import BatchParams, register


def _neutral(p: BatchParams, name: str, value: float) -> bool:
    """Every item of the batch leaves this step's setting at its neutral value (the step is skipped)."""
    return all(v == value for v in p.values(name))


def _brightness_(x: torch.Tensor, brightness: torch.Tensor) -> torch.Tensor:
    return x.mul_(1 + brightness / 100).clamp_(0, 1)


def _contrast_(x: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """``clamp(mean + c (x - mean))`` around the Rec.601 luma mean of the (brightened) image."""
    mean = luma_mean(x, REC601)
    c = 1 + contrast / 100
    return x.lerp_(mean.expand_as(x), 1 - c).clamp_(0, 1)


def _temperature_(x: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    t = temperature / 100
    warm = t.clamp(min=0)
    cool = (-t).clamp(min=0)
    zero = torch.zeros_like(t)
    gains = torch.cat([1 + warm, 1 + 0.4 * warm, 1 + cool + zero], dim=1)
    return x.mul_(gains).clamp_(0, 1)


def _gamma_(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``x ** gamma`` in place, as ``exp(gamma log x)``: torch's pow with a per-item exponent tensor is
    not vectorised on the CPU (about 3x slower). ``log 0 = -inf`` and gamma > 0, so 0 stays 0."""
    return x.log_().mul_(gamma).exp_()


def _saturation_(x: torch.Tensor, saturation: torch.Tensor) -> torch.Tensor:
    k = 1 + saturation / 100
    mx = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    light = (mx + mn) / 2
    denom = 1 - (2 * light - 1).abs()
    sat = mx.sub_(mn).div_(denom.clamp(min=1e-6)).mul_(denom > 1e-6)  # 0 where the HLS S is undefined
    scale = torch.minimum(k.expand_as(sat), sat.clamp_(min=1e-6).reciprocal_())
    return x.lerp_(light.expand_as(x), scale.neg_().add_(1))  # = light + (x - light) * scale


# (step, parameter, its neutral value), in the node's order. A step whose parameter is neutral for every
# item is skipped: it would leave the image as it is (saturation 0 up to float rounding, < 1e-6).
STEPS = (
    (_brightness_, "brightness", 0), (_contrast_, "contrast", 0), (_temperature_, "temperature", 0),
    (_gamma_, "gamma", 1), (_saturation_, "saturation", 0),
)


@functools.cache
def steps_kernel(active: tuple[bool, ...]) -> fused.Kernel:
    """The steps marked active in ``active`` (one flag per entry of STEPS), in order, on a copy, as one
    kernel: its arguments are the image and the active steps' parameters. Compiled, a subset fuses into
    at most two loops (the contrast's mean, then the rest)."""
    chosen = [step for (step, _, _), on in zip(STEPS, active, strict=True) if on]

    def run(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        x = x.clone()  # the steps work in place on the effect's own copy
        for step, value in zip(chosen, values, strict=True):
            x = step(x, value)
        return clamp_finite_(x)

    names = "+".join(name for (_, name, _), on in zip(STEPS, active, strict=True) if on)
    return fused.Kernel(run, name=f"color_correction[{names}]")


@register("color_correction")
def color_correction(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    active = tuple(not _neutral(p, name, neutral) for _, name, neutral in STEPS)
    if not any(active):
        return x
    values = [p.scalar(name) for (_, name, _), on in zip(STEPS, active, strict=True) if on]
    return steps_kernel(active)(x, *values)
