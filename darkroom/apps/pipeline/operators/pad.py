"""``pad``: grow the canvas to a size, an aspect ratio or by margins, filled with a colour."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from darkroom.apps.pipeline.base import (
    MAX_SIDE,
    Color,
    Gravity,
    Operator,
    Size,
    aspect_box,
    aspect_validator,
    color_validator,
    parse_aspect,
    place,
    register_operator,
)


@register_operator
class PadStep(Operator):
    op: Literal["pad"] = "pad"
    width: int | None = Field(None, ge=1, le=MAX_SIDE, description="Canvas width (at least the image's)")
    height: int | None = Field(None, ge=1, le=MAX_SIDE, description="Canvas height (at least the image's)")
    aspect_ratio: str | float | None = Field(None, description="Grow the short side to this aspect ('W:H')")
    top: int = Field(0, ge=0, le=MAX_SIDE, description="Margin above, px")
    right: int = Field(0, ge=0, le=MAX_SIDE, description="Margin to the right, px")
    bottom: int = Field(0, ge=0, le=MAX_SIDE, description="Margin below, px")
    left: int = Field(0, ge=0, le=MAX_SIDE, description="Margin to the left, px")
    color: str = Color("transparent", "Fill colour")
    gravity: Gravity = Field("center", description="Where the image sits on a larger canvas")
    key_fields = ("width", "height", "aspect_ratio", "top", "right", "bottom", "left", "gravity")

    _colour = color_validator("color")
    _aspect = aspect_validator("aspect_ratio")

    @model_validator(mode="after")
    def _one_mode(self) -> PadStep:
        modes = [
            self.width is not None or self.height is not None,
            self.aspect_ratio is not None,
            any((self.top, self.right, self.bottom, self.left)),
        ]
        if sum(modes) != 1:
            raise ValueError("give one of: width/height, aspect_ratio or margins (top/right/bottom/left)")
        return self

    def placement(self, size: Size) -> tuple[Size, tuple[int, int]]:
        """(canvas size, top-left corner of the image on it)."""
        w, h = size
        if any((self.top, self.right, self.bottom, self.left)):
            return (w + self.left + self.right, h + self.top + self.bottom), (self.left, self.top)
        if self.aspect_ratio is not None:
            canvas = aspect_box(size, parse_aspect(self.aspect_ratio), grow=True)
        else:
            canvas = (max(w, self.width or w), max(h, self.height or h))
        return canvas, place(canvas, size, self.gravity)

    def output_size(self, size: Size, refs: dict[str, Size]) -> Size:
        return self.placement(size)[0]
