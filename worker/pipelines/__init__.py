"""Pipelines: what a worker runs for an app (``AppSpec.pipeline``), in three steps.

``prepare`` (per job, in its slot: fetch and decode inputs), ``run`` (on a batch of prepared jobs that
share a batch key, on the device) and ``finish`` (per job: encode and store outputs, return the result
body). The runner (worker/runner.py) wraps them with starting, cancellation, time limits, the batcher
and the guarded completion.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from darkroom.job import JobRecord


@dataclass
class Prepared:
    """A started job whose inputs are ready. Pipelines subclass it with what they need."""

    job: JobRecord
    body: Any
    pipeline: str
    key: tuple = ()  # what batch-mates must share, besides the pipeline
    timings: dict[str, float] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)  # every batch it ran in (re-runs included)

    @property
    def batch_key(self) -> tuple:
        solo = (self.job.id,) if self.job.crashes else ()  # a suspect in a crash runs alone
        return (self.pipeline, *self.key, *solo)


@dataclass(frozen=True)
class Pipeline:
    name: str
    prepare: Callable[..., Prepared]  # (ctx, job, body) -> Prepared
    run: Callable[..., list]  # (ctx, batch) -> one output per item
    finish: Callable[..., dict]  # (ctx, prepared, output) -> result body


PIPELINES: dict[str, Pipeline] = {}
_MODULES = {
    "effects": "worker.pipelines.effects",
    "diffusion": "worker.pipelines.diffusion",
    "pipeline": "worker.pipelines.pipeline",
}


def register_pipeline(pipeline: Pipeline) -> Pipeline:
    PIPELINES[pipeline.name] = pipeline
    return pipeline


def get_pipeline(name: str) -> Pipeline:
    if name not in PIPELINES and name in _MODULES:
        importlib.import_module(_MODULES[name])
    return PIPELINES[name]
