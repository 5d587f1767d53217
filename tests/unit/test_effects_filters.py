"""Grain, chromatic aberration, blur, glow and sharpen against float64 NumPy references of their formulas.

The references are written here from the formulas in effects.md with Darkroom's changes (decisions.md
§3: reflect padding, edge clamping, RGB luma), not from the implementation: 2-D kernels where the
effects use separable passes, sliding windows where they use shifted slices.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from darkroom.apps.params import (
    BlurParams,
    ChromaticAberrationParams,
    GlowParams,
    GrainParams,
    SharpenParams,
)
from worker.effects.chain import make_generators
from worker.effects.registry import BatchParams, apply, get_effect
from worker.effects.sharpen import smart

SHAPES = [(13, 29), (1, 17), (17, 1)]
ATOL = 1e-4


def rand_image(h: int, w: int, b: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def run_effect(name: str, x: torch.Tensor, items, seeds=None) -> torch.Tensor:
    items = items if isinstance(items, list) else [items] * x.shape[0]
    gens = make_generators(seeds if seeds is not None else range(len(items)), x.device)
    out = apply(name, x, items, gens)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    return out


def np_img(x: torch.Tensor) -> np.ndarray:
    return x.double().numpy()


def pad(a: np.ndarray, r: int) -> np.ndarray:
    """Reflect (reflect_101) padding of the last two axes."""
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(r, r), (r, r)], mode="reflect")


def correlate2d(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'Same' 2-D correlation of every (.., H, W) plane with an odd square kernel, reflect borders."""
    r = kernel.shape[0] // 2
    win = sliding_window_view(pad(a, r), kernel.shape, axis=(-2, -1))
    return np.einsum("...ij,ij->...", win, kernel)


def node_kernel(radius: int, sigma: float) -> np.ndarray:
    t = np.linspace(-1, 1, 2 * radius + 1)
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def assert_close(out: torch.Tensor, ref: np.ndarray, atol: float = ATOL) -> None:
    err = np.abs(out.double().numpy() - ref).max()
    assert err <= atol, f"max error {err:.2e} > {atol:.0e}"


# ---- neutral settings and known answers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("blur", BlurParams(blur_radius=0)),
        ("blur", BlurParams(blur_type="kuwahara", blur_radius=0)),
        ("glow", GlowParams(glow_intensity=0, glow_radius=9)),
        ("grain", GrainParams(grain_intensity=0, grain_style="kodak")),
        ("chromatic_aberration", ChromaticAberrationParams()),
        ("sharpen", SharpenParams(sharpen_mode="smart", noise_radius=1, smart_sharpen_strength=1)),
        ("sharpen", SharpenParams(sharpen_mode="smart", noise_radius=9, smart_sharpen_ratio=1,
                                  smart_sharpen_strength=1)),
    ],
)
def test_neutral_settings_leave_the_image_unchanged(name, params) -> None:
    x = rand_image(16, 21)
    assert (run_effect(name, x, params) - x).abs().max() <= 1 / 255


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("radius", [1, 4, 15])
def test_basic_sharpen_of_a_flat_image_is_alpha_times_it_everywhere(radius: int, alpha: float) -> None:
    x = torch.full((1, 3, 19, 11), 0.3)
    out = run_effect("sharpen", x, SharpenParams(sharpen_radius=radius, sharpen_alpha=alpha))
    torch.testing.assert_close(out, (x * alpha).clamp(0, 1), atol=2e-3, rtol=0)  # gain k^2 = 961 at r=15


@pytest.mark.parametrize(
    "params",
    [
        SharpenParams(sharpen_mode="cas", cas_amount=1.0),
        BlurParams(blur_type="kuwahara", blur_radius=5),
        BlurParams(blur_radius=31, blur_sigma=10),
        SharpenParams(sharpen_mode="smart", noise_radius=25, smart_sharpen_strength=25),
    ],
    ids=["cas", "kuwahara", "gaussian", "smart"],
)
def test_constant_image_stays_constant(params) -> None:
    x = torch.tensor([0.2, 0.55, 0.9]).view(1, 3, 1, 1).expand(1, 3, 12, 17).contiguous()
    name = "sharpen" if isinstance(params, SharpenParams) else "blur"
    torch.testing.assert_close(run_effect(name, x, params), x, atol=1e-5, rtol=0)


