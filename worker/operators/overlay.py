"""``overlay`` on the device: text or a reference image (a watermark) over the image, once at its
gravity and margin or tiled across the image with the margin as the gap.

Every item of a batch may have its own text, font, colours, watermark and placement: each builds
its own layer of the image's size, and the layers go "over" the batch in one step. Text is
rasterised on the CPU by :func:`worker.imaging.render_text` (cached) as two coverage masks, the
glyphs and the glyphs with their stroke; here they are coloured (fill over stroke) and placed.
Tiles form a grid with one tile at the centre of the image. A watermark is resampled only where it
can show, so a tall, narrow reference image costs no more than the image.
"""

from __future__ import annotations

import torch

from darkroom.apps.pipeline.base import anchor, parse_color, place, scaled
from darkroom.errors import InvalidInput
from darkroom.fonts import available_fonts, find_font
from worker import imaging
from worker.operators import StepBatch, over, register_kernel
from worker.operators.composite import paste, visible_foreground

_ALIGN = {0.0: "left", 0.5: "center", 1.0: "right"}


@register_kernel("overlay")
def overlay(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    hw = (x.shape[2], x.shape[3])
    refs = batch.refs or [{}] * batch.size
    layers = torch.cat([_layer(step, ref, hw, batch) for step, ref in zip(batch.steps, refs, strict=True)])
    return over(layers, x, batch.scalar([step.opacity for step in batch.steps]))


def _layer(step, refs: dict, hw: tuple[int, int], batch: StepBatch) -> torch.Tensor:
    """``(1, 4, H, W)``: the item's text or watermark, placed or tiled, transparent elsewhere."""
    if step.text is not None:
        block = _text_block(step, hw, batch)
        left, top = _corner(step, hw, (block.shape[3], block.shape[2]))
    else:
        image = refs[step.image]
        size = scaled((image.width, image.height), hw[1] * step.scale / image.width)
        placed = visible_foreground(
            imaging.to_rgba_tensor([image], batch.device), size, (hw[1], hw[0]), _corner(step, hw, size)
        )
        if placed is None:  # a margin that pushes it off the image
            return torch.zeros((1, 4, *hw), dtype=torch.float32, device=batch.device)
        block, left, top = placed
    return _layout(block, hw, step, (left, top))


def _text_block(step, hw: tuple[int, int], batch: StepBatch) -> torch.Tensor:
    """The step's text as a ``(1, 4, h, w)`` straight-alpha RGBA block: fill over stroke."""
    fonts_dir = getattr(batch.settings, "fonts_dir", None)
    path = find_font(step.font, fonts_dir)
    if path is None:
        known = ", ".join(sorted(available_fonts(fonts_dir)))
        raise InvalidInput(f"overlay: unknown font {step.font!r} on this worker; available: {known}")
    align = "center" if step.tiled else _ALIGN[anchor(step.gravity)[0]]
    mask = imaging.render_text(step.text, str(path), step.text_px(hw[0]), step.stroke_width, align)
    coverage = imaging.text_mask_tensor(mask, batch.device)[None]  # (1, 2, h, w)
    block = _colored(coverage[:, :1], step.color)
    if step.stroke_width:
        block = over(block, _colored(coverage[:, 1:], step.stroke_color))
    return block


def _colored(coverage: torch.Tensor, color: str) -> torch.Tensor:
    rgba = torch.tensor(parse_color(color), dtype=torch.float32, device=coverage.device).view(1, 4, 1, 1)
    return torch.cat([rgba[:, :3].expand(-1, 3, *coverage.shape[2:]), coverage * rgba[:, 3:]], dim=1)


def _corner(step, hw: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner (x, y) of a ``box`` (W, H): at the gravity, ``margin`` from the edges; tiled,
    the grid's centre tile."""
    (height, width), m = hw, step.margin
    if step.tiled:
        return place((width, height), box, "center")
    return place((width - 2 * m, height - 2 * m), box, step.gravity, (m, m))


def _layout(block: torch.Tensor, hw: tuple[int, int], step, corner: tuple[int, int]) -> torch.Tensor:
    """``(1, 4, H, W)``: ``block`` with its top-left at ``corner``, or, tiled, a grid through there
    with the margin as the gap."""
    (height, width), (h, w), m = hw, block.shape[2:], step.margin
    if not step.tiled:
        return paste(block.new_zeros((1, 4, height, width)), block, *corner)
    px, py = w + m, h + m  # the grid's period
    sx, sy = (-corner[0]) % px, (-corner[1]) % py  # where the image starts inside the repeated tile
    # Each output pixel reads the block at its position modulo the period (the gap reads nothing):
    # memory stays that of the image (or of the block), whatever the margin or the block's shape.
    ys = (torch.arange(height, device=block.device) + sy) % py
    xs = (torch.arange(width, device=block.device) + sx) % px
    rows, cols = ys.clamp(max=h - 1), xs.clamp(max=w - 1)
    if height * w <= h * width:  # gather along the axis that keeps the intermediate smaller first
        layer = block.index_select(2, rows).index_select(3, cols)
    else:
        layer = block.index_select(3, cols).index_select(2, rows)
    inside = (ys < h)[:, None] & (xs < w)[None, :]
    return layer * inside
