"""The effect registry and the batched parameters effects receive.

An effect is a pure function ``fn(x, p) -> y`` on a ``(B, 3, H, W)`` float32 batch in [0, 1] (RGB, any
device) returning the same shape, dtype and device, finite and in [0, 1]. Parameters that change a
kernel's shape (radii, modes) are *key fields*: every item of a batch shares them. All other numeric
parameters arrive as per-item ``(B, 1, 1, 1)`` tensors, so one batch can mix requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from darkroom.apps.params import GROUPS_BY_NAME, EffectParams


@dataclass
class BatchParams:
    """Parameters of one effect for a batch of B items."""

    items: Sequence[EffectParams]
    device: torch.device
    key_fields: tuple[str, ...] = ()
    generators: Sequence[torch.Generator] = ()  # one per item, seeded per request
    images: dict[str, torch.Tensor] = field(default_factory=dict)  # extra inputs, e.g. "dissolve"

    @property
    def batch_size(self) -> int:
        return len(self.items)

    def key(self, name: str):
        """A key field's value: the same for every item (checked)."""
        if name not in self.key_fields:
            raise KeyError(f"{name} is not a key field of this effect")
        return getattr(self.items[0], name)

    def scalar(self, name: str) -> torch.Tensor:
        """A numeric per-item parameter as a ``(B, 1, 1, 1)`` float32 tensor on the batch's device."""
        values = [float(getattr(item, name)) for item in self.items]
        return torch.tensor(values, dtype=torch.float32, device=self.device).view(-1, 1, 1, 1)

    def values(self, name: str) -> list:
        """The raw per-item values of a parameter (e.g. an enum mapped to a tensor by the effect)."""
        return [getattr(item, name) for item in self.items]

    def table(self, name: str, lookup: dict, width: int) -> torch.Tensor:
        """Per-item enum values mapped through ``lookup`` to a ``(B, width, 1, 1)`` float32 tensor."""
        rows = [lookup[v] for v in self.values(name)]
        return torch.tensor(rows, dtype=torch.float32, device=self.device).view(-1, width, 1, 1)


EffectFn = Callable[[torch.Tensor, BatchParams], torch.Tensor]


@dataclass(frozen=True)
class Effect:
    name: str
    fn: EffectFn
    params: type[EffectParams]
    key_fields: tuple[str, ...] = ()
    needs_rng: bool = False
    extra_images: tuple[str, ...] = ()

    def batch_key(self, params: EffectParams) -> tuple:
        """What must be equal for two requests to share a batch through this effect."""
        return (self.name, *(getattr(params, f) for f in self.key_fields))

    def __call__(self, x: torch.Tensor, p: BatchParams) -> torch.Tensor:
        return self.fn(x, p)


EFFECTS: dict[str, Effect] = {}


def register(
    name: str,
    *,
    key_fields: tuple[str, ...] = (),
    needs_rng: bool = False,
    extra_images: tuple[str, ...] = (),
    params: type[EffectParams] | None = None,
) -> Callable[[EffectFn], EffectFn]:
    """Register ``fn`` as the effect ``name``. Its parameter model comes from the shared contract
    (``darkroom.apps.params``); plugins registering effects of their own pass ``params``."""
    params = params or GROUPS_BY_NAME[name].params
    unknown = set(key_fields) - set(params.model_fields)
    if unknown:
        raise ValueError(f"{name}: unknown key fields {sorted(unknown)}")

    def deco(fn: EffectFn) -> EffectFn:
        if name in EFFECTS:
            raise ValueError(f"effect {name!r} registered twice")
        EFFECTS[name] = Effect(name, fn, params, key_fields, needs_rng, extra_images)
        return fn

    return deco


def get_effect(name: str) -> Effect:
    from worker.effects import load_all

    load_all()
    return EFFECTS[name]


def apply(
    name: str,
    x: torch.Tensor,
    items: Sequence[EffectParams],
    generators: Sequence[torch.Generator] = (),
    images: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run one effect on a batch (convenience for the pipeline, tests and benchmarks)."""
    effect = get_effect(name)
    p = BatchParams(items, x.device, effect.key_fields, generators, images or {})
    keys = {effect.batch_key(i) for i in items}
    if len(keys) > 1:
        raise ValueError(f"{name}: items of one batch must share key fields {effect.key_fields}")
    return effect(x, p)
