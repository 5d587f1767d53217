"""The ``composite`` kernel on the CPU: canvas sizes, alpha, backgrounds, placement and the shadow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darkroom.apps.pipeline import STEP_ADAPTER
from worker.imaging import DecodedImage
from worker.operators import StepBatch, get_kernel
from worker.operators.composite import _gaussian_direct, gaussian
from worker.operators.resize import resample

CPU = torch.device("cpu")


def step(**fields):
    return STEP_ADAPTER.validate_python({"op": "composite", **fields})


def run(x: torch.Tensor, steps: list, refs: list[dict] | None = None) -> torch.Tensor:
    batch = StepBatch(steps, CPU, [0] * len(steps), refs or [{} for _ in steps])
    return get_kernel("composite").fn(x, batch)


def image(h: int, w: int, seed: int = 0, alpha: float | None = 1.0) -> torch.Tensor:
    x = torch.rand((1, 4, h, w), generator=torch.Generator().manual_seed(seed))
    if alpha is not None:
        x[:, 3] = alpha
    return x


def decoded(rgb: np.ndarray, alpha: np.ndarray | None = None) -> DecodedImage:
    return DecodedImage(rgb, alpha, None, rgb.shape[1], rgb.shape[0], "PNG")


def test_canvas_size_and_colour_around_the_image():
    y = run(image(30, 40), [step(color="#ff0000", width=100, height=80, scale=0.5)])
    assert y.shape == (1, 4, 80, 100) and y.dtype == torch.float32
    assert torch.equal(y[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert torch.all(y[0, 3] == 1)
    # fitted (x2.5) times 0.5: 50x38 (37.5 rounds to even), centred
    assert not torch.equal(y[0, :, 40, 50], torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert torch.equal(y[0, :, 40, 24], torch.tensor([1.0, 0.0, 0.0, 1.0]))


def test_opaque_image_is_unchanged_where_it_covers():
    x = image(20, 30, seed=1)
    assert torch.equal(run(x, [step(color="white")]), x)  # canvas = image: the image itself
    # canvas twice the size, scale 0.5: the image keeps its size; placed top-left, moved by the offset
    placed = step(color="blue", width=60, height=40, scale=0.5, gravity="top_left", offset_x=5, offset_y=7)
    y = run(x, [placed])
    assert torch.equal(y[:, :, 7:27, 5:35], x)
    assert torch.equal(y[0, :, 30, 2], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_image_past_the_edge_is_clipped():
    x = image(20, 20, seed=2)
    y = run(x, [step(color="black", width=40, height=40, scale=0.5, gravity="bottom_right", offset_x=10)])
    assert y.shape == (1, 4, 40, 40)
    assert torch.equal(y[:, :, 20:40, 30:40], x[:, :, :, :10])


def test_transparent_background_keeps_transparency():
    x = image(10, 10, seed=3)
    x[:, 3, :5] = 0.5  # a translucent top half
    y = run(x, [step(color="transparent", width=30, height=10)])
    assert torch.all(y[0, 3, :, :10] == 0) and torch.all(y[0, 3, :, 20:] == 0)
    assert torch.allclose(y[0, 3, :, 10:20], x[0, 3])
    assert torch.allclose(y[:, :3, 5:, 10:20], x[:, :3, 5:])


def test_translucent_image_over_a_colour():
    x = torch.zeros((1, 4, 4, 4))
    x[:, 0], x[:, 3] = 1.0, 0.25  # a quarter-opaque red
    y = run(x, [step(color="#0000ff")])
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([0.25, 0.0, 0.75, 1.0]))


@pytest.mark.parametrize(("angle", "axis"), [(0, 3), (90, 2)])
def test_gradient_direction(angle, axis):
    clear = torch.zeros((1, 4, 30, 40))  # a transparent image shows the background alone
    y = run(clear, [step(gradient={"start": "black", "end": "white", "angle": angle})])
    red = y[0, 0]
    along = red.mean(dim=0 if axis == 3 else 1)
    across = red.std(dim=0 if axis == 3 else 1)
    assert along[0] == pytest.approx(0.0, abs=1e-6) and along[-1] == pytest.approx(1.0, abs=1e-6)
    assert torch.all(along[1:] > along[:-1])  # rises along the direction
    assert torch.all(across < 1e-6)  # constant across it
    assert torch.all(y[0, 3] == 1)


def test_diagonal_gradient_runs_corner_to_corner():
    y = run(torch.zeros((1, 4, 20, 20)), [step(gradient={"start": "#000000", "end": "#ffffff", "angle": 45})])
    assert y[0, 0, 0, 0] == pytest.approx(0.0, abs=1e-6) and y[0, 0, -1, -1] == pytest.approx(1.0, abs=1e-6)
    assert y[0, 0, 0, -1] == pytest.approx(0.5, abs=1e-6)  # the other diagonal is half way


def test_gradient_to_transparent_does_not_darken():
    y = run(torch.zeros((1, 4, 4, 11)), [step(gradient={"start": "#ff0000", "end": "#ff000000", "angle": 0})])
    assert torch.allclose(y[0, 0, :, :-1], torch.ones(4, 10))  # red all the way, fading out
    assert torch.allclose(y[0, 3, 0], torch.linspace(1, 0, 11), atol=1e-6)


def test_reference_image_background():
    bg = np.zeros((50, 70, 3), np.uint8)
    bg[..., 1] = 200
    x = image(10, 10, seed=4)
    y = run(x, [step(image="paper", scale=0.2)], [{"paper": decoded(bg)}])
    assert y.shape == (1, 4, 50, 70)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([0.0, 200 / 255, 0.0, 1.0]))
    # fitted (x5) times 0.2: the image's own size, centred
    assert torch.equal(y[:, :, 20:30, 30:40], x)


def test_reference_background_with_alpha_shows_through():
    bg = np.full((8, 8, 3), 255, np.uint8)
    alpha = np.zeros((8, 8), np.uint8)
    clear = torch.zeros((1, 4, 8, 8))
    y = run(clear, [step(image="bg")], [{"bg": decoded(bg, alpha)}])
    assert torch.all(y[0, 3] == 0)


def _square(size: int = 40) -> torch.Tensor:
    x = torch.zeros((1, 4, size, size))
    x[:, 0] = 1.0
    x[:, 3] = 1.0
    return x


def test_shadow_is_offset_and_soft():
    shadow = {"offset_x": 10, "offset_y": 15, "blur": 3, "opacity": 1.0, "color": "black"}
    y = run(_square(), [step(color="white", width=120, height=120, scale=1 / 3, shadow=shadow)])
    # the red square sits at 40..80; its shadow at 50..90 x 55..95
    lum = y[0, 1]  # green: 1 on white, 0 on red and in a full shadow
    assert lum[60, 85] < 0.1 and lum[88, 60] < 0.1  # right of and below the image: shadow
    assert lum[60, 35] > 0.999 and lum[35, 60] > 0.999  # left of and above it: none
    assert torch.equal(y[0, :, 60, 60], torch.tensor([1.0, 0.0, 0.0, 1.0]))  # the image stays on top
    edge = lum[88, 84:97]  # across the shadow's right edge (x = 90): a soft ramp, not a step
    assert torch.all(edge[1:] >= edge[:-1])
    assert 0.3 < float(lum[88, 90]) < 0.7
    assert int(((edge > 0.05) & (edge < 0.95)).sum()) >= 4


def test_shadow_without_blur_is_hard():
    shadow = {"offset_x": 10, "offset_y": 10, "blur": 0, "opacity": 0.5, "color": "black"}
    y = run(_square(), [step(color="white", width=120, height=120, scale=1 / 3, shadow=shadow)])
    row = y[0, 1, 85, 40:100]
    assert set(torch.unique(row).tolist()) == {0.5, 1.0}  # half-strength shadow or plain white


def test_shadow_on_a_transparent_canvas_is_translucent_black():
    shadow = {"offset_x": 0, "offset_y": 20, "blur": 2, "opacity": 0.4}
    y = run(_square(20), [step(color="transparent", width=60, height=60, scale=1 / 3, shadow=shadow)])
    assert y[0, 3, 45, 30] == pytest.approx(0.4, abs=1e-3) and y[0, 3, 5, 30] == 0
    assert torch.allclose(y[0, :3, 45, 30], torch.zeros(3))


def test_large_sigma_blur_matches_the_direct_one():
    a = torch.zeros((1, 1, 200, 240))
    a[:, :, 80:120, 90:150] = 1.0
    fast, exact = gaussian(a, 20.0), _gaussian_direct(a, 20.0)
    assert fast.shape == a.shape
    assert float((fast - exact).abs().max()) < 0.01
    assert float(fast.sum()) == pytest.approx(float(a.sum()), rel=1e-3)


def test_batch_equals_one_at_a_time():
    shadow = {"offset_x": -6, "offset_y": 9, "blur": 4, "opacity": 0.6}
    common = {"width": 64, "height": 48, "scale": 0.8, "gravity": "top_right", "offset_x": -3}
    common["shadow"] = shadow
    steps = [
        step(color="#336699", **common),
        step(gradient={"start": "yellow", "end": "#00000080", "angle": 30}, **common),
        step(color="transparent", **common),
    ]
    x = torch.cat([image(30, 40, seed=i, alpha=None) for i in range(3)])
    together = run(x, steps)
    alone = torch.cat([run(x[i : i + 1], [s]) for i, s in enumerate(steps)])
    assert together.shape == (3, 4, 48, 64)
    assert float((together - alone).abs().max()) < 1e-6


def test_reference_backgrounds_of_two_sizes_cannot_share_a_batch():
    refs = [{"bg": decoded(np.zeros((h, 10, 3), np.uint8))} for h in (10, 12)]
    with pytest.raises(ValueError, match="output size"):
        run(torch.cat([image(5, 5), image(5, 5)]), [step(image="bg"), step(image="bg")], refs)


def test_image_scaled_past_the_canvas_resamples_only_what_shows():
    x = image(64, 64, seed=6)
    y = run(x, [step(color="black", scale=4, width=32, height=32)])  # fitted (x0.5) times 4: 128x128
    assert y.shape == (1, 4, 32, 32)
    full = resample(x, (128, 128))[:, :, 48:80, 48:80]
    assert float((y - full).abs().max()) < 1e-5


def test_window_of_a_non_integer_scale_stays_close():
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 50), torch.linspace(0, 1, 70), indexing="ij")
    x = torch.stack([xs, ys, (xs + ys) / 2, torch.ones_like(xs)])[None]  # smooth: sub-pixel shifts are small
    shadow = {"offset_x": 5, "offset_y": -4, "blur": 2, "opacity": 0.5}
    y = run(x, [step(color="white", scale=3.3, width=40, height=30, gravity="top_left", shadow=shadow)])
    fw, fh = step(color="white", scale=3.3, width=40, height=30).foreground((70, 50), (40, 30))
    full = resample(x, (fh, fw))[:, :, :30, :40]
    assert float((y - full).abs().max()) < 0.02


def test_image_moved_off_the_canvas_leaves_the_background():
    y = run(image(10, 10), [step(color="#00ff00", offset_x=500, shadow={"offset_x": 0, "offset_y": 0})])
    assert torch.equal(y, torch.tensor([0.0, 1.0, 0.0, 1.0]).view(1, 4, 1, 1).expand(1, 4, 10, 10))
