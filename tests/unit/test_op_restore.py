"""``restore``: the schema, and the kernel on a tiny random Swin2SR (tests/support/tiny_restore.py)
loaded through the worker's real loader (worker/restore_model.py).

Seams: each tile's outer quarter of every overlap gets no weight (worker/operators/restore.py). The
tiny model (window 4, x2) reaches about 10 input px in from a tile edge, so an overlap of 44 (11 px
unused at each edge) blends to the untiled result to float rounding; the default overlap of 32 (8 px
unused) leaves a few px of the reach in the ramp, at weights below 1/4, which stays far below 1/255
(measured 0.16/255); a linear ramp with no unused margin, as ``overlap_px: 0`` gives, shows seams of
many 1/255 steps (measured 16/255), so the comparison does see seams.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from darkroom.apps.pipeline import STEP_ADAPTER, PipelineInput, check_models
from darkroom.apps.pipeline.operators.restore import DEFAULT_RESTORE_MODEL
from darkroom.errors import InvalidInput, ModelUnavailable
from darkroom.models import ModelSpec, get_model, register_model
from tests.support.tiny_restore import PIPELINE, build_tiny_restore, register_tiny_restore
from worker.operators import StepBatch, get_kernel
from worker.operators.restore import symmetric_pad, tile_starts
from worker.restore_model import CACHE

CPU = torch.device("cpu")
TINY, SAME_SIZE = "tiny-restore-unit", "tiny-restore-unit-x1"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("restore-models")
    register_tiny_restore(root / "x2", TINY)
    register_tiny_restore(root / "x1", SAME_SIZE, upsampler="", upscale=1)
    settings = SimpleNamespace(models_dir=root / "pulled", model_cache_mb=100)
    return SimpleNamespace(root=root, settings=settings)


def step(**fields):
    return STEP_ADAPTER.validate_python({"op": "restore", "model": TINY, **fields})


def run(x: torch.Tensor, steps: list, settings) -> torch.Tensor:
    batch = StepBatch(steps, CPU, [0] * len(steps), [{} for _ in steps], settings)
    return get_kernel("restore").fn(x, batch)


def image(h: int, w: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """Smooth-ish random RGB (a 5x5 box blur of noise), opaque."""
    noise = torch.rand((batch, 3, h + 4, w + 4), generator=torch.Generator().manual_seed(seed))
    rgb = F.avg_pool2d(noise, 5, 1)
    return torch.cat([rgb, torch.ones(batch, 1, h, w)], dim=1)


# --- schema ------------------------------------------------------------------------------------------


def test_defaults_key_and_sizes():
    s = STEP_ADAPTER.validate_python({"op": "restore"})
    assert (s.model, s.scale, s.tile_px, s.overlap_px) == (DEFAULT_RESTORE_MODEL, 1, 256, 32)
    assert s.batch_key() == ("restore", DEFAULT_RESTORE_MODEL, 1, 256, 32)
    assert s.model_names() == [DEFAULT_RESTORE_MODEL]
    assert step(scale=3).output_size((37, 23), {}) == (111, 69)
    spec = get_model(DEFAULT_RESTORE_MODEL)
    assert spec is not None and spec.kind == "restore" and spec.repo == DEFAULT_RESTORE_MODEL
    assert {"config.json", "preprocessor_config.json"} <= set(spec.allow_patterns)


@pytest.mark.parametrize("fields, where", [
    ({"overlap_px": 32, "tile_px": 64}, "overlap_px"),
    ({"tile_px": 100}, "tile_px"),
    ({"scale": 5}, "scale"),
    ({"model": "CompVis/ldm-super-resolution-4x-openimages"}, "model"),
    ({"strength": 0.5}, "strength"),
])
def test_bad_fields_are_refused_naming_them(fields, where):
    with pytest.raises(ValidationError) as info:
        step(**fields)
    assert info.value.errors()[0]["loc"][-1] == where


def test_a_model_not_on_disk_is_refused_by_the_api_naming_the_pull_command(tmp_path):
    register_model(ModelSpec("example/restore-not-pulled", PIPELINE, repo="example/restore-not-pulled"))
    settings = SimpleNamespace(models_dir=tmp_path)
    for name in ("example/restore-not-pulled", DEFAULT_RESTORE_MODEL):
        body = PipelineInput.model_validate(
            {"image_url": "https://example.com/a.png", "steps": [{"op": "resize", "width": 8},
                                                                 {"op": "restore", "model": name}]})
        with pytest.raises(InvalidInput) as info:
            check_models(body.steps, settings)
        assert info.value.detail.startswith("steps.1.restore.model:")
        assert f"darkroom models pull {name}" in info.value.detail
    with pytest.raises(InvalidInput, match="unknown model 'no-such-model'"):
        check_models([step(model="no-such-model")], settings)


# --- kernel ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, scale", [(TINY, 1), (TINY, 2), (TINY, 3), (TINY, 4), (SAME_SIZE, 1),
                                          (SAME_SIZE, 2)])
def test_output_size_is_output_size(models, model, scale):
    s = step(model=model, scale=scale, tile_px=32, overlap_px=8)
    x = image(23, 37)  # not a multiple of the window: padded, then cropped
    y = run(x, [s], models.settings)
    assert tuple(y.shape) == (1, 4, *reversed(s.output_size((37, 23), {})))
    assert y.dtype == torch.float32 and float(y.min()) >= 0 and float(y.max()) <= 1
    assert bool((y[:, 3] == 1).all())  # opaque stays exactly opaque


def test_alpha_passes_through_resized(models):
    x = image(20, 24)
    x[:, 3] = torch.linspace(0, 1, 24)  # a horizontal alpha ramp
    same = run(x, [step(scale=1, tile_px=32, overlap_px=8)], models.settings)
    assert torch.equal(same[:, 3], x[:, 3])
    double = run(x, [step(scale=2, tile_px=32, overlap_px=8)], models.settings)
    expected = F.interpolate(x[:, 3:], size=(40, 48), mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.allclose(double[:, 3:], expected)


def test_batched_equals_solo(models):
    x = torch.cat([image(40, 36, seed=i) for i in range(3)])
    steps = [step(scale=2, tile_px=32, overlap_px=8)] * 3
    together = run(x, steps, models.settings)
    for i in range(3):
        alone = run(x[i:i + 1], steps[:1], models.settings)
        assert (together[i:i + 1] - alone).abs().max() <= 1e-4


@pytest.mark.parametrize("tile, overlap, limit", [(96, 44, 1e-4), (72, 32, 1 / 255)])
def test_tile_seams_are_invisible(models, tile, overlap, limit):
    x = image(160, 136, seed=3, batch=2)
    assert len(tile_starts(160, tile, overlap, 4)) > 2 and len(tile_starts(136, tile, overlap, 4)) > 1
    whole = run(x, [step(scale=2, tile_px=1024, overlap_px=0)] * 2, models.settings)  # one tile
    tiled = run(x, [step(scale=2, tile_px=tile, overlap_px=overlap)] * 2, models.settings)
    diff = (tiled - whole).abs()
    seams = [(s + tile) * 2 for s in tile_starts(136, tile, overlap, 4)[:-1]]  # right edges of tiles
    at_seams = max(float(diff[..., c - 4:c + 4].max()) for c in seams)
    assert at_seams <= limit and float(diff.max()) <= limit
    # overlap_px 0 keeps no margin: the tiles overlap only where the even spread puts them (28 px
    # here) and are ramped across it linearly, border pixels included: the seams do show
    hard = run(x, [step(scale=2, tile_px=72, overlap_px=0)] * 2, models.settings)
    assert float((hard - whole).abs().max()) > 4 / 255


def test_the_model_loads_once_per_device(models):
    CACHE.clear()
    before = CACHE.loads
    for _ in range(3):
        run(image(16, 16), [step(tile_px=32, overlap_px=8)], models.settings)
    assert CACHE.loads == before + 1


def _corrupt(models, name: str, damage) -> str:
    folder = models.root / name
    shutil.copytree(models.root / "x2", folder)
    damage(folder)
    register_model(ModelSpec(name, PIPELINE, path=folder))
    return name


@pytest.mark.parametrize("name, damage, says", [
    ("garbage-weights", lambda f: (f / "model.safetensors").write_bytes(b"\0garbage" * 64), "could not"),
    ("no-weights", lambda f: (f / "model.safetensors").unlink(), "could not"),
    ("other-type", lambda f: (f / "config.json").write_text(json.dumps({"model_type": "bert"})), "swin2sr"),
    ("bad-json", lambda f: (f / "config.json").write_text("{"), "could not"),
])
def test_a_corrupt_model_fails_with_model_unavailable(models, name, damage, says):
    model = _corrupt(models, f"tiny-restore-{name}", damage)
    with pytest.raises(ModelUnavailable, match=says) as info:
        run(image(16, 16), [step(model=model, tile_px=32, overlap_px=8)], models.settings)
    assert info.value.code == "model_unavailable"


def test_weights_that_leave_tensors_out_fail(models, tmp_path):
    from safetensors.torch import load_file, save_file

    def drop_one(folder: Path) -> None:
        tensors = load_file(folder / "model.safetensors")
        tensors.pop(sorted(tensors)[0])
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})

    model = _corrupt(models, "tiny-restore-partial", drop_one)
    with pytest.raises(ModelUnavailable, match="lack 1 tensors"):
        run(image(16, 16), [step(model=model, tile_px=32, overlap_px=8)], models.settings)


def test_a_model_absent_from_disk_fails_fast(models):
    register_model(ModelSpec("example/restore-absent", PIPELINE, repo="example/restore-absent"))
    s = STEP_ADAPTER.validate_python({"op": "restore", "model": "example/restore-absent"})
    with pytest.raises(ModelUnavailable, match="darkroom models pull example/restore-absent"):
        run(image(8, 8), [s], models.settings)


def test_symmetric_padding_mirrors_any_amount():
    x = torch.arange(3.0).view(1, 1, 1, 3)
    assert symmetric_pad(x, 1, 11).flatten().tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1]


def test_a_same_size_model_on_a_tiny_image(models, tmp_path):
    folder = build_tiny_restore(tmp_path / "w8", window_size=8, upsampler="", upscale=1)
    register_model(ModelSpec("tiny-restore-w8", PIPELINE, path=folder))
    y = run(image(3, 5), [step(model="tiny-restore-w8", tile_px=32, overlap_px=8)], models.settings)
    assert tuple(y.shape) == (1, 4, 3, 5)
