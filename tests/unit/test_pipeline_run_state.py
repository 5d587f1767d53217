"""worker/pipelines/pipeline.run changes its items only when the whole step succeeded: a batch the
batcher re-runs (item by item, or in halves after an out-of-memory) must start from the same state."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

import numpy as np
import pytest
import torch

from darkroom.apps.pipeline import STEP_ADAPTER
from darkroom.apps.pipeline.base import Operator
from darkroom.errors import RequestCancelled
from darkroom.job import JobRecord
from worker import imaging
from worker.batcher import Requeue
from worker.operators import register_kernel
from worker.pipelines import pipeline


class BrokenLast(Operator):
    """A step whose kernel answers three channels: converting its output fails after the kernel ran."""

    op: Literal["test-broken-last"] = "test-broken-last"


@register_kernel("test-broken-last")
def _broken(x: torch.Tensor, batch) -> torch.Tensor:
    return x[:, :3].clone()


def ctx() -> SimpleNamespace:
    """What run() reads of a worker context: the device, settings, and a step check saying nothing is
    cancelled, taken over or late (the pure function under test needs no servers)."""
    settings = SimpleNamespace(cpu_chunk_mib=3.0)
    return SimpleNamespace(device=torch.device("cpu"), settings=settings, step_stop=lambda _id: None)


def job(i: int, steps: list) -> pipeline.PipelineJob:
    rgb = np.full((8, 6, 3), 40 * i, dtype=np.uint8)
    record = JobRecord(id=f"j{i}", app_id="darkroom/pipeline", base_id="darkroom/pipeline", input={},
                       seed=i, created_at=0.0)
    source = imaging.DecodedImage(rgb, None, None, 6, 8, "png")
    p = pipeline.PipelineJob(record, None, "pipeline", (), {}, steps=steps, source=source, refs={})
    p.key = p.next_key()
    return p


def test_a_step_that_fails_after_its_kernel_leaves_every_item_as_it_was():
    pad = STEP_ADAPTER.validate_python({"op": "pad", "top": 2, "color": "white"})
    batch = [job(i, [pad, BrokenLast()]) for i in range(3)]
    outputs = pipeline.run(ctx(), batch)  # step 1: pad, fine
    assert all(isinstance(o, Requeue) for o in outputs)
    before = [(p.index, p.tensor.clone(), list(p.step_log), p.key) for p in batch]
    with pytest.raises(ValueError, match="4, H, W"):
        pipeline.run(ctx(), batch)  # step 2: its output cannot become an image
    for p, (index, tensor, log, key) in zip(batch, before, strict=True):
        assert p.index == index and p.step_log == log and p.key == key
        assert torch.equal(p.tensor, tensor)


def test_a_stopped_item_skips_its_step_and_the_others_run():
    pad = STEP_ADAPTER.validate_python({"op": "pad", "top": 2})
    batch = [job(i, [pad, pad]) for i in range(2)]
    logs = []
    c = ctx()
    c.step_stop = lambda rid: RequestCancelled("The request was cancelled") if rid == "j0" else None
    c.store = SimpleNamespace(add_log=lambda rid, message: logs.append((rid, message)))
    outputs = pipeline.run(c, batch)
    assert outputs[0] == pipeline.STOPPED and isinstance(outputs[1], Requeue)
    assert batch[0].index == 0 and batch[1].index == 1
    assert logs == [("j0", "stopped before step 1 of 2 (pad)")]
