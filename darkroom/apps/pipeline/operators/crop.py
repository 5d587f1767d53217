"""``crop``: a box in pixels or fractions, or the largest box of an aspect ratio."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from darkroom.apps.pipeline.base import (
    Gravity,
    Operator,
    Size,
    StepError,
    aspect_box,
    aspect_validator,
    parse_aspect,
    place,
    register_operator,
)


@register_operator
class CropStep(Operator):
    op: Literal["crop"] = "crop"
    x: float = Field(0, ge=0, description="Left edge of the box")
    y: float = Field(0, ge=0, description="Top edge of the box")
    width: float | None = Field(None, gt=0, description="Box width")
    height: float | None = Field(None, gt=0, description="Box height")
    units: Literal["px", "fraction"] = Field("px", description="px, or fractions of the image (0-1)")
    aspect_ratio: str | float | None = Field(
        None, description="Instead of a box: the largest box of this aspect ('W:H' or a number)"
    )
    gravity: Gravity = Field("center", description="Where the aspect-ratio box sits")
    key_fields = ("x", "y", "width", "height", "units", "aspect_ratio", "gravity")

    _aspect = aspect_validator("aspect_ratio")

    @model_validator(mode="after")
    def _one_mode(self) -> CropStep:
        box = self.width is not None or self.height is not None
        if box and self.aspect_ratio is not None:
            raise ValueError("give a box (width, height) or aspect_ratio, not both")
        if not box and self.aspect_ratio is None:
            raise ValueError("give a box (width and height) or aspect_ratio")
        if box and (self.width is None or self.height is None):
            raise ValueError("a crop box needs both width and height")
        if self.units == "fraction":
            for name in ("x", "y", "width", "height"):
                value = getattr(self, name)
                if value is not None and value > 1:
                    raise ValueError(f"{name} is a fraction of the image (units=fraction): 0-1, got {value}")
        elif any(v is not None and v != int(v) for v in (self.x, self.y, self.width, self.height)):
            raise ValueError("a box in px needs whole numbers (or set units to 'fraction')")
        return self

    def box(self, size: Size) -> tuple[int, int, int, int]:
        """(x, y, width, height) in pixels, inside an image of ``size``."""
        w, h = size
        if self.aspect_ratio is not None:
            bw, bh = aspect_box(size, parse_aspect(self.aspect_ratio), grow=False)
            x, y = place(size, (bw, bh), self.gravity)
            return x, y, bw, bh
        if self.units == "fraction":
            x, y = round(self.x * w), round(self.y * h)
            bw, bh = max(1, round(self.width * w)), max(1, round(self.height * h))  # type: ignore[operator]
            bw, bh = min(bw, w - x), min(bh, h - y)
        else:
            x, y, bw, bh = int(self.x), int(self.y), int(self.width), int(self.height)  # type: ignore[arg-type]
        if bw < 1 or bh < 1 or x + bw > w or y + bh > h:
            raise StepError("width", f"the box {bw}x{bh} at ({x}, {y}) does not fit inside the {w}x{h} image")
        return x, y, bw, bh

    def output_size(self, size: Size, refs: dict[str, Size]) -> Size:
        _, _, bw, bh = self.box(size)
        return bw, bh
