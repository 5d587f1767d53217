"""Plain torch versions of the ComfyUI node packs' effect formulas, for benchmarks/effects.py.

What a ComfyUI user runs: a ``(B, H, W, C)`` float image, each formula written the direct way (2-D
convolutions where the node convolves, ``torch.where``, ``torch.roll``, Python-float parameters). The
maths is the node packs' as docs/effects.md describes it ("Darkroom vs. the node pack"), without the
node packs' bugs that would only slow them down or crash (square-only grids, uint8 round trips), so the
comparison is Darkroom's kernels against the same formula in plain torch. Each function takes the
image, the second image (dissolve) and the effect's enabled parameters from benchmarks/effects.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REC709 = (0.2126, 0.7152, 0.0722)
REC601 = (0.299, 0.587, 0.114)


def _weighted(x: torch.Tensor, w: tuple[float, float, float]) -> torch.Tensor:
    return x[..., 0] * w[0] + x[..., 1] * w[1] + x[..., 2] * w[2]


def _conv2d_same(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 2-D convolution with zero padding, as the nodes do it (BHWC -> BCHW -> BHWC)."""
    c = x.shape[-1]
    k = kernel.shape[-1]
    weight = kernel.expand(c, 1, k, k)
    y = F.conv2d(x.permute(0, 3, 1, 2), weight, padding=k // 2, groups=c)
    return y.permute(0, 2, 3, 1)


def _node_gaussian(radius: int, sigma: float) -> torch.Tensor:
    k = 2 * radius + 1
    t = torch.linspace(-1, 1, k)
    g = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma * sigma))
    return g / g.sum()


def grain(x, other, p):
    # the node's grain: per-pixel white noise, std about 0.26 x intensity (effects.md)
    return torch.clamp(x + torch.randn_like(x) * (0.26 * p["grain_intensity"]), 0, 1)


def color_correction(x, other, p):
    x = torch.clamp(x * (1 + p["brightness"] / 100), 0, 1)
    mean = _weighted(x, REC601).mean()
    x = torch.clamp(mean + (1 + p["contrast"] / 100) * (x - mean), 0, 1)
    t = p["temperature"] / 100
    gains = torch.tensor([1 + max(t, 0), 1 + 0.4 * max(t, 0), 1 + max(-t, 0)])
    x = torch.clamp(x * gains, 0, 1) ** p["gamma"]
    mx, mn = x.amax(-1, keepdim=True), x.amin(-1, keepdim=True)
    light = (mx + mn) / 2
    denom = 1 - torch.abs(2 * light - 1)
    sat = torch.where(denom > 1e-6, (mx - mn) / denom.clamp(min=1e-6), torch.zeros_like(denom))
    scale = torch.minimum(torch.full_like(sat, 1 + p["saturation"] / 100), 1 / sat.clamp(min=1e-6))
    return torch.clamp(light + (x - light) * scale, 0, 1)


def chromatic_aberration(x, other, p):
    chans = []
    for c, name in enumerate(("red", "green", "blue")):
        shift = p.get(f"{name}_shift", 0)
        vertical = p.get(f"{name}_direction", "horizontal") == "vertical"
        chans.append(torch.roll(x[..., c], shifts=-shift if vertical else shift, dims=1 if vertical else 2))
    return torch.stack(chans, dim=-1)


def blur(x, other, p):
    r = p["blur_radius"]
    return torch.clamp(_conv2d_same(x, _node_gaussian(r, p["blur_sigma"])), 0, 1)


def vignette(x, other, p):
    h, w = x.shape[1:3]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    r = torch.sqrt(xs**2 + ys**2)
    v = 1 - r / r.max() * min(p["vignette_strength"], 1.0)
    return torch.clamp(x * v[None, :, :, None], 0, 1)


def parabolize(x, other, p):
    return torch.clamp(p["parabolize_coeff"] * (x - p["vertex_x"]) ** 2 + p["vertex_y"], 0, 1)


def tint(x, other, p):
    gray = _weighted(x, (0.2989, 0.5870, 0.1140))[..., None]
    tinted = gray * torch.tensor([1.0, 0.8, 0.6])  # sepia
    s = p["tint_strength"]
    return s * tinted + (1 - s) * x


def dissolve(x, other, p):
    mask = (torch.rand_like(x) < p["dissolve_factor"]).float()
    return x * mask + other * (1 - mask)


def dodge_burn(x, other, p):
    mi = _weighted(x, REC709)[..., None].clamp(0, 1) * p["dodge_burn_intensity"]
    x = x / (1 - mi + 1e-7)
    return 1 - (1 - x) / (mi + 1e-7)


def glow(x, other, p):
    r = p["glow_radius"]
    return torch.clamp(x + p["glow_intensity"] * _conv2d_same(x, _node_gaussian(r, 2 * r / 6)), 0, 1)


def sharpen(x, other, p):
    k = 2 * p["sharpen_radius"] + 1
    kernel = -torch.ones(k, k)
    kernel[k // 2, k // 2] = k * k
    return torch.clamp(_conv2d_same(x, kernel * p["sharpen_alpha"]), 0, 1)


def solarize(x, other, p):
    return torch.where(x > p["solarize_threshold"], 1 - x, x)


def desaturate(x, other, p):
    gray = _weighted(x, REC709)[..., None]
    f = p["desaturate_factor"]
    return x + f * (gray - x)


FORMULAS = {f.__name__: f for f in (grain, color_correction, chromatic_aberration, blur, vignette, parabolize,
                                     tint, dissolve, dodge_burn, glow, sharpen, solarize, desaturate)}
