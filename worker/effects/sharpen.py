"""Sharpen: basic (the node's box-kernel sharpen), smart (bilateral denoise + sharpness) or AMD CAS.

**basic** keeps the node's formula (decisions.md §2): its kernel is ``alpha * (k^2 delta - ones)``
with ``k = 2r+1``, i.e. ``out = clamp(alpha * (x + k^2 (x - boxmean_k(x))))``; alpha also scales
brightness and the detail gain ``k^2`` is large on purpose. The box mean is two 1-D passes (O(k) per
pixel, not the node's O(k^2) 2-D conv). Changed: reflect padding instead of zeros, so a flat image maps
to ``alpha * flat`` everywhere, borders included (the node brightened them).

**smart** (ComfyUI_essentials' ImageSmartSharpen+): ``blurred`` = OpenCV bilateral filter with
``d = noise_radius``, ``sigma_color = max(1 - preserve_edges, 0.05)`` (``preserve_edges = 0`` gives 0,
which OpenCV treats as 1), ``sigma_space = 0.3((d-1)/2 - 1) + 0.8``; identity for ``d <= 1``.
``sharp = clamp(D + strength (x - D))`` with ``D`` the 3x3 mean weighted ``[[1,1,1],[1,5,1],[1,1,1]]/13``
(kornia's sharpness); ``out = clamp(ratio sharp + (1 - ratio) blurred)``. Changed: ``D`` uses reflect
padding at the 1-pixel border, where kornia copied the input (so border pixels are now sharpened
too). On CPU the bilateral runs in cv2 per image; on other devices in torch (``filters.bilateral``).

**cas** (essentials' ImageCASharpening+, a port of AMD FidelityFX CAS), per channel on the 3x3
neighbourhood (cross b, d, e, f, h; diagonals a, c, g, i): ``mn = min(cross) + min(diag)``,
``mx = max(cross) + max(diag)`` (the port's clamps to [0, 1] are no-ops on inputs in [0, 1]),
``amp = sqrt(min(mn, 2 - mx) / (mx + 1e-5))``, ``w = -amp (1/8 + amount (1/5 - 1/8))``,
``out = clamp((w (b + d + f + h) + e) / (1 + 4w))``. Since ``mn <= mx``, ``amp <= 1`` and the
denominator stays >= 0.2. Changed: reflect padding instead of zeros (the node left border pixels
unsharpened), and min/max come from shared pair-wise minima of shifted slices instead of 9 stacked
copies.
"""

from __future__ import annotations

import functools

import torch

from worker.effects import fused
from worker.effects.common import clamp01_, clamp_finite_, pad_reflect
from worker.effects.filters import FILTER_BAND_ROWS, bilateral, box_sum_valid, like_input
from worker.effects.registry import BatchParams, register


def basic(x: torch.Tensor, radius: int, alpha: torch.Tensor) -> torch.Tensor:
    """``alpha ((1 + k^2) x - k^2 mean) = alpha ((1 + k^2) x - S)`` with S the k x k box sum, a band of
    rows at a time so each band's passes stay in cache (the same bits; 1024² r1 on one thread 9 -> 4 ms,
    r15 31 -> 10 ms). Small radii run as one fused stencil once it is compiled (:func:`stencil`)."""
    k = 2 * radius + 1
    xp = pad_reflect(x, radius, radius)
    if radius <= STENCIL_MAX_RADIUS:
        out = stencil(radius).try_compiled(xp, alpha)
        if out is not None:
            return out
    out = torch.empty_like(x)
    gain = alpha * float(1 + k * k)
    h = x.shape[-2]
    for top in range(0, h, FILTER_BAND_ROWS):
        rows = min(FILTER_BAND_ROWS, h - top)
        box = box_sum_valid(box_sum_valid(xp[..., top : top + rows + 2 * radius, :], k, -1), k, -2)
        band = torch.mul(box, -alpha, out=out[..., top : top + rows, :])
        clamp_finite_(band.addcmul_(x[..., top : top + rows, :], gain))
    return out


STENCIL_MAX_RADIUS = 2  # up to 5 x 5: the compiled stencil reads each pixel k^2 times from cache


