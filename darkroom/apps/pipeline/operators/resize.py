"""``resize``: to a width and/or height, or by a scale, with four ways to fit."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from darkroom.apps.pipeline.base import (
    MAX_SIDE,
    Color,
    Gravity,
    Operator,
    Size,
    color_validator,
    register_operator,
    scaled,
)

Fit = Literal["contain", "cover", "fill", "inside"]
Filter = Literal["auto", "area", "bilinear", "bicubic", "lanczos"]


@register_operator
class ResizeStep(Operator):
    op: Literal["resize"] = "resize"
    width: int | None = Field(None, ge=1, le=MAX_SIDE, description="Target width in pixels")
    height: int | None = Field(None, ge=1, le=MAX_SIDE, description="Target height in pixels")
    scale: float | None = Field(None, gt=0, le=16, description="Scale factor instead of a size")
    fit: Fit = Field(
        "inside",
        description="With both width and height: inside (whole image, aspect kept, within the box), "
        "contain (inside, then padded to the box with `background`), cover (fills the box, the excess "
        "cropped by `gravity`), fill (exactly the box, aspect ignored)",
    )
    gravity: Gravity = Field("center", description="What cover keeps and where contain places the image")
    background: str = Color("transparent", "Padding colour for fit=contain")
    filter: Filter = Field("auto", description="auto: area when shrinking, bicubic when growing")
    enlarge: bool = Field(True, description="false: never make the image larger than it is")
    key_fields = ("width", "height", "scale", "fit", "gravity", "filter", "enlarge")

    _colour = color_validator("background")

    @model_validator(mode="after")
    def _one_target(self) -> ResizeStep:
        if self.scale is not None and (self.width or self.height):
            raise ValueError("give width/height or scale, not both")
        if self.scale is None and not (self.width or self.height):
            raise ValueError("give width, height or scale")
        return self

    def plan(self, size: Size) -> tuple[Size, Size]:
        """(the size the image is resampled to, the size of the output)."""
        w, h = size
        if self.scale is not None:
            factor = self.scale
        elif self.width and self.height and self.fit in ("fill", "cover", "contain"):
            box = (self.width, self.height)
            if self.fit == "fill":
                return (box, box) if self.enlarge or (box[0] <= w and box[1] <= h) else (size, size)
            factor = (max if self.fit == "cover" else min)(self.width / w, self.height / h)
            capped = not self.enlarge and factor > 1
            inner = size if capped else scaled(size, factor)
            if self.fit == "cover":  # rounding must not leave a gap: at least the box, then cropped
                inner = inner if capped else (max(inner[0], box[0]), max(inner[1], box[1]))
                return inner, (min(box[0], inner[0]), min(box[1], inner[1]))
            return (min(inner[0], box[0]), min(inner[1], box[1])), box
        elif self.width and self.height:  # inside
            factor = min(self.width / w, self.height / h)
        else:
            factor = self.width / w if self.width else self.height / h  # type: ignore[operator]
        if not self.enlarge:
            factor = min(factor, 1.0)
        inner = scaled(size, factor)
        if self.width and not self.height and factor == self.width / w:
            inner = (self.width, inner[1])  # the side asked for is exact, whatever the rounding
        if self.height and not self.width and factor == self.height / h:
            inner = (inner[0], self.height)
        return inner, inner

    def output_size(self, size: Size, refs: dict[str, Size]) -> Size:
        return self.plan(size)[1]