def test_blur_and_glow_keep_a_linear_ramp_in_the_interior() -> None:
    ramp = torch.linspace(0.1, 0.6, 40).view(1, 1, 1, 40).expand(1, 3, 30, 40).contiguous()
    out = run_effect("blur", ramp, BlurParams(blur_radius=5))
    torch.testing.assert_close(out[..., 5:-5], ramp[..., 5:-5], atol=1e-5, rtol=0)  # symmetric kernel
    glow = run_effect("glow", ramp, GlowParams(glow_radius=4, glow_intensity=0.5))
    torch.testing.assert_close(glow[..., 4:-4], ramp[..., 4:-4] * 1.5, atol=1e-5, rtol=0)


# ---- float64 references ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(24, 31), *SHAPES])
@pytest.mark.parametrize(("radius", "sigma"), [(1, 1.0), (3, 1.0), (6, 0.3), (31, 10.0)])
def test_gaussian_blur_matches_the_node_kernel_with_reflect_padding(shape, radius, sigma) -> None:
    x = rand_image(*shape, b=2)
    out = run_effect("blur", x, BlurParams(blur_radius=radius, blur_sigma=sigma))
    assert_close(out, correlate2d(np_img(x), node_kernel(radius, sigma)))


@pytest.mark.parametrize("shape", [(24, 31), *SHAPES])
@pytest.mark.parametrize("radius", [1, 5, 12])
def test_glow_matches_reference(shape, radius) -> None:
    x = rand_image(*shape, b=2, seed=1)
    intensity = [0.3, 2.0]
    out = run_effect("glow", x, [GlowParams(glow_radius=radius, glow_intensity=i) for i in intensity])
    a = np_img(x)
    blur = correlate2d(a, node_kernel(radius, radius / 3))
    ref = np.clip(a + np.array(intensity).reshape(2, 1, 1, 1) * blur, 0, 1)
    assert_close(out, ref)


@pytest.mark.parametrize("shape", [(24, 31), *SHAPES])
@pytest.mark.parametrize("radius", [1, 2, 4])
def test_basic_sharpen_matches_reference(shape, radius) -> None:
    x = rand_image(*shape, b=2, seed=2) * 0.1 + 0.45  # low contrast so the k^2 gain does not saturate
    alphas = [0.7, 1.3]
    out = run_effect("sharpen", x, [SharpenParams(sharpen_radius=radius, sharpen_alpha=a) for a in alphas])
    k = 2 * radius + 1
    a = np_img(x)
    mean = correlate2d(a, np.full((k, k), 1.0 / k**2))
    ref = np.clip(np.array(alphas).reshape(2, 1, 1, 1) * (a + k * k * (a - mean)), 0, 1)
    assert_close(out, ref, atol=2e-4 * k)  # float32 box mean times the k^2 gain


