"""A sample request run at worker start, so the fused kernels it reaches compile before real jobs ask.

The sample enables every registered effect with each bounded number at 60% of its range (so no step is
neutral and skipped) and the modes at their defaults; then every effect runs at its defaults (the radii
most requests keep). Both run on tiny images: a batch of one and a batch of two, the two shape classes a
kernel compiles for (worker.effects.fused). Running it only queues the
compiles; :func:`worker.effects.fused.wait` blocks until they are done.
"""

from __future__ import annotations

import logging

import torch

from darkroom.apps.params import GROUPS_BY_NAME, EffectParams
from worker.effects import load_all
from worker.effects.chain import Chain, run_chain
from worker.effects.registry import EFFECTS

log = logging.getLogger(__name__)

SAMPLE_SIDE = 24
SAMPLE_AT = 0.6  # where in each bounded number's range the sample sits


def sample_params(name: str) -> EffectParams:
    """The effect's parameters at :data:`SAMPLE_AT` of every bounded number's range; key fields, modes and
    unbounded fields at their defaults."""
    effect = EFFECTS[name]
    values = {}
    for field, info in effect.params.model_fields.items():
        if field in effect.key_fields or info.annotation not in (int, float):
            continue
        lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
        hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
        if lo is None or hi is None:
            continue
        value = lo + SAMPLE_AT * (hi - lo)
        values[field] = round(value) if info.annotation is int else value
    return effect.params(**values)


def sample_chain() -> Chain:
    """Every registered effect of the post-processing request, in the schema's order."""
    load_all()
    return [(name, sample_params(name)) for name in GROUPS_BY_NAME if name in EFFECTS]


def default_chain() -> Chain:
    """Every registered effect at its defaults: the kernels that depend on a number (a blur's tap count
    follows its radius) are compiled for the values most requests leave as they are."""
    load_all()
    return [(name, EFFECTS[name].params()) for name in GROUPS_BY_NAME if name in EFFECTS]


def prime(device: torch.device) -> None:
    """Run the sample request and the defaults on batches of one and two (queuing the compiles of what
    they reach)."""
    chains = [sample_chain(), default_chain()]
    g = torch.Generator(device="cpu").manual_seed(0)
    for chain in chains:
        for b in (1, 2):
            with torch.inference_mode():  # inference tensors, as a worker's batches are
                x = torch.rand((b, 3, SAMPLE_SIDE, SAMPLE_SIDE), generator=g).to(device)
                images = {"dissolve": torch.rand((b, 3, SAMPLE_SIDE, SAMPLE_SIDE), generator=g).to(device)}
                run_chain(x, [chain] * b, list(range(b)), images)
    log.debug("sample request and defaults run on %s (%d effects)", device, len(chains[0]))
