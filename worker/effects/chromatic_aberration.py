"""Chromatic aberration: shift each colour channel by its own whole-pixel offset.

Node convention kept: a positive horizontal shift moves the channel's content right, a positive
vertical shift moves it up. Changed (decisions.md §3): the node's ``torch.roll`` wrapped pixels pushed
off one edge round to the far side; here the edge is clamped (the border pixel is repeated into the
vacated strip), as a real lens fringe would look. Shifts of a whole side or more leave the edge
pixel's row/column everywhere. Pure slicing: no per-pixel loops, no index tensors.
"""

from __future__ import annotations

import torch

from worker.effects.registry import BatchParams, register

CHANNELS = ("red", "green", "blue")


def shift_clamped(src: torch.Tensor, dst: torch.Tensor, shift: int, dim: int) -> None:
    """Write ``src`` moved by ``shift`` along ``dim`` (positive = towards higher indices) into ``dst``,
    repeating the edge slice into the vacated part."""
    n = src.shape[dim]
    s = max(-n, min(n, shift))
    if s == 0:
        dst.copy_(src)
    elif s > 0:
        dst.narrow(dim, s, n - s).copy_(src.narrow(dim, 0, n - s))
        dst.narrow(dim, 0, s).copy_(src.narrow(dim, 0, 1).expand_as(dst.narrow(dim, 0, s)))
    else:
        s = -s
        dst.narrow(dim, 0, n - s).copy_(src.narrow(dim, s, n - s))
        edge = dst.narrow(dim, n - s, s)
        edge.copy_(src.narrow(dim, n - 1, 1).expand_as(edge))


def channel_shift(name: str, p: BatchParams) -> tuple[int, int]:
    """(shift along H, shift along W) in index terms: vertical positive = up = towards lower rows."""
    shift = int(p.key(f"{name}_shift"))
    if p.key(f"{name}_direction") == "vertical":
        return -shift, 0
    return 0, shift


@register(
    "chromatic_aberration",
    key_fields=tuple(f"{c}_{k}" for c in CHANNELS for k in ("shift", "direction")),
)
def chromatic_aberration(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    shifts = [channel_shift(c, p) for c in CHANNELS]
    if all(s == (0, 0) for s in shifts):
        return x
    out = torch.empty_like(x)
    for c, (dy, dx) in enumerate(shifts):
        src, dst = x[:, c], out[:, c]
        if dy:
            shift_clamped(src, dst, dy, dim=-2)
        else:
            shift_clamped(src, dst, dx, dim=-1)
    return out