def cas_reference(a: np.ndarray, amount: float) -> np.ndarray:
    p = pad(a, 1)
    h, w = a.shape[-2:]
    n = {(dy, dx): p[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    cross = np.stack([n[0, 0], n[-1, 0], n[1, 0], n[0, -1], n[0, 1]])
    diag = np.stack([n[-1, -1], n[-1, 1], n[1, -1], n[1, 1]])
    mn = np.maximum(0, cross.min(0)) + np.maximum(0, diag.min(0))
    mx = np.minimum(1, cross.max(0)) + np.minimum(1, diag.max(0))
    amp = np.sqrt(np.minimum(mn, 2 - mx) / (mx + 1e-5))
    wgt = -amp * (1 / 8 + amount * (1 / 5 - 1 / 8))
    ring = n[-1, 0] + n[1, 0] + n[0, -1] + n[0, 1]
    return np.clip((wgt * ring + n[0, 0]) / (1 + 4 * wgt), 0, 1)


@pytest.mark.parametrize("shape", [(24, 31), *SHAPES])
def test_cas_matches_reference(shape) -> None:
    x = rand_image(*shape, b=2, seed=3)
    amounts = [0.0, 0.8]
    out = run_effect("sharpen", x, [SharpenParams(sharpen_mode="cas", cas_amount=a) for a in amounts])
    a = np_img(x)
    ref = np.concatenate([cas_reference(a[i : i + 1], amounts[i]) for i in range(2)])
    assert_close(out, ref)


def test_cas_bands_join_seamlessly(monkeypatch) -> None:
    """CAS runs in bands of rows (cache-sized); force many small bands and compare with the reference."""
    from worker.effects import sharpen

    monkeypatch.setattr(sharpen, "CAS_BAND_PIXELS", 2 * 23 * 5)  # 5 rows per band for B=2, W=23
    x = rand_image(20, 23, b=2, seed=11)
    out = run_effect("sharpen", x, SharpenParams(sharpen_mode="cas", cas_amount=0.5))
    assert_close(out, cas_reference(np_img(x), 0.5))


def kuwahara_quadrants(a: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(colours (4, B, 3, H, W), variances (4, B, H, W)) of the four windows, for (B, 3, H, W) float64,
    in order down-right, up-right, down-left, up-left."""
    h, w = a.shape[-2:]
    grey = 0.299 * a[:, 0] + 0.587 * a[:, 1] + 0.114 * a[:, 2]
    planes = np.concatenate([a, grey[:, None], grey[:, None] ** 2], axis=1)
    means = sliding_window_view(pad(planes, r), (r + 1, r + 1), axis=(-2, -1)).mean(axis=(-2, -1))
    quads = [means[..., i : i + h, j : j + w] for i, j in ((r, r), (0, r), (r, 0), (0, 0))]
    return np.stack([q[:, :3] for q in quads]), np.stack([q[:, 4] - q[:, 3] ** 2 for q in quads])


def kuwahara_reference(a: np.ndarray, r: int) -> np.ndarray:
    colour, var = kuwahara_quadrants(a, r)
    return np.take_along_axis(colour, var.argmin(axis=0)[None, :, None], axis=0)[0]


@pytest.mark.parametrize("shape", [(24, 31), *SHAPES])
@pytest.mark.parametrize("radius", [1, 3, 7])
def test_kuwahara_matches_reference(shape, radius) -> None:
    """Exact where one window wins clearly; where variances tie within 1e-6 (float32 rounding decides,
    e.g. mirrored windows at the border), the output must be the colour of one of the tied windows."""
    x = rand_image(*shape, b=2, seed=4)
    out = run_effect("blur", x, BlurParams(blur_type="kuwahara", blur_radius=radius)).double().numpy()
    colour, var = kuwahara_quadrants(np_img(x), radius)
    near_best = (var - var.min(axis=0)) <= 1e-6
    err = np.abs(colour - out[None]).max(axis=2)  # (4, B, H, W)
    best_err = np.where(near_best, err, np.inf).min(axis=0)
    assert best_err.max() <= ATOL
    unique = near_best.sum(axis=0) == 1
    if min(shape) > 1:  # on a 1-pixel-wide image the mirrored windows always tie
        assert unique.mean() > 0.5
    unique_px = np.broadcast_to(unique[:, None], out.shape)
    assert np.abs(out - kuwahara_reference(np_img(x), radius))[unique_px].max(initial=0.0) <= ATOL


def test_kuwahara_uses_rgb_luma_not_bgr() -> None:
    """Left half: red varies, blue flat; right half the reverse. With RGB weights the red texture is
    'busier' (0.299 > 0.114) so the centre pixels pick the blue-textured side's window."""
    x = torch.zeros(1, 3, 9, 10)
    g = torch.Generator().manual_seed(0)
    x[0, 0, :, :5] = torch.rand(9, 5, generator=g)
    x[0, 2, :, 5:] = torch.rand(9, 5, generator=g)
    out = run_effect("blur", x, BlurParams(blur_type="kuwahara", blur_radius=2))
    ref = kuwahara_reference(np_img(x), 2)
    ref_bgr = kuwahara_reference(np_img(x.flip(1)), 2)
    assert_close(out, ref)
    assert np.abs(ref - ref_bgr[:, ::-1]).max() > 0.05  # the node's weights would choose differently


@pytest.mark.parametrize("shape", [(24, 31), *SHAPES])
def test_chromatic_aberration_matches_reference_and_clamps(shape) -> None:
    x = rand_image(*shape, seed=5)
    params = ChromaticAberrationParams(red_shift=3, green_shift=-20, green_direction="vertical",
                                       blue_shift=-2)
    out = run_effect("chromatic_aberration", x, params)
    a = np_img(x)[0]
    h, w = a.shape[-2:]
    rows, cols = np.arange(h), np.arange(w)
    ref = np.stack([
        a[0][:, np.clip(cols - 3, 0, w - 1)],  # right by 3: out[j] = in[j - 3]
        a[1][np.clip(rows - 20, 0, h - 1), :],  # vertical -20 = down by 20: out[i] = in[i - 20]
        a[2][:, np.clip(cols + 2, 0, w - 1)],  # left by 2
    ])
    assert_close(out, ref[None], atol=0)


def test_positive_vertical_shift_moves_content_up() -> None:
    x = torch.zeros(1, 3, 8, 5)
    x[:, :, 4] = 1.0
    params = ChromaticAberrationParams(red_shift=2, red_direction="vertical")
    out = run_effect("chromatic_aberration", x, params)
    assert out[0, 0, 2].eq(1).all() and out[0, 0, 4].eq(0).all()
    assert out[0, 1, 4].eq(1).all()  # green untouched


# ---- smart sharpen --------------------------------------------------------------------------------


def smart_batch(x: torch.Tensor, items: list[SharpenParams]) -> BatchParams:
    return BatchParams(items, x.device, get_effect("sharpen").key_fields)


@pytest.mark.parametrize("shape", [(24, 31), *SHAPES])
@pytest.mark.parametrize(("noise_radius", "edges"), [(2, 0.0), (7, 0.75), (25, 1.0)])
def test_smart_sharpen_torch_path_matches_cv2_path(shape, noise_radius, edges) -> None:
    """Tolerance 1e-5: cv2 interpolates its colour weight from a table; the torch path is exact."""
    x = rand_image(*shape, b=2, seed=6)
    items = [
        SharpenParams(sharpen_mode="smart", noise_radius=noise_radius, preserve_edges=edges,
                      smart_sharpen_strength=s, smart_sharpen_ratio=r)
        for s, r in ((5, 0.5), (0.5, 0.2))
    ]
    p = smart_batch(x, items)
    torch.testing.assert_close(smart(x, p, use_cv2=False), smart(x, p, use_cv2=True), atol=1e-5, rtol=0)


def test_smart_sharpen_matches_reference_without_denoising() -> None:
    """noise_radius 1 skips the bilateral: out = ratio * clamp(D + s (x - D)) + (1 - ratio) x."""
    x = rand_image(15, 18, seed=7)
    params = SharpenParams(sharpen_mode="smart", noise_radius=1, smart_sharpen_strength=3,
                           smart_sharpen_ratio=0.6)
    out = run_effect("sharpen", x, params)
    a = np_img(x)
    d = np.clip(correlate2d(a, np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13), 0, 1)
    sharp = np.clip(d + 3 * (a - d), 0, 1)
    assert_close(out, np.clip(0.6 * sharp + 0.4 * a, 0, 1))


# ---- batches and shapes ---------------------------------------------------------------------------

MODES = [
    ("blur", BlurParams(blur_radius=4), {}),
    ("blur", BlurParams(blur_type="kuwahara", blur_radius=4), {}),
    ("glow", GlowParams(glow_radius=6), {"glow_intensity": [0.2, 1.0, 4.0]}),
    ("chromatic_aberration", ChromaticAberrationParams(red_shift=4, blue_shift=-3, blue_direction="vertical"),
     {}),
    ("sharpen", SharpenParams(sharpen_radius=2), {"sharpen_alpha": [0.5, 1.0, 3.0]}),
    ("sharpen", SharpenParams(sharpen_mode="smart"),
     {"smart_sharpen_strength": [0.0, 5.0, 25.0], "smart_sharpen_ratio": [0.0, 0.5, 1.0]}),
    ("sharpen", SharpenParams(sharpen_mode="cas"), {"cas_amount": [0.0, 0.5, 1.0]}),
    *[("grain", GrainParams(grain_style=s, grain_scale=30), {"grain_intensity": [0.1, 0.5, 1.0]})
      for s in ("modern", "analog", "kodak", "fuji", "cinematic", "newspaper")],
]
MODE_IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(MODES)]


@pytest.mark.parametrize(("name", "base", "per_item"), MODES, ids=MODE_IDS)
def test_batch_equals_items_run_alone(name, base, per_item) -> None:
    x = rand_image(14, 19, b=3, seed=8)
    items = [base.model_copy(update={k: v[i] for k, v in per_item.items()}) for i in range(3)]
    batched = run_effect(name, x, items, seeds=[1, 2, 3])
    for i in range(3):
        alone = run_effect(name, x[i : i + 1], [items[i]], seeds=[i + 1])
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(13, 29), (29, 13), (1, 17), (17, 1), (1, 1), (2, 2)])
@pytest.mark.parametrize(("name", "base", "per_item"), MODES, ids=MODE_IDS)
def test_every_mode_handles_thin_and_non_square_images(name, base, per_item, shape) -> None:
    x = rand_image(*shape, seed=9)
    out = run_effect(name, x, base)
    if name != "chromatic_aberration" or min(shape) > 1:
        assert out.shape == x.shape  # run_effect() checked finite and in [0, 1]


