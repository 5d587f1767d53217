"""``refine``: the darkroom/refine app as a step (image-to-image diffusion guided by a prompt;
docs/diffusion.md). The image keeps its size.

The fields are the app's own (``RefineInput``'s field definitions, its model check and its check that
``strength x num_inference_steps`` leaves a step to run), less what belongs to a request rather than a
step: the image, the seed (a step uses the request's seed plus its index), the output encoding,
``sync_mode`` and ``num_images`` (a step makes one image). The batch key is what the app batches on
(the model, the steps, the guidance and the strength); prompts may differ within a batch.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import create_model, model_validator

from darkroom.apps.diffusion import RefineInput
from darkroom.apps.pipeline.base import Operator, register_operator
from darkroom.apps.post_processing import ImageInputBase
from darkroom.models import Kind

NOT_STEP_FIELDS = frozenset({*ImageInputBase.model_fields, "num_images"})


class _RefineBase(Operator):
    op: Literal["refine"] = "refine"
    kind: ClassVar[Kind] = RefineInput.kind
    prompt_fields: ClassVar[tuple[str, ...]] = RefineInput.prompt_fields
    key_fields = ("model", "num_inference_steps", "guidance_scale", "strength")

    # the app's checks: a known refine model; strength x num_inference_steps >= 1
    _check_model = model_validator(mode="after")(RefineInput._check_model)
    _some_steps = model_validator(mode="after")(RefineInput._some_steps)

    def model_names(self) -> list[str]:
        return [self.model]


def _fields() -> dict[str, Any]:
    return {
        name: (info.annotation, info)
        for name, info in RefineInput.model_fields.items()
        if name not in NOT_STEP_FIELDS
    }


RefineStep = register_operator(create_model("RefineStep", __base__=_RefineBase, **_fields()))
