"""``remove_background`` on the device: the model's matte (worker/matting_model.py), optionally refined
along its edges and thresholded, multiplied into the image's alpha. RGB is left as it is, so a later
``composite`` places the cut-out (straight alpha) on whatever background it is given.

Items of one batch share the model and the image size (one session run for all of them); each has its
own threshold and refine switch.

Edge refinement is a guided filter (He, Sun and Tang, 2010) with the image's luminance as the guide:
the matte, which the model makes at its own small size and which is scaled up to the image, takes
the image's edges within ``radius`` px. It changes only the *edge band*, the pixels whose matte is
not flat within twice the radius (where the filter could act); elsewhere the matte is kept exactly.
Box means are running sums, so the cost does not grow with the radius.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from worker.matting_model import get_matte_model
from worker.operators import StepBatch, register_kernel

GUIDE_EPS = 1e-3  # the guided filter's regulariser: lower follows weaker image edges
MAX_RADIUS = 32
BAND_STEP = 1 / 255  # a matte that varies less than one 8-bit level within reach is flat
LUMA = (0.299, 0.587, 0.114)


@register_kernel("remove_background")
def remove_background(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    model = get_matte_model(batch.steps[0].model, batch.settings, batch.device)
    rgb = x[:, :3]
    matte = model.matte(rgb)
    refine = [s.refine_edges for s in batch.steps]
    if any(refine):
        radius = edge_radius((x.shape[2], x.shape[3]), model.size)
        matte = torch.where(batch.scalar(refine) > 0, refine_edges(matte, rgb, radius), matte)
    limits = [s.threshold for s in batch.steps]
    if any(t is not None for t in limits):
        hard = (matte >= batch.scalar([0.0 if t is None else t for t in limits])).to(matte.dtype)
        matte = torch.where(batch.scalar([t is not None for t in limits]) > 0, hard, matte)
    return torch.cat([rgb, x[:, 3:] * matte], dim=1)


def edge_radius(size: tuple[int, int], model_size: int) -> int:
    """The guided filter's radius: about one model pixel as scaled up to the image, 1 to 32 px."""
    return max(1, min(MAX_RADIUS, math.ceil(max(size) / model_size)))


def refine_edges(matte: torch.Tensor, rgb: torch.Tensor, radius: int) -> torch.Tensor:
    """``matte`` (B, 1, H, W) guided by ``rgb`` (B, 3, H, W) within ``radius`` px, changed only in its
    edge band."""
    weights = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    guide = (rgb * weights).sum(dim=1, keepdim=True)
    refined = guided_filter(guide, matte, radius, GUIDE_EPS).clamp_(0.0, 1.0)
    return torch.where(edge_band(matte, 2 * radius), refined, matte)


def guided_filter(guide: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """The gray-guide guided filter of ``p`` (both (B, 1, H, W)), windows of (2r+1)² px."""
    mean_i, mean_p = box_mean(guide, r), box_mean(p, r)
    cov = box_mean(guide * p, r) - mean_i * mean_p
    var = box_mean(guide * guide, r) - mean_i * mean_i
    a = cov / (var.clamp_min(0.0) + eps)
    b = mean_p - a * mean_i
    return box_mean(a, r) * guide + box_mean(b, r)


def box_mean(t: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)² window around each pixel of (B, C, H, W), edges replicated: running sums
    along each axis (in float64, so long rows lose no precision)."""
    k = 2 * r + 1
    padded = F.pad(t, (r + 1, r, r + 1, r), mode="replicate").double()
    c = padded.cumsum(dim=3)
    rows = c[..., k:] - c[..., :-k]
    c = rows.cumsum(dim=2)
    return ((c[..., k:, :] - c[..., :-k, :]) / (k * k)).to(t.dtype)


def edge_band(matte: torch.Tensor, reach: int) -> torch.Tensor:
    """Where the matte is not flat within ``reach`` px (its local max and min differ)."""
    k = 2 * reach + 1
    hi = F.max_pool2d(F.max_pool2d(matte, (1, k), 1, (0, reach)), (k, 1), 1, (reach, 0))
    lo = -F.max_pool2d(F.max_pool2d(-matte, (1, k), 1, (0, reach)), (k, 1), 1, (reach, 0))
    return (hi - lo) > BAND_STEP