@pytest.mark.parametrize(("name", "base", "per_item"), MODES, ids=MODE_IDS)
def test_input_is_not_modified_and_layout_is_kept(name, base, per_item) -> None:
    x = rand_image(10, 12, b=2, seed=10)
    before = x.clone()
    out = run_effect(name, x, base)
    assert torch.equal(x, before)
    assert out.is_contiguous()
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(run_effect(name, cl, base), out, atol=1e-6, rtol=0)


# ---- grain ----------------------------------------------------------------------------------------

STYLES = ("modern", "analog", "kodak", "fuji", "cinematic", "newspaper")


def grain_noise(style: str = "modern", scale: float = 10, intensity: float = 0.4, seed: int = 0,
                size: int = 96, grey: float = 0.5) -> torch.Tensor:
    x = torch.full((1, 3, size, size), grey)
    params = GrainParams(grain_style=style, grain_scale=scale, grain_intensity=intensity)
    return run_effect("grain", x, params, seeds=[seed]) - x


def lag1_correlation(n: torch.Tensor) -> float:
    a = n[0, 1]
    return float(torch.corrcoef(torch.stack([a[:, :-1].flatten(), a[:, 1:].flatten()]))[0, 1])


def test_grain_std_at_scale_1_is_the_node_amplitude() -> None:
    for intensity in (0.2, 0.4):
        std = grain_noise(scale=1, intensity=intensity, size=160).std().item()
        assert std == pytest.approx(0.26 * intensity, rel=0.05)


