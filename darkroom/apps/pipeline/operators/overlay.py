"""``overlay``: text or a reference image (a watermark) over the image, once or tiled."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from darkroom.apps.pipeline.base import (
    Color,
    Gravity,
    Operator,
    color_validator,
    register_operator,
)

MAX_TEXT = 500


@register_operator
class OverlayStep(Operator):
    op: Literal["overlay"] = "overlay"
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT, description="Text to draw")
    font: str = Field("dejavu-sans", description="A packaged font (dejavu-sans, dejavu-sans-bold) or a "
                      ".ttf/.otf file name (without extension) in DARKROOM_FONTS_DIR")
    size: int | None = Field(None, ge=4, le=2000, description="Text height in px")
    size_percent: float | None = Field(None, gt=0, le=100, description="Text height in % of the image height")
    color: str = Color("#ffffff", "Text colour")
    stroke_width: int = Field(0, ge=0, le=100, description="Outline width around the text, px")
    stroke_color: str = Color("#000000", "Outline colour")
    image: str | None = Field(None, description="Instead of text: the name of a reference image in `images`")
    scale: float = Field(0.25, gt=0, le=1, description="Watermark width as a fraction of the image width")
    opacity: float = Field(1.0, ge=0, le=1, description="Opacity of the text or watermark")
    gravity: Gravity = Field("bottom_right", description="Where it sits (ignored when tiled)")
    margin: int = Field(16, ge=0, le=10_000, description="Distance from the edges (and between tiles), px")
    tiled: bool = Field(False, description="Repeat it across the whole image")
    key_fields = ()

    _colours = color_validator("color", "stroke_color")

    @model_validator(mode="after")
    def _text_or_image(self) -> OverlayStep:
        if (self.text is None) == (self.image is None):
            raise ValueError("give text or image (a reference name), not both")
        if self.size is not None and self.size_percent is not None:
            raise ValueError("give size (px) or size_percent, not both")
        return self

    def references(self) -> list[str]:
        return [self.image] if self.image else []

    def text_px(self, height: int) -> int:
        """The text height in pixels on an image ``height`` tall (5 % when no size is given)."""
        if self.size is not None:
            return self.size
        return max(4, round(height * (self.size_percent or 5.0) / 100))
