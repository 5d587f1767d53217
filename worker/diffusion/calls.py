"""One diffusers pipeline call for a batch of requests.

Every output image gets its own ``torch.Generator`` (CPU, seeded ``seed + k`` for image ``k`` of a
request) and the pipelines draw each item's noise from its own generator, so an item's output does
not depend on its batch-mates: a request run alone or in any batch gives the same image (to float
rounding). Images arrive as (B, 3, H, W) float32 in [0, 1] on the device and leave the same way on
the CPU.

Upscaling runs the 4x models on overlapping tiles (worker/diffusion/tiler.py); each tile is one
pipeline call over the whole batch, and a request's generator is drawn from tile after tile in the
same order alone or batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from darkroom.apps.post_processing import MAX_SEED
from worker.diffusion.steps import StepMonitor
from worker.diffusion.tiler import pad_to, plan, run_tiled


@dataclass(frozen=True)
class Member:
    """One request's share of a batch call."""

    seed: int
    prompt: str = ""
    negative_prompt: str = ""
    num_images: int = 1


@dataclass(frozen=True)
class Params:
    """What all members of a batch share (the batch key)."""

    steps: int
    guidance_scale: float | None = None
    strength: float = 1.0
    noise_level: int | None = None


@dataclass(frozen=True)
class Tiling:
    tile_px: int
    overlap_px: int


def generators(members: list[Member]) -> list[torch.Generator]:
    """One CPU generator per output image: image k of a request is seeded ``seed + k``."""
    return [
        torch.Generator("cpu").manual_seed((m.seed + k) % (MAX_SEED + 1))
        for m in members
        for k in range(m.num_images)
    ]


def _per_image(members: list[Member], attr: str) -> list[str]:
    return [getattr(m, attr) for m in members for _ in range(m.num_images)]


def refine(pipe, images: torch.Tensor, members: list[Member], params: Params, monitor: StepMonitor):
    """Image-to-image: one (num_images, 3, H, W) tensor per member."""
    height, width = images.shape[-2:]
    align = pipe.vae_scale_factor
    x = pad_to(images, -(-height // align) * align, -(-width // align) * align)
    counts = [m.num_images for m in members]
    x = x.repeat_interleave(torch.tensor(counts, device=x.device), dim=0)
    monitor.expect(min(int(params.steps * params.strength), params.steps))
    monitor.check()
    out = pipe(
        prompt=_per_image(members, "prompt"),
        negative_prompt=_per_image(members, "negative_prompt"),
        image=x,
        strength=params.strength,
        num_inference_steps=params.steps,
        guidance_scale=params.guidance_scale,
        generator=generators(members),
        output_type="pt",
        callback_on_step_end=monitor.on_step_end,
    ).images
    out = out[..., :height, :width].to("cpu", torch.float32)
    return list(torch.split(out, counts))


def native_scale(pipe) -> int:
    """The upscale factor of the model: its VAE decoder's (latents live on the input's pixel grid)."""
    vae = getattr(pipe, "vae", None) or pipe.vqvae
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _upscale_tile(pipe, tile: torch.Tensor, members: list[Member], params: Params, gens, monitor):
    if "text_encoder" not in pipe.components:  # LDM super-resolution: no prompt, no callbacks
        with monitor.unet_hook(pipe.unet):
            return pipe(image=tile * 2 - 1, num_inference_steps=params.steps, generator=gens,
                        output_type="pt").images
    return pipe(
        prompt=[m.prompt for m in members],
        negative_prompt=[m.negative_prompt for m in members],
        image=tile,
        num_inference_steps=params.steps,
        guidance_scale=9.0 if params.guidance_scale is None else params.guidance_scale,
        noise_level=20 if params.noise_level is None else params.noise_level,
        generator=gens,
        output_type="pt",
        callback=monitor.legacy_callback,
        callback_steps=1,
    ).images


def upscale(
    pipe, images: torch.Tensor, members: list[Member], params: Params, tiling: Tiling,
    monitor: StepMonitor, scale: int = 4,
) -> list[torch.Tensor]:
    """Tile-by-tile upscale by the model's factor, then down to ``scale``: one (1, 3, sH, sW) per member."""
    factor = native_scale(pipe)
    align = 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    height, width = images.shape[-2:]
    monitor.expect(params.steps * plan(height, width, tiling.tile_px, tiling.overlap_px, align).count)
    monitor.check()
    gens = generators([Member(m.seed) for m in members])
    y = run_tiled(
        images, lambda tile: _upscale_tile(pipe, tile, members, params, gens, monitor),
        tiling.tile_px, tiling.overlap_px, factor, align,
    )
    if scale != factor:  # scale 2 with a 4x model: area-average the 4x output down
        y = F.interpolate(y, size=(height * scale, width * scale), mode="area")
    return list(torch.split(y.clamp_(0, 1), 1))
