"""Filter helpers shared by blur, glow, sharpen and grain (no effect registers here).

* Gaussian kernels (the node's, in units of the radius) run as two 1-D passes of shifted
  multiply-adds on the input's own (contiguous) layout: O(k) per pixel instead of the node's O(k^2).
  Measured at 1024² against two depthwise 1-D convolutions on a channels-last copy (oneDNN): radius 3,
  12 vs 25 ms on one thread and 6.6 vs 11 ms on two; radius 31, 30 vs 40 ms on two; the same bits.
  Where fused kernels are on (worker.effects.fused), both passes compile into one loop per tap count.
* Box sums (basic sharpen, kuwahara) use binary doubling of shifted adds: O(log k) per pixel, in the
  input's own layout, exact up to float32 rounding of positive sums (no cumulative-sum cancellation).
* The bilateral filter (smart sharpen) is cv2's on CPU and an offset loop in torch elsewhere.

Borders are reflect-padded (``reflect_101``, OpenCV's default) via ``common.pad_reflect``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from worker.effects import fused
from worker.effects.common import pad_reflect

CHANNELS_LAST = torch.channels_last


def node_gaussian_taps(radius: int, sigma: float) -> list[float]:
    """The node packs' Gaussian as a normalised 1-D factor: ``k = 2r+1`` taps on ``linspace(-1, 1, k)``,
    ``exp(-t^2 / (2 sigma^2))`` normalised to sum 1. ``sigma`` is in units of the radius (pixel sigma
    ``sigma * r``). The node's 2-D kernel is exactly the outer product of this factor with itself."""
    if radius <= 0:
        return [1.0]
    k = 2 * radius + 1
    ts = [-1.0 + 2.0 * i / (k - 1) for i in range(k)]
    w = [math.exp(-(t * t) / (2.0 * sigma * sigma)) for t in ts]
    total = sum(w)
    return [v / total for v in w]


def pixel_gaussian_taps(sigma_px: float, radius: int) -> list[float]:
    """Normalised 1-D Gaussian with pixel sigma ``sigma_px`` on the integers ``-radius..radius``."""
    if sigma_px <= 0 or radius <= 0:
        return [1.0]
    w = [math.exp(-(i * i) / (2.0 * sigma_px * sigma_px)) for i in range(-radius, radius + 1)]
    total = sum(w)
    return [v / total for v in w]


def same_layout(y: torch.Tensor, x: torch.Tensor) -> bool:
    return y.is_contiguous() == x.is_contiguous() and y.is_contiguous(memory_format=CHANNELS_LAST) == (
        x.is_contiguous(memory_format=CHANNELS_LAST)
    )


