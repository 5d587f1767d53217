"""Film grain: real, spatially correlated grain whose size follows ``grain_scale`` (decisions.md §4).

What the node did: per-pixel random gradients, i.e. white noise whose amplitude ripples with
``scale``; ``scale`` never changed the grain size, it used the global RNG and took ~0.9 s at 1024².

What Darkroom computes, per item, from that item's own seeded generator (one random call per item,
so an item never depends on its batch-mates and the same seed gives the same bytes):

1. **Grain size.** ``sigma_px = 0.35 * sqrt(grain_scale - 1) * size(style)`` is the Gaussian correlation
   radius of the noise in pixels: scale 1 is white (per-pixel) noise, the default 10 gives
   ``sigma ~ 1 px`` (grains ~2-3 px across), 100 gives ``sigma ~ 3.5 px``.
2. **Noise field** (fast: the random numbers and the blur live on a grid ``sigma_px`` pixels apart,
   never finer than the pixels). White noise on a grid of spacing ``max(1, sigma_px)`` pixels is
   blurred there by a Gaussian of ``min(sigma_px, 1)`` cells (<= 5 taps), scaled back to unit
   variance, then upsampled bilinearly to the image; the loss of variance between grid points (known
   exactly from the blur's lag-1 correlation) is divided out per row and column, so the field has
   unit variance everywhere. The white noise is uniform with unit variance (16-bit samples, four per
   64-bit word of one ``randint`` call per item): on CPU the generator is the bottleneck and this is
   ~3x cheaper than ``randn``; the blur makes the field near-Gaussian.
3. **Style** (``grain_style``): colour styles mix three such fields per pixel with a fixed channel
   correlation and per-channel gains (the grain's colour cast); tone-weighted styles scale the grain
   by a function of the pixel's Rec.709 luma ``L``:

   ============  =====  ======  ===================  ==========================================
   style         size   chroma  gains R, G, B        character
   ============  =====  ======  ===================  ==========================================
   modern        1.0    0       1, 1, 1              fine, monochrome, neutral
   analog        1.6    0.3     1.0, 0.96, 0.9       coarser and softer, slight colour
   kodak         1.25   0.45    1.12, 1.0, 0.8       warm colour grain, ``0.35 + 2.6 L (1 - L)``
   fuji          0.7    0.35    0.85, 1.1, 1.0       finer, cool/green colour grain
   cinematic     2.2    0.1     1, 1, 1              large, soft, ``1.15 - 0.95 L^2`` (shadows)
   newspaper     1.8    0       1, 1, 1              hard-edged +-1 dots on a 45-degree screen
   ============  =====  ======  ===================  ==========================================

   ``chroma`` is the share of independent per-channel noise (channel correlation ``1 - chroma^2``).
   newspaper thresholds the field plus a regular dot screen (pitch ``max(3, 4 sigma_px)``) to +-1.
4. ``out = clamp(x + 0.26 * grain_intensity * noise)``: at grain_scale 1 the added noise has standard
   deviation ``0.26 * intensity`` (modern; clipping aside), the node's calibrated amplitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from worker.effects import fused
from worker.effects.common import clamp_finite_, luma
from worker.effects.filters import pixel_gaussian_taps, shift_add_1d
from worker.effects.registry import BatchParams, register

BASE_STD = 0.26
SIZE_PER_SQRT_SCALE = 0.35
GRID_SIGMA = 1.0  # the noise's Gaussian sigma in cells of the coarse grid, once coarser than 1 px


@dataclass(frozen=True)
class Style:
    size: float
    chroma: float = 0.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    tone: str = "flat"  # flat | midtones | shadows
    halftone: bool = False


STYLES = {
    "modern": Style(1.0),
    "analog": Style(1.6, 0.3, (1.0, 0.96, 0.9)),
    "kodak": Style(1.25, 0.45, (1.12, 1.0, 0.8), tone="midtones"),
    "fuji": Style(0.7, 0.35, (0.85, 1.1, 1.0)),
    "cinematic": Style(2.2, 0.1, tone="shadows"),
    "newspaper": Style(1.8, halftone=True),
}


def grain_sigma(scale: float, style: Style) -> float:
    """Correlation radius of the grain in pixels (0 = white noise)."""
    return SIZE_PER_SQRT_SCALE * math.sqrt(max(scale - 1.0, 0.0)) * style.size


def channel_mix(style: Style) -> torch.Tensor:
    """3x3 matrix turning 3 independent unit fields into the style's correlated, tinted channels."""
    rho = 1.0 - style.chroma**2
    corr = torch.full((3, 3), rho, dtype=torch.float64).fill_diagonal_(1.0)
    return torch.diag(torch.tensor(style.gains, dtype=torch.float64)) @ torch.linalg.cholesky(corr)


def _bilinear_variance(n: int, spacing: float, rho1: float) -> torch.Tensor:
    """Variance of a bilinear upsample (align_corners=False, factor ``spacing``) of a unit field whose
    neighbours correlate by ``rho1``, at output positions 0..n-1 along one axis."""
    src = ((torch.arange(n, dtype=torch.float64) + 0.5) / spacing - 0.5).clamp_(min=0.0)
    t = src - src.floor()
    return (1 - t) ** 2 + t**2 + 2 * t * (1 - t) * rho1


