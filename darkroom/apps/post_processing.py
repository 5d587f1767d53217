"""Input and output models of `fal-ai/post-processing` and its twelve single-effect endpoints."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from darkroom.apps.params import EFFECT_GROUPS, GROUPS_BY_NAME, EffectGroup, EffectParams
from darkroom.refs import OBJECT_REF_PREFIX

INPUT_SCHEMES = ("http://", "https://", "data:")
MAX_SEED = 2**63 - 1


def check_image_url(value: str, field: str, required: bool = True, trusted: bool = False) -> str:
    """An image reference must be an http(s) URL or a data URI. Stored jobs (``trusted``) may also
    hold references to objects Darkroom itself stored at submit."""
    if not value:
        if required:
            raise ValueError(f"{field} is required: give an http(s) URL or a data URI")
        return value
    if trusted and value.startswith(OBJECT_REF_PREFIX):
        return value
    if not value.startswith(INPUT_SCHEMES):
        raise ValueError(f"{field} must be an http(s) URL or a data: URI, got {value[:40]!r}")
    return value


class ImageInputBase(BaseModel):
    """Fields every image app shares: the input image and Darkroom's extensions (docs/decisions.md §5, §9)."""

    # effect fields copied from darkroom.apps.params leave its config behind: refuse NaN and ±Infinity
    # here too, as "Input should be a finite number" rather than a misleading range error
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    image_url: str = Field(..., description="URL or data URI of the image to process")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Seed for grain/dissolve noise (drawn when absent)"
    )
    output_format: Literal["png", "jpeg", "webp"] = Field("png", description="Output image format")
    output_quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality")
    sync_mode: bool = Field(False, description="Return data URIs and store no object")

    @field_validator("image_url")
    @classmethod
    def _image_url(cls, v: str, info: ValidationInfo) -> str:
        return check_image_url(v, "image_url", trusted=is_trusted(info))

    def effect_chain(self) -> list[tuple[str, EffectParams]]:
        """The enabled effects, in processing order, with their parameters."""
        raise NotImplementedError


def is_trusted(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("trusted"))


def field_error(title: str, field: str, message: str, value: Any) -> ValidationError:
    """A validation error located at ``field`` (so the 422 names it), raised from a model validator."""
    details = InitErrorDetails(
        type=PydanticCustomError("value_error", message), loc=(field,), input=value
    )
    return ValidationError.from_exception_data(title, [details])


def _group_fields(group: EffectGroup) -> dict[str, Any]:
    return {
        name: (info.annotation, info)
        for name, info in group.params.model_fields.items()
    }


class _EffectsInput(ImageInputBase):
    """Shared behaviour of the all-effects input: enabled effects in order, dissolve check."""

    def effect_chain(self) -> list[tuple[str, EffectParams]]:
        return enabled_effects(self)

    @model_validator(mode="after")
    def _dissolve_needs_image(self, info: ValidationInfo) -> _EffectsInput:
        try:
            check_image_url(
                self.dissolve_image_url, "dissolve_image_url", self.enable_dissolve, is_trusted(info)
            )
        except ValueError as exc:
            name = type(self).__name__
            raise field_error(name, "dissolve_image_url", str(exc), self.dissolve_image_url) from None
        return self


def enabled_effects(model: BaseModel) -> list[tuple[str, EffectParams]]:
    """The effects ``model`` (with fal's enable_* and parameter fields) enables, in processing order."""
    chain = []
    for group in EFFECT_GROUPS:
        if getattr(model, group.enable_field):
            values = {k: getattr(model, k) for k in group.params.model_fields}
            chain.append((group.name, group.params(**values)))
    return chain


def _build_post_processing_input() -> type[_EffectsInput]:
    fields: dict[str, Any] = {}
    for group in EFFECT_GROUPS:
        fields[group.enable_field] = (bool, Field(False, description=f"Enable {group.title.lower()}"))
        fields.update(_group_fields(group))
    return create_model("ImageProcessingInput", __base__=_EffectsInput, **fields)


PostProcessingInput = _build_post_processing_input()


class _SingleEffectInput(ImageInputBase):
    effect_name: ClassVar[str] = ""

    def effect_chain(self) -> list[tuple[str, EffectParams]]:
        group = GROUPS_BY_NAME[self.effect_name]
        values = {k: getattr(self, k) for k in group.params.model_fields}
        return [(group.name, group.params(**values))]

    @model_validator(mode="after")
    def _dissolve_image(self, info: ValidationInfo) -> _SingleEffectInput:
        if "dissolve_image_url" in type(self).model_fields:
            value = self.dissolve_image_url
            try:
                check_image_url(value, "dissolve_image_url", True, is_trusted(info))
            except ValueError as exc:
                raise field_error(type(self).__name__, "dissolve_image_url", str(exc), value) from None
        return self


def _build_single_input(group: EffectGroup) -> type[_SingleEffectInput]:
    fields = _group_fields(group)
    if group.name == "dissolve":
        fields["dissolve_image_url"] = (str, Field(..., description="URL or data URI of the second image"))
    title = "".join(p.capitalize() for p in group.name.split("_")) + "Input"
    model = create_model(
        title, __base__=_SingleEffectInput, effect_name=(ClassVar[str], group.name), **fields
    )
    return model


SINGLE_EFFECT_INPUTS: dict[str, type[_SingleEffectInput]] = {
    g.slug: _build_single_input(g) for g in EFFECT_GROUPS if g.slug
}


class Image(BaseModel):
    """Represents an image file (docs/contract.md §2)."""

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None


class ProcessedOutput(BaseModel):
    images: list[Image]
    seed: int | None = Field(None, description="Seed used for grain/dissolve (extension)")
