"""Dodge & burn: lighten (dodge) or darken (burn) by a mask times an intensity, eight modes.

With ``m`` the mask and ``i`` the intensity (per item):

* dodge ``x / (1 - m*i + 1e-7)``; color_dodge ``x / (1 - m*i)`` where ``m < 1``, else ``x``;
  linear_dodge ``x + m*i``;
* burn ``1 - (1 - x) / (m*i + 1e-7)``; color_burn ``1 - (1 - x) / (m*i)`` where ``m*i > 0``, else ``x``;
  linear_burn ``x - m*i``;
* dodge_and_burn = burn(dodge(x)); burn_and_dodge = dodge(burn(x)).

The formulas are the node pack's. What Darkroom changes (decisions.md §3):

* **Mask.** fal exposes none, so the mask is the Rec.709 luminance of the effect's *input*, clamped to
  [0, 1]; the combined modes use this same mask for both steps.
* **Clamping.** The node returns dodge, burn and the color_* modes unclamped (values like 1e4 and -1e5
  flowed into later effects). Every output here is clamped to [0, 1], and so is the intermediate image
  between the two steps of dodge_and_burn / burn_and_dodge.
* **Division guards.** Nothing can be NaN or infinite (one clamp pass suffices). dodge and burn keep
  the node's +1e-7 epsilon, so their denominators are at least 1e-7 (the mask is clamped to [0, 1])
  and the clamp does the rest:
  burn with ``m*i = 0`` turns every pixel below 1 black (the node's -1e7, clamped), which also means
  burn and the combined modes have no neutral intensity. color_burn leaves ``x`` unchanged where
  ``m*i = 0`` (the node did that only for ``m = 0``; for ``i = 0`` it returned -inf everywhere), so
  intensity 0 is neutral; its denominator is floored at 1e-7 like burn's. color_dodge leaves ``x``
  unchanged where ``m = 1`` like the node, with its denominator floored at 1e-7 as well.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from worker.effects import fused
from worker.effects.common import REC709, clamp_finite_, luma, select
from worker.effects.registry import BatchParams, register

EPS = 1e-7

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def dodge(x: torch.Tensor, m: torch.Tensor, mi: torch.Tensor) -> torch.Tensor:
    return clamp_finite_(torch.mul(x, (1 - mi + EPS).reciprocal_()))


def burn(x: torch.Tensor, m: torch.Tensor, mi: torch.Tensor) -> torch.Tensor:
    # 1 - (1 - x) / d as (x - 1) * (1 / d) + 1: the divisions run on the one-channel mask only
    return clamp_finite_((x - 1).mul_((mi + EPS).reciprocal_()).add_(1))


def color_dodge(x: torch.Tensor, m: torch.Tensor, mi: torch.Tensor) -> torch.Tensor:
    return clamp_finite_(select(m < 1, x * (1 - mi).clamp(min=EPS).reciprocal_(), x))


def color_burn(x: torch.Tensor, m: torch.Tensor, mi: torch.Tensor) -> torch.Tensor:
    burned = (x - 1).mul_(mi.clamp(min=EPS).reciprocal_()).add_(1)
    return clamp_finite_(select(mi > 0, burned, x))


def linear_dodge(x: torch.Tensor, m: torch.Tensor, mi: torch.Tensor) -> torch.Tensor:
    return clamp_finite_(x + mi)


def linear_burn(x: torch.Tensor, m: torch.Tensor, mi: torch.Tensor) -> torch.Tensor:
    return clamp_finite_(x - mi)


MODES: dict[str, tuple[Step, ...]] = {
    "dodge": (dodge,),
    "burn": (burn,),
    "dodge_and_burn": (dodge, burn),
    "burn_and_dodge": (burn, dodge),
    "color_dodge": (color_dodge,),
    "color_burn": (color_burn,),
    "linear_dodge": (linear_dodge,),
    "linear_burn": (linear_burn,),
}


def _mode_kernel(mode: str, steps: tuple[Step, ...]) -> fused.Kernel:
    def run(x: torch.Tensor, intensity: torch.Tensor) -> torch.Tensor:
        m = luma(x, REC709).clamp(0, 1)
        mi = m * intensity
        for step in steps:
            x = step(x, m, mi)  # each step clamps, so the combined modes clamp between their two steps
        return x

    return fused.Kernel(run, name=f"dodge_burn[{mode}]")


KERNELS = {mode: _mode_kernel(mode, steps) for mode, steps in MODES.items()}


@register("dodge_burn", key_fields=("dodge_burn_mode",))
def dodge_burn(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    return KERNELS[p.key("dodge_burn_mode")](x, p.scalar("dodge_burn_intensity"))
