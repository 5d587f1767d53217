"""Loading the restore step's Swin2SR models once per worker process and device, and keeping them.

A model is transformers' ``Swin2SRForImageSuperResolution`` read from a local folder only
(``local_files_only``; workers run with ``HF_HUB_OFFLINE=1``), in fp16 on CUDA and fp32 on the CPU.
Anything that stops it loading (no folder, a config of another model type, missing or corrupt
weights, weights that leave parameters uninitialised) is :class:`ModelUnavailable`, which fails the job
and never the worker. Loaded models are kept by (name, folder, device, dtype), least recently used
first, under ``settings.model_cache_mb``; a lock makes concurrent first uses load once.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from darkroom.errors import ModelUnavailable
from darkroom.models import ModelSpec, dtype_name
from worker.batcher import is_out_of_memory
from worker.diffusion.loader import require_model

log = logging.getLogger(__name__)
MB = 1024 * 1024
PIPELINE = "Swin2SRForImageSuperResolution"


@dataclass(frozen=True)
class RestoreModel:
    """A loaded model and what the tiler needs to know about it."""

    name: str
    module: torch.nn.Module
    upscale: int  # output side / input side (1 for a denoising-only model)
    window_size: int  # inputs must be a multiple of it (else the model pads them itself)
    dtype: torch.dtype
    nbytes: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) RGB in [0, 1], h and w multiples of ``window_size`` -> (N, 3, h * up, w * up)
        float32, unclamped."""
        with torch.inference_mode():
            out = self.module(pixel_values=x.to(self.dtype)).reconstruction
        return out.float()


def load_restore_model(spec: ModelSpec, models_dir: Path, device: torch.device) -> RestoreModel:
    """The model of ``spec`` on ``device`` (ModelUnavailable when its files are unusable)."""
    folder = spec.local_dir(models_dir)
    if spec.pipeline != PIPELINE:
        raise ModelUnavailable(f"model {spec.name} is a {spec.kind} model ({spec.pipeline}), not {PIPELINE}")
    dtype = getattr(torch, dtype_name(device.type))
    try:
        module = _from_pretrained(folder, dtype).to(device).eval()
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"model {spec.name}: {exc.detail}; {spec.pull_hint()}") from None
    except Exception as exc:  # noqa: BLE001 - a bad model folder fails its jobs, never the worker
        if is_out_of_memory(exc):
            raise
        raise ModelUnavailable(
            f"model {spec.name} in {folder} could not be loaded ({type(exc).__name__}: {exc}); "
            f"{spec.pull_hint()}"
        ) from None
    config = module.config
    nbytes = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    upscale = int(config.upscale) if hasattr(module, "upsample") else 1  # no upsampler: same size
    return RestoreModel(spec.name, module, upscale, int(config.window_size), dtype, nbytes)


def _from_pretrained(folder: Path, dtype: torch.dtype) -> Any:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type != "swin2sr":
        raise ModelUnavailable(f"{folder}/config.json describes a {config.model_type!r} model, not swin2sr")
    module, info = transformers.Swin2SRForImageSuperResolution.from_pretrained(
        folder, config=config, dtype=dtype, local_files_only=True, output_loading_info=True
    )
    missing = sorted(info.get("missing_keys") or ()) + sorted(info.get("mismatched_keys") or ())
    if missing:  # transformers would run them with random weights
        shown = ", ".join(map(str, missing[:3])) + (", …" if len(missing) > 3 else "")
        raise ModelUnavailable(f"the weights in {folder} lack {len(missing)} tensors ({shown})")
    return module


class RestoreModelCache:
    """Loaded restore models, least recently used first, under a memory budget."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple, RestoreModel] = OrderedDict()
        self.loads = 0

    def get(self, name: str, models_dir: Path, device: torch.device, budget_mb: int) -> RestoreModel:
        spec = require_model(name, Path(models_dir))
        key = (name, str(spec.local_dir(Path(models_dir))), str(device), dtype_name(device.type))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            t0 = time.perf_counter()
            model = load_restore_model(spec, Path(models_dir), device)
            self._models[key] = model
            self.loads += 1
            self._evict(budget_mb * MB)
            log.info("loaded restore model %s (%.0f MB, x%d) on %s in %.2fs",
                     name, model.nbytes / MB, model.upscale, device, time.perf_counter() - t0)
            return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def _evict(self, budget_bytes: int) -> None:
        evicted = False
        while len(self._models) > 1 and sum(m.nbytes for m in self._models.values()) > budget_bytes:
            key, _ = self._models.popitem(last=False)
            log.info("unloaded restore model %s (model_cache_mb=%d)", key[0], budget_bytes // MB)
            evicted = True
        if evicted:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


CACHE = RestoreModelCache()  # one per worker process: models load on first use and stay


def restore_model(name: str, settings: Any, device: torch.device) -> RestoreModel:
    """The loaded model ``name`` for ``device``, from ``settings.models_dir``."""
    if settings is None:
        raise ModelUnavailable("the restore step needs the worker's settings (models_dir)")
    return CACHE.get(name, settings.models_dir, device, settings.model_cache_mb)
