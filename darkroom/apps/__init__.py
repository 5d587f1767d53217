"""The registry of apps Darkroom serves: app id -> input model and the worker pipeline that runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from darkroom.apps.diffusion import DIFFUSION_INPUTS, DiffusionOutput
from darkroom.apps.pipeline import PIPELINE, PipelineInput, PipelineOutput, check_static
from darkroom.apps.post_processing import (
    SINGLE_EFFECT_INPUTS,
    ImageInputBase,
    PostProcessingInput,
    ProcessedOutput,
)

POST_PROCESSING = "fal-ai/post-processing"


@dataclass(frozen=True)
class AppSpec:
    app_id: str  # full id used to submit, e.g. fal-ai/post-processing/blur
    base_id: str  # owner/app: status, result and cancel live under it (docs/contract.md §3.1)
    input_model: type[ImageInputBase] | type[PipelineInput]
    output_model: type[BaseModel]
    pipeline: str  # which worker pipeline runs it
    summary: str
    check: Callable[[Any, Any], None] | None = None  # (body, settings): checks that need the settings


def _build_apps() -> dict[str, AppSpec]:
    apps = {
        POST_PROCESSING: AppSpec(
            POST_PROCESSING, POST_PROCESSING, PostProcessingInput, ProcessedOutput, "effects",
            "Apply any combination of the 13 post-processing effects",
        )
    }
    for slug, model in SINGLE_EFFECT_INPUTS.items():
        app_id = f"{POST_PROCESSING}/{slug}"
        apps[app_id] = AppSpec(
            app_id, POST_PROCESSING, model, ProcessedOutput, "effects", f"Apply the {slug} effect"
        )
    for app_id, (model, summary) in DIFFUSION_INPUTS.items():  # each its own base id: darkroom/upscale
        apps[app_id] = AppSpec(app_id, app_id, model, DiffusionOutput, "diffusion", summary)
    apps[PIPELINE] = AppSpec(
        PIPELINE, PIPELINE, PipelineInput, PipelineOutput, "pipeline",
        "Run many steps in one request: resize, crop, pad, effects, composite, overlay, convert",
        check_static,
    )
    return apps


APPS: dict[str, AppSpec] = _build_apps()


def base_app_ids() -> list[str]:
    return sorted({a.base_id for a in APPS.values()})