def white_noise(generators, shape: tuple[int, ...], device) -> torch.Tensor:
    """``(B, *shape)`` independent uniform samples with zero mean and unit variance, item ``b`` drawn
    from ``generators[b]`` alone: one ``randint`` call per item gives 64 random bits per 4 samples
    (16-bit resolution), ~3x cheaper than ``randn`` on CPU where the generator is the bottleneck."""
    n = math.prod(shape)
    z = torch.empty((len(generators), *shape), device=device)
    for b, g in enumerate(generators):
        words = (n + 3) // 4
        bits = torch.randint(-(2**63), 2**63 - 1, (words,), generator=g, device=device, dtype=torch.int64)
        z[b].copy_(bits.view(torch.int16)[:n].view(shape))
    return z.add_(0.5).mul_(math.sqrt(3.0) / 32768.0)


def noise_field(
    p: BatchParams, channels: int, sigma_px: float, size: tuple[int, int], device, mix=None
) -> torch.Tensor:
    """Unit-variance Gaussian noise ``(B, channels, H, W)`` with correlation radius ``sigma_px``;
    ``mix`` (channels x channels) correlates and scales the channels (applied on the coarse grid)."""
    if len(p.generators) != p.batch_size:
        raise ValueError(f"grain needs one generator per item: got {len(p.generators)} for {p.batch_size}")
    h, w = size
    spacing = max(1.0, sigma_px / GRID_SIGMA)
    s_low = sigma_px / spacing
    rb = math.ceil(2 * s_low) if s_low > 0 else 0
    taps = pixel_gaussian_taps(s_low, rb)
    hl, wl = (h, w) if spacing == 1.0 else (math.ceil(h / spacing) + 1, math.ceil(w / spacing) + 1)
    z = white_noise(p.generators, (channels, hl + 2 * rb, wl + 2 * rb), device)
    if rb:
        z = shift_add_1d(shift_add_1d(z, taps, -1), taps, -2)
    energy = sum(t * t for t in taps)
    z = z.mul_(1.0 / energy) if mix is None else torch.matmul(mix / energy, z.flatten(2)).view(z.shape)
    if spacing == 1.0:
        return z
    rho1 = sum(a * b for a, b in zip(taps, taps[1:], strict=False)) / energy
    planes = z.reshape(-1, 1, *z.shape[-2:])  # 1-channel planes: torch's multi-channel path copies twice
    up = F.interpolate(planes, scale_factor=spacing, mode="bilinear", align_corners=False,
                       recompute_scale_factor=False)
    up = up.view(*z.shape[:2], *up.shape[-2:])[..., :h, :w]
    sy = _bilinear_variance(h, spacing, rho1).rsqrt_().to(device, torch.float32).view(h, 1)
    sx = _bilinear_variance(w, spacing, rho1).rsqrt_().to(device, torch.float32).view(1, w)
    return torch.mul(up, sy * sx)  # a new, contiguous buffer: up is a cropped view (fused kernels want dense)


def _halftone(field: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Hard +-1 dots: the noise field plus a 45-degree dot screen, thresholded at 0."""
    h, w = field.shape[-2:]
    omega = 2 * math.pi / max(3.0, 4.0 * sigma_px)
    rows = torch.cos(torch.arange(h, device=field.device, dtype=field.dtype) * omega).view(h, 1)
    cols = torch.cos(torch.arange(w, device=field.device, dtype=field.dtype) * omega).view(1, w)
    screen = (rows + cols).mul_(0.5)  # = cos(a(i+j)) cos(a(i-j)): a diagonal dot lattice
    return (field + screen >= 0).to(field.dtype).mul_(2.0).sub_(1.0)  # +-1 (torch.where is slow on CPU)


def tone_weight(x: torch.Tensor, tone: str) -> torch.Tensor | None:
    if tone == "flat":
        return None
    lum = luma(x)
    if tone == "midtones":
        return (lum * (1 - lum)).mul_(2.6).add_(0.35)
    return lum.square_().mul_(-0.95).add_(1.15)


def style_noise(x: torch.Tensor, p: BatchParams, style: Style, sigma_px: float) -> torch.Tensor:
    """The style's noise, ``(B, 1 or 3, H, W)``, before the intensity scale."""
    size = x.shape[-2:]
    if style.chroma == 0 and style.gains == (1.0, 1.0, 1.0):
        noise = noise_field(p, 1, sigma_px, size, x.device)
        return _halftone(noise, sigma_px) if style.halftone else noise
    mix = channel_mix(style).to(x.device, torch.float32)
    return noise_field(p, 3, sigma_px, size, x.device, mix=mix)


@register("grain", key_fields=("grain_style", "grain_scale"), needs_rng=True)
def grain(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    style = STYLES[p.key("grain_style")]
    sigma_px = grain_sigma(float(p.key("grain_scale")), style)
    noise = style_noise(x, p, style, sigma_px)
    return ADD_GRAIN[style.tone](x, noise, p.scalar("grain_intensity") * BASE_STD)


def _add_grain_kernel(tone: str) -> fused.Kernel:
    def run(x: torch.Tensor, noise: torch.Tensor, amp: torch.Tensor) -> torch.Tensor:
        weight = tone_weight(x, tone)
        if weight is not None:
            amp = weight.mul_(amp)
        return clamp_finite_(torch.addcmul(x, noise, amp))

    return fused.Kernel(run, name=f"grain[{tone}]")


ADD_GRAIN = {tone: _add_grain_kernel(tone) for tone in ("flat", "midtones", "shadows")}
