"""The point-wise effects against neutral settings, known answers and float64 NumPy references.

The references are written here from the formulas in /work/shared/spec/effects.md, with Darkroom's
documented changes (decisions.md §3): no uint8 truncation in colour correction, a per-pixel dissolve
mask, dodge & burn masked by the input's Rec.709 luminance and clamped after every step.
"""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from darkroom.apps import params as P
from worker.effects.chain import make_generators
from worker.effects.registry import apply

NEUTRAL_TOL = 1 / 255
REF_TOL = 1e-4

# effects.md, ColorTint: (R, G, B) multipliers, copied from the spec table (not from the implementation).
TINT_TABLE = {
    "sepia": (1, .8, .6), "red": (1, .6, .6), "green": (.6, 1, .6), "blue": (.6, .8, 1),
    "cyan": (.6, 1, 1), "magenta": (1, .6, 1), "yellow": (1, 1, .6), "purple": (.8, .6, 1),
    "orange": (1, .7, .3), "warm": (1, .9, .7), "cool": (.7, .9, 1), "lime": (.7, 1, .3),
    "navy": (.3, .4, .7), "vintage": (.9, .85, .7), "rose": (1, .8, .9), "teal": (.3, .8, .8),
    "maroon": (.7, .3, .5), "peach": (1, .8, .6), "lavender": (.8, .6, 1), "olive": (.6, .7, .4),
}
DESAT_WEIGHTS = {
    "luminance (Rec.709)": (0.2126, 0.7152, 0.0722),
    "luminance (Rec.601)": (0.299, 0.587, 0.114),
    "average": (1 / 3, 1 / 3, 1 / 3),
}
REC709 = np.array([0.2126, 0.7152, 0.0722])


def rand_image(seed: int, b: int = 1, h: int = 9, w: int = 14) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def ramp(w: int = 101, h: int = 2) -> torch.Tensor:
    return torch.linspace(0, 1, w).view(1, 1, 1, w).expand(1, 3, h, w).contiguous()


def flat(rgb, h: int = 4, w: int = 5) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, h, w).contiguous()


def run_effect(name: str, x: torch.Tensor, *items, seeds=(), images=None) -> torch.Tensor:
    gens = make_generators(seeds, x.device) if seeds else ()
    return apply(name, x, list(items), gens, images)


def np64(x: torch.Tensor) -> np.ndarray:
    return x.double().numpy()


def assert_ref(out: torch.Tensor, ref: np.ndarray, tol: float = REF_TOL) -> None:
    err = np.abs(np64(out) - ref).max()
    assert err <= tol, f"max abs error {err:.3g} > {tol}"


# ---- neutral settings leave the image unchanged --------------------------------------------------

NEUTRAL = [
    ("color_correction", P.ColorCorrectionParams()),
    *[("desaturate", P.DesaturateParams(desaturate_factor=0, desaturate_method=m))
      for m in P.DesaturateMethod.__args__],
    ("vignette", P.VignetteParams(vignette_strength=0)),
    ("solarize", P.SolarizeParams(solarize_threshold=1)),
    *[("dodge_burn", P.DodgeBurnParams(dodge_burn_intensity=0, dodge_burn_mode=m))
      for m in ("dodge", "color_dodge", "color_burn", "linear_dodge", "linear_burn")],
]


def _neutral_id(case) -> str:
    name, params = case
    enum = [v for v in params.model_dump().values() if isinstance(v, str) and v]
    return "-".join([name, *enum])


@pytest.mark.parametrize(("name", "params"), NEUTRAL, ids=[_neutral_id(c) for c in NEUTRAL])
def test_neutral_settings_are_identity(name, params) -> None:
    for x in (rand_image(1), torch.zeros(1, 3, 3, 4), torch.ones(1, 3, 3, 4)):
        out = run_effect(name, x, params)
        assert (out - x).abs().max() <= NEUTRAL_TOL


def test_dissolve_factor_one_keeps_original() -> None:
    x, other = rand_image(1, b=2), rand_image(2, b=2)
    out = run_effect("dissolve", x, *[P.DissolveParams(dissolve_factor=1)] * 2, seeds=(3, 4),
              images={"dissolve": other})
    assert torch.equal(out, x)


# ---- known answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(TINT_TABLE))
def test_tint_on_grey_is_grey_times_multiplier(mode: str) -> None:
    c, s = 0.6, 0.75
    out = run_effect("tint", flat((c, c, c)), P.TintParams(tint_strength=s, tint_mode=mode))
    gray = c * (0.2989 + 0.5870 + 0.1140)
    expected = [s * gray * f + (1 - s) * c for f in TINT_TABLE[mode]]
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(expected), atol=1e-6, rtol=0)
    assert (out == out[..., :1, :1]).all()


