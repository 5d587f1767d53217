"""The device side of pipeline operators: one file per operator, named like its step model in
``darkroom/apps/pipeline/operators/`` and registered under the same op name.

A kernel is a pure function ``fn(x, batch) -> y`` on a ``(B, 4, H, W)`` float32 RGBA batch in [0, 1]
(straight alpha) whose items share the step's batch key, returning ``(B, 4, H', W')`` on the same
device. ``batch.steps[i]`` is item i's own step: fields outside the key may differ per item.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from darkroom.apps.pipeline.base import Operator


@dataclass
class StepBatch:
    """What a kernel gets besides the pixels."""

    steps: Sequence[Any]  # one step model per item
    device: torch.device
    seeds: Sequence[int] = ()  # one per item: the job's seed, offset by the step's index
    refs: Sequence[dict[str, Any]] = ()  # per item: reference name -> imaging.DecodedImage
    settings: Any = None
    cache: dict[Any, Any] = field(default_factory=dict)  # per item tensors a kernel may reuse

    @property
    def size(self) -> int:
        return len(self.steps)

    def colors(self, values: Sequence[tuple[float, float, float, float]]) -> torch.Tensor:
        """Per-item RGBA colours as a ``(B, 4, 1, 1)`` tensor."""
        return torch.tensor(values, dtype=torch.float32, device=self.device).view(-1, 4, 1, 1)

    def scalar(self, values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.device).view(-1, 1, 1, 1)


KernelFn = Callable[[torch.Tensor, StepBatch], torch.Tensor]


@dataclass(frozen=True)
class Kernel:
    name: str
    fn: KernelFn
    key: Callable[[Operator], tuple] | None = None  # batch key; default: the step model's

    def batch_key(self, step: Operator) -> tuple:
        return self.key(step) if self.key else step.batch_key()


KERNELS: dict[str, Kernel] = {}


def register_kernel(
    name: str, key: Callable[[Operator], tuple] | None = None
) -> Callable[[KernelFn], KernelFn]:
    def deco(fn: KernelFn) -> KernelFn:
        if name in KERNELS:
            raise ValueError(f"kernel {name!r} registered twice")
        KERNELS[name] = Kernel(name, fn, key)
        return fn

    return deco


def get_kernel(name: str) -> Kernel:
    if name not in KERNELS:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
    return KERNELS[name]


def premultiplied(x: torch.Tensor) -> torch.Tensor:
    """RGB times alpha, alpha kept: what resampling and blurring must work on (no dark fringes)."""
    return torch.cat([x[:, :3] * x[:, 3:], x[:, 3:]], dim=1)


def straight(x: torch.Tensor) -> torch.Tensor:
    """Back from :func:`premultiplied` (RGB / alpha where alpha > 0)."""
    a = x[:, 3:]
    rgb = torch.where(a > 1e-6, x[:, :3] / a.clamp_min(1e-6), torch.zeros_like(x[:, :3]))
    return torch.cat([rgb.clamp_(0, 1), a.clamp(0, 1)], dim=1)


def over(top: torch.Tensor, bottom: torch.Tensor, opacity: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Porter-Duff "over" of straight-alpha RGBA ``top`` on ``bottom`` (same shape), ``top``'s alpha
    scaled by ``opacity``."""
    ta = top[:, 3:] * opacity
    ba = bottom[:, 3:]
    out_a = ta + ba * (1 - ta)
    rgb = top[:, :3] * ta + bottom[:, :3] * ba * (1 - ta)
    rgb = torch.where(out_a > 1e-6, rgb / out_a.clamp_min(1e-6), torch.zeros_like(rgb))
    return torch.cat([rgb, out_a], dim=1)
