"""The ``darkroom/pipeline`` app: one request, many steps (docs/pipelines.md).

Unlike the lenient fal apps, a pipeline is strict: an unknown key anywhere, an unknown op, a bad
value, a reference image that is not given, or a step that makes an image larger than
``max_output_pixels`` is a 422 that names the step and the field.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from darkroom.apps.pipeline import operators as _operators_pkg
from darkroom.apps.pipeline.base import OPERATORS, Operator, Size, StepError
from darkroom.apps.post_processing import MAX_SEED, ProcessedOutput, check_image_url, is_trusted
from darkroom.errors import InvalidInput
from darkroom.fonts import available_fonts, font_key
from darkroom.models import get_model

PIPELINE = "darkroom/pipeline"
MAX_STEPS = 16
MAX_IMAGES = 8
OUTPUT_FORMATS = ("png", "jpeg", "webp", "avif")
MIN_SHRINK_QUALITY = 40  # max_bytes never lowers a lossy quality below this
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
RECIPE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"  # recipe names: lower-case letters, digits and -


def load_operators() -> dict[str, type[Operator]]:
    """Import every module of the operators folder (each registers itself) and return the registry."""
    for info in pkgutil.iter_modules(_operators_pkg.__path__):
        importlib.import_module(f"{_operators_pkg.__name__}.{info.name}")
    return OPERATORS


load_operators()
Step = Annotated[Union[tuple(OPERATORS.values())], Field(discriminator="op")]  # noqa: UP007
STEP_ADAPTER: TypeAdapter = TypeAdapter(Step)


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["png", "jpeg", "webp", "avif"] = Field("png", description="Output format")
    quality: int = Field(90, ge=1, le=100, description="JPEG/WebP/AVIF quality")
    max_bytes: int | None = Field(
        None, ge=1024, le=2**31,
        description=f"Largest output file: lossy quality is lowered (not below {MIN_SHRINK_QUALITY}) and "
        "PNG compressed harder until it fits; else the job fails with output_too_large",
    )


class PipelineInput(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    image_url: str | None = Field(None, description="URL or data URI of the image to process")
    images: dict[str, str] | None = Field(
        None, description=f"Named images (at most {MAX_IMAGES}): the first is processed, the others are "
        "references that steps name (composite, overlay, dissolve)",
    )
    steps: list[Step] | None = Field(
        None, description=f"The steps, 1 to {MAX_STEPS}, run in order",
        examples=[[
            {"op": "resize", "width": 1024},
            {"op": "effects", "enable_grain": True, "grain_style": "kodak", "enable_vignette": True},
            {"op": "pad", "aspect_ratio": "1:1", "color": "white"},
            {"op": "overlay", "text": "© Darkroom", "size_percent": 4, "opacity": 0.6},
        ]],
    )
    recipe: str | None = Field(
        None, pattern=RECIPE_PATTERN, description="A saved pipeline instead of steps (see /darkroom/recipes)"
    )
    overrides: dict[int, dict[str, Any]] | None = Field(
        None, description="With recipe: per-step changes, keyed by step index, e.g. {\"0\": {\"width\": 800}}"
    )
    output: OutputSpec = Field(default_factory=OutputSpec, description="Output format, quality and size cap")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed for noise (drawn when absent)")
    sync_mode: bool = Field(False, description="Return data URIs and store no object")
    from_recipe: SkipJsonSchema[dict[str, Any] | None] = Field(
        None, description="Set by Darkroom on a stored job: the recipe name and version its steps came from"
    )

    @model_validator(mode="before")
    @classmethod
    def _lift_dissolve_urls(cls, data: Any) -> Any:
        """fal's ``dissolve_image_url`` inside an effects step becomes a named reference image."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            return data
        if not isinstance(data.get("images"), dict | None):
            return data  # not a map: the field's own validation says so
        if not data.get("images") and not data.get("image_url"):
            return data  # no image to process: the model says so, rather than processing the dissolve one
        steps, images = [], dict(data.get("images") or {})
        for i, step in enumerate(data["steps"]):
            if isinstance(step, dict) and step.get("op") == "effects" and "dissolve_image_url" in step:
                step = dict(step)
                url = step.pop("dissolve_image_url")
                if url:
                    name = f"step{i}_dissolve"
                    images[name] = url
                    step["dissolve_image"] = name
            steps.append(step)
        out = {**data, "steps": steps}
        if images:
            if not data.get("images") and data.get("image_url"):
                images = {"image": data["image_url"], **images}
                out.pop("image_url")
            out["images"] = images
        return out

    @field_validator("steps")
    @classmethod
    def _step_count(cls, v):
        if v is not None and not 1 <= len(v) <= MAX_STEPS:
            raise ValueError(f"give 1 to {MAX_STEPS} steps, got {len(v)}")
        return v

    @field_validator("images")
    @classmethod
    def _image_names(cls, v, info):
        if v is None:
            return v
        if not 1 <= len(v) <= MAX_IMAGES:
            raise ValueError(f"give 1 to {MAX_IMAGES} images, got {len(v)}")
        for name, url in v.items():
            if not _NAME.match(name):
                raise ValueError(f"image name {name!r}: letters, digits, - and _, starting with a letter")
            check_image_url(url, f"images.{name}", trusted=is_trusted(info))
        return v

    @field_validator("image_url")
    @classmethod
    def _image_url(cls, v, info):
        return v if v is None else check_image_url(v, "image_url", trusted=is_trusted(info))

    @field_validator("from_recipe")
    @classmethod
    def _set_by_darkroom(cls, v, info):
        if v is not None and not is_trusted(info):
            raise ValueError("from_recipe is set by Darkroom when it expands a recipe; give recipe instead")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PipelineInput:
        if (self.image_url is None) == (self.images is None):
            raise ValueError("give image_url or images (a name -> URL map), not both")
        if (self.steps is None) == (self.recipe is None):
            raise ValueError("give steps or recipe, not both")
        if self.overrides is not None and self.recipe is None:
            raise ValueError("overrides change a recipe's steps: give recipe too")
        names = set(self.images or {})
        for i, step in enumerate(self.steps or ()):
            for ref in step.references():
                if ref not in names:
                    given = ", ".join(sorted(names)) or "none (give them in images)"
                    message = f"no reference image named {ref!r} in images (given: {given})"
                    raise step_field_error(i, step, _ref_field(step, ref), message, ref)
        return self

    # --- what the worker and the API read ---------------------------------------------------------
    def source_name(self) -> str:
        return next(iter(self.images)) if self.images else "image"

    def image_urls(self) -> dict[str, str]:
        """Every image by name, the processed one first."""
        return dict(self.images) if self.images else {"image": self.image_url or ""}