@pytest.mark.parametrize(("coeff", "vx", "vy"), [(1, 0.5, 0.5), (-4, 0.5, 1), (10, 0.2, 0), (-2, 1, 0.3)])
def test_parabolize_ramp_is_the_parabola(coeff: float, vx: float, vy: float) -> None:
    x = ramp()
    out = run_effect("parabolize", x, P.ParabolizeParams(parabolize_coeff=coeff, vertex_x=vx, vertex_y=vy))
    t = np.linspace(0, 1, 101)
    expected = np.clip(coeff * (t - vx) ** 2 + vy, 0, 1)
    assert_ref(out[0, 1, 0], expected, 1e-6)
    assert out[0, 0, 0, round(vx * 100)] == pytest.approx(vy, abs=1e-6)  # the vertex itself


def test_solarize_ramp_is_a_tent() -> None:
    out = run_effect("solarize", ramp(), P.SolarizeParams(solarize_threshold=0.5))
    t = np.linspace(0, 1, 101)
    assert_ref(out[0, 2, 1], np.where(t > 0.5, 1 - t, t), 1e-6)
    assert out.max() <= 0.5 + 1e-6


def test_solarize_threshold_zero_inverts_all_but_black() -> None:
    x = ramp()
    out = run_effect("solarize", x, P.SolarizeParams(solarize_threshold=0))
    assert_ref(out, np.where(np64(x) > 0, 1 - np64(x), 0), 1e-6)


def test_vignette_centre_kept_corners_black_and_strength_saturates_at_one() -> None:
    x = torch.full((1, 3, 7, 11), 0.8)
    one = run_effect("vignette", x, P.VignetteParams(vignette_strength=1))
    assert one[0, :, 3, 5].tolist() == pytest.approx([0.8] * 3)
    assert one[0, :, [0, 0, -1, -1], [0, -1, 0, -1]].abs().max() < 1e-6
    assert torch.equal(one, run_effect("vignette", x, P.VignetteParams(vignette_strength=10)))


@pytest.mark.parametrize(("method", "grey"), [
    ("luminance (Rec.709)", 0.2126), ("luminance (Rec.601)", 0.299), ("average", 1 / 3), ("lightness", 0.5),
])
def test_desaturate_pure_red(method: str, grey: float) -> None:
    params = P.DesaturateParams(desaturate_factor=1, desaturate_method=method)
    out = run_effect("desaturate", flat((1, 0, 0)), params)
    torch.testing.assert_close(out[0, :, 0, 0], torch.full((3,), grey), atol=1e-6, rtol=0)


def test_burn_at_zero_intensity_is_black_except_white() -> None:
    """burn keeps the node's 1e-7 epsilon: 1 - (1 - x) / 1e-7, clamped (dodge_burn.py docstring)."""
    x = torch.cat([rand_image(4, h=3, w=3), torch.ones(1, 3, 3, 3)], dim=-1)
    for mode in ("burn", "dodge_and_burn", "burn_and_dodge"):
        out = run_effect("dodge_burn", x, P.DodgeBurnParams(dodge_burn_intensity=0, dodge_burn_mode=mode))
        assert out[..., :3].max() == 0, mode
        # White survives burn; dodge first maps it to 1 / (1 + 1e-7), which burn then sends to ~0.
        white = 0.0 if mode == "dodge_and_burn" else 1.0
        assert (out[..., 3:] - white).abs().max() <= 1e-6, mode


def test_dodge_burn_known_values_on_flat_images() -> None:
    db = P.DodgeBurnParams
    grey = flat((0.4, 0.4, 0.4))  # mask m = 0.4 (Rec.709 weights sum to 1)
    cases = [
        (grey, db(dodge_burn_intensity=0.5, dodge_burn_mode="linear_dodge"), 0.4 + 0.2),
        (grey, db(dodge_burn_intensity=0.5, dodge_burn_mode="linear_burn"), 0.4 - 0.2),
        (grey, db(dodge_burn_intensity=0.5, dodge_burn_mode="dodge"), 0.4 / 0.8),
        (grey, db(dodge_burn_intensity=1.0, dodge_burn_mode="color_burn"), 1 - 0.6 / 0.4),  # clamped: 0
        (flat((1, 1, 1)), db(dodge_burn_intensity=1, dodge_burn_mode="color_dodge"), 1.0),  # m = 1: unchanged
        (flat((0, 0, 0)), db(dodge_burn_intensity=1, dodge_burn_mode="color_burn"), 0.0),  # m = 0: unchanged
        (flat((1, 1, 1)), db(dodge_burn_intensity=1, dodge_burn_mode="dodge"), 1.0),  # 1 / 1e-7, clamped
        (flat((1, 1, 1)), db(dodge_burn_intensity=1, dodge_burn_mode="burn"), 1.0),
    ]
    for x, params, value in cases:
        out = run_effect("dodge_burn", x, params)
        assert out.flatten().tolist() == pytest.approx([max(0.0, min(1.0, value))] * out.numel(), abs=1e-6)


