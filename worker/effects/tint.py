"""Colour tint: blend towards a grey multiplied by a per-mode RGB colour.

``gray = 0.2989 R + 0.5870 G + 0.1140 B``, ``tinted = gray * f_mode``, ``out = s * tinted + (1 - s) * x``.
The grey weights and the twenty multipliers are the node pack's, kept for parity (decisions.md §2);
"peach" equals "sepia" and "lavender" equals "purple" there too. Unlike the node, the mode is a
per-item parameter (a table lookup), so every tint mode can share one batch. The node does not clamp
(its multipliers are at most 1, so it cannot overflow); Darkroom clamps anyway, as every effect does.
"""

from __future__ import annotations

import torch

from worker.effects import fused
from worker.effects.common import clamp_finite_, luma
from worker.effects.registry import BatchParams, register

TINT_GRAY = (0.2989, 0.5870, 0.1140)

TINT_COLORS: dict[str, tuple[float, float, float]] = {
    "sepia": (1.0, 0.8, 0.6),
    "red": (1.0, 0.6, 0.6),
    "green": (0.6, 1.0, 0.6),
    "blue": (0.6, 0.8, 1.0),
    "cyan": (0.6, 1.0, 1.0),
    "magenta": (1.0, 0.6, 1.0),
    "yellow": (1.0, 1.0, 0.6),
    "purple": (0.8, 0.6, 1.0),
    "orange": (1.0, 0.7, 0.3),
    "warm": (1.0, 0.9, 0.7),
    "cool": (0.7, 0.9, 1.0),
    "lime": (0.7, 1.0, 0.3),
    "navy": (0.3, 0.4, 0.7),
    "vintage": (0.9, 0.85, 0.7),
    "rose": (1.0, 0.8, 0.9),
    "teal": (0.3, 0.8, 0.8),
    "maroon": (0.7, 0.3, 0.5),
    "peach": (1.0, 0.8, 0.6),
    "lavender": (0.8, 0.6, 1.0),
    "olive": (0.6, 0.7, 0.4),
}


@fused.kernel
def tint_kernel(x: torch.Tensor, colour: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    tinted = luma(x, TINT_GRAY) * colour
    return clamp_finite_(tinted.lerp_(x, 1 - strength))  # s * tinted + (1 - s) * x, in one pass


@register("tint")
def tint(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    return tint_kernel(x, p.table("tint_mode", TINT_COLORS, 3), p.scalar("tint_strength"))
