"""Parameters of every effect, exactly as docs/contract.md §1 names and bounds them.

Each effect family has one frozen model. The fal input model, the single-effect endpoints and the
worker's effect registry are all built from these, so a parameter is declared in one place only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class EffectParams(BaseModel):
    # NaN and ±Infinity fail as "Input should be a finite number", not as a misleading range error
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


def _f(default: float, lo: float, hi: float, text: str) -> float:
    return Field(default, ge=lo, le=hi, description=text)


GrainStyle = Literal["modern", "analog", "kodak", "fuji", "cinematic", "newspaper"]
Direction = Literal["horizontal", "vertical"]
BlurType = Literal["gaussian", "kuwahara"]
TintMode = Literal[
    "sepia", "red", "green", "blue", "cyan", "magenta", "yellow", "purple", "orange", "warm",
    "cool", "lime", "navy", "vintage", "rose", "teal", "maroon", "peach", "lavender", "olive",
]
DodgeBurnMode = Literal[
    "dodge", "burn", "dodge_and_burn", "burn_and_dodge",
    "color_dodge", "color_burn", "linear_dodge", "linear_burn",
]
SharpenMode = Literal["basic", "smart", "cas"]
DesaturateMethod = Literal["luminance (Rec.709)", "luminance (Rec.601)", "average", "lightness"]

Shift = Annotated[int, Field(ge=-20, le=20)]


class GrainParams(EffectParams):
    grain_intensity: float = _f(0.4, 0, 1, "Film grain intensity")
    grain_scale: float = _f(10, 1, 100, "Film grain scale (larger = coarser grain)")
    grain_style: GrainStyle = Field("modern", description="Film grain style preset")


class ColorCorrectionParams(EffectParams):
    temperature: float = _f(0, -100, 100, "Color temperature adjustment")
    brightness: float = _f(0, -100, 100, "Brightness adjustment")
    contrast: float = _f(0, -100, 100, "Contrast adjustment")
    saturation: float = _f(0, -100, 100, "Saturation adjustment")
    gamma: float = _f(1, 0.2, 2.2, "Gamma adjustment (values above 1 darken)")


class ChromaticAberrationParams(EffectParams):
    red_shift: Shift = Field(0, description="Red channel shift amount (px)")
    red_direction: Direction = Field("horizontal", description="Red channel shift direction")
    green_shift: Shift = Field(0, description="Green channel shift amount (px)")
    green_direction: Direction = Field("horizontal", description="Green channel shift direction")
    blue_shift: Shift = Field(0, description="Blue channel shift amount (px)")
    blue_direction: Direction = Field("horizontal", description="Blue channel shift direction")


class BlurParams(EffectParams):
    blur_type: BlurType = Field("gaussian", description="Type of blur")
    blur_radius: int = Field(3, ge=0, le=31, description="Blur radius")
    blur_sigma: float = _f(1, 0.1, 10, "Sigma for Gaussian blur (in units of the radius)")


class VignetteParams(EffectParams):
    vignette_strength: float = _f(0.5, 0, 10, "Vignette strength (values above 1 act as 1)")


class ParabolizeParams(EffectParams):
    parabolize_coeff: float = _f(1, -10, 10, "Parabolize coefficient")
    vertex_x: float = _f(0.5, 0, 1, "Vertex X position (input intensity)")
    vertex_y: float = _f(0.5, 0, 1, "Vertex Y position (output intensity)")


class TintParams(EffectParams):
    tint_strength: float = _f(1, 0.1, 1, "Tint strength")
    tint_mode: TintMode = Field("sepia", description="Tint color mode")


class DissolveParams(EffectParams):
    dissolve_image_url: str = Field("", description="URL (or data URI) of the image to dissolve into")
    dissolve_factor: float = _f(0.5, 0, 1, "Chance that a pixel keeps the original image")


class DodgeBurnParams(EffectParams):
    dodge_burn_intensity: float = _f(0.5, 0, 1, "Dodge and burn intensity")
    dodge_burn_mode: DodgeBurnMode = Field("dodge", description="Dodge and burn mode")


class GlowParams(EffectParams):
    glow_intensity: float = _f(1, 0, 5, "Glow intensity")
    glow_radius: int = Field(5, ge=1, le=50, description="Glow blur radius")


class SharpenParams(EffectParams):
    sharpen_mode: SharpenMode = Field("basic", description="Type of sharpening")
    sharpen_radius: int = Field(1, ge=1, le=15, description="Sharpen radius (basic mode)")
    sharpen_alpha: float = _f(1, 0.1, 5, "Sharpen strength (basic mode)")
    noise_radius: int = Field(7, ge=1, le=25, description="Noise radius (smart mode)")
    preserve_edges: float = _f(0.75, 0, 1, "Edge preservation (smart mode)")
    smart_sharpen_strength: float = _f(5, 0, 25, "Sharpen strength (smart mode)")
    smart_sharpen_ratio: float = _f(0.5, 0, 1, "Sharpened vs. denoised blend ratio (smart mode)")
    cas_amount: float = _f(0.8, 0, 1, "Contrast-adaptive sharpening amount (cas mode)")


class SolarizeParams(EffectParams):
    solarize_threshold: float = _f(0.5, 0, 1, "Values above this threshold are inverted")


class DesaturateParams(EffectParams):
    desaturate_factor: float = _f(1, 0, 1, "0 = unchanged, 1 = fully grey")
    desaturate_method: DesaturateMethod = Field("luminance (Rec.709)", description="Grey conversion")


@dataclass(frozen=True)
class EffectGroup:
    """One effect family: its internal name, fal enable flag, parameters and single-effect slug."""

    name: str
    enable_field: str
    params: type[EffectParams]
    slug: str | None
    title: str


# Processing order = schema order (decisions.md §1).
EFFECT_GROUPS: tuple[EffectGroup, ...] = (
    EffectGroup("grain", "enable_grain", GrainParams, "grain", "Film grain"),
    EffectGroup("color_correction", "enable_color_correction", ColorCorrectionParams,
                "color-correction", "Color correction"),
    EffectGroup("chromatic_aberration", "enable_chromatic", ChromaticAberrationParams,
                "chromatic-aberration", "Chromatic aberration"),
    EffectGroup("blur", "enable_blur", BlurParams, "blur", "Blur"),
    EffectGroup("vignette", "enable_vignette", VignetteParams, "vignette", "Vignette"),
    EffectGroup("parabolize", "enable_parabolize", ParabolizeParams, "parabolize", "Parabolize"),
    EffectGroup("tint", "enable_tint", TintParams, "color-tint", "Color tint"),
    EffectGroup("dissolve", "enable_dissolve", DissolveParams, "dissolve", "Dissolve"),
    EffectGroup("dodge_burn", "enable_dodge_burn", DodgeBurnParams, "dodge-burn", "Dodge & burn"),
    EffectGroup("glow", "enable_glow", GlowParams, None, "Glow"),
    EffectGroup("sharpen", "enable_sharpen", SharpenParams, "sharpen", "Sharpen"),
    EffectGroup("solarize", "enable_solarize", SolarizeParams, "solarize", "Solarize"),
    EffectGroup("desaturate", "enable_desaturate", DesaturateParams, "desaturate", "Desaturate"),
)

GROUPS_BY_NAME = {g.name: g for g in EFFECT_GROUPS}
EFFECT_ORDER = tuple(g.name for g in EFFECT_GROUPS)
