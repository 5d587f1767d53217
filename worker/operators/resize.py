"""``resize`` on the device: resampling with a choice of filter, then cover's crop or contain's pad.

Filters: ``area`` averages every input pixel under an output pixel (the right one for shrinking);
``bilinear`` and ``bicubic`` are torch's antialiased kernels; ``lanczos`` (a = 3) is
separable, applied one axis at a time as a sparse matrix product. Images with transparency are resampled
premultiplied, so transparent pixels lend no colour to the edges.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from darkroom.apps.pipeline.base import parse_color, place
from worker.operators import StepBatch, premultiplied, register_kernel, straight

LANCZOS_A = 3


@register_kernel("resize")
def resize(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    step = batch.steps[0]
    h, w = x.shape[2], x.shape[3]
    (iw, ih), (ow, oh) = step.plan((w, h))
    y = resample(x, (ih, iw), step.filter)
    if (iw, ih) == (ow, oh):
        return y
    if step.fit == "cover":
        left, top = place((iw, ih), (ow, oh), step.gravity)
        return y[:, :, top : top + oh, left : left + ow].contiguous()
    fill = batch.colors([parse_color(s.background) for s in batch.steps])  # contain
    out = fill.expand(x.shape[0], 4, oh, ow).contiguous()
    left, top = place((ow, oh), (iw, ih), step.gravity)
    out[:, :, top : top + ih, left : left + iw] = y
    return out


def resample(x: torch.Tensor, size: tuple[int, int], filter: str = "auto") -> torch.Tensor:
    """``(B, 4, H, W)`` straight-alpha RGBA to ``size`` (H, W)."""
    h, w = x.shape[2], x.shape[3]
    if (h, w) == tuple(size):
        return x
    shrinking = size[0] <= h and size[1] <= w
    if filter == "auto":
        filter = "area" if shrinking else "bicubic"
    translucent = bool((x[:, 3] < 1).any())
    y = premultiplied(x) if translucent else x
    if filter == "lanczos":  # two passes, clamped between them as Pillow clamps its 8-bit passes
        if size[0] < h and size[1] >= w:  # only the height shrinks: that pass first, as Pillow does
            y = _lanczos_axis(_lanczos_axis(y, size[0], 2).clamp_(0.0, 1.0), size[1], 3)
        else:
            y = _lanczos_axis(_lanczos_axis(y, size[1], 3).clamp_(0.0, 1.0), size[0], 2)
    elif filter == "area" and shrinking:
        y = F.interpolate(y, size=size, mode="area")
    else:
        mode = "bilinear" if filter == "area" else filter
        # torch's antialiased kernels are Pillow's (bicubic a = -0.5); plain bicubic uses a = -0.75
        y = F.interpolate(y, size=size, mode=mode, align_corners=False, antialias=True)
    if translucent:
        return straight(y)
    y = y.clamp_(0.0, 1.0)
    y[:, 3].fill_(1.0)  # opaque stays exactly opaque (rounding would make later steps take the slow path)
    return y


def _lanczos_weights(in_len: int, out_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, weights), each (out_len, taps): output i = sum of weights[i] * input[indices[i]]."""
    scale = in_len / out_len
    stretch = max(scale, 1.0)  # shrinking widens the kernel, so it also filters
    support = LANCZOS_A * stretch
    taps = math.ceil(2 * support) + 1
    centers = (torch.arange(out_len, dtype=torch.float64) + 0.5) * scale
    first = torch.floor(centers - support).to(torch.long)
    idx = first[:, None] + torch.arange(taps)[None, :]
    dist = (idx.to(torch.float64) + 0.5 - centers[:, None]) / stretch
    inside = (idx >= 0) & (idx < in_len)  # at the edges the kernel is cut and renormalised, as Pillow does
    weights = torch.sinc(dist) * torch.sinc(dist / LANCZOS_A) * (dist.abs() < LANCZOS_A) * inside
    weights = weights / weights.sum(dim=1, keepdim=True)
    return idx.clamp_(0, in_len - 1).to(device), weights.to(torch.float32).to(device)


def _lanczos_axis(x: torch.Tensor, out_len: int, dim: int) -> torch.Tensor:
    """Resample one axis as a sparse matrix product: (out_len x in_len, a few taps a row) times the
    image with that axis first (measured at 2048 -> 1024: 0.06 s a pass, 25x faster than a sum of
    gathered copies)."""
    in_len = x.shape[dim]
    if in_len == out_len:
        return x
    idx, weights = _lanczos_weights(in_len, out_len, x.device)
    rows = torch.arange(out_len, device=x.device).repeat_interleave(idx.shape[1])
    matrix = torch.sparse_coo_tensor(
        torch.stack([rows, idx.flatten()]), weights.flatten(), (out_len, in_len), check_invariants=False
    ).coalesce()
    moved = x.movedim(dim, 0)
    rest = moved.shape[1:]
    out = torch.sparse.mm(matrix, moved.reshape(in_len, -1).contiguous())  # row-major, or mm crawls
    return out.reshape(out_len, *rest).movedim(0, dim).contiguous()
