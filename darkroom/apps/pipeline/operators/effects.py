"""``effects``: fal-ai/post-processing's fields, so any fal body is a one-step pipeline."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from darkroom.apps.params import EFFECT_GROUPS, EffectParams
from darkroom.apps.pipeline.base import Operator, register_operator
from darkroom.apps.post_processing import enabled_effects


class _EffectsBase(Operator):
    op: Literal["effects"] = "effects"
    dissolve_image: str | None = Field(
        None, description="Name of the reference image (in `images`) dissolve blends in"
    )

    def chain(self) -> list[tuple[str, EffectParams]]:
        """The enabled effects, in fal's processing order, with their parameters."""
        return enabled_effects(self)

    @model_validator(mode="after")
    def _dissolve_needs_an_image(self) -> _EffectsBase:
        if self.enable_dissolve and not self.dissolve_image:
            raise ValueError(
                "enable_dissolve needs dissolve_image (the name of an image in images) or dissolve_image_url"
            )
        return self

    def references(self) -> list[str]:
        return [self.dissolve_image] if self.enable_dissolve and self.dissolve_image else []


def _fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for group in EFFECT_GROUPS:
        fields[group.enable_field] = (bool, Field(False, description=f"Enable {group.title.lower()}"))
        fields.update({name: (info.annotation, info) for name, info in group.params.model_fields.items()})
    return fields


EffectsStep = register_operator(create_model("EffectsStep", __base__=_EffectsBase, **_fields()))
