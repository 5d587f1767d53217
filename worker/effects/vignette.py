"""Vignette: linear radial darkening; strength above 1 acts as 1 (node pack behaviour, kept).

The node pack's grid had its axes swapped and crashed on non-square images; this one is built on
(H, W) properly (decisions.md §3).
"""

from __future__ import annotations

import functools

import torch

from worker.effects import fused
from worker.effects.common import clamp_finite_
from worker.effects.registry import BatchParams, register


@functools.lru_cache(maxsize=8)
def radius_map(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Distance from the centre on a [-1, 1] grid, normalised to 1 at the corners: ``(1, 1, H, W)``.
    Cached per size and device (a worker sees few sizes); callers must not write into it."""
    ys = torch.linspace(-1, 1, h, device=device).view(h, 1)
    xs = torch.linspace(-1, 1, w, device=device).view(1, w)
    r = torch.sqrt(ys * ys + xs * xs)
    peak = r.max()
    return (r / peak if peak > 0 else r).view(1, 1, h, w)


@fused.kernel
def darken(x: torch.Tensor, radius: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    v = (radius * strength.clamp(0, 1)).neg_().add_(1)
    return clamp_finite_(torch.mul(x, v))


@register("vignette")
def vignette(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    return darken(x, radius_map(x.shape[-2], x.shape[-1], x.device), p.scalar("vignette_strength"))
