"""Dissolve: each pixel keeps the original with probability ``dissolve_factor``, else shows the other image.

``out = x * mask + other * (1 - mask)`` with ``mask = uniform < factor``. Two deliberate changes from
the node pack (decisions.md §3 and §5):

* the mask is drawn once per pixel and shared by R, G and B, so a pixel is wholly one image or the
  other (the node drew one per channel, which gave coloured speckle instead of a dissolve);
* the noise comes from each item's own seeded generator (one ``torch.rand`` call per item), so an
  item's output is reproducible and never depends on its batch-mates; the node used the global RNG.

The second image arrives already resized to the input's size (decisions.md §6) as
``p.images["dissolve"]``.
"""

from __future__ import annotations

import torch

from worker.effects import fused
from worker.effects.common import clamp_finite_, select
from worker.effects.registry import BatchParams, register


def _other_image(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    other = p.images.get("dissolve")
    if other is None:
        raise ValueError("dissolve needs a second image: pass it as images['dissolve'] (dissolve_image_url)")
    if other.shape != x.shape:
        raise ValueError(
            f"dissolve image has shape {tuple(other.shape)}, expected {tuple(x.shape)}: "
            "resize it to the input's size first"
        )
    return other


def _pixel_noise(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    """Uniform [0, 1) noise of shape ``(B, 1, H, W)``: one draw per pixel from each item's generator."""
    if len(p.generators) != x.shape[0]:
        raise ValueError(f"dissolve needs one generator per item: got {len(p.generators)} for {x.shape[0]}")
    h, w = x.shape[-2:]
    draws = [torch.rand((1, h, w), generator=g, device=x.device, dtype=x.dtype) for g in p.generators]
    return torch.stack(draws)


@fused.kernel
def keep_or_replace(
    x: torch.Tensor, other: torch.Tensor, noise: torch.Tensor, factor: torch.Tensor
) -> torch.Tensor:
    """``x`` where the pixel's noise is below the factor, else ``other``."""
    return clamp_finite_(select(noise < factor, x, other))


@register("dissolve", needs_rng=True, extra_images=("dissolve",))
def dissolve(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    other = _other_image(x, p)
    return keep_or_replace(x, other, _pixel_noise(x, p), p.scalar("dissolve_factor"))