def like_input(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` in ``x``'s memory format, so an effect hands back the layout it was given (mixed layouts
    make every later element-wise op slow)."""
    if same_layout(y, x):
        return y
    return torch.empty_like(x).copy_(y)


def clamped_like_input(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``clamp(y, 0, 1)`` written straight into a tensor with ``x``'s layout (one pass). For results
    of filters on finite inputs, which cannot be NaN."""
    if same_layout(y, x):
        return y.clamp_(0.0, 1.0)
    return torch.clamp(y, 0.0, 1.0, out=torch.empty_like(x))


FILTER_BAND_ROWS = 128  # rows per band: a band's passes stay in the core's cache (1024² r5: 13 -> 8 ms)


def filter_separable(x: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """Same-size separable filter with an odd, centred kernel (same taps on both axes), reflect borders,
    in the input's layout: one shifted multiply-add per tap along W, then along H, a band of rows at a
    time (each band's horizontal pass covers its rows plus the vertical taps' reach). Once compiled,
    :func:`separable` does the same in one or two passes."""
    r = len(taps) // 2
    if r == 0:
        return x * float(taps[0])
    xp = pad_reflect(x, r, r)
    if fused.enabled() and r <= SEPARABLE_FUSED_MAX_RADIUS and x.is_contiguous():
        out = separable(len(taps)).try_compiled(xp, torch.tensor(taps, dtype=x.dtype))
        if out is not None:
            return out
    out = torch.empty_like(x)
    h = x.shape[-2]
    for top in range(0, h, FILTER_BAND_ROWS):
        rows = min(FILTER_BAND_ROWS, h - top)
        across = shift_add_1d(xp[..., top : top + rows + 2 * r, :], taps, -1)
        band = torch.mul(across.narrow(-2, 0, rows), taps[0], out=out[..., top : top + rows, :])
        for i, t in enumerate(taps[1:], start=1):
            band.add_(across.narrow(-2, i, rows), alpha=t)
    return out


SEPARABLE_FUSED_MAX_RADIUS = 50  # glow's largest radius; the blur's is 31


@functools.cache
def separable(k: int) -> fused.Kernel:
    """:func:`filter_separable`'s two 1-D passes of ``k`` taps (a tensor ``w``) over the reflect-padded
    image ``xp``, for compiling: inductor reads each value's ``k`` neighbours from cache in one or two
    loops (it decides whether the horizontal pass is written out), where the eager code makes one
    image-sized pass per tap and axis (1024², 2 threads, fastest of 20: r3 7.8 -> 1.9 ms, r15 33 ->
    4.7 ms; docs/performance.md). The sums run in the same order as the eager ones."""

    def run(xp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n = xp.shape[-1] - k + 1
        across = xp[..., :, 0:n] * w[0]
        for i in range(1, k):
            across = across + xp[..., :, i : i + n] * w[i]
        m = across.shape[-2] - k + 1
        out = across[..., 0:m, :] * w[0]
        for i in range(1, k):
            out = out + across[..., i : i + m, :] * w[i]
        return out

    return fused.Kernel(run, name=f"separable[{k}]")


def box_sum_valid(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sums over every window of ``k`` consecutive elements along ``dim`` (valid: length n - k + 1).

    Binary doubling: windows of width 1, 2, 4, ... are each one add of two shifted copies of the
    previous width, and a width-k window is the sum of the power-of-two widths of k's set bits, so the
    cost is at most 2 log2(k) adds, in the input's layout, without cumulative-sum cancellation.
    ``x`` is never written to."""
    out_len = x.shape[dim] - k + 1
    result, owned, offset, power, width = None, False, 0, x, 1
    while True:
        if k & 1:
            piece = power.narrow(dim, offset, out_len)
            if result is None:  # a view of `power`, which is never read again once doubled
                result, owned = piece, power is not x
            elif owned:
                result.add_(piece)
            else:
                result, owned = result + piece, True
            offset += width
        k >>= 1
        if not k:
            break
        m = power.shape[dim] - width
        power = power.narrow(dim, 0, m) + power.narrow(dim, width, m)
        width *= 2
    return result if owned else result.clone()


def gaussian_blur_node(x: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    """The node's Gaussian (pixel sigma ``sigma * radius``, truncated at +-radius), reflect borders."""
    return filter_separable(x, node_gaussian_taps(radius, sigma))


def shift_add_1d(x: torch.Tensor, taps: Sequence[float], dim: int) -> torch.Tensor:
    """Valid 1-D correlation along ``dim`` as a sum of shifted slices: for few taps on few channels
    (e.g. a 1-channel noise field) this beats a convolution call."""
    n = x.shape[dim] - len(taps) + 1
    out = x.narrow(dim, 0, n) * taps[0]
    for i, t in enumerate(taps[1:], start=1):
        out.add_(x.narrow(dim, i, n), alpha=t)
    return out


# --- bilateral filter (smart sharpen's denoiser) ----------------------------------------------------


def bilateral(x: torch.Tensor, d: int, sigma_color: float, sigma_space: float, use_cv2: bool | None = None):
    """OpenCV's ``bilateralFilter`` on a float image batch, reflect_101 borders.

    Window: the offsets within the circle of radius ``max(d // 2, 1)``; weight
    ``exp(-(dy^2 + dx^2) / (2 sigma_space^2)) * exp(-L1^2 / (2 sigma_color^2))`` where ``L1`` is the
    sum over R, G, B of the absolute differences to the centre pixel (OpenCV's definition for 3-channel
    images; it interpolates the colour term from a 4096-bin-per-channel table, which differs from the
    exact exponential by < 1e-5). ``use_cv2=None`` picks cv2 on CPU (per image, its multi-threaded
    C++ loop is the fastest correct tool there) and the pure-torch offset loop elsewhere (CUDA).
    """
    if use_cv2 is None:
        use_cv2 = x.device.type == "cpu"
    if use_cv2:
        return _bilateral_cv2(x, d, sigma_color, sigma_space)
    return _bilateral_torch(x, d, sigma_color, sigma_space)


def _bilateral_cv2(x: torch.Tensor, d: int, sigma_color: float, sigma_space: float) -> torch.Tensor:
    """Per image through cv2 (HWC float32); the result comes back in ``x``'s layout."""
    import cv2
    import numpy as np

    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        hwc = np.ascontiguousarray(x[b].permute(1, 2, 0).detach().numpy())  # a view if channels-last
        res = cv2.bilateralFilter(hwc, d, sigma_color, sigma_space, borderType=cv2.BORDER_REFLECT_101)
        out[b].copy_(torch.from_numpy(res.reshape(hwc.shape)).permute(2, 0, 1))
    return out


def _bilateral_torch(x: torch.Tensor, d: int, sigma_color: float, sigma_space: float) -> torch.Tensor:
    """Loop over the window's offsets (never over pixels), accumulating weights on the whole batch."""
    r = max(d // 2, 1)
    h, w = x.shape[-2:]
    xp = pad_reflect(x, r, r)
    num = torch.zeros_like(x)
    den = torch.zeros_like(x[:, :1])
    color_coeff = -0.5 / (sigma_color * sigma_color)
    space_coeff = -0.5 / (sigma_space * sigma_space)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx > r * r:
                continue
            nb = xp[:, :, r + dy : r + dy + h, r + dx : r + dx + w]
            dist = (nb - x).abs_().sum(dim=1, keepdim=True)
            wgt = dist.square_().mul_(color_coeff).exp_().mul_(math.exp((dy * dy + dx * dx) * space_coeff))
            num.addcmul_(nb, wgt)
            den.add_(wgt)
    return num.div_(den)