@pytest.mark.parametrize("mode", P.DodgeBurnMode.__args__)
def test_dodge_burn_never_nan_or_inf_on_adversarial_inputs(mode: str) -> None:
    values = [0.0, 1e-30, 1e-7, 0.5, 1 - 1e-7, 1.0]
    x = torch.tensor([[r, g, b] for r in values for g in values for b in values]).T.reshape(1, 3, 6, 36)
    for i in (0.0, 1e-30, 1e-8, 0.5, 1.0):
        out = run_effect("dodge_burn", x, P.DodgeBurnParams(dodge_burn_intensity=i, dodge_burn_mode=mode))
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1, (mode, i)


# ---- float64 NumPy references ----------------------------------------------------------------------

IMAGES = [rand_image(s, b=1, h=13, w=17) for s in range(3)]


@pytest.mark.parametrize(
    ("coeff", "vx", "vy"), [(1, 0.5, 0.5), (-3.7, 0.2, 0.9), (7.5, 0.8, 0.1), (0, 0.3, 0.6)]
)
def test_parabolize_reference(coeff, vx, vy) -> None:
    for x in IMAGES:
        params = P.ParabolizeParams(parabolize_coeff=coeff, vertex_x=vx, vertex_y=vy)
        out = run_effect("parabolize", x, params)
        assert_ref(out, np.clip(coeff * (np64(x) - vx) ** 2 + vy, 0, 1))


@pytest.mark.parametrize("mode", list(TINT_TABLE))
def test_tint_reference(mode: str) -> None:
    for s, x in zip((0.1, 0.55, 1.0), IMAGES, strict=True):
        out = run_effect("tint", x, P.TintParams(tint_strength=s, tint_mode=mode))
        a = np64(x)
        gray = 0.2989 * a[:, 0:1] + 0.5870 * a[:, 1:2] + 0.1140 * a[:, 2:3]
        f = np.array(TINT_TABLE[mode]).reshape(1, 3, 1, 1)
        assert_ref(out, s * gray * f + (1 - s) * a)


def dodge_burn_ref(a: np.ndarray, mode: str, i: float) -> np.ndarray:
    """effects.md's formulas, mask = Rec.709 luminance of the input, clamped after every step."""
    m = np.clip(np.einsum("bchw,c->bhw", a, REC709)[:, None], 0, 1)
    mi = m * i
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = {
            "dodge": lambda x: x / (1 - mi + 1e-7),
            "burn": lambda x: 1 - (1 - x) / (mi + 1e-7),
            "color_dodge": lambda x: np.where(m < 1, x / (1 - mi), x),
            "color_burn": lambda x: np.where(mi > 0, 1 - (1 - x) / mi, x),
            "linear_dodge": lambda x: x + mi,
            "linear_burn": lambda x: x - mi,
        }
        chain = {"dodge_and_burn": ("dodge", "burn"), "burn_and_dodge": ("burn", "dodge")}.get(mode, (mode,))
        for step in chain:
            a = np.clip(steps[step](a), 0, 1)
    return a


@pytest.mark.parametrize("mode", P.DodgeBurnMode.__args__)
def test_dodge_burn_reference(mode: str) -> None:
    for i in (0.05, 0.3, 0.5, 0.85, 1.0):
        for x in IMAGES:
            out = run_effect("dodge_burn", x, P.DodgeBurnParams(dodge_burn_intensity=i, dodge_burn_mode=mode))
            assert_ref(out, dodge_burn_ref(np64(x), mode, i))


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_solarize_reference(t: float) -> None:
    for x in IMAGES:
        a = np64(x)
        out = run_effect("solarize", x, P.SolarizeParams(solarize_threshold=t))
        assert_ref(out, np.where(a > t, 1 - a, a))


@pytest.mark.parametrize("method", P.DesaturateMethod.__args__)
def test_desaturate_reference(method: str) -> None:
    for f, x in zip((0.0, 0.4, 1.0), IMAGES, strict=True):
        a = np64(x)
        if method == "lightness":
            gray = (a.max(axis=1, keepdims=True) + a.min(axis=1, keepdims=True)) / 2
        else:
            gray = np.einsum("bchw,c->bhw", a, np.array(DESAT_WEIGHTS[method]))[:, None]
        out = run_effect("desaturate", x, P.DesaturateParams(desaturate_factor=f, desaturate_method=method))
        assert_ref(out, np.clip((1 - f) * a + f * gray, 0, 1))


