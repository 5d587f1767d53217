"""``upscale``: the darkroom/upscale app as a step (a diffusion upscaler, 2x or 4x; docs/diffusion.md).

The fields are the app's own (``UpscaleInput``'s field definitions and its model check), less what
belongs to a request rather than a step: the image, the seed (a step uses the request's seed plus its
index), the output encoding and ``sync_mode``. The batch key is what the app batches on (the model,
the steps, the guidance, the scale and the noise level); prompts may differ within a batch.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import create_model, model_validator

from darkroom.apps.diffusion import UpscaleInput
from darkroom.apps.pipeline.base import Operator, Size, multiplied, register_operator
from darkroom.apps.post_processing import ImageInputBase
from darkroom.models import Kind

REQUEST_FIELDS = frozenset(ImageInputBase.model_fields)  # the request's, not a step's


class _UpscaleBase(Operator):
    op: Literal["upscale"] = "upscale"
    kind: ClassVar[Kind] = UpscaleInput.kind
    prompt_fields: ClassVar[tuple[str, ...]] = UpscaleInput.prompt_fields
    key_fields = ("model", "num_inference_steps", "guidance_scale", "scale", "noise_level")

    # the app's check: a known upscale model, and prompt fields only for a model that takes them
    _check_model = model_validator(mode="after")(UpscaleInput._check_model)

    def output_size(self, size: Size, refs: dict[str, Size]) -> Size:
        return multiplied(size, self.scale)

    def model_names(self) -> list[str]:
        return [self.model]


def _fields() -> dict[str, Any]:
    return {
        name: (info.annotation, info)
        for name, info in UpscaleInput.model_fields.items()
        if name not in REQUEST_FIELDS
    }


UpscaleStep = register_operator(create_model("UpscaleStep", __base__=_UpscaleBase, **_fields()))
