"""``composite`` on the device: each item's background (a colour, a linear gradient or a reference
image), then an optional soft drop shadow made from the image's alpha, then the image, scaled and
placed by gravity and offset. The output is the canvas, its alpha the background's with the image
"over" it, so a transparent colour background stays transparent around the image.

Items of one batch share the canvas size, scale, placement and shadow (the step's key fields); each
has its own background. The shadow is the resized image's alpha, zero-padded by 3 sigma, blurred
with a separable Gaussian (sigma in px; a large sigma is blurred at a reduced scale, which changes
the result by well under 1 %), then moved by the shadow's offset. An image scaled or moved far past
the canvas is resampled only where it can show (see :func:`visible_foreground`).

The canvas size comes from each item's reference image when the background is one, which the step
alone does not tell: the pipeline's batch key must hold the step's output size, else a batch mixing
reference sizes raises (and the batcher re-runs its items one by one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from darkroom.apps.pipeline.base import Size, parse_color, place
from worker import imaging
from worker.effects.filters import pixel_gaussian_taps
from worker.operators import StepBatch, over, premultiplied, register_kernel, straight
from worker.operators.resize import resample

SHADOW_SPAN = 3.0  # the Gaussian is cut at this many sigmas
DIRECT_SIGMA = 8.0  # above this sigma (px), blur at 1 / (sigma // DIRECT_SIGMA) scale
WINDOW_PAD = 4  # source px read past a visible window, for the resampling filter's reach


@register_kernel("composite")
def composite(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    step = batch.steps[0]
    size = (x.shape[3], x.shape[2])
    canvas = _canvas(batch, size)
    out = torch.cat([_background(s, refs, canvas, x.device) for s, refs in _items(batch)])
    shadow = step.shadow if step.shadow is not None and step.shadow.opacity > 0 else None
    reach = _shadow_span(shadow) + max(abs(shadow.offset_x), abs(shadow.offset_y)) if shadow else 0
    fg_size = step.foreground(size, canvas)
    left, top = place(canvas, fg_size, step.gravity, (step.offset_x, step.offset_y))
    placed = visible_foreground(x, fg_size, canvas, (left, top), reach)
    if placed is None:  # wholly off the canvas
        return out
    fg, left, top = placed
    if shadow is not None:
        layer, r = _shadow(fg[:, 3:], batch)
        over_at(out, layer, left + shadow.offset_x - r, top + shadow.offset_y - r)
    return over_at(out, fg, left, top)


def visible_foreground(
    x: torch.Tensor, fg_size: Size, canvas: Size, corner: tuple[int, int], reach: int = 0
) -> tuple[torch.Tensor, int, int] | None:
    """``x`` resized to ``fg_size`` (W, H) to go on ``canvas`` with its top-left ``corner`` at (x, y):
    the resized pixels and their top-left corner; only the part within ``reach`` px of the canvas
    when that is less than half of it (a large scale or offset), so an image scaled far past the
    canvas costs no more than the canvas. None when none of it shows."""
    (fw, fh), (w, h), (left, top) = fg_size, (x.shape[3], x.shape[2]), corner
    u0, u1 = max(0, -left - reach), min(fw, canvas[0] - left + reach)
    v0, v1 = max(0, -top - reach), min(fh, canvas[1] - top + reach)
    if u0 >= u1 or v0 >= v1:
        return None
    if 2 * (u1 - u0) * (v1 - v0) >= fw * fh:
        return resample(x, (fh, fw)), left, top
    (s0, s1), n, du = _window(u0, u1, w, fw)
    (t0, t1), m, dv = _window(v0, v1, h, fh)
    return resample(x[:, :, t0:t1, s0:s1], (m, n)), left + du, top + dv


def _window(u0: int, u1: int, length: int, scaled_length: int) -> tuple[tuple[int, int], int, int]:
    """For output pixels ``u0:u1`` of one axis resized from ``length`` to ``scaled_length``: the
    source pixels to read (with room for the filter), their resized length and where it starts."""
    ratio = length / scaled_length  # source px per output px
    pad = WINDOW_PAD + math.ceil(ratio)
    s0 = max(0, math.floor(u0 * ratio) - pad)
    s1 = min(length, math.ceil(u1 * ratio) + pad)
    return (s0, s1), max(1, round((s1 - s0) / ratio)), round(s0 / ratio)


def _items(batch: StepBatch) -> zip:
    refs = batch.refs or [{}] * batch.size
    return zip(batch.steps, refs, strict=True)


def _canvas(batch: StepBatch, size: Size) -> Size:
    """The one canvas size of the batch. Items whose reference backgrounds differ in size cannot share
    a batch: the batch key must then tell them apart (the step's output size)."""
    canvases = {
        step.canvas(size, {name: (im.width, im.height) for name, im in refs.items()})
        for step, refs in _items(batch)
    }
    if len(canvases) != 1:
        raise ValueError(
            f"composite: one batch holds canvases of {len(canvases)} sizes {sorted(canvases)}; "
            "the pipeline's batch key must include the step's output size"
        )
    return canvases.pop()


# --- backgrounds -----------------------------------------------------------------------------------


def _background(step, refs: dict, canvas: Size, device: torch.device) -> torch.Tensor:
    """``(1, 4, H, W)`` straight-alpha RGBA: the step's colour, gradient or reference image."""
    w, h = canvas
    if step.image is not None:
        return imaging.to_rgba_tensor([refs[step.image]], device)
    if step.gradient is not None:
        g = step.gradient
        return gradient(canvas, parse_color(g.start), parse_color(g.end), g.angle, device)
    fill = torch.tensor(parse_color(step.color), dtype=torch.float32, device=device).view(1, 4, 1, 1)
    return fill.expand(1, 4, h, w).contiguous()


def gradient(
    canvas: Size, start: Sequence[float], end: Sequence[float], angle: float, device: torch.device
) -> torch.Tensor:
    """A linear gradient ``(1, 4, H, W)`` along ``angle`` degrees (0: left to right, 90: top to
    bottom, y pointing down): the first pixel centre along that direction is ``start``, the last
    ``end``; colours mix premultiplied, so a transparent end fades without darkening."""
    w, h = canvas
    rad = math.radians(angle)
    dx, dy = math.cos(rad), math.sin(rad)
    xs = torch.arange(w, dtype=torch.float32, device=device).view(1, 1, 1, w) - (w - 1) / 2
    ys = torch.arange(h, dtype=torch.float32, device=device).view(1, 1, h, 1) - (h - 1) / 2
    span = abs(dx) * (w - 1) + abs(dy) * (h - 1)
    t = (xs * dx + ys * dy) / span + 0.5 if span > 1e-9 else torch.full((1, 1, h, w), 0.5, device=device)
    t = t.expand(1, 1, h, w).clamp(0.0, 1.0)
    a = premultiplied(torch.tensor(start, dtype=torch.float32, device=device).view(1, 4, 1, 1))
    b = premultiplied(torch.tensor(end, dtype=torch.float32, device=device).view(1, 4, 1, 1))
    return straight(a + (b - a) * t)


# --- shadow ----------------------------------------------------------------------------------------


def _shadow(alpha: torch.Tensor, batch: StepBatch) -> tuple[torch.Tensor, int]:
    """The shadow layer ``(B, 4, h + 2r, w + 2r)`` of an alpha ``(B, 1, h, w)``, and its margin r."""
    shadow = batch.steps[0].shadow
    r = _shadow_span(shadow)
    a = gaussian(F.pad(alpha, (r, r, r, r)), shadow.blur)
    colors = batch.colors([parse_color(s.shadow.color) for s in batch.steps])
    strength = batch.scalar([s.shadow.opacity for s in batch.steps]) * colors[:, 3:]
    layer = torch.cat([colors[:, :3].expand(-1, 3, *a.shape[2:]), (a * strength).clamp_(0.0, 1.0)], dim=1)
    return layer, r


def _shadow_span(shadow) -> int:
    """How far (px) the blur spreads a shadow past the image's edge."""
    return math.ceil(SHADOW_SPAN * shadow.blur) if shadow.blur > 0 else 0


def gaussian(a: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of sigma ``sigma`` px on ``(B, C, H, W)``, zero outside (no reflection: a
    shadow fades into nothing). Above ``DIRECT_SIGMA`` it runs on an f-times smaller copy (area
    average down, bilinear up) with sigma / f, f = sigma // DIRECT_SIGMA."""
    if sigma <= 0:
        return a
    f = int(sigma // DIRECT_SIGMA)
    if f <= 1:
        return _gaussian_direct(a, sigma)
    h, w = a.shape[2], a.shape[3]
    small = F.avg_pool2d(F.pad(a, (0, (-w) % f, 0, (-h) % f)), f)
    small = _gaussian_direct(small, sigma / f)
    big = F.interpolate(small, scale_factor=f, mode="bilinear", align_corners=False)
    return big[:, :, :h, :w].contiguous()


def _gaussian_direct(a: torch.Tensor, sigma: float) -> torch.Tensor:
    r = math.ceil(SHADOW_SPAN * sigma)
    taps = torch.tensor(pixel_gaussian_taps(sigma, r), dtype=a.dtype, device=a.device)
    c = a.shape[1]
    row = taps.view(1, 1, 1, -1).expand(c, 1, 1, 2 * r + 1)
    col = taps.view(1, 1, -1, 1).expand(c, 1, 2 * r + 1, 1)
    y = F.conv2d(a, row, padding=(0, r), groups=c)
    return F.conv2d(y, col, padding=(r, 0), groups=c)


# --- placing ---------------------------------------------------------------------------------------


def overlap(
    dst: tuple[int, int], src: tuple[int, int], left: int, top: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Where a ``src`` (H, W) box with its top-left corner at (left, top) meets a ``dst`` (H, W) box:
    ``((rows, cols) in dst, (rows, cols) in src)``, or None when they do not meet."""
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + src[0], dst[0]), min(left + src[1], dst[1])
    if y0 >= y1 or x0 >= x1:
        return None
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))


def paste(dst: torch.Tensor, src: torch.Tensor, left: int, top: int) -> torch.Tensor:
    """Copy ``src`` into ``dst`` (both ``(B, C, ·, ·)``) at (left, top), clipped; ``dst`` changes."""
    box = overlap(tuple(dst.shape[2:]), tuple(src.shape[2:]), left, top)
    if box is not None:
        (dy, dx), (sy, sx) = box
        dst[:, :, dy, dx] = src[:, :, sy, sx]
    return dst


def over_at(dst: torch.Tensor, src: torch.Tensor, left: int, top: int) -> torch.Tensor:
    """Straight-alpha RGBA ``src`` "over" ``dst`` at (left, top), clipped; ``dst`` changes."""
    box = overlap(tuple(dst.shape[2:]), tuple(src.shape[2:]), left, top)
    if box is not None:
        (dy, dx), (sy, sx) = box
        dst[:, :, dy, dx] = over(src[:, :, sy, sx], dst[:, :, dy, dx])
    return dst
