"""Recipes: saved pipelines. Built-ins are global and read-only; users' recipes live in Redis
(storage/recipes.py), one set per owner, every save a new version. A job stores the steps a recipe
expanded to, with its name and version, so a later edit never changes a queued job."""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from darkroom.apps.pipeline import MAX_STEPS, RECIPE_PATTERN, OutputSpec, Step

RECIPE_NAME = re.compile(RECIPE_PATTERN)


def check_recipe_name(name: str) -> str:
    if not RECIPE_NAME.match(name):
        raise ValueError(f"recipe name {name!r}: lower-case letters, digits and -, at most 64 characters")
    return name


class RecipeBody(BaseModel):
    """What a user saves (``PUT /darkroom/recipes/{name}``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    description: str = Field("", max_length=500, description="What the recipe is for")
    steps: list[Step] = Field(..., description=f"1 to {MAX_STEPS} steps")
    output: OutputSpec = Field(default_factory=OutputSpec, description="Output format, quality, size cap")

    @field_validator("steps")
    @classmethod
    def _count(cls, v):
        if not 1 <= len(v) <= MAX_STEPS:
            raise ValueError(f"give 1 to {MAX_STEPS} steps, got {len(v)}")
        return v

    def model_names(self) -> list[str]:
        """The models its steps run (a recipe whose models are not on the server is not listed)."""
        return sorted({name for step in self.steps for name in step.model_names()})


class Recipe(RecipeBody):
    """A stored recipe as the API lists it."""

    name: str
    version: int = 1
    builtin: bool = False
    updated_at: float | None = None


class RecipeRef(BaseModel):
    """Which recipe (and version) a job's steps came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: int


def expand(recipe: Recipe, overrides: dict[int, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The recipe's steps as plain dicts with ``overrides`` (step index -> fields) merged in; the
    caller validates the result as a pipeline, so a bad override is a 422 naming its step."""
    steps = [s.model_dump(mode="json", exclude_defaults=True) | {"op": s.op} for s in recipe.steps]
    for index, fields in (overrides or {}).items():
        if not 0 <= index < len(steps):
            last = len(steps) - 1
            raise ValueError(f"overrides: recipe {recipe.name!r} has steps 0 to {last}, not {index}")
        op = steps[index]["op"]
        if "op" in fields and fields["op"] != op:
            raise ValueError(f"overrides.{index}: step {index} is {op!r}; an override cannot change op")
        steps[index] = _merge(steps[index], fields)
    return steps


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _builtin(name: str, description: str, steps: list[dict], output: dict) -> Recipe:
    return Recipe.model_validate(
        {"name": name, "description": description, "steps": steps, "output": output, "builtin": True}
    )


BUILTIN_RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        _builtin(
            "web-optimise", "Fit inside 2048 px, sharpen lightly, WebP 82 under 500 KB",
            [
                {"op": "resize", "width": 2048, "height": 2048, "fit": "inside", "enlarge": False},
                {"op": "effects", "enable_sharpen": True, "sharpen_mode": "cas", "cas_amount": 0.4},
            ],
            {"format": "webp", "quality": 82, "max_bytes": 500_000},
        ),
        _builtin(
            "film-look", "Warm colour correction, Kodak grain and a vignette",
            [{
                "op": "effects", "enable_color_correction": True, "temperature": 12, "contrast": 8,
                "saturation": -6, "enable_grain": True, "grain_style": "kodak", "grain_intensity": 0.3,
                "enable_vignette": True, "vignette_strength": 0.4,
            }],
            {"format": "jpeg", "quality": 92},
        ),
        _builtin(
            "square-product", "Pad to 1:1 on white, 1024 px, JPEG 90",
            [
                {"op": "pad", "aspect_ratio": "1:1", "color": "white"},
                {"op": "resize", "width": 1024, "height": 1024, "fit": "fill"},
            ],
            {"format": "jpeg", "quality": 90},
        ),
        _builtin(
            "ecommerce-white", "Product cut out onto white with a soft shadow, square 1024 px, WebP 90",
            [
                {"op": "remove_background", "refine_edges": True},
                {"op": "composite", "color": "white", "scale": 0.9,
                 "shadow": {"offset_y": 16, "blur": 18, "opacity": 0.35}},
                {"op": "pad", "aspect_ratio": "1:1", "color": "white"},
                {"op": "resize", "width": 1024, "height": 1024, "fit": "fill"},
                {"op": "effects", "enable_sharpen": True, "sharpen_mode": "cas", "cas_amount": 0.5},
            ],
            {"format": "webp", "quality": 90},
        ),
        _builtin(
            "restore-photo", "JPEG artefacts and noise removed (Swin2SR), a light colour correction, JPEG 92",
            [
                {"op": "restore"},
                {"op": "effects", "enable_color_correction": True, "contrast": 6, "saturation": 4},
            ],
            {"format": "jpeg", "quality": 92},
        ),
        _builtin(
            "social-watermark", "1080 px wide with a text mark bottom right at 60 % (override step 1's text)",
            [
                {"op": "resize", "width": 1080},
                {"op": "overlay", "text": "© your name", "size_percent": 3.5, "opacity": 0.6,
                 "gravity": "bottom_right", "margin": 24, "stroke_width": 1, "stroke_color": "#00000080"},
            ],
            {"format": "jpeg", "quality": 85},
        ),
    )
}