@functools.cache
def stencil(radius: int) -> fused.Kernel:
    """:func:`basic` as one stencil over the reflect-padded image ``xp``, for compiling: fused, it reads
    the padded image once (its k^2 taps from cache) and writes the result once. Eagerly it would be 2k
    image-sized passes, so :func:`basic` runs its banded form until this is compiled. The padding stays
    outside: reflect indexing inside the loop measured 5x slower than a padded copy."""
    k = 2 * radius + 1

    def run(xp: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        h, w = xp.shape[-2] - 2 * radius, xp.shape[-1] - 2 * radius
        across = sum(xp[..., :, j : j + w] for j in range(k))  # the k x k box sum, rows then columns
        box = sum(across[..., i : i + h, :] for i in range(k))
        x = xp[..., radius : radius + h, radius : radius + w]
        return clamp_finite_(torch.addcmul(box * -alpha, x, alpha * float(1 + k * k)))

    return fused.Kernel(run, name=f"sharpen_basic[r{radius}]")


def smart_params(noise_radius: int, preserve_edges: float) -> tuple[float, float]:
    """(sigma_color, sigma_space) as the node derives them."""
    sigma_color = max(1.0 - preserve_edges, 0.05) if preserve_edges > 0 else 1.0
    sigma_space = 0.3 * ((noise_radius - 1) * 0.5 - 1) + 0.8
    return sigma_color, sigma_space


def sum3x3(x: torch.Tensor) -> torch.Tensor:
    """Sum over each pixel's 3x3 neighbourhood, reflect borders, as four adds of shifted slices."""
    h, w = x.shape[-2:]
    xp = pad_reflect(x, 1, 1)
    cols = xp[..., 0:h, :] + xp[..., 1 : h + 1, :]
    cols.add_(xp[..., 2 : h + 2, :])
    out = cols[..., 0:w] + cols[..., 1 : w + 1]
    return out.add_(cols[..., 2 : w + 2])


def sharpness(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """kornia's sharpness with a reflect border: ``clamp(D + s (x - D))``, D = 3x3 weighted mean."""
    d = sum3x3(x).add_(x, alpha=4.0).div_(13.0).clamp_(0.0, 1.0)
    return d.lerp_(x, strength).clamp_(0.0, 1.0)


def smart(x: torch.Tensor, p: BatchParams, use_cv2: bool | None = None) -> torch.Tensor:
    d = int(p.key("noise_radius"))
    sharp = sharpness(x, p.scalar("smart_sharpen_strength"))
    if d <= 1:
        blurred = x
    else:
        sigmas = smart_params(d, float(p.key("preserve_edges")))
        blurred = like_input(bilateral(x, d, *sigmas, use_cv2=use_cv2), x)
    return clamp01_(torch.lerp(blurred, sharp, p.scalar("smart_sharpen_ratio")))


CAS_BAND_PIXELS = 1 << 17  # per band (whole batch): its ~10 temporaries stay in cache, ~2x faster


def _cas_band(xp: torch.Tensor, x: torch.Tensor, amount: torch.Tensor, out: torch.Tensor) -> None:
    """CAS on one band of rows: ``xp`` is the band plus one reflected row/column on each side."""
    h, w = x.shape[-2:]
    above, below = xp[..., 0:h, :], xp[..., 2 : h + 2, :]  # rows of a,b,c and g,h,i (padded width)
    left, right = xp[..., 1 : h + 1, 0:w], xp[..., 1 : h + 1, 2 : w + 2]  # d and f

    def min_max(op) -> torch.Tensor:
        v = op(above, below)  # per padded column: op(b, h) at the centre column, corners beside it
        diag = op(v[..., 0:w], v[..., 2 : w + 2])
        cross = op(left, right)
        op(cross, v[..., 1 : w + 1], out=cross)
        op(cross, x, out=cross)
        return cross.add_(diag)

    mn = min_max(torch.minimum)
    mx = min_max(torch.maximum)
    amp = torch.minimum(mn, torch.rsub(mx, 2.0), out=mn).div_(mx.add_(1e-5)).sqrt_()
    wgt = amp.mul_(-(0.125 + amount * (0.2 - 0.125)))
    ring = (above[..., 1 : w + 1] + below[..., 1 : w + 1]).add_(left).add_(right)
    numer = torch.addcmul(x, ring, wgt, out=ring)
    den = torch.mul(wgt, 4.0, out=mx).add_(1.0)
    torch.div(numer, den, out=out)


def cas(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    band = max(4, CAS_BAND_PIXELS // (b * w))
    xp = pad_reflect(x, 1, 1)
    out = torch.empty_like(x)
    for top in range(0, h, band):
        rows = min(band, h - top)
        _cas_band(xp[..., top : top + rows + 2, :], x[..., top : top + rows, :], amount,
                  out[..., top : top + rows, :])
    return clamp01_(out)


@register("sharpen", key_fields=("sharpen_mode", "sharpen_radius", "noise_radius", "preserve_edges"))
def sharpen(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    mode = p.key("sharpen_mode")
    if mode == "smart":
        return smart(x, p)
    if mode == "cas":
        return cas(x, p.scalar("cas_amount"))
    return basic(x, int(p.key("sharpen_radius")), p.scalar("sharpen_alpha"))
