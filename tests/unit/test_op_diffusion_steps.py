"""The ``upscale`` and ``refine`` steps: the diffusion apps' fields and checks as strict steps, their
sizes and batch keys, the submit-time model check, and the kernels on tiny random-weight models
(tests/support/diffusion_models.py) loaded through the worker's real registry and loader.

Batched vs solo: each item draws its noise from its own generator, so a batch changes only how the
UNet's and VAE's convolutions and matmuls are blocked, which moves float32 results by rounding (on
CPU, measured up to 8e-6 on these models, at 1 or 2 threads). Outputs are compared within 1e-4, as
the apps' own tests do; bitwise equality is not promised.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from darkroom.apps.diffusion import RefineInput, UpscaleInput
from darkroom.apps.pipeline import STEP_ADAPTER, PipelineInput, check_models, check_sizes, step_sizes
from darkroom.errors import InvalidInput, ModelUnavailable
from darkroom.models import DEFAULT_REFINE_MODEL, ModelSpec, register_model, use_models_config
from darkroom.settings import Settings
from tests.support.diffusion_models import build_tiny_models
from worker.operators import StepBatch, get_kernel
from worker.pipelines import diffusion

pytestmark = pytest.mark.timeout(120)
CPU = torch.device("cpu")
ABSENT = "example/not-pulled"  # registered, never pulled
BROKEN = "example/broken"  # on disk, but not a loadable model
URL = "https://example.com/photo.png"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    folder = tmp_path_factory.mktemp("models")
    config = build_tiny_models(folder)
    entries = json.loads(config.read_text())
    entries[ABSENT] = {"repo": ABSENT, "pipeline": "LDMSuperResolutionPipeline"}
    config.write_text(json.dumps(entries))
    broken = folder / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")
    register_model(ModelSpec(BROKEN, "LDMSuperResolutionPipeline", path=broken))
    s = Settings(models_dir=folder, models_config=config, upscale_tile_px=16, upscale_tile_overlap_px=4)
    use_models_config(s)  # what the API and workers do at start-up
    return s


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models are all overhead: one thread is faster, and steadier on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def step(**fields):
    return STEP_ADAPTER.validate_python(fields)


def run(settings, x: torch.Tensor, steps: list, seeds: list[int]) -> torch.Tensor:
    batch = StepBatch(steps, x.device, seeds, [{} for _ in steps], settings)
    with torch.inference_mode():
        return get_kernel(steps[0].op).fn(x, batch)


def image(h: int, w: int, seed: int = 0, alpha: float | None = 1.0) -> torch.Tensor:
    x = torch.rand((1, 4, h, w), generator=torch.Generator().manual_seed(seed))
    if alpha is not None:
        x[:, 3] = alpha
    return x


UPSCALE = {"op": "upscale", "model": "tiny-ldm", "num_inference_steps": 2}
SD_UPSCALE = {"op": "upscale", "model": "tiny-sd-upscaler", "num_inference_steps": 2, "noise_level": 10}
REFINE = {"op": "refine", "model": "tiny-refine", "prompt": "a cat", "num_inference_steps": 4,
          "strength": 0.5}


# --- schema ---------------------------------------------------------------------------------------


def test_the_steps_take_the_apps_fields_less_the_requests():
    upscale_fields = set(STEP_ADAPTER.validate_python({"op": "upscale"}).model_fields)
    refine_fields = set(STEP_ADAPTER.validate_python({"op": "refine", "prompt": "x"}).model_fields)
    assert upscale_fields == {"op", "model", "scale", "num_inference_steps", "prompt", "negative_prompt",
                              "guidance_scale", "noise_level"}
    assert refine_fields == {"op", "model", "num_inference_steps", "prompt", "negative_prompt", "strength",
                             "guidance_scale"}
    for name in upscale_fields - {"op"}:  # the same definitions: defaults, ranges, descriptions
        assert repr(step(op="upscale").model_fields[name]) == repr(UpscaleInput.model_fields[name])
    for name in refine_fields - {"op"}:
        assert repr(step(op="refine", prompt="x").model_fields[name]) == repr(RefineInput.model_fields[name])


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"op": "upscale", "seed": 3}, "seed", "Extra inputs"),
    ({"op": "upscale", "image_url": URL}, "image_url", "Extra inputs"),
    ({"op": "upscale", "output_format": "png"}, "output_format", "Extra inputs"),
    ({"op": "refine", "prompt": "x", "num_images": 2}, "num_images", "Extra inputs"),
    ({"op": "upscale", "model": "no-such-model"}, "model", "unknown model 'no-such-model'"),
    ({"op": "upscale", "model": "tiny-refine"}, "model", "tiny-refine is a refine model"),
    ({"op": "upscale", "model": "tiny-ldm", "prompt": "a cat"}, "prompt", "tiny-ldm takes no prompt"),
    ({"op": "upscale", "model": "tiny-ldm", "noise_level": 5}, "noise_level", "takes no noise_level"),
    ({"op": "upscale", "scale": 3}, "scale", "2 or 4"),
    ({"op": "upscale", "num_inference_steps": 151}, "num_inference_steps", "less than or equal to 150"),
    ({"op": "refine"}, "prompt", "Field required"),
    ({"op": "refine", "prompt": "x", "model": "tiny-ldm"}, "model", "tiny-ldm is a upscale model"),
    ({"op": "refine", "prompt": "x", "strength": 0.1, "num_inference_steps": 5}, "strength", "at least one"),
])
def test_bad_fields_name_the_step_and_field(settings, fields, field, message):
    with pytest.raises(ValidationError) as info:
        PipelineInput.model_validate({"image_url": URL, "steps": [{"op": "resize", "width": 8}, fields]})
    (error,) = info.value.errors()
    assert error["loc"] == ("steps", 1, fields["op"], field) and message in error["msg"], error


def test_a_stored_job_leaves_an_unknown_model_to_the_worker(settings):
    body = {"image_url": URL, "steps": [{"op": "upscale", "model": "gone"}]}
    assert PipelineInput.model_validate(body, context={"trusted": True}).steps[0].model == "gone"


APP_VALUES = {  # per step field: two values the app accepts
    "upscale": {"model": ("tiny-sd-upscaler", "stabilityai/stable-diffusion-x4-upscaler"),
                "num_inference_steps": (2, 3), "scale": (4, 2), "prompt": ("a", "b"),
                "negative_prompt": ("", "c"), "guidance_scale": (5.0, 6.0), "noise_level": (10, 20)},
    "refine": {"model": ("tiny-refine", DEFAULT_REFINE_MODEL), "num_inference_steps": (4, 8),
               "prompt": ("a", "b"), "negative_prompt": ("", "c"), "strength": (0.5, 0.75),
               "guidance_scale": (5.0, 6.0)},
}


@pytest.mark.parametrize("op", ["upscale", "refine"])
def test_the_batch_key_is_the_apps(settings, op):
    """A field splits a step's batches exactly when it splits the app's (worker/pipelines/diffusion.py)."""
    app = {"upscale": UpscaleInput, "refine": RefineInput}[op]
    values = APP_VALUES[op]
    base = {name: pair[0] for name, pair in values.items()}
    assert set(values) == set(step(op=op, **base).model_fields) - {"op"}  # every field is looked at
    size = SimpleNamespace(height=16, width=16)
    for name, (_, other) in values.items():
        changed = {**base, name: other}
        app_split = diffusion.batch_key(app(image_url=URL, **base), size) != diffusion.batch_key(
            app(image_url=URL, **changed), size)
        step_split = step(op=op, **base).batch_key() != step(op=op, **changed).batch_key()
        assert step_split == app_split, name


def test_output_sizes():
    assert step(op="upscale").output_size((20, 12), {}) == (80, 48)
    assert step(op="upscale", scale=2).output_size((20, 12), {}) == (40, 24)
    assert step(**REFINE).output_size((13, 11), {}) == (13, 11)
    steps = [step(op="resize", width=10), step(op="upscale"), step(**REFINE), step(op="upscale", scale=2)]
    assert [size for _, size in step_sizes(steps, (20, 12), {})] == [(10, 6), (40, 24), (40, 24), (80, 48)]
    with pytest.raises(InvalidInput, match=r"steps\.1\.upscale: makes a 32000x16000 image, more than"):
        check_sizes([step(op="upscale"), step(op="upscale")], (2000, 1000), {}, 64_000_000)
    with pytest.raises(InvalidInput, match=r"steps\.0\.upscale\.scale: makes a 80000x4 image"):
        check_sizes([step(op="upscale")], (20_000, 1), {}, 10**12)


def test_a_model_not_on_disk_is_refused_at_submit_naming_the_pull_command(settings):
    steps = [step(op="resize", width=8), step(op="upscale", model=ABSENT)]
    assert steps[1].model_names() == [ABSENT]
    with pytest.raises(InvalidInput) as info:
        check_models(steps, settings)
    assert str(info.value).startswith(f"steps.1.upscale.model: {ABSENT} is not on this server")
    assert f"darkroom models pull {ABSENT}" in str(info.value)
    check_models([step(**UPSCALE), step(**REFINE)], settings)  # present: no error


# --- kernels --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "size", "out"), [
    ({**UPSCALE}, (12, 20), (48, 80)),
    ({**UPSCALE, "scale": 2}, (12, 20), (24, 40)),
    ({**SD_UPSCALE, "prompt": "a sky"}, (12, 20), (48, 80)),
    ({**REFINE}, (13, 11), (13, 11)),  # refine pads to the VAE's alignment and crops back
])
def test_kernel_output_size_is_output_size(settings, fields, size, out):
    s = step(**fields)
    y = run(settings, image(*size), [s], [1])
    assert s.output_size((size[1], size[0]), {}) == (out[1], out[0])
    assert y.shape == (1, 4, *out) and y.dtype == torch.float32 and y.device == CPU
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("fields", [UPSCALE, SD_UPSCALE, REFINE], ids=["ldm", "sd-upscaler", "refine"])
def test_batched_equals_solo_with_per_item_seeds(settings, fields):
    prompts = [""] * 3 if fields is UPSCALE else ["a cat", "a dog", "sky"]  # tiny-ldm takes no prompt
    steps = [step(**{**fields, "prompt": p}) for p in prompts]
    x = torch.cat([image(12, 16, seed=i) for i in range(3)])
    seeds = [7, 8, 7]
    together = run(settings, x, steps, seeds)
    for i in range(3):
        alone = run(settings, x[i : i + 1], [steps[i]], [seeds[i]])
        assert (together[i : i + 1] - alone).abs().max() <= TOLERANCE
    other = run(settings, x[:1], [steps[0]], [9])  # another seed, another image
    assert (other - together[:1]).abs().max() > 1e-3


def test_upscale_resizes_alpha_and_keeps_opaque_exactly_opaque(settings):
    x = torch.cat([image(12, 16, seed=1, alpha=None), image(12, 16, seed=2)])
    y = run(settings, x, [step(**UPSCALE)] * 2, [1, 2])
    expected = F.interpolate(x[:1, 3:], size=(48, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(y[:1, 3:], expected, atol=1e-6)
    assert bool((y[1, 3] == 1).all())


def test_refine_passes_alpha_through(settings):
    x = image(12, 16, seed=3, alpha=None)
    y = run(settings, x, [step(**REFINE)], [4])
    assert torch.equal(y[:, 3:], x[:, 3:])


def test_a_model_that_does_not_load_raises_model_unavailable(settings):
    with pytest.raises(ModelUnavailable, match=f"model {BROKEN} in .* could not be loaded"):
        run(settings, image(8, 8), [step(op="upscale", model=BROKEN, num_inference_steps=2)], [0])
    with pytest.raises(ModelUnavailable, match=f"darkroom models pull {ABSENT}"):
        run(settings, image(8, 8), [step(op="upscale", model=ABSENT, num_inference_steps=2)], [0])


def test_the_steps_share_the_apps_loaded_models(settings):
    ctx = SimpleNamespace(settings=settings, device=CPU, worker_id="any")
    run(settings, image(8, 8), [step(**UPSCALE)], [0])
    cache = diffusion.pipeline_cache(ctx)
    loads = cache.loads
    assert "tiny-ldm" in cache.loaded()
    run(settings, image(8, 8), [step(**UPSCALE)], [0])
    assert cache.loads == loads