@pytest.mark.parametrize("strength", [0.0, 0.3, 0.75, 1.0, 4.0])
@pytest.mark.parametrize(("h", "w"), [(13, 17), (17, 13), (8, 8)])
def test_vignette_reference(strength: float, h: int, w: int) -> None:
    x = rand_image(7, h=h, w=w)
    y, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    r = np.sqrt(y**2 + xx**2)
    v = 1 - r / r.max() * min(strength, 1)
    out = run_effect("vignette", x, P.VignetteParams(vignette_strength=strength))
    assert_ref(out, np.clip(np64(x) * v, 0, 1))


def color_correction_ref(a: np.ndarray, p: P.ColorCorrectionParams) -> np.ndarray:
    """One (3, H, W) image: brightness → contrast about the global Rec.601 luma mean → temperature →
    gamma → HLS saturation (colorsys), all float64 and without the node's uint8 truncations."""
    x = np.clip(a * (1 + p.brightness / 100), 0, 1)
    mean = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).mean()
    x = np.clip(mean + (1 + p.contrast / 100) * (x - mean), 0, 1)
    t = p.temperature / 100
    gains = (1 + t, 1 + 0.4 * t, 1.0) if t > 0 else (1.0, 1.0, 1 - t)
    x = np.clip(x * np.array(gains).reshape(3, 1, 1), 0, 1) ** p.gamma
    k = 1 + p.saturation / 100
    out = np.empty_like(x)
    for i, j in np.ndindex(x.shape[1:]):
        hue, light, sat = colorsys.rgb_to_hls(*x[:, i, j])
        out[:, i, j] = colorsys.hls_to_rgb(hue, light, min(max(k * sat, 0.0), 1.0))
    return np.clip(out, 0, 1)


CC_CASES = [
    P.ColorCorrectionParams(temperature=20, brightness=10, contrast=10, saturation=20, gamma=1.2),
    P.ColorCorrectionParams(temperature=-60, brightness=-30, contrast=45, saturation=-50, gamma=0.6),
    P.ColorCorrectionParams(temperature=100, brightness=100, contrast=-100, saturation=100, gamma=2.2),
    P.ColorCorrectionParams(temperature=-100, brightness=-100, contrast=100, saturation=-100, gamma=0.2),
    P.ColorCorrectionParams(saturation=80),
    P.ColorCorrectionParams(contrast=-40, gamma=1.7),
]


@pytest.mark.parametrize("params", CC_CASES, ids=range(len(CC_CASES)))
def test_color_correction_reference(params: P.ColorCorrectionParams) -> None:
    for x in IMAGES:
        assert_ref(run_effect("color_correction", x, params), color_correction_ref(np64(x)[0], params)[None])


def test_color_correction_batch_mixes_requests() -> None:
    x = torch.cat(IMAGES[:2])
    out = run_effect("color_correction", x, CC_CASES[0], CC_CASES[1])
    for i, params in enumerate(CC_CASES[:2]):
        assert_ref(out[i : i + 1], color_correction_ref(np64(x)[i], params)[None])


# ---- dissolve ------------------------------------------------------------------------------------


def two_images(h: int = 64, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Images that differ in every channel of every pixel: x in [0, .4), other in [.6, 1)."""
    return rand_image(8, h=h, w=w) * 0.4, 0.6 + rand_image(9, h=h, w=w) * 0.4


@pytest.mark.parametrize("factor", [0.0, 0.1, 0.5, 0.9])
def test_dissolve_keeps_about_factor_pixels_and_shares_the_mask(factor: float) -> None:
    x, other = two_images()
    out = run_effect("dissolve", x, P.DissolveParams(dissolve_factor=factor), seeds=(123,),
              images={"dissolve": other})
    kept = (out == x).all(dim=1)
    replaced = (out == other).all(dim=1)
    assert (kept | replaced).all(), "a pixel mixes channels of both images: the mask is not per pixel"
    n = kept.numel()
    assert abs(kept.sum().item() / n - factor) <= 4 * (factor * (1 - factor) / n) ** 0.5 + 1e-9


def test_dissolve_per_item_factor_and_seed() -> None:
    x, other = two_images(32, 32)
    xs, others = torch.cat([x, x]), torch.cat([other, other])
    low, high = P.DissolveParams(dissolve_factor=0.2), P.DissolveParams(dissolve_factor=0.8)
    out = run_effect("dissolve", xs, low, high, seeds=(5, 6), images={"dissolve": others})
    fractions = (out == xs).all(dim=1).float().mean(dim=(1, 2))
    assert fractions[0] < 0.35 and fractions[1] > 0.65


def test_dissolve_without_second_image_is_a_clear_error() -> None:
    x = rand_image(1)
    with pytest.raises(ValueError, match="dissolve"):
        run_effect("dissolve", x, P.DissolveParams(), seeds=(1,))
    other = rand_image(2, h=3, w=3)
    with pytest.raises(ValueError, match="shape"):
        run_effect("dissolve", x, P.DissolveParams(), seeds=(1,), images={"dissolve": other})
