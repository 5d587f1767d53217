"""``composite``: the image (with its alpha) onto a colour, a linear gradient or a reference image,
optionally over a soft drop shadow."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from darkroom.apps.pipeline.base import (
    MAX_SIDE,
    Color,
    Gravity,
    Operator,
    Size,
    StepError,
    color_validator,
    register_operator,
    scaled,
)


class Gradient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    start: str = Color("#ffffff", "Colour where the gradient starts")
    end: str = Color("#000000", "Colour where it ends")
    angle: float = Field(
        90, ge=0, le=360, description="Direction in degrees: 0 left to right, 90 top to bottom"
    )

    _colours = color_validator("start", "end")


class Shadow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    offset_x: int = Field(0, ge=-2000, le=2000, description="Shadow offset to the right, px")
    offset_y: int = Field(12, ge=-2000, le=2000, description="Shadow offset downwards, px")
    blur: float = Field(16, ge=0, le=200, description="Softness: Gaussian sigma in px")
    opacity: float = Field(0.45, ge=0, le=1, description="Shadow opacity")
    color: str = Color("#000000", "Shadow colour")

    _colour = color_validator("color")


@register_operator
class CompositeStep(Operator):
    op: Literal["composite"] = "composite"
    color: str | None = Color(None, "Background colour")  # type: ignore[arg-type]
    gradient: Gradient | None = Field(None, description="Background: a linear gradient")
    image: str | None = Field(None, description="Background: the name of a reference image in `images`")
    width: int | None = Field(
        None, ge=1, le=MAX_SIDE, description="Canvas width (colour/gradient; default the image's)"
    )
    height: int | None = Field(
        None, ge=1, le=MAX_SIDE, description="Canvas height (colour/gradient; default the image's)"
    )
    scale: float = Field(1.0, gt=0, le=4, description="Image size: fitted inside the canvas, times this")
    gravity: Gravity = Field("center", description="Where the image sits on the canvas")
    offset_x: int = Field(0, ge=-MAX_SIDE, le=MAX_SIDE, description="Moves the image right, px")
    offset_y: int = Field(0, ge=-MAX_SIDE, le=MAX_SIDE, description="Moves the image down, px")
    shadow: Shadow | None = Field(None, description="A soft drop shadow under the image")
    key_fields = ("width", "height", "scale", "gravity", "offset_x", "offset_y", "shadow")

    _colour = color_validator("color")

    @model_validator(mode="after")
    def _one_background(self) -> CompositeStep:
        if sum(v is not None for v in (self.color, self.gradient, self.image)) != 1:
            raise ValueError("give exactly one background: color, gradient or image")
        if self.image is not None and (self.width or self.height):
            raise ValueError(
                "width and height size a colour or gradient canvas; an image background has its own size"
            )
        return self

    def references(self) -> list[str]:
        return [self.image] if self.image else []

    def canvas(self, size: Size, refs: dict[str, Size]) -> Size:
        if self.image is not None:
            if self.image not in refs:
                raise StepError("image", f"no reference image named {self.image!r}")
            return refs[self.image]
        return self.width or size[0], self.height or size[1]

    def foreground(self, size: Size, canvas: Size) -> Size:
        """The image's size on the canvas: fitted inside it, times ``scale``."""
        fit = min(canvas[0] / size[0], canvas[1] / size[1])
        return scaled(size, fit * self.scale)

    def output_size(self, size: Size, refs: dict[str, Size]) -> Size:
        return self.canvas(size, refs)
