"""Blur: the node packs' Gaussian, or a Kuwahara (edge-preserving) filter.

**gaussian** keeps the node's kernel (decisions.md §2): ``k = 2r+1`` taps on ``linspace(-1, 1, k)``,
``exp(-t^2 / (2 sigma^2))`` normalised, so ``blur_sigma`` is in units of the radius (pixel sigma
``sigma * r``) and the support is cut at +-r. The kernel is exactly separable, so it runs as two 1-D
passes (the normalised 1-D factor of the node's 2-D kernel) instead of one 2-D conv. Changed: borders
are reflect-padded instead of zero-padded, so they no longer darken (decisions.md §3). Radius 0 passes
the image through.

**kuwahara**: four ``(r+1) x (r+1)`` windows with the pixel at one corner; each gives a box mean of
RGB, of grey ``g`` and of ``g^2``; ``var = E[g^2] - E[g]^2``; the output is the mean colour of the
window with the smallest variance (the first on ties, in the order down-right, up-right, down-left,
up-left). All four windows are the same box sum read at four offsets, so one box sum over 5 channels
(binary doubling, O(log r) per pixel) serves them all; the winner is tracked as an offset per pixel
and its colour gathered once, with no (4, H, W, 3) stack. Changed (decisions.md §3): grey is true RGB
luma 0.299/0.587/0.114 (the node applied BGR weights to RGB data), reflect padding, float throughout
(no uint8 truncation), and batches work (the node crashed on B > 1).
"""

from __future__ import annotations

import torch

from worker.effects.common import REC601, clamp_finite_, luma, pad_reflect
from worker.effects.filters import box_sum_valid, clamped_like_input, gaussian_blur_node, like_input
from worker.effects.registry import BatchParams, register


def gaussian(x: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    if radius <= 0:
        return x
    return clamped_like_input(gaussian_blur_node(x, radius, sigma), x)


def _window_sums(x: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over every (r+1)x(r+1) window of the reflect-padded image, indexed by the window's top-left
    padded pixel: colour ``(B, 3, H+r, W+r)`` and ``n^2 var = n S(g^2) - S(g)^2`` ``(B, 1, H+r, W+r)``
    with ``n = (r+1)^2``."""
    k = radius + 1
    g = luma(x, REC601)
    stack = pad_reflect(torch.cat([x, g, g.square()], dim=1), radius, radius)
    s = box_sum_valid(box_sum_valid(stack, k, -1), k, -2)
    var = s[:, 4:5] * float(k * k) - s[:, 3:4].square()
    return s[:, 0:3], var


def kuwahara(x: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return x
    b, _, h, w = x.shape
    r = radius
    colour, var = _window_sums(x, r)
    row_len = w + r
    # Windows as (row, col) offsets into the sums grid, in tie-break order: down-right, up-right,
    # down-left, up-left. Track the winner's offset per pixel, then gather its colour once.
    (a0, b0), *others = ((r, r), (0, r), (r, 0), (0, 0))
    best_var = var[..., a0 : a0 + h, b0 : b0 + w]
    offset = torch.full((b, 1, h, w), a0 * row_len + b0, dtype=torch.int32, device=x.device)
    for a, c in others:
        v = var[..., a : a + h, c : c + w]
        offset.masked_fill_(v < best_var, a * row_len + c)
        best_var = torch.minimum(best_var, v)  # equal values on ties, so the first window stays
    pixel = torch.arange(h, device=x.device).view(h, 1) * row_len + torch.arange(w, device=x.device)
    index = offset.add_(pixel.to(torch.int32)).view(b, 1, h * w).long()
    flat = colour.reshape(b, 3, -1)
    out = torch.gather(flat, 2, index.expand(b, 3, h * w)).view(b, 3, h, w)
    return like_input(clamp_finite_(out.mul_(1.0 / (r + 1) ** 2)), x)


@register("blur", key_fields=("blur_type", "blur_radius", "blur_sigma"))
def blur(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    radius = int(p.key("blur_radius"))
    if p.key("blur_type") == "kuwahara":
        return kuwahara(x, radius)
    return gaussian(x, radius, float(p.key("blur_sigma")))
