"""Loading diffusion pipelines once per worker process, and keeping the recently used ones.

Models are loaded from local folders only (``local_files_only``; the worker process also runs with
``HF_HUB_OFFLINE=1``), in fp16 on CUDA and fp32 on CPU, with the VAE's slicing and tiling on so large
images and batches decode in bounded memory. No safety checker is loaded: Darkroom post-processes the
caller's own images. A cache holds pipelines under a memory budget and unloads the least recently
used beyond it; only the batcher thread runs pipelines, a lock guards the cache all the same.
"""

from __future__ import annotations

import gc
import inspect
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch

from darkroom.errors import ModelUnavailable
from darkroom.models import ModelSpec, dtype_name, get_model

log = logging.getLogger(__name__)
MB = 1024 * 1024


def require_model(name: str, models_dir: Path) -> ModelSpec:
    """The registry entry of ``name`` if its files are on disk; ModelUnavailable (fast) otherwise."""
    spec = get_model(name)
    if spec is None:
        raise ModelUnavailable(f"model {name!r} is not known to this worker (check DARKROOM_MODELS_CONFIG)")
    if not spec.is_present(models_dir):
        raise ModelUnavailable(
            f"model {name} is not available on this worker: no model in {spec.local_dir(models_dir)}; "
            f"{spec.pull_hint()}"
        )
    return spec


def load_pipeline(spec: ModelSpec, models_dir: Path, device: torch.device):
    """The diffusers pipeline of ``spec`` on ``device`` (ModelUnavailable when its files are unusable)."""
    import diffusers

    diffusers.utils.logging.disable_progress_bar()
    cls = getattr(diffusers, spec.pipeline)
    folder = spec.local_dir(models_dir)
    kwargs: dict = {"dtype": getattr(torch, dtype_name(device.type)), "local_files_only": True}
    params = inspect.signature(cls.__init__).parameters
    if "safety_checker" in params:
        kwargs["safety_checker"] = None
    if "requires_safety_checker" in params:
        kwargs["requires_safety_checker"] = False
    try:
        pipe = cls.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ModelUnavailable(
            f"model {spec.name} in {folder} could not be loaded ({type(exc).__name__}: {exc}); "
            f"{spec.pull_hint()}"
        ) from None
    return configure(pipe, device)


def configure(pipe, device: torch.device):
    """Put a loaded pipeline on ``device``, quiet, with VAE slicing and tiling where the VAE has them."""
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    vae = getattr(pipe, "vae", None) or getattr(pipe, "vqvae", None)
    for switch in ("enable_slicing", "enable_tiling"):  # the VAE only tiles above its own tile size
        try:
            getattr(vae, switch)()
        except (AttributeError, NotImplementedError):  # VQModel declares slicing without having it
            log.debug("the VAE of %s has no %s", type(pipe).__name__, switch)
    return pipe


def pipeline_bytes(pipe) -> int:
    """Memory held by the pipeline's modules (parameters and buffers)."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for t in (*component.parameters(), *component.buffers()):
                total += t.numel() * t.element_size()
    return total


class PipelineCache:
    """Loaded pipelines by model name, least recently used first, under ``budget_mb``."""

    def __init__(self, models_dir: Path, device: torch.device, budget_mb: int) -> None:
        self.models_dir = Path(models_dir)
        self.device = device
        self.budget_bytes = budget_mb * MB
        self._lock = threading.Lock()
        self._pipes: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self.loads = 0

    def get(self, name: str) -> tuple[object, float]:
        """The pipeline of model ``name`` and the seconds spent loading it now (0 when cached)."""
        with self._lock:
            if name in self._pipes:
                self._pipes.move_to_end(name)
                return self._pipes[name][0], 0.0
            t0 = time.perf_counter()
            spec = require_model(name, self.models_dir)
            pipe = load_pipeline(spec, self.models_dir, self.device)
            size = pipeline_bytes(pipe)
            self._pipes[name] = (pipe, size)
            self.loads += 1
            self._evict()
            elapsed = time.perf_counter() - t0
            log.info("loaded model %s (%.0f MB) on %s in %.2fs", name, size / MB, self.device, elapsed)
            return pipe, elapsed

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._pipes)

    def _evict(self) -> None:
        evicted = False
        while len(self._pipes) > 1 and sum(size for _, size in self._pipes.values()) > self.budget_bytes:
            name, _ = self._pipes.popitem(last=False)
            log.info("unloaded model %s (model_cache_mb=%d)", name, self.budget_bytes // MB)
            evicted = True
        if evicted:
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


_PROCESS_CACHES: dict[tuple[str, str, int], PipelineCache] = {}  # (models dir, device, budget) -> cache
_PROCESS_LOCK = threading.Lock()


def process_cache(models_dir: Path, device: torch.device, budget_mb: int) -> PipelineCache:
    """This process's cache of the models in ``models_dir`` on ``device``: the diffusion apps and the
    pipeline's ``upscale`` and ``refine`` steps share it, so a model loads once per worker process
    whichever of them runs it, under one memory budget."""
    key = (str(Path(models_dir).resolve()), str(device), budget_mb)
    with _PROCESS_LOCK:
        if key not in _PROCESS_CACHES:
            _PROCESS_CACHES[key] = PipelineCache(models_dir, device, budget_mb)
        return _PROCESS_CACHES[key]
