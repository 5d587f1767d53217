"""Segmentation models for the ``remove_background`` step: ONNX graphs run by ONNX Runtime, loaded
once per worker process and kept (docs/models.md).

A model folder holds ``model.onnx`` and, optionally, ``matte.json`` saying how to feed it and read
it (:class:`MatteConfig`; the defaults are U²-Net's reference pre- and post-processing)::

    {"input_size": 1024, "mean": [0.5, 0.5, 0.5], "std": [1, 1, 1], "output": "minmax"}

Nothing in the folder is executed: an ONNX file is a graph of standard operators, unlike a pickled
checkpoint or a Hub repository's custom code. Sessions run on CUDA (the ``CUDAExecutionProvider``)
when the worker's device is a GPU and this ONNX Runtime build has it, on the CPU otherwise. A batch
goes through one ``run`` when the graph's batch axis is dynamic, one image at a time when it is fixed.
A model that cannot be loaded raises ModelUnavailable: the job fails, the worker carries on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from darkroom.errors import InvalidInput, ModelUnavailable
from darkroom.models import ModelSpec
from worker.diffusion.loader import require_model

log = logging.getLogger(__name__)
GRAPH_FILE = "model.onnx"
CONFIG_FILE = "matte.json"
DEFAULT_INPUT_SIZE = 320  # U²-Net's
MAX_LOADED = 4  # sessions a worker keeps; the least recently used goes beyond it


class MatteConfig(BaseModel):
    """How to feed a segmentation graph and read its answer (``matte.json`` next to ``model.onnx``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int | None = Field(
        None, ge=8, le=4096, description="Square input side; default: the graph's own, else 320"
    )
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet's, as U²-Net's reference
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    rescale: Literal["max", "none"] = Field(
        "max", description="max: divide the resized RGB by its largest value first (U²-Net, IS-Net)"
    )
    output: Literal["minmax", "sigmoid", "clamp"] = Field(
        "minmax", description="minmax: stretch each map to 0-1 (the references); sigmoid: the graph "
        "gives logits; clamp: it gives probabilities"
    )
    output_index: int = Field(0, ge=0, description="Which graph output is the matte (U²-Net: d0, the first)")


@dataclass
class MatteModel:
    """A loaded graph: ``matte`` turns RGB images into alpha mattes of the same size."""

    name: str
    session: Any  # onnxruntime.InferenceSession
    config: MatteConfig
    size: int
    dynamic_batch: bool
    input_name: str
    output_name: str
    input_dtype: np.dtype

    def matte(self, rgb: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` straight RGB in [0, 1] -> ``(B, 1, H, W)`` matte in [0, 1], same device."""
        h, w = rgb.shape[2], rgb.shape[3]
        scores = self.scores(self.prepare(rgb))
        m = self.finish(torch.from_numpy(scores).to(rgb.device, torch.float32))
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return m.clamp_(0.0, 1.0)

    def prepare(self, rgb: torch.Tensor) -> np.ndarray:
        """Resize to the input side, rescale and normalise: the graph's input, on the host."""
        s = self.size
        x = rgb if tuple(rgb.shape[2:]) == (s, s) else F.interpolate(
            rgb, size=(s, s), mode="bilinear", align_corners=False, antialias=True
        )
        x = x.clamp(0.0, 1.0)
        if self.config.rescale == "max":
            x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        mean = torch.tensor(self.config.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).cpu().numpy().astype(self.input_dtype, copy=False)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The graph's matte output ``(B, 1, h, w)`` float32 for input ``x``: one run for the batch,
        or one per image when the graph's batch axis is fixed."""
        if self.dynamic_batch or x.shape[0] == 1:
            out = self._run(x)
        else:
            out = np.concatenate([self._run(x[i : i + 1]) for i in range(x.shape[0])])
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 3:
            out = out[:, None]
        if out.ndim != 4 or out.shape[0] != x.shape[0]:
            raise ModelUnavailable(
                f"model {self.name}: output {self.output_name!r} has shape {out.shape}; a matte model "
                "gives (batch, 1, height, width)"
            )
        return out[:, :1]

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def finish(self, m: torch.Tensor) -> torch.Tensor:
        """Scores -> a matte in [0, 1], each image on its own (so a batch changes nothing)."""
        if self.config.output == "sigmoid":
            return torch.sigmoid(m)
        if self.config.output == "minmax":
            lo = m.amin(dim=(1, 2, 3), keepdim=True)
            span = m.amax(dim=(1, 2, 3), keepdim=True) - lo
            flat = span < 1e-6  # a constant map has no range to stretch: keep it as it is
            return torch.where(flat, m, (m - lo) / span.clamp_min(1e-6))
        return m


# --- loading ---------------------------------------------------------------------------------------


def read_config(folder: Path, name: str) -> MatteConfig:
    path = folder / CONFIG_FILE
    if not path.is_file():
        return MatteConfig()
    try:
        return MatteConfig.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        detail = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        ) if isinstance(exc, ValidationError) else str(exc)
        raise ModelUnavailable(f"model {name}: {path} is not a valid matte config ({detail})") from None


def providers(device: torch.device) -> list:
    """ONNX Runtime execution providers for ``device``: CUDA first on a GPU when this build has it."""
    import onnxruntime as ort

    if device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        log.warning("this onnxruntime has no CUDA provider (install onnxruntime-gpu): mattes run on the CPU")
    return ["CPUExecutionProvider"]


def load_matte_model(spec: ModelSpec, models_dir: Path, device: torch.device, threads: int = 0) -> MatteModel:
    """The session of ``spec``'s ``model.onnx`` (ModelUnavailable when it cannot be loaded or is not a
    segmentation graph)."""
    import onnxruntime as ort

    folder = spec.local_dir(models_dir)
    config = read_config(folder, spec.name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
    graph = folder / GRAPH_FILE
    try:
        session = ort.InferenceSession(str(graph), sess_options=options, providers=providers(device))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own classes for every kind of bad file
        raise ModelUnavailable(
            f"model {spec.name}: {graph} could not be loaded ({type(exc).__name__}: "
            f"{str(exc)[:300]}); {spec.pull_hint()}"
        ) from None
    return _inspect(spec.name, session, config)


def _inspect(name: str, session: Any, config: MatteConfig) -> MatteModel:
    """Check the graph's input is ``(batch, 3, size, size)`` and pick its matte output."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = list(inputs[0].shape) if inputs else []
    if len(inputs) != 1 or len(shape) != 4 or shape[1] not in (3, "3"):
        raise ModelUnavailable(
            f"model {name}: a matte model takes one (batch, 3, side, side) input; this one takes {shape}"
        )
    if config.output_index >= len(outputs):
        raise ModelUnavailable(
            f"model {name}: matte.json says output_index {config.output_index}, but the graph has "
            f"{len(outputs)} outputs"
        )
    fixed = [d for d in shape[2:] if isinstance(d, int)]
    size = config.input_size or (fixed[0] if fixed else DEFAULT_INPUT_SIZE)
    if any(d != size for d in fixed):
        raise ModelUnavailable(f"model {name}: its input is {shape[2]}x{shape[3]}, but input_size is {size}")
    dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
    return MatteModel(
        name, session, config, size, not isinstance(shape[0], int), inputs[0].name,
        outputs[config.output_index].name, np.dtype(dtype),
    )


class MatteModels:
    """Loaded matte models by name, least recently used first (at most ``MAX_LOADED``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple, MatteModel] = OrderedDict()

    def get(self, name: str, models_dir: Path, device: torch.device, threads: int = 0) -> MatteModel:
        spec = require_model(name, Path(models_dir))
        if spec.kind != "matte":
            raise InvalidInput(f"{name} is a {spec.kind} model; remove_background takes a matte model")
        key = (name, str(spec.local_dir(Path(models_dir))), str(device))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            t0 = time.perf_counter()
            model = load_matte_model(spec, Path(models_dir), device, threads)
            self._models[key] = model
            while len(self._models) > MAX_LOADED:
                self._models.popitem(last=False)
            log.info(
                "loaded matte model %s (input %d px, %s batch) with %s in %.2fs", name, model.size,
                "dynamic" if model.dynamic_batch else "fixed", model.session.get_providers()[0],
                time.perf_counter() - t0,
            )
            return model

    def loaded(self) -> list[str]:
        with self._lock:
            return [key[0] for key in self._models]

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


MODELS = MatteModels()  # this worker process's (a module global: kernels get no worker context)


def get_matte_model(name: str, settings: Any, device: torch.device) -> MatteModel:
    """The loaded model ``name`` for a kernel: from ``settings.models_dir``, with the worker's threads."""
    return MODELS.get(name, settings.models_dir, device, getattr(settings, "torch_threads", 0))
