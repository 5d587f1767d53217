"""Diffusion apps on tiny random-weight models: registry, validation, tiler, loader, batching, cancel.

The models are built from configs and saved with ``save_pretrained`` (tests/support/diffusion_models.py), then
registered through a models config file and loaded back by the worker's real registry and loader.
Batches run through the pipeline's own ``run`` with a real worker context (Redis job store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from pydantic import ValidationError

from darkroom.acceptance import ImageLimits
from darkroom.apps import APPS
from darkroom.apps.diffusion import REFINE_APP, UPSCALE_APP, RefineInput, UpscaleInput
from darkroom.cli import main as cli
from darkroom.cli.embedded import free_port
from darkroom.errors import ModelUnavailable, RequestCancelled
from darkroom.job import JobRecord
from darkroom.models import ModelsConfigError, dtype_name, get_model, load_models_config, use_models_config
from darkroom.settings import Settings
from storage.jobs import JobStore, redis_client
from storage.objects import build_object_store
from tests.support.diffusion_models import build_tiny_models
from tests.support.harness import ROOT, make_settings
from tests.support.images import gradient, png_data_uri
from worker.context import WorkerContext
from worker.diffusion.loader import PipelineCache
from worker.diffusion.steps import StepMonitor
from worker.diffusion.tiler import plan, run_tiled, tile_starts
from worker.pipelines import diffusion
from worker.runner import finish as runner_finish

pytestmark = pytest.mark.timeout(120)
ABSENT = "example/not-pulled"


@pytest.fixture(scope="module")
def models_config(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    config = build_tiny_models(folder)
    entries = json.loads(config.read_text())
    entries[ABSENT] = {"repo": ABSENT, "pipeline": "LDMSuperResolutionPipeline"}
    config.write_text(json.dumps(entries))
    use_models_config(Settings(models_config=config))  # what the API and workers do at start-up
    return config


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models are all overhead: one thread is faster, and steadier on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ctx(models_config, redis_url, tmp_path_factory):
    """A real worker context (Redis job store on its own database, local objects), tiny models."""
    settings = make_settings(
        redis_url.rsplit("/", 1)[0] + "/14", None, free_port(),
        local_storage_dir=tmp_path_factory.mktemp("objects"),
        models_dir=models_config.parent, models_config=models_config,
        progress_interval_s=0, upscale_tile_px=16, upscale_tile_overlap_px=4,
    )
    store = JobStore(redis_client(settings.redis_url, 2), settings.retention_s)
    objects, limits = build_object_store(settings), ImageLimits.from_settings(settings)
    return WorkerContext(settings, store, objects, torch.device("cpu"), limits)


def image(width: int = 32, height: int = 32, seed: int = 0) -> str:
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand(height, width, 3, generator=g) * 64).to(torch.uint8).numpy()
    return png_data_uri(gradient(width, height) // 2 + noise)


def job_for(ctx: WorkerContext, app: str, body: dict) -> diffusion.DiffusionJob:
    """Store a running job for ``body`` and prepare it as the worker does."""
    model = APPS[app].input_model.model_validate(body)
    job = JobRecord(
        id=str(uuid.uuid4()), app_id=app, base_id=app, input=model.model_dump(mode="json"),
        seed=model.seed, created_at=time.time(),
    )
    ctx.store.create(job)
    ctx.store.start(job, ctx.worker_id, 30)
    return diffusion.prepare(ctx, job, model)


def refine_body(seed: int, **extra) -> dict:
    body = {"image_url": image(seed=seed), "prompt": "a cat", "model": "tiny-refine", "seed": seed,
            "num_inference_steps": 4, "strength": 0.75}
    return {**body, **extra}


def run_alone(ctx, p) -> torch.Tensor:
    with torch.inference_mode():
        return diffusion.run(ctx, [p])[0]


def step_logs(ctx, request_id: str) -> list[str]:
    return [e["message"] for e in ctx.store.logs(request_id) if e["message"].startswith("step ")]


# --- registry and validation ----------------------------------------------------------------------


def test_models_config_registers_local_models(models_config):
    specs = {s.name: s for s in load_models_config(models_config)}
    assert specs["tiny-ldm"].kind == "upscale" and not specs["tiny-ldm"].takes_prompt
    assert specs["tiny-refine"].kind == "refine" and specs["tiny-refine"].takes_prompt
    assert specs["tiny-refine"].path == models_config.parent / "tiny-refine"  # relative to the file
    assert get_model("tiny-sd-upscaler").takes_prompt
    assert dtype_name("cuda") == "float16" and dtype_name("cpu") == "float32"


@pytest.mark.parametrize("entry, message", [
    ({"pipeline": "LDMSuperResolutionPipeline"}, "exactly one of `repo`"),
    ({"pipeline": "LDMSuperResolutionPipeline", "path": "x", "takes_prompt": True}, "takes no prompt"),
    ({"pipeline": "StableDiffusionImg2ImgPipeline", "path": "x", "kind": "upscale"}, "serves the refine"),
    ({"pipeline": "FluxPipeline", "path": "x"}, "pipeline"),
])
def test_bad_models_config_names_the_entry(tmp_path, entry, message):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"broken": entry}))
    with pytest.raises(ModelsConfigError, match="'broken'") as info:
        load_models_config(path)
    assert message in str(info.value)


@pytest.mark.parametrize("model, body, field, message", [
    (UpscaleInput, {"model": "tiny-ldm", "prompt": "a cat"}, "prompt", "takes no prompt"),
    (UpscaleInput, {"model": "tiny-ldm", "noise_level": 30}, "noise_level", "takes no noise_level"),
    (UpscaleInput, {"model": "tiny-refine"}, "model", "is a refine model"),
    (UpscaleInput, {"model": "nope"}, "model", "unknown model"),
    (UpscaleInput, {"scale": 3}, "scale", ""),
    (UpscaleInput, {"num_inference_steps": 0}, "num_inference_steps", ""),
    (RefineInput, {"model": "tiny-refine"}, "prompt", "required"),
    (RefineInput, {"prompt": "x", "model": "tiny-refine", "num_inference_steps": 151},
     "num_inference_steps", ""),
    (RefineInput, {"prompt": "x", "model": "tiny-refine", "num_images": 5}, "num_images", ""),
    (RefineInput, {"prompt": "x", "model": "tiny-refine", "strength": 0.1, "num_inference_steps": 4},
     "strength", "at least one denoising step"),
])
def test_inputs_are_validated_field_by_field(ctx, model, body, field, message):
    with pytest.raises(ValidationError) as info:
        model.model_validate({"image_url": "http://example.com/a.png", **body})
    error = info.value.errors()[0]
    assert error["loc"] == (field,)
    assert message in error["msg"]


def test_stored_jobs_leave_unknown_models_to_the_worker(ctx):
    body = {"image_url": "http://example.com/a.png", "model": "gone"}
    assert UpscaleInput.model_validate(body, context={"trusted": True}).model == "gone"


# --- tiler -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(32, 32), (37, 50), (10, 12), (64, 16)])
def test_tiler_reassembles_identity_and_nearest_exactly(height, width):
    x = torch.rand(2, 3, height, width)
    same = run_tiled(x, lambda t: t, tile=16, overlap=4, scale=1, align=8)
    assert same.shape == x.shape and torch.allclose(same, x, atol=1e-6)
    up = run_tiled(x, lambda t: F.interpolate(t, scale_factor=4, mode="nearest"), 16, 4, scale=4, align=8)
    assert up.shape == (2, 3, height * 4, width * 4)
    assert torch.allclose(up, F.interpolate(x, scale_factor=4, mode="nearest"), atol=1e-6)


def test_tiles_stay_bounded_and_cover_the_image():
    seen = []

    def fn(t):
        seen.append(tuple(t.shape[-2:]))
        return t

    run_tiled(torch.rand(1, 3, 100, 70), fn, tile=32, overlap=8, align=8)
    assert all(h <= 32 and w <= 32 for h, w in seen)
    assert len(seen) == plan(100, 70, 32, 8, 8).count == 12
    starts = tile_starts(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert all(b - a <= 32 - 8 for a, b in zip(starts, starts[1:], strict=False))  # overlap >= 8


def test_tiles_that_disagree_blend_without_seams():
    """Each tile returns its own constant: feathering turns every jump into a ramp over the overlap."""
    counter = iter(range(100))

    def fn(t):
        return torch.full((t.shape[0], 1, t.shape[2] * 2, t.shape[3] * 2), float(next(counter)))

    out = run_tiled(torch.rand(1, 3, 64, 64), fn, tile=32, overlap=8, scale=2)[0, 0]
    steps = max(out.diff(dim=0).abs().max(), out.diff(dim=1).abs().max())
    spread = out.max() - out.min()
    assert spread >= 3  # the tiles did differ (constants 0..8)
    assert steps <= spread / 16 + 1e-4  # never a jump: at most the range spread over a 16-px ramp


def test_smooth_function_per_tile_matches_the_whole_image():
    x = F.interpolate(torch.rand(1, 3, 12, 12), size=(60, 44), mode="bicubic", align_corners=False)
    whole = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    tiled = run_tiled(x, lambda t: F.interpolate(t, scale_factor=4, mode="bilinear", align_corners=False),
                      tile=16, overlap=4, scale=4, align=8)
    assert (tiled - whole).abs().max() < 0.02


# --- loader ----------------------------------------------------------------------------------------


def test_model_not_on_disk_fails_fast_naming_the_pull_command(ctx):
    with pytest.raises(ModelUnavailable, match=f"darkroom models pull {ABSENT}") as info:
        job_for(ctx, UPSCALE_APP, {"image_url": "http://127.0.0.1:9/never-fetched.png", "model": ABSENT,
                                   "seed": 1})
    assert info.value.code == "model_unavailable"
    with pytest.raises(ModelUnavailable, match="not known"):
        diffusion.require_model("never-registered", ctx.settings.models_dir)


def test_pipeline_cache_loads_once_and_unloads_the_least_recently_used(ctx):
    cache = PipelineCache(ctx.settings.models_dir, torch.device("cpu"), budget_mb=1)
    first, load_s = cache.get("tiny-ldm")
    assert load_s > 0 and next(first.unet.parameters()).dtype == torch.float32
    again, load_s = cache.get("tiny-ldm")
    assert again is first and load_s == 0 and cache.loads == 1
    cache.get("tiny-refine")  # both fit in 1 MB
    assert cache.loaded() == ["tiny-ldm", "tiny-refine"]
    cache.get("tiny-ldm")
    cache.budget_bytes = 0  # over budget: everything but the model in use goes
    cache.get("tiny-sd-upscaler")
    assert cache.loaded() == ["tiny-sd-upscaler"] and cache.loads == 3


# --- running ---------------------------------------------------------------------------------------


def test_seeded_runs_reproduce_and_seeds_matter(ctx):
    a = run_alone(ctx, job_for(ctx, REFINE_APP, refine_body(7)))
    b = run_alone(ctx, job_for(ctx, REFINE_APP, refine_body(7)))
    c = run_alone(ctx, job_for(ctx, REFINE_APP, {**refine_body(7), "seed": 8}))
    assert a.shape == (1, 3, 32, 32)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


BATCHES = {  # name -> app, image side, bodies (24 px = 2x2 tiles of 16 for the upscalers)
    "refine": (REFINE_APP, 32, [
        refine_body(1, num_images=2), refine_body(2, prompt="a dog", negative_prompt="sky"), refine_body(3),
    ]),
    "sd-upscaler": (UPSCALE_APP, 24, [
        {"image_url": image(24, 24, s), "model": "tiny-sd-upscaler", "seed": s, "prompt": p,
         "num_inference_steps": 2, "guidance_scale": 5.0}
        for s, p in ((1, "cat"), (2, "dog"), (3, ""))
    ]),
    "ldm": (UPSCALE_APP, 24, [
        {"image_url": image(24, 24, s), "model": "tiny-ldm", "seed": s, "num_inference_steps": 2, "scale": 2}
        for s in (1, 2, 3)
    ]),
}


@pytest.mark.parametrize("name", list(BATCHES))
def test_batched_outputs_equal_solo_outputs(ctx, name):
    app, side, bodies = BATCHES[name]
    jobs = [job_for(ctx, app, body) for body in bodies]
    assert len({p.batch_key for p in jobs}) == 1  # they are batch-mates
    solo = [run_alone(ctx, p) for p in jobs]
    with torch.inference_mode():
        batched = diffusion.run(ctx, jobs)
    for one, many, body in zip(solo, batched, bodies, strict=True):
        scale = body.get("scale", 4) if app == UPSCALE_APP else 1
        assert many.shape == (body.get("num_images", 1), 3, side * scale, side * scale)
        assert torch.allclose(one, many, atol=1e-4), (one - many).abs().max()
    done, total = step_logs(ctx, jobs[0].job.id)[-1].removeprefix("step ").split("/")
    assert done == total  # progress reached N/N (N = steps x tiles for the upscalers)


class CancelAtStep(JobStore):
    """The real job store, which requests cancellation of one job when it logs step ``at``."""

    def __init__(self, store: JobStore, target: str, at: int) -> None:
        super().__init__(store.r, store.retention_s)
        self.target, self.at = target, at

    def add_log(self, request_id: str, message: str, level: str = "INFO") -> None:
        super().add_log(request_id, message, level)
        if request_id == self.target and message.startswith(f"step {self.at}/"):
            self.cancel(self.get(request_id))
            assert self.cancel_requested(request_id)


def test_cancel_mid_batch_stops_that_job_within_a_step_and_the_others_carry_on(ctx):
    bodies = [refine_body(s, num_inference_steps=8, strength=1.0) for s in (11, 12, 13)]
    solo = [run_alone(ctx, job_for(ctx, REFINE_APP, b)) for b in bodies]
    jobs = [job_for(ctx, REFINE_APP, b) for b in bodies]
    target = jobs[1].job.id
    store = CancelAtStep(ctx.store, target, 2)
    cancelling = WorkerContext(ctx.settings, store, ctx.objects, ctx.device, ctx.limits)
    with torch.inference_mode():
        outputs = diffusion.run(cancelling, jobs)
    assert isinstance(outputs[1], RequestCancelled)
    assert step_logs(ctx, target) == ["step 1/8", "step 2/8"]  # stopped at the next step
    for k in (0, 2):
        assert torch.allclose(outputs[k], solo[k], atol=1e-4)
        assert step_logs(ctx, jobs[k].job.id)[-1] == "step 8/8"
        assert any("running this request again" in e["message"] for e in ctx.store.logs(jobs[k].job.id))
    with pytest.raises(RequestCancelled):
        runner_finish(cancelling, jobs[1], outputs[1])
    assert list(ctx.objects.list_objects(f"{target}/")) == []  # nothing written


def test_progress_is_throttled_but_reports_the_last_step():
    logged = []
    job = JobRecord(id="j", app_id=REFINE_APP, base_id=REFINE_APP, input={}, created_at=0)
    monitor = StepMonitor([job], lambda job: None, lambda rid, msg: logged.append(msg), interval_s=3600)
    monitor.expect(25)
    for _ in range(25):
        monitor.step()
    assert logged == ["step 1/25", "step 25/25"]


# --- command line ----------------------------------------------------------------------------------


def test_models_list_and_pull(models_config):
    env = {"DARKROOM_MODELS_DIR": str(models_config.parent), "DARKROOM_MODELS_CONFIG": str(models_config)}
    runner = CliRunner()
    listing = runner.invoke(cli, ["models", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    rows = {line.split()[0]: line.split() for line in listing.output.splitlines() if line.strip()}
    assert rows["tiny-ldm"][1:2] == ["upscale"] and rows["tiny-ldm"][-1] == "yes"
    assert rows[ABSENT][-1] == "no"
    assert rows["CompVis/ldm-super-resolution-4x-openimages"][1] == "upscale"
    local = runner.invoke(cli, ["models", "pull", "tiny-ldm"], env=env)
    assert local.exit_code == 1 and "nothing to pull" in local.output
    unknown = runner.invoke(cli, ["models", "pull", "nope"], env=env)
    assert unknown.exit_code == 1 and "unknown model" in unknown.output


def test_models_pull_without_network_fails_clearly(models_config):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DARKROOM_"))}
    env.update(DARKROOM_MODELS_DIR=str(models_config.parent), DARKROOM_MODELS_CONFIG=str(models_config),
               HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_ETAG_TIMEOUT="2", HF_HUB_DOWNLOAD_TIMEOUT="2")
    proc = subprocess.run(
        [sys.executable, "-m", "darkroom.cli", "models", "pull", ABSENT], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "could not download example/not-pulled" in proc.stderr and "network" in proc.stderr
