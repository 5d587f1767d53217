"""Running an image-to-image function tile by tile, blended without seams.

The input is padded (edge pixels repeated) to a multiple of the function's alignment, then covered by
equal tiles of at most ``tile`` pixels a side, spread evenly so neighbours overlap by at least
``overlap``. Each tile's output is weighted by a feathering window that ramps linearly across every
overlap it shares with a neighbour (and stays flat at the image border); the weighted outputs and the
weights are accumulated and divided. Where two tiles overlap their ramps sum to one, so a function
that agrees with itself across tiles (the identity, nearest upsampling) comes out exactly, and one
that does not fades from one tile to the next instead of jumping at a border.

Device memory is that of one tile batch whatever the image size; the accumulators (output-sized)
stay on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TileFn = Callable[[torch.Tensor], torch.Tensor]  # (B, C, h, w) -> (B, C', h * scale, w * scale)


@dataclass(frozen=True)
class TileGrid:
    height: int  # padded input size
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]  # tile origins
    xs: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Origins of equal tiles covering ``length``, spread evenly, neighbours overlapping >= ``overlap``."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def plan(height: int, width: int, tile: int, overlap: int, align: int = 1) -> TileGrid:
    """The tile grid for an input of ``height`` x ``width`` (padded up to a multiple of ``align``)."""
    tile = max(align, tile - tile % align)
    overlap = min(overlap, tile // 2)
    h, w = _round_up(height, align), _round_up(width, align)
    th, tw = min(tile, h), min(tile, w)
    return TileGrid(h, w, th, tw, tuple(tile_starts(h, th, overlap)), tuple(tile_starts(w, tw, overlap)))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def ramp(size: int, lead: int, trail: int) -> torch.Tensor:
    """1-D window of ``size``: rises over the first ``lead`` samples, falls over the last ``trail``.

    Samples sit at pixel centres, so the window is positive everywhere and a rising ramp and the
    falling ramp of the same length sum to exactly one.
    """
    w = torch.ones(size, dtype=torch.float64)
    pos = torch.arange(size, dtype=torch.float64) + 0.5
    if lead:
        w = torch.minimum(w, pos / lead)
    if trail:
        w = torch.minimum(w, (size - pos) / trail)
    return w


def _windows(starts: tuple[int, ...], tile: int, scale: int) -> list[torch.Tensor]:
    """One feathering window per tile along one axis, in output pixels."""
    out = []
    for i, s in enumerate(starts):
        lead = (starts[i - 1] + tile - s) * scale if i > 0 else 0
        trail = (s + tile - starts[i + 1]) * scale if i + 1 < len(starts) else 0
        out.append(ramp(tile * scale, lead, trail))
    return out


def pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad the bottom and right of ``x`` to ``height`` x ``width`` by repeating the edge pixels."""
    dh, dw = height - x.shape[-2], width - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (0, dw, 0, dh), mode="replicate")


def _axis_weight(starts: tuple[int, ...], windows: list[torch.Tensor], tile: int, scale: int, length: int):
    """Sum of the windows placed along one axis (the 2-D weight is the outer product of two of these)."""
    total = torch.zeros(length * scale, dtype=torch.float64)
    for s, w in zip(starts, windows, strict=True):
        total[s * scale:(s + tile) * scale] += w
    return total


def run_tiled(
    x: torch.Tensor, fn: TileFn, tile: int, overlap: int, scale: int = 1, align: int = 1,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """``fn`` over ``x`` (B, C, H, W) tile by tile; returns (B, C', H * scale, W * scale) float32 on the CPU.

    ``on_tile(index, count)`` is called before each tile.
    """
    b, _, height, width = x.shape
    grid = plan(height, width, tile, overlap, align)
    padded = pad_to(x, grid.height, grid.width)
    wy, wx = _windows(grid.ys, grid.tile_h, scale), _windows(grid.xs, grid.tile_w, scale)
    acc: torch.Tensor | None = None
    index = 0
    for i, y0 in enumerate(grid.ys):
        for j, x0 in enumerate(grid.xs):
            if on_tile is not None:
                on_tile(index, grid.count)
            index += 1
            out = fn(padded[..., y0:y0 + grid.tile_h, x0:x0 + grid.tile_w]).to("cpu", torch.float32)
            if acc is None:
                acc = torch.zeros(b, out.shape[1], grid.height * scale, grid.width * scale)
            win = (wy[i][:, None] * wx[j][None, :]).to(torch.float32)
            oy, ox = y0 * scale, x0 * scale
            acc[..., oy:oy + win.shape[0], ox:ox + win.shape[1]] += out * win
    assert acc is not None
    total_y = _axis_weight(grid.ys, wy, grid.tile_h, scale, grid.height)
    total_x = _axis_weight(grid.xs, wx, grid.tile_w, scale, grid.width)
    acc = acc[..., : height * scale, : width * scale]
    acc /= (total_y[: height * scale, None] * total_x[None, : width * scale]).to(torch.float32)
    return acc
