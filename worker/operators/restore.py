"""``restore`` on the device: a Swin2SR model run tile by tile, blended without seams, at ``scale``.

1. **Pad**: the RGB is padded at the bottom and right to a multiple of the model's window size by
   symmetric reflection (as Swin2SR's image processor pads), so every tile is a whole number of
   windows and the model pads nothing itself.
2. **Tile**: equal tiles of ``tile_px`` (rounded down to whole windows) whose origins are multiples of
   the window size, so a tile's attention windows are the windows of an untiled run; neighbours
   overlap by at least ``overlap_px``.
3. **Run**: tiles go through the model in calls of several tiles, each call holding that tile for
   every image of the batch; each tile's output (the model's factor) is resized to ``scale`` (area
   down, bicubic up) straight away, so nothing larger than the output is ever held.
4. **Blend**: within each overlap the quarter nearest each tile's edge (where the model saw the
   tile's border instead of the image) gets no weight, and the middle half ramps linearly from one
   tile to the next; weighted outputs and weights are summed and divided. A model whose reach from a
   tile edge is within that quarter gives, to float rounding, the untiled result.
5. **Crop** the padding away (× scale) and put the alpha back, resized to the output size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from worker.operators import StepBatch, register_kernel
from worker.restore_model import RestoreModel, restore_model

# input pixels per model call (tiles x images), bounding device memory. On an H200 with the default
# model in fp16, 8 tiles of 256 px a call restored a 1024 px image in 1.7 s (4 GiB peak), 2 a call in
# 2.6 s (1.1 GiB): small calls leave the GPU waiting on the host. The CPU gains nothing from more.
TILE_BATCH_PX = {"cuda": 8 * 256 * 256}
CPU_TILE_BATCH_PX = 2 * 256 * 256
MARGIN_FRACTION = 4  # 1/4 of an overlap at each tile edge is not used


@register_kernel("restore")
def restore(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    step = batch.steps[0]
    model = restore_model(step.model, batch.settings, batch.device)
    h, w = x.shape[2], x.shape[3]
    size = (h * step.scale, w * step.scale)
    rgb = restore_rgb(model, x[:, :3], step.scale, step.tile_px, step.overlap_px)
    return torch.cat([rgb, _alpha(x[:, 3:], size)], dim=1)


def restore_rgb(model: RestoreModel, rgb: torch.Tensor, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, H * scale, W * scale) in [0, 1], on ``rgb``'s device."""
    b, _, h, w = rgb.shape
    win = model.window_size
    tile = max(win, tile // win * win)
    overlap = min(overlap, (tile - 1) // 2)
    margin = overlap // MARGIN_FRACTION
    ph, pw = _round_up(h, win), _round_up(w, win)
    padded = symmetric_pad(rgb, ph, pw)
    th, tw = min(tile, ph), min(tile, pw)
    ys, xs = tile_starts(ph, th, overlap, win), tile_starts(pw, tw, overlap, win)
    wy = _windows(ys, th, margin, scale, rgb.device)
    wx = _windows(xs, tw, margin, scale, rgb.device)
    boxes = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    per_call = max(1, TILE_BATCH_PX.get(rgb.device.type, CPU_TILE_BATCH_PX) // (th * tw * b))
    acc = torch.zeros(b, 3, ph * scale, pw * scale, device=rgb.device)
    for first in range(0, len(boxes), per_call):
        chunk = boxes[first:first + per_call]
        tiles = torch.cat([padded[..., ys[i]:ys[i] + th, xs[j]:xs[j] + tw] for i, j in chunk])
        out = _resize(model(tiles), (th * scale, tw * scale))
        for k, (i, j) in enumerate(chunk):
            y0, x0 = ys[i] * scale, xs[j] * scale
            weight = wy[i][:, None] * wx[j][None, :]
            acc[..., y0:y0 + th * scale, x0:x0 + tw * scale] += out[k * b:(k + 1) * b] * weight
    total = _axis_total(ys, wy, scale, ph * scale)[:, None] * _axis_total(xs, wx, scale, pw * scale)
    return (acc / total)[..., : h * scale, : w * scale].clamp_(0.0, 1.0)


def tile_starts(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """Origins, multiples of ``align``, of tiles of ``tile`` covering ``length`` (both multiples of
    ``align``), spread evenly, neighbours overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = max(align, (tile - overlap) // align * align)
    units, steps = (length - tile) // align, math.ceil((length - tile) / stride)
    return [i * units // steps * align for i in range(steps + 1)]


def feather(size: int, lead: int, trail: int, margin: int) -> torch.Tensor:
    """1-D weights of a tile ``size`` long that overlaps its neighbours by ``lead`` (before) and
    ``trail`` (after): zero over the ``margin`` nearest each shared edge, then a linear ramp to one
    across the rest of the overlap. Samples sit at pixel centres, so the falling ramp of one tile and
    the rising ramp of the next sum to one."""
    pos = torch.arange(size, dtype=torch.float64) + 0.5
    w = torch.ones(size, dtype=torch.float64)
    if lead:
        m = min(margin, lead // MARGIN_FRACTION)
        w = torch.minimum(w, ((pos - m) / (lead - 2 * m)).clamp(0.0, 1.0))
    if trail:
        m = min(margin, trail // MARGIN_FRACTION)
        w = torch.minimum(w, ((size - pos - m) / (trail - 2 * m)).clamp(0.0, 1.0))
    return w


def _windows(
    starts: list[int], tile: int, margin: int, scale: int, device: torch.device
) -> list[torch.Tensor]:
    """One weight vector per tile along one axis, in output pixels."""
    out = []
    for i, s in enumerate(starts):
        lead = starts[i - 1] + tile - s if i > 0 else 0
        trail = s + tile - starts[i + 1] if i + 1 < len(starts) else 0
        w = feather(tile * scale, lead * scale, trail * scale, margin * scale)
        out.append(w.to(device, torch.float32))
    return out


def _axis_total(starts: list[int], windows: list[torch.Tensor], scale: int, length: int) -> torch.Tensor:
    """The windows summed along one axis (the 2-D weights are outer products, and so is their sum)."""
    total = torch.zeros(length, device=windows[0].device)
    for s, win in zip(starts, windows, strict=True):
        total[s * scale:s * scale + len(win)] += win
    return total


def symmetric_pad(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad the bottom and right of ``x`` to ``height`` x ``width`` by mirroring (edge pixel repeated,
    numpy's "symmetric"), for any amount of padding."""
    h, w = x.shape[-2], x.shape[-1]
    if (h, w) == (height, width):
        return x
    return x.index_select(-2, _mirror(h, height, x.device)).index_select(-1, _mirror(w, width, x.device))


def _mirror(n: int, size: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(size, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _resize(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The model's output to ``size``: area-averaged when shrinking, bicubic when growing."""
    if tuple(y.shape[-2:]) == size:
        return y
    if size[0] <= y.shape[-2] and size[1] <= y.shape[-1]:
        return F.interpolate(y, size=size, mode="area")
    return F.interpolate(y, size=size, mode="bicubic", align_corners=False)


def _alpha(alpha: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The alpha channel at the output size (opaque stays exactly opaque)."""
    if tuple(alpha.shape[-2:]) == size:
        return alpha
    if bool((alpha == 1).all()):
        return torch.ones(alpha.shape[0], 1, *size, device=alpha.device)
    return F.interpolate(alpha, size=size, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
