"""``remove_background``: the step model, the matte loader (worker/matting_model.py) and the kernel, on
the CPU, with a tiny segmentation net exported to ONNX here (tests/support/tiny_matting.py) and
loaded through the real loader."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from darkroom.apps.pipeline import STEP_ADAPTER, check_models
from darkroom.errors import InvalidInput, ModelUnavailable
from darkroom.models import DEFAULT_REFINE_MODEL, ModelSpec, register_model
from tests.support.tiny_matting import build_tiny_matting
from worker.matting_model import MODELS
from worker.operators import StepBatch, get_kernel
from worker.operators.remove_background import box_mean, edge_band, edge_radius

CPU = torch.device("cpu")
TINY, FIXED, SIGMOID = "tiny-matte", "tiny-matte-fixed-batch", "tiny-matte-sigmoid"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("matte-models")
    register_model(ModelSpec(TINY, "onnx-segmentation", path=build_tiny_matting(root / "tiny")))
    fixed = build_tiny_matting(root / "fixed", fixed_batch=True)
    register_model(ModelSpec(FIXED, "onnx-segmentation", path=fixed))
    sigmoid = build_tiny_matting(root / "sigmoid", config={"input_size": 32, "output": "sigmoid"})
    register_model(ModelSpec(SIGMOID, "onnx-segmentation", path=sigmoid))
    yield root
    MODELS.clear()


def step(**fields):
    return STEP_ADAPTER.validate_python({"op": "remove_background", "model": TINY, **fields})


def run(x: torch.Tensor, steps: list, models_dir: Path) -> torch.Tensor:
    settings = SimpleNamespace(models_dir=models_dir, torch_threads=1)
    batch = StepBatch(steps, CPU, [0] * len(steps), [{} for _ in steps], settings)
    return get_kernel("remove_background").fn(x, batch)


def photo(n: int = 1, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Dark noisy images, each with a bright square (the foreground) at its own place; opaque."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 4, h, w), generator=g) * 0.2
    for i in range(n):
        top, left = 8 + 3 * i, 10 + 5 * i
        x[i, :3, top : top + h // 2, left : left + w // 2] += 0.75
    x[:, 3] = 1.0
    return x.clamp_(0, 1)


# --- the step model --------------------------------------------------------------------------------


def test_defaults_key_and_size():
    s = STEP_ADAPTER.validate_python({"op": "remove_background"})
    assert (s.model, s.threshold, s.refine_edges) == ("u2net", None, False)
    assert s.model_names() == ["u2net"] and s.output_size((30, 20), {}) == (30, 20)
    assert step(threshold=0.3).batch_key() == step(refine_edges=True).batch_key() != s.batch_key()


@pytest.mark.parametrize("fields, field", [
    ({"threshold": 1.5}, "threshold"),
    ({"model": DEFAULT_REFINE_MODEL}, "model"),
    ({"model": ""}, "model"),
    ({"edges": True}, "edges"),
])
def test_bad_fields_are_refused_by_name(fields, field):
    with pytest.raises(ValidationError) as info:
        STEP_ADAPTER.validate_python({"op": "remove_background", **fields})
    assert info.value.errors()[0]["loc"][-1] == field


def test_a_model_that_is_not_on_disk_is_refused_naming_the_pull_command(tmp_path):
    name = "example/matte-not-pulled"
    register_model(ModelSpec(name, "onnx-segmentation", repo=name))
    empty = SimpleNamespace(models_dir=tmp_path)
    resize = STEP_ADAPTER.validate_python({"op": "resize", "width": 8})
    where = r"steps\.1\.remove_background\.model: "
    with pytest.raises(InvalidInput, match=rf"{where}.*`darkroom models pull {name}`"):
        check_models([resize, step(model=name)], empty)
    with pytest.raises(InvalidInput, match="`darkroom models pull u2net`"):  # the built-in default
        check_models([STEP_ADAPTER.validate_python({"op": "remove_background"})], empty)
    with pytest.raises(InvalidInput, match="unknown model 'no-such-matte'"):
        check_models([step(model="no-such-matte")], empty)


def test_a_present_model_passes_the_check(models_dir):
    check_models([step()], SimpleNamespace(models_dir=models_dir))


# --- the kernel ------------------------------------------------------------------------------------


def test_batched_output_equals_solo_and_the_session_loads_once(models_dir):
    x = photo(3)
    together = run(x, [step()] * 3, models_dir)
    alone = torch.cat([run(x[i : i + 1], [step()], models_dir) for i in range(3)])
    assert together.shape == x.shape and together.dtype == torch.float32
    assert torch.allclose(together, alone, atol=1e-4)
    assert MODELS.loaded().count(TINY) == 1


def test_a_graph_with_a_fixed_batch_runs_image_by_image(models_dir):
    x = photo(3, seed=1)
    fixed = run(x, [step(model=FIXED)] * 3, models_dir)  # same seeded weights as TINY
    assert torch.allclose(fixed, run(x, [step()] * 3, models_dir), atol=1e-4)


def test_the_matte_follows_the_foreground_and_keeps_rgb(models_dir):
    x = photo()
    y = run(x, [step()], models_dir)
    assert torch.equal(y[:, :3], x[:, :3])
    alpha = y[0, 3]
    assert alpha[20, 30] > 0.9 and alpha[2, 2] < 0.1  # inside the square / the dark corner
    assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0
    assert ((alpha > 0.05) & (alpha < 0.95)).any()  # soft by default


def test_threshold_gives_a_binary_alpha(models_dir):
    x = photo()
    soft = run(x, [step()], models_dir)[0, 3]
    hard = run(x, [step(threshold=0.5)], models_dir)[0, 3]
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(hard, (soft >= 0.5).float())


def test_existing_alpha_is_multiplied(models_dir):
    x = photo()
    matte = run(x, [step()], models_dir)[0, 3]
    x[:, 3] = 0.5
    x[:, 3, :, :10] = 0.0
    y = run(x, [step()], models_dir)
    assert torch.allclose(y[0, 3], x[0, 3] * matte, atol=1e-6)
    assert torch.equal(y[:, :3], x[:, :3])


def test_refine_edges_changes_only_the_edge_band(models_dir):
    x = photo(h=96, w=128)
    soft = run(x, [step()], models_dir)[0, 3]
    refined = run(x, [step(refine_edges=True)], models_dir)[0, 3]
    band = edge_band(soft[None, None], 2 * edge_radius((96, 128), 32))[0, 0]
    assert band.any() and not band.all()
    assert torch.equal(refined[~band], soft[~band])  # flat parts untouched, exactly
    assert (refined[band] - soft[band]).abs().max() > 0.05  # the edges moved
    assert float(refined.min()) >= 0.0 and float(refined.max()) <= 1.0


def test_a_batch_mixing_options_equals_each_item_alone(models_dir):
    x = photo(3, seed=2)
    steps = [step(), step(threshold=0.4), step(refine_edges=True, threshold=0.6)]
    together = run(x, steps, models_dir)
    alone = torch.cat([run(x[i : i + 1], [steps[i]], models_dir) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-4)


def test_output_config_sigmoid_reads_logits(models_dir):
    x = photo()
    a = run(x, [step(model=SIGMOID)], models_dir)[0, 3]
    assert float(a.min()) > 0.5  # the tiny net's sigmoid map through another sigmoid: above 0.5
    assert not torch.allclose(a, run(x, [step()], models_dir)[0, 3])


# --- loading failures ------------------------------------------------------------------------------


def _register(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    register_model(ModelSpec(name, "onnx-segmentation", path=folder))
    return folder


def test_a_corrupt_model_is_model_unavailable_and_the_next_model_still_loads(models_dir, tmp_path):
    folder = _register(tmp_path, "corrupt-matte")
    (folder / "model.onnx").write_bytes(b"\x08\x07 this is not a protobuf graph" * 10)
    with pytest.raises(ModelUnavailable, match=r"corrupt-matte: .*model\.onnx could not be loaded"):
        run(photo(), [step(model="corrupt-matte")], models_dir)
    assert run(photo(), [step()], models_dir).shape == (1, 4, 48, 64)


def test_a_bad_matte_json_is_model_unavailable_naming_it(tmp_path, models_dir):
    folder = _register(tmp_path, "bad-config-matte")
    build_tiny_matting(folder, config={"input_size": 32, "ouptut": "sigmoid"})
    with pytest.raises(ModelUnavailable, match=r"matte\.json is not a valid matte config \(ouptut: Extra"):
        run(photo(), [step(model="bad-config-matte")], models_dir)


def test_an_input_size_the_graph_does_not_take_is_model_unavailable(tmp_path, models_dir):
    folder = _register(tmp_path, "wrong-size-matte")
    build_tiny_matting(folder, fixed_batch=True)
    (folder / "matte.json").write_text('{"input_size": 64}')  # exported fixed at 32
    with pytest.raises(ModelUnavailable, match="its input is 32x32, but input_size is 64"):
        run(photo(), [step(model="wrong-size-matte")], models_dir)


def test_a_model_not_on_disk_fails_fast_in_the_worker(tmp_path):
    register_model(ModelSpec("example/matte-absent", "onnx-segmentation", repo="example/matte-absent"))
    with pytest.raises(ModelUnavailable, match="darkroom models pull example/matte-absent"):
        run(photo(), [step(model="example/matte-absent")], tmp_path)


# --- the guided filter's parts ---------------------------------------------------------------------


def test_box_mean_is_the_replicate_padded_window_mean():
    t = torch.rand((2, 1, 9, 13), generator=torch.Generator().manual_seed(3))
    for r in (1, 3, 7):  # 7: wider than the image is tall
        expected = F.avg_pool2d(F.pad(t, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)
        assert torch.allclose(box_mean(t, r), expected, atol=1e-6)


def test_edge_radius_is_about_one_model_pixel():
    assert edge_radius((48, 64), 320) == 1
    assert edge_radius((3000, 4000), 320) == 13
    assert edge_radius((30000, 40000), 320) == 32
