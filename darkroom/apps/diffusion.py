"""Input and output models of the diffusion apps: `darkroom/upscale` and `darkroom/refine` (torch-free).

Every field is checked here, so a bad request is a 422 naming its field before a job exists: unknown
models, a model of the other app, prompt fields on a model that takes none, steps and strength that
leave nothing to do. Stored jobs are validated again by the worker (``trusted``); there an unknown
model is left to the worker, which answers ``model_unavailable``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, ValidationInfo, model_validator

from darkroom.apps.post_processing import MAX_SEED, Image, ImageInputBase, field_error, is_trusted
from darkroom.models import DEFAULT_REFINE_MODEL, DEFAULT_UPSCALE_MODEL, Kind, get_model, model_names

UPSCALE_APP = "darkroom/upscale"
REFINE_APP = "darkroom/refine"
MAX_STEPS = 150
MAX_PROMPT_CHARS = 2000
SEED_TEXT = "Seed of the diffusion noise (drawn when absent); image i of a request uses seed + i"


class _DiffusionInput(ImageInputBase):
    kind: ClassVar[Kind]
    prompt_fields: ClassVar[tuple[str, ...]] = ()

    seed: int | None = Field(None, ge=0, le=MAX_SEED, description=SEED_TEXT)
    model: str
    num_inference_steps: int = Field(25, ge=1, le=MAX_STEPS, description="Denoising steps")

    @model_validator(mode="after")
    def _check_model(self, info: ValidationInfo) -> _DiffusionInput:
        spec = get_model(self.model)
        title = type(self).__name__
        if spec is None:
            if is_trusted(info):
                return self  # the worker fails the job with model_unavailable
            message = f"unknown model {self.model!r}; {self.kind} models: {model_names(self.kind)}"
            raise field_error(title, "model", message, self.model)
        if spec.kind != self.kind:
            message = (f"{self.model} is a {spec.kind} model; {self.kind} models: {model_names(self.kind)}")
            raise field_error(title, "model", message, self.model)
        if not spec.takes_prompt:
            for name in self.prompt_fields:
                if getattr(self, name) not in (None, ""):
                    message = f"{self.model} takes no {name}; leave it out or choose a model that takes one"
                    raise field_error(title, name, message, getattr(self, name))
        return self


class UpscaleInput(_DiffusionInput):
    kind: ClassVar[Kind] = "upscale"
    prompt_fields: ClassVar[tuple[str, ...]] = ("prompt", "negative_prompt", "guidance_scale", "noise_level")

    scale: Literal[2, 4] = Field(
        4, description="Upscale factor; 2 runs the 4x model and resizes its output down by half"
    )
    model: str = Field(DEFAULT_UPSCALE_MODEL, description="Upscale model (`darkroom models list`)")
    num_inference_steps: int = Field(25, ge=1, le=MAX_STEPS, description="Denoising steps per tile")
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="What the image shows (models that "
                        "take a prompt only)")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="What to avoid (prompt models)")
    guidance_scale: float | None = Field(
        None, ge=0, le=30, description="Classifier-free guidance (prompt models; default 9)"
    )
    noise_level: int | None = Field(
        None, ge=0, le=350, description="Noise added to the input first (prompt models; default 20)"
    )


class RefineInput(_DiffusionInput):
    kind: ClassVar[Kind] = "refine"

    model: str = Field(DEFAULT_REFINE_MODEL, description="Image-to-image model (`darkroom models list`)")
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS, description="What the result shows")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="What to avoid")
    strength: float = Field(
        0.6, gt=0, le=1, description="How much to change the input: 0 keeps it, 1 ignores it"
    )
    guidance_scale: float = Field(7.5, ge=0, le=30, description="Classifier-free guidance (1 or less: off)")
    num_images: int = Field(1, ge=1, le=4, description="Images to make (each with its own seed)")

    @model_validator(mode="after")
    def _some_steps(self) -> RefineInput:
        if int(self.num_inference_steps * self.strength) < 1:
            message = (
                f"strength x num_inference_steps must give at least one denoising step "
                f"({self.strength:g} x {self.num_inference_steps} < 1); raise either"
            )
            raise field_error(type(self).__name__, "strength", message, self.strength)
        return self


class DiffusionOutput(BaseModel):
    images: list[Image]
    seed: int = Field(..., description="Seed used (image i: seed + i)")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds spent per phase")


DIFFUSION_INPUTS: dict[str, tuple[type[_DiffusionInput], str]] = {
    UPSCALE_APP: (UpscaleInput, "Upscale an image 2x or 4x with a diffusion upscaler"),
    REFINE_APP: (RefineInput, "Refine an image guided by a prompt (image-to-image diffusion)"),
}
