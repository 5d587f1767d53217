"""``restore``: JPEG-artefact removal and denoising with a Swin2SR model, at the input size or larger.

The model (``model``, a name in darkroom.models' registry whose pipeline is
``Swin2SRForImageSuperResolution``) restores at its own factor (×4 for the default); the result is
brought to ``scale`` times the input: area-averaged down when ``scale`` is below the model's factor,
bicubic up when above. The worker runs it on overlapping tiles (``tile_px``, ``overlap_px``) blended
without seams (worker/operators/restore.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from darkroom.apps.pipeline.base import Operator, Size, multiplied, register_operator
from darkroom.models import get_model, model_names

# the builtin restore model (registered in darkroom.models.BUILTIN_MODELS under this name)
DEFAULT_RESTORE_MODEL = "caidas/swin2SR-compressed-sr-x4-48"
MAX_SCALE = 4


@register_operator
class RestoreStep(Operator):
    op: Literal["restore"] = "restore"
    model: str = Field(
        DEFAULT_RESTORE_MODEL, min_length=1, max_length=200,
        description="A restore model (Swin2SR) by name; `darkroom models list` shows them",
    )
    scale: int = Field(
        1, ge=1, le=MAX_SCALE,
        description="Output size in multiples of the input: 1 keeps the size (the model's larger output is "
        "averaged back down)",
    )
    tile_px: int = Field(
        256, ge=32, le=1024, multiple_of=8,
        description="Side of the input tiles the model runs on (a multiple of 8); bounds device memory",
    )
    overlap_px: int = Field(
        32, ge=0, le=256,
        description="Overlap of neighbouring tiles (input px, under half a tile), feathered without seams",
    )
    key_fields = ("model", "scale", "tile_px", "overlap_px")

    @field_validator("model")
    @classmethod
    def _a_restore_model(cls, v: str) -> str:
        spec = get_model(v)  # unknown names are left to check_models, which names `darkroom models list`
        if spec is not None and spec.kind != "restore":
            known = model_names("restore") or "none registered"
            raise ValueError(f"{v} is not a restore model (it serves {spec.kind}); restore models: {known}")
        return v

    @field_validator("overlap_px")
    @classmethod
    def _overlap_fits(cls, v: int, info: ValidationInfo) -> int:
        tile = info.data.get("tile_px")
        if tile is not None and v * 2 >= tile:
            raise ValueError(f"must be less than half of tile_px ({tile})")
        return v

    def output_size(self, size: Size, refs: dict[str, Size]) -> Size:
        return multiplied(size, self.scale)

    def model_names(self) -> list[str]:
        return [self.model]
