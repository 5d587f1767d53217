"""Glow: add a blurred copy of the image, ``out = clamp(x + intensity * blur(x))``.

The blur keeps the node's kernel (decisions.md §2): ``k = 2r+1`` taps, sigma ``(k-1)/6`` in units of
the radius, i.e. pixel sigma ``r^2 / 3`` truncated at +-r (for large r it is nearly a box). It runs as
two 1-D passes (the kernel is separable) instead of the node's 2-D conv, which cost O(k^2) per pixel.
Changed (decisions.md §3): reflect padding instead of zeros, so borders glow like the interior.
"""

from __future__ import annotations

import torch

from worker.effects import fused
from worker.effects.filters import gaussian_blur_node
from worker.effects.registry import BatchParams, register


def glow_sigma(radius: int) -> float:
    """The node's sigma in units of the radius: (k - 1) / 6 with k = 2r + 1."""
    return (2 * radius) / 6.0


@register("glow", key_fields=("glow_radius",))
def glow(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    radius = int(p.key("glow_radius"))
    return add_glow(x, gaussian_blur_node(x, radius, glow_sigma(radius)), p.scalar("glow_intensity"))


@fused.kernel
def add_glow(x: torch.Tensor, blurred: torch.Tensor, intensity: torch.Tensor) -> torch.Tensor:
    """``clamp(x + intensity * blurred)``, eagerly in ``blurred`` (the filter's own buffer); finite."""
    return blurred.mul_(intensity).add_(x).clamp_(0.0, 1.0)
