"""Parabolize: a per-channel parabolic tone curve, ``clamp(coeff * (x - vertex_x)**2 + vertex_y)``.

``vertex_x`` is the input value at the vertex and ``vertex_y`` the output value there; a negative
coefficient turns the parabola upside down. Same formula as the node pack; all three parameters travel
per item, so requests with different curves share a batch.
"""

from __future__ import annotations

import torch

from worker.effects import fused
from worker.effects.common import clamp_finite_
from worker.effects.registry import BatchParams, register


@fused.kernel
def curve(x: torch.Tensor, coeff: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor) -> torch.Tensor:
    d = x - vx
    return clamp_finite_(torch.addcmul(vy, d.square_(), coeff, out=d))  # one buffer, one pass eagerly


@register("parabolize")
def parabolize(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    return curve(x, p.scalar("parabolize_coeff"), p.scalar("vertex_x"), p.scalar("vertex_y"))
