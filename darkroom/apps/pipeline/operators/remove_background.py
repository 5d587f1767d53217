"""``remove_background``: an alpha matte from a segmentation model (ONNX), multiplied into the image's
alpha, so a later ``composite`` can place the cut-out on a colour, a gradient or another image.

The model is named like every model (``darkroom models list``); the API refuses a request whose model
is not on disk, naming the pull command. Requests with the same model batch together; the other
fields may differ within a batch. Its device side is ``worker/operators/remove_background.py``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from darkroom.apps.pipeline.base import Operator, register_operator
from darkroom.models import get_model

DEFAULT_MODEL = "u2net"  # U²-Net (Apache-2.0): see docs/models.md for the choice and how to install it


@register_operator
class RemoveBackgroundStep(Operator):
    op: Literal["remove_background"] = "remove_background"
    model: str = Field(
        DEFAULT_MODEL, min_length=1, description="The segmentation model (`darkroom models list`, app matte)"
    )
    threshold: float | None = Field(
        None, ge=0, le=1,
        description="A hard matte: alpha 1 where the model's score reaches this, 0 elsewhere (default: soft)",
    )
    refine_edges: bool = Field(
        False, description="Snap the matte's edges to the image's edges (a guided filter along the edge band)"
    )
    key_fields = ("model",)

    @field_validator("model")
    @classmethod
    def _a_matte_model(cls, name: str) -> str:
        spec = get_model(name)  # unknown names are refused later, by check_models, with the pull hint
        if spec is not None and spec.kind != "matte":
            raise ValueError(f"{name} is a {spec.kind} model; remove_background takes a matte model")
        return name

    def model_names(self) -> list[str]:
        return [self.model]
