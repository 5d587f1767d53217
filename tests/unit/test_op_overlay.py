"""The ``overlay`` kernel on the CPU: text (placement, tiling, opacity, stroke, fonts) and watermarks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from darkroom.apps.pipeline import STEP_ADAPTER
from darkroom.errors import InvalidInput
from darkroom.fonts import PACKAGED
from darkroom.settings import Settings
from worker import imaging
from worker.imaging import DecodedImage
from worker.operators import StepBatch, get_kernel

CPU = torch.device("cpu")


def step(**fields):
    return STEP_ADAPTER.validate_python({"op": "overlay", **fields})


def run(x: torch.Tensor, steps: list, refs: list[dict] | None = None, settings=None) -> torch.Tensor:
    batch = StepBatch(steps, CPU, [0] * len(steps), refs or [{} for _ in steps], settings)
    return get_kernel("overlay").fn(x, batch)


def grey(h: int = 90, w: int = 120, n: int = 1, value: float = 0.5) -> torch.Tensor:
    x = torch.full((n, 4, h, w), value)
    x[:, 3] = 1.0
    return x


def changed(y: torch.Tensor, x: torch.Tensor, item: int = 0) -> torch.Tensor:
    """(rows, cols) of the pixels that changed."""
    return ((y[item] - x[item]).abs().amax(dim=0) > 1e-4).nonzero()


@pytest.mark.parametrize("gravity", ["top_left", "top_right", "bottom_left", "bottom_right"])
def test_text_lands_near_its_gravity_corner(gravity):
    x = grey()
    pts = changed(run(x, [step(text="Hi", size=16, gravity=gravity, margin=8)]), x)
    assert len(pts) > 20
    rows, cols = pts[:, 0], pts[:, 1]
    if gravity.startswith("top"):
        assert rows.min() >= 8 and rows.max() < 45
    else:
        assert rows.max() <= 90 - 8 - 1 and rows.min() >= 45
    if gravity.endswith("left"):
        assert cols.min() >= 8 and cols.max() < 60
    else:
        assert cols.max() <= 120 - 8 - 1 and cols.min() >= 60
    # the ink box is flush with the margin
    assert (rows.min() == 8) if gravity.startswith("top") else (rows.max() == 81)


def test_centred_text_sits_in_the_middle():
    x = grey()
    pts = changed(run(x, [step(text="+", size=20, gravity="center")]), x).float()
    assert torch.allclose(pts.mean(dim=0), torch.tensor([44.5, 59.5]), atol=2.0)


def test_text_size_percent_follows_the_image_height():
    x = grey(200, 300)
    small = changed(run(x, [step(text="H", size_percent=5, gravity="top_left")]), x)
    large = changed(run(x, [step(text="H", size_percent=20, gravity="top_left")]), x)
    assert 7 <= int(small[:, 0].max() - small[:, 0].min()) + 1 <= 10  # a 10 px font's capital
    assert 28 <= int(large[:, 0].max() - large[:, 0].min()) + 1 <= 40


def test_multiline_text_is_taller():
    x = grey()
    one = changed(run(x, [step(text="A", size=14, gravity="top_left")]), x)
    two = changed(run(x, [step(text="A\nB", size=14, gravity="top_left")]), x)
    assert int(two[:, 0].max()) > int(one[:, 0].max()) + 10


def test_tiled_text_covers_the_image():
    x = grey(120, 160)
    y = run(x, [step(text="darkroom", size=12, tiled=True, margin=10)])
    hit = (y[0] - x[0]).abs().amax(dim=0) > 1e-4
    cells = hit.view(4, 30, 4, 40).any(dim=3).any(dim=1)
    assert bool(cells.all())
    assert 0.05 < float(hit.float().mean()) < 0.6


def test_opacity_zero_changes_nothing():
    x = torch.rand((1, 4, 40, 50), generator=torch.Generator().manual_seed(0))
    x[:, 3] = 1.0
    assert torch.equal(run(x, [step(text="Hello", size=20, opacity=0, tiled=True, margin=0)]), x)


def test_half_opacity_mixes():
    x = grey(40, 60, value=0.0)
    y = run(x, [step(text="M", size=30, gravity="center", color="white", opacity=0.5)])
    assert float(y[0, 0].max()) == pytest.approx(0.5, abs=1e-6)


def test_stroke_draws_the_stroke_colour():
    x = grey(60, 120, value=0.0)
    y = run(x, [step(text="Hot", size=36, color="white", stroke_width=3, stroke_color="#ff0000")])
    r, g, b = y[0, 0], y[0, 1], y[0, 2]
    red = (r > 0.95) & (g < 0.05) & (b < 0.05)
    white = (r > 0.95) & (g > 0.95) & (b > 0.95)
    assert int(red.sum()) > 50 and int(white.sum()) > 50
    plain = run(x, [step(text="Hot", size=36, color="white")])
    assert int(((plain[0, 0] > 0.5) & (plain[0, 1] < 0.05)).sum()) == 0  # no red without a stroke


def test_text_keeps_transparency_elsewhere():
    x = torch.zeros((1, 4, 40, 80))
    y = run(x, [step(text="A", size=20, gravity="top_left", margin=0)])
    assert y[0, 3, 39, 79] == 0 and float(y[0, 3].max()) == 1.0


def _blue(h: int, w: int) -> DecodedImage:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 2] = 255
    return DecodedImage(rgb, None, None, w, h, "PNG")


def test_watermark_placed_at_gravity_with_scale():
    x = grey(100, 200)
    y = run(x, [step(image="logo", scale=0.25, gravity="bottom_right", margin=10)], [{"logo": _blue(10, 20)}])
    blue = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(4, 1, 1)
    assert torch.allclose(y[0, :, 65:90, 140:190], blue.expand(4, 25, 50), atol=1e-5)  # 50x25, 10 px in
    outside = torch.ones((100, 200), dtype=torch.bool)
    outside[65:90, 140:190] = False
    assert torch.equal(y[0][:, outside], x[0][:, outside])


def test_watermark_opacity_and_tiling():
    x = grey(100, 200, value=0.0)
    y = run(x, [step(image="logo", scale=0.1, opacity=0.5, tiled=True, margin=5)], [{"logo": _blue(10, 20)}])
    assert float(y[0, 2].max()) == pytest.approx(0.5, abs=1e-6)
    hit = y[0, 2] > 0.25
    assert bool(hit.view(4, 25, 4, 50).any(dim=3).any(dim=1).all())
    assert float(hit.float().mean()) == pytest.approx(20 * 10 / (25 * 15), abs=0.1)


def test_translucent_watermark_keeps_its_alpha():
    rgb = np.full((4, 4, 3), 255, np.uint8)
    logo = DecodedImage(rgb, np.full((4, 4), 128, np.uint8), None, 4, 4, "PNG")
    x = grey(40, 40, value=0.0)
    y = run(x, [step(image="logo", scale=0.1, gravity="top_left", margin=0)], [{"logo": logo}])
    assert float(y[0, 0, 0, 0]) == pytest.approx(128 / 255, abs=1e-6)


def test_batch_equals_one_at_a_time():
    steps = [
        step(text="first", size=18, color="#ffcc00", gravity="top_left"),
        step(text="second\nline", size_percent=12, color="#00ffff80", stroke_width=2, stroke_color="navy",
             gravity="center", opacity=0.7),
        step(text="3rd", size=10, color="white", tiled=True, margin=6, font="dejavu-sans-bold"),
    ]
    x = torch.rand((3, 4, 80, 120), generator=torch.Generator().manual_seed(5))
    x[1, 3] = 0.6
    together = run(x, steps)
    alone = torch.cat([run(x[i : i + 1], [s]) for i, s in enumerate(steps)])
    assert together.shape == x.shape
    assert float((together - alone).abs().max()) < 1e-6
    for i in range(3):
        assert len(changed(together, x, i)) > 0


def test_batch_mixes_text_and_watermark():
    steps = [step(text="a", size=12), step(image="logo", scale=0.5)]
    x = grey(40, 40, n=2)
    refs = [{}, {"logo": _blue(8, 8)}]
    together = run(x, steps, refs)
    alone = torch.cat([run(x[i : i + 1], [s], [refs[i]]) for i, s in enumerate(steps)])
    assert float((together - alone).abs().max()) < 1e-6


def test_font_from_the_fonts_dir(tmp_path):
    shutil.copy(PACKAGED["dejavu-sans-bold"], tmp_path / "Brand_Font.ttf")
    x = grey()
    settings = Settings(fonts_dir=tmp_path)
    y = run(x, [step(text="Hi", size=16, font="brand font")], settings=settings)
    bold = run(x, [step(text="Hi", size=16, font="dejavu-sans-bold")], settings=settings)
    assert torch.equal(y, bold)


def test_unknown_font_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="gone-font"):
        run(grey(), [step(text="Hi", font="gone-font")], settings=Settings(fonts_dir=tmp_path))


def test_oversized_text_is_refused():
    with pytest.raises(InvalidInput, match="smaller or shorter"):
        imaging.render_text("W" * 400, str(PACKAGED["dejavu-sans"]), 2000)


def test_rendered_text_is_cached_and_read_only():
    path = str(PACKAGED["dejavu-sans"])
    a = imaging.render_text("cache me", path, 12, 1, "left")
    assert imaging.render_text("cache me", path, 12, 1, "left") is a
    assert not a.fill.flags.writeable and a.outline.shape == a.fill.shape
    assert int(a.outline.astype(int).sum()) > int(a.fill.astype(int).sum())


@pytest.mark.parametrize("tiled", [False, True])
def test_tall_watermark_is_cut_to_the_image(tiled):
    x = grey(60, 80)
    # 80 px wide, so 80 * 3000 = 240,000 px tall: only what shows is resampled
    y = run(x, [step(image="strip", scale=1.0, margin=0, tiled=tiled)], [{"strip": _blue(3000, 1)}])
    blue = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 4, 1, 1).expand(1, 4, 60, 80)
    assert torch.allclose(y, blue, atol=1e-5)


def test_watermark_pushed_off_by_its_margin_changes_nothing():
    x = grey(20, 20)
    y = run(x, [step(image="logo", scale=0.5, margin=50, gravity="top_left")], [{"logo": _blue(4, 4)}])
    assert torch.equal(y, x)
