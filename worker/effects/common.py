"""Small tensor helpers shared by the effects (no effect registers here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

REC709 = (0.2126, 0.7152, 0.0722)
REC601 = (0.299, 0.587, 0.114)


def luma(x: torch.Tensor, weights: tuple[float, float, float] = REC709) -> torch.Tensor:
    """Weighted sum of the RGB channels: ``(B, 3, H, W) -> (B, 1, H, W)``."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return r * weights[0] + g * weights[1] + b * weights[2]


def clamp01(x: torch.Tensor) -> torch.Tensor:
    """Finite and in [0, 1]: NaN becomes 0, +inf 1, -inf 0."""
    return torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)


def clamp01_(y: torch.Tensor) -> torch.Tensor:
    """``clamp01`` in place, for temporaries the caller owns (saves an image-sized allocation)."""
    return y.nan_to_num_(nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)


def clamp_finite_(y: torch.Tensor) -> torch.Tensor:
    """``y`` clamped to [0, 1] in place, for results finite by construction (finite inputs in [0, 1],
    no division, log or root): one pass instead of :func:`clamp01_`'s two."""
    return y.clamp_(0.0, 1.0)


def select(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.where(mask, a, b)`` for finite float tensors, as a lerp by the 0/1 mask (exact: torch's
    lerp returns its end points unchanged at weights 0 and 1). On the CPU it measured about 2.5x faster
    than ``torch.where`` (a 1024² RGB image, comparison included: 2.7-3.6 against 6.5-9 ms)."""
    return torch.lerp(b, a, mask.to(a.dtype))


def luma_mean(x: torch.Tensor, weights: tuple[float, float, float]) -> torch.Tensor:
    """Mean of :func:`luma` per item, ``(B, 1, 1, 1)``, from the channel means (one read of ``x``, no
    grey image)."""
    means = x.mean(dim=(2, 3))  # float32 (a float64 accumulator is 70x slower on the CPU)
    w = torch.tensor(weights, dtype=means.dtype, device=x.device)
    return (means * w).sum(dim=1).view(-1, 1, 1, 1)


def pad_reflect(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Reflect-pad H by ``ph`` and W by ``pw``, also when the pad exceeds the image (falls back to
    replicate where reflection is impossible, e.g. a 1-pixel side)."""
    if ph == 0 and pw == 0:
        return x
    h, w = x.shape[-2:]
    if ph < h and pw < w:
        return F.pad(x, (pw, pw, ph, ph), mode="reflect")
    # Large pads: reflect indices with period 2(n-1) ("reflect_101"), replicate for n == 1.
    rows = _reflect_index(h, ph, x.device)
    return x.index_select(-2, rows).index_select(-1, _reflect_index(w, pw, x.device))


def _reflect_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    idx = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)
