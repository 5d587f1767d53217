"""The effects pipeline (fal-ai/post-processing and its single-effect apps)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from darkroom.apps.post_processing import ImageInputBase
from darkroom.job import JobRecord
from worker import device_io, imaging
from worker.context import WorkerContext
from worker.effects.chain import Chain, chain_key, run_chain
from worker.fetch import fetch_input
from worker.pipelines import Pipeline, Prepared, register_pipeline
from worker.results import store_image


@dataclass
class EffectsJob(Prepared):
    chain: Chain = ()
    image: imaging.DecodedImage | device_io.DeviceImage | None = None
    extra: dict[str, imaging.DecodedImage] = field(default_factory=dict)


def prepare(ctx: WorkerContext, job: JobRecord, body: ImageInputBase) -> EffectsJob:
    """Fetch and decode the input image (and the dissolve image when dissolve is enabled)."""
    t0 = time.perf_counter()
    chain = body.effect_chain()
    image = _decode(ctx, fetch_input(body.image_url, ctx.objects, ctx.settings), bool(chain))
    extra = {}
    if any(name == "dissolve" for name, _ in chain):
        raw = fetch_input(body.dissolve_image_url, ctx.objects, ctx.settings, "dissolve_image_url")
        # resized here, in the job's slot, so the batcher thread does not (decisions.md §6)
        extra["dissolve"] = imaging.resize_rgb(imaging.decode(raw, ctx.limits), (image.height, image.width))
    key = (image.height, image.width, chain_key(chain))
    return EffectsJob(
        job, body, "effects", key, {"prepare_s": time.perf_counter() - t0},
        chain=chain, image=image, extra=extra,
    )


def _decode(ctx: WorkerContext, raw: bytes, on_device: bool) -> imaging.DecodedImage | device_io.DeviceImage:
    """On CUDA a JPEG that effects will change is decoded on the device (nvJPEG, worker.device_io);
    everything else, and anything nvJPEG declines, by imaging.decode."""
    if on_device and ctx.device.type == "cuda":
        image = device_io.decode_on_device(raw, ctx.limits, ctx.device)
        if image is not None:
            return image
    return imaging.decode(raw, ctx.limits)


def run(ctx: WorkerContext, batch: list[EffectsJob]) -> list:
    """The effects on a batch sharing image size and chain key; one uint8 RGB array per item."""
    first = batch[0]
    if not first.chain and all(p.image.bit_depth == 8 for p in batch):
        return [p.image.rgb for p in batch]  # nothing enabled: pixel-identical, no round trip
    size = chunk_size(ctx, first.image.height * first.image.width, len(batch))
    return [out for i in range(0, len(batch), size) for out in _run_chunk(ctx, batch[i : i + size])]


def chunk_size(ctx: WorkerContext, pixels: int, batch_size: int) -> int:
    """How many of a batch's images (``pixels`` pixels each) run through the chain together. On the
    CPU every effect is a few passes over memory: a chunk that fits in cache runs each pass there,
    while a batch much larger than the cache is slower per image than one image at a time
    (measured: 512² full chain, 18 ms per image one by one, 45 ms in a batch of 8; 256² three
    effects, 1.8 ms in chunks of four, 2.7 ms as one batch of 16). A GPU takes the whole batch."""
    budget = ctx.settings.cpu_chunk_mib * 2**20
    if ctx.device.type != "cpu" or budget <= 0:
        return batch_size
    return max(1, min(batch_size, int(budget // (3 * 4 * pixels))))


def _run_chunk(ctx: WorkerContext, batch: list[EffectsJob]) -> list:
    first = batch[0]
    x = imaging.to_tensor([p.image for p in batch], ctx.device)
    images = {}
    if "dissolve" in first.extra:
        size = (first.image.height, first.image.width)
        others = [imaging.resize_rgb(p.extra["dissolve"], size) for p in batch]
        images["dissolve"] = imaging.to_tensor(others, ctx.device)
    y = run_chain(x, [p.chain for p in batch], [p.job.seed for p in batch], images)
    if ctx.device.type != "cuda":
        return imaging.from_tensor(y)
    # On CUDA, outputs that nvJPEG will encode stay on the device as (3, H, W) uint8; the rest come back
    nvjpeg = device_io.jpeg_on_device_available(ctx.device)
    wanted = [device_io.wants_device_encode(p.body.output_format, p.body.output_quality,
                                            p.image.alpha is not None, nvjpeg=nvjpeg) for p in batch]
    on_device = device_io.to_uint8(y) if any(wanted) else None
    host = imaging.from_tensor(y) if not all(wanted) else None
    return [on_device[i] if w else host[i] for i, w in enumerate(wanted)]


def finish(ctx: WorkerContext, p: EffectsJob, rgb) -> dict:
    body = p.body
    if isinstance(rgb, torch.Tensor):  # (3, H, W) uint8 on the device: nvJPEG, or the host if it declines
        data = device_io.encode_on_device(rgb, p.image.icc_profile, body.output_format, body.output_quality)
        if data is not None:
            encoded = imaging.EncodedImage(data, "image/jpeg", "jpg", rgb.shape[2], rgb.shape[1])
            return {"images": [store_image(ctx, p.job, encoded, 0, body.sync_mode)], "seed": p.job.seed}
        rgb = device_io.download(rgb.permute(1, 2, 0).contiguous())
    encoded = imaging.encode(rgb, p.image.alpha, p.image.icc_profile, body.output_format, body.output_quality)
    return {"images": [store_image(ctx, p.job, encoded, 0, body.sync_mode)], "seed": p.job.seed}


register_pipeline(Pipeline("effects", prepare, run, finish))