@pytest.mark.parametrize("scale", [3, 10, 40, 100])
def test_grain_std_stays_calibrated_at_coarser_scales(scale) -> None:
    stds = [grain_noise(scale=scale, seed=s, size=160).std().item() for s in range(3)]
    assert np.mean(stds) == pytest.approx(0.26 * 0.4, rel=0.15)


def test_grain_size_grows_with_scale() -> None:
    corr = [lag1_correlation(grain_noise(scale=s, size=128)) for s in (1, 3, 10, 30, 100)]
    assert abs(corr[0]) < 0.05, "scale 1 is white noise"
    assert all(b > a + 0.02 for a, b in zip(corr, corr[1:], strict=False)), corr


def test_same_seed_same_grain_other_seed_other_grain() -> None:
    a, b, c = grain_noise(seed=5), grain_noise(seed=5), grain_noise(seed=6)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.02


def test_each_grain_style_differs_from_the_others() -> None:
    noise = {s: grain_noise(s, size=64) for s in STYLES}
    for i, a in enumerate(STYLES):
        for b in STYLES[i + 1 :]:
            assert (noise[a] - noise[b]).abs().mean() > 0.02, (a, b)


def channel_std(n: torch.Tensor) -> list[float]:
    return [float(n[0, c].std()) for c in range(3)]


def test_grain_style_characters() -> None:
    n = {s: grain_noise(s, size=128) for s in STYLES}
    for mono in ("modern", "newspaper"):
        assert torch.equal(n[mono][:, 0], n[mono][:, 1]) and torch.equal(n[mono][:, 1], n[mono][:, 2])
    for colour in ("analog", "kodak", "fuji"):
        assert (n[colour][:, 0] - n[colour][:, 2]).abs().mean() > 0.01, colour
    r, _, b = channel_std(n["kodak"])
    assert r > 1.2 * b, "kodak grain is warm"
    r, g, _ = channel_std(n["fuji"])
    assert g > 1.15 * r, "fuji grain is green/cool"
    torch.testing.assert_close(n["newspaper"].abs(), torch.full_like(n["newspaper"], 0.26 * 0.4))  # +-1 dots
    corr = {s: lag1_correlation(n[s]) for s in ("fuji", "modern", "analog", "cinematic")}
    assert corr["fuji"] < corr["modern"] < corr["analog"] < corr["cinematic"], corr


def test_grain_tone_weighting() -> None:
    def std(style: str, grey: float) -> float:
        return grain_noise(style, grey=grey, intensity=0.2, size=128).std().item()

    assert std("kodak", 0.5) > 1.5 * std("kodak", 0.9)  # mid-tones
    assert std("cinematic", 0.15) > 1.5 * std("cinematic", 0.85)  # shadows
    assert std("modern", 0.3) == pytest.approx(std("modern", 0.7), rel=0.05)  # neutral
