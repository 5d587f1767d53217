"""The effect chain: run a request's enabled effects, in schema order, on a batch.

Requests can share a batch when they have the same image size and the same chain key (the same
enabled effects with the same key fields); everything else travels per item.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from darkroom.apps.params import EffectParams
from worker.effects.registry import BatchParams, get_effect

Chain = Sequence[tuple[str, EffectParams]]


def chain_key(chain: Chain) -> tuple:
    """What two chains must share to run as one batch."""
    return tuple(get_effect(name).batch_key(params) for name, params in chain)


def make_generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    """One generator per item, so an item's noise never depends on its batch-mates."""
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    return gens


def run_chain(
    x: torch.Tensor,
    chains: Sequence[Chain],
    seeds: Sequence[int],
    images: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Apply each item's chain to the ``(B, 3, H, W)`` batch ``x``; chains must share ``chain_key``."""
    if len(chains) != x.shape[0] or len(seeds) != x.shape[0]:
        raise ValueError("one chain and one seed per batch item")
    if not chains or not chains[0]:
        return x
    if len({chain_key(c) for c in chains}) != 1:
        raise ValueError("chains of one batch must share their key")
    generators = make_generators(seeds, x.device)
    for step, (name, _) in enumerate(chains[0]):
        effect = get_effect(name)
        p = BatchParams(
            [c[step][1] for c in chains], x.device, effect.key_fields, generators, images or {}
        )
        x = effect(x, p)
    return x
