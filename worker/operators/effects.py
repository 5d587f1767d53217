"""``effects`` on the device: the fal effect chain on the RGB channels; alpha passes through."""

from __future__ import annotations

import torch

from worker import imaging
from worker.effects.chain import chain_key, run_chain
from worker.operators import StepBatch, register_kernel


def _key(step) -> tuple:
    return ("effects", chain_key(step.chain()))


@register_kernel("effects", key=_key)
def effects(x: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    chains = [step.chain() for step in batch.steps]
    if not chains[0]:
        return x
    images = {}
    if any(name == "dissolve" for name, _ in chains[0]):
        size = (x.shape[2], x.shape[3])
        pairs = zip(batch.steps, batch.refs, strict=True)
        others = [imaging.resize_rgb(refs[step.dissolve_image], size) for step, refs in pairs]
        images["dissolve"] = imaging.to_tensor(others, x.device)
    rgb = run_chain(x[:, :3].contiguous(), chains, batch.seeds, images)
    return torch.cat([rgb, x[:, 3:]], dim=1)