def _ref_field(step: Operator, ref: str) -> str:
    return next((f for f in ("image", "dissolve_image") if getattr(step, f, None) == ref), "image")


def step_field_error(index: int, step: Operator, field: str, message: str, value: Any) -> ValidationError:
    """A 422 located at ``steps.<index>.<op>.<field>``, as pydantic locates a step's own errors."""
    details = InitErrorDetails(
        type=PydanticCustomError("value_error", message), loc=("steps", index, step.op, field), input=value
    )
    return ValidationError.from_exception_data("PipelineInput", [details])


class StepMetrics(BaseModel):
    op: str
    ms: float
    batch_size: int


class PipelineMetrics(BaseModel):
    inference_time: float = Field(..., description="Seconds of work on the job (fetch, steps, encode)")
    steps: list[StepMetrics] = Field(..., description="Each step: its op, its time and its batch size")


class PipelineOutput(ProcessedOutput):
    metrics: PipelineMetrics | None = Field(None, description="Where the time went, step by step")


# --- checks that need settings or sizes -----------------------------------------------------------


def step_sizes(steps: list[Operator], size: Size, refs: dict[str, Size]) -> Iterator[tuple[int, Size]]:
    """Each step's index and output size, from an input of ``size``; a step that cannot apply raises
    InvalidInput naming it."""
    for i, step in enumerate(steps):
        try:
            size = step.output_size(size, refs)
        except StepError as exc:
            raise InvalidInput(f"steps.{i}.{step.op}.{exc.field}: {exc}") from None
        yield i, size


def check_sizes(steps: list[Operator], size: Size, refs: dict[str, Size], max_pixels: int) -> Size:
    """Walk the steps from an input of ``size``; refuse one whose output passes ``max_pixels``."""
    for i, (w, h) in step_sizes(steps, size, refs):
        if w * h > max_pixels:
            raise InvalidInput(
                f"steps.{i}.{steps[i].op}: makes a {w}x{h} image, more than max_output_pixels "
                f"({max_pixels:,}); make it smaller"
            )
        size = (w, h)
    return size


def check_fonts(steps: list[Operator], fonts_dir: str | None) -> None:
    fonts = None
    for i, step in enumerate(steps):
        name = getattr(step, "font", None)
        if name is None or getattr(step, "text", None) is None:
            continue
        fonts = fonts or available_fonts(fonts_dir)
        if font_key(name) not in fonts:
            known = ", ".join(sorted(fonts))
            raise InvalidInput(f"steps.{i}.{step.op}.font: unknown font {name!r}; available: {known}")


def check_models(steps: list[Operator], settings: Any) -> None:
    """Every model a step names must be registered and on disk (workers never download)."""
    for i, step in enumerate(steps):
        for name in step.model_names():
            spec = get_model(name)
            if spec is None:
                where = f"steps.{i}.{step.op}.model"
                raise InvalidInput(f"{where}: unknown model {name!r}; see `darkroom models list`")
            if not spec.is_present(settings.models_dir):
                raise InvalidInput(
                    f"steps.{i}.{step.op}.model: {name} is not on this server; {spec.pull_hint()}"
                )


def _pillow_writes_avif() -> bool:
    from PIL import features  # the API has Pillow; the client, which imports this module, may not

    return bool(features.check("avif"))


def check_static(body: PipelineInput, settings: Any) -> None:
    """What the API checks before a job exists, with no image at hand: fonts, and every size a
    step gives outright."""
    steps = body.steps or []
    if body.output.format == "avif" and not _pillow_writes_avif():
        raise InvalidInput("output.format: this server's Pillow cannot write AVIF; choose webp, jpeg or png")
    check_fonts(steps, getattr(settings, "fonts_dir", None))
    check_models(steps, settings)
    limit = settings.max_output_pixels
    for i, step in enumerate(steps):
        w, h = (getattr(step, "width", None), getattr(step, "height", None))
        if isinstance(w, int) and isinstance(h, int) and w * h > limit:
            raise InvalidInput(
                f"steps.{i}.{step.op}: asks for {w}x{h}, more than max_output_pixels ({limit:,}); "
                "make it smaller"
            )
