"""The diffusion model registry: model name -> where its weights live, which diffusers pipeline loads
it, which app it serves and whether it takes a prompt. Torch-free: the API validates model names
against it; workers (worker/diffusion/loader.py) load what it names.

Built-in models are named by their Hugging Face repo ids and live, once pulled, in
``<models_dir>/<owner>--<name>``. ``settings.models_config`` (a JSON file) adds or overrides entries::

    {"my-upscaler": {"path": "my-upscaler", "pipeline": "LDMSuperResolutionPipeline"},
     "sd15-local": {"repo": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                    "pipeline": "StableDiffusionImg2ImgPipeline", "kind": "refine", "takes_prompt": true}}

``kind`` and ``takes_prompt`` follow from the pipeline class; when given they must agree with it. A
relative ``path`` is taken from the config file's folder. Workers never download: a model that is not
on disk fails its job with ``model_unavailable`` and the message names ``darkroom models pull``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

if TYPE_CHECKING:
    from darkroom.settings import Settings

Kind = Literal["upscale", "refine", "restore", "matte"]
PipelineName = Literal[
    "LDMSuperResolutionPipeline", "StableDiffusionUpscalePipeline", "StableDiffusionImg2ImgPipeline",
    "Swin2SRForImageSuperResolution", "onnx-segmentation",
]
# how the model loads (a diffusers pipeline class, a transformers model class, or an ONNX graph)
# -> (what it serves, takes a prompt)
MODEL_PIPELINES: dict[str, tuple[Kind, bool]] = {
    "LDMSuperResolutionPipeline": ("upscale", False),
    "StableDiffusionUpscalePipeline": ("upscale", True),
    "StableDiffusionImg2ImgPipeline": ("refine", True),
    "Swin2SRForImageSuperResolution": ("restore", False),  # the pipeline's restore step (transformers)
    "onnx-segmentation": ("matte", False),  # the remove_background step (ONNX Runtime)
}
# the file whose presence says a model folder is complete enough to try, by how it loads
MARKERS = {"Swin2SRForImageSuperResolution": "config.json", "onnx-segmentation": "model.onnx"}
# What `models pull` fetches: configs, tokenizers and one full-precision copy of the weights (no
# fp16/EMA duplicates, no safety checker: Darkroom does not load one, see worker/diffusion/loader.py).
ALLOW_PATTERNS = ("model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors")
IGNORE_PATTERNS = ("safety_checker/*", "*.fp16.*", "*non_ema*", "*.ckpt")
MARKER_FILE = "model_index.json"  # a diffusers model folder is complete enough to try when this is there


@dataclass(frozen=True)
class ModelSpec:
    name: str
    pipeline: str  # a key of MODEL_PIPELINES
    repo: str | None = None  # Hugging Face repo id (pulled into models_dir)
    path: Path | None = None  # or a local folder (never pulled)
    description: str = ""
    allow_patterns: tuple[str, ...] = ALLOW_PATTERNS
    url: str | None = None  # or one file published at a URL (pulled as the marker file), with its md5
    md5: str | None = None

    @property
    def kind(self) -> Kind:
        return MODEL_PIPELINES[self.pipeline][0]

    @property
    def takes_prompt(self) -> bool:
        return MODEL_PIPELINES[self.pipeline][1]

    @property
    def source(self) -> str:
        return self.repo or self.url or str(self.path)

    def local_dir(self, models_dir: Path) -> Path:
        if self.path is not None:
            return self.path
        return Path(models_dir) / str(self.repo or self.name).replace("/", "--")

    @property
    def marker(self) -> str:
        return MARKERS.get(self.pipeline, MARKER_FILE)

    def is_present(self, models_dir: Path) -> bool:
        return (self.local_dir(models_dir) / self.marker).is_file()

    def pull_hint(self) -> str:
        if self.repo or self.url:
            return f"run `darkroom models pull {self.name}` where a network is available"
        return f"put the model folder ({self.marker} and its weights) at {self.path}"


DEFAULT_UPSCALE_MODEL = "CompVis/ldm-super-resolution-4x-openimages"
DEFAULT_REFINE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        DEFAULT_UPSCALE_MODEL, "LDMSuperResolutionPipeline", repo=DEFAULT_UPSCALE_MODEL,
        description="Latent-diffusion 4x super-resolution (no prompt)",
        allow_patterns=(*ALLOW_PATTERNS, "*/*.bin"),  # published as .bin weights
    ),
    ModelSpec(
        "stabilityai/stable-diffusion-x4-upscaler", "StableDiffusionUpscalePipeline",
        repo="stabilityai/stable-diffusion-x4-upscaler",
        description="Stable Diffusion 4x upscaler (prompt, negative prompt, noise level)",
    ),
    ModelSpec(
        DEFAULT_REFINE_MODEL, "StableDiffusionImg2ImgPipeline", repo=DEFAULT_REFINE_MODEL,
        description="Stable Diffusion 1.5 image-to-image",
    ),
    ModelSpec(  # the pipeline's restore step; main publishes .bin weights, a safetensors copy may come
        "caidas/swin2SR-compressed-sr-x4-48", "Swin2SRForImageSuperResolution",
        repo="caidas/swin2SR-compressed-sr-x4-48",
        description="Swin2SR x4 for compressed (JPEG) input, 12M parameters (Apache-2.0)",
        allow_patterns=("config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin"),
    ),
    ModelSpec(  # no Hub repo publishes it as model.onnx: rembg's release asset (docs/models.md)
        "u2net", "onnx-segmentation",
        description="U²-Net salient-object matte, 320 px input (ONNX, Apache-2.0)",
        url="https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx",
        md5="60024c5c889badc19c04ad937298a77b",
    ),
)

_REGISTRY: dict[str, ModelSpec] = {m.name: m for m in BUILTIN_MODELS}


class ModelsConfigError(ValueError):
    """The models config file is unreadable or names an impossible model."""


class _Entry(BaseModel):
    """One entry of the models config file."""

    model_config = ConfigDict(extra="forbid")

    pipeline: PipelineName
    repo: str | None = None
    path: str | None = None
    url: str | None = None  # a model published as one file (ONNX): pulled as its marker file
    md5: str | None = None
    kind: Kind | None = None
    takes_prompt: bool | None = None
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> _Entry:
        if sum(v is not None for v in (self.repo, self.path, self.url)) != 1:
            raise ValueError(
                "give exactly one of `repo` (a Hugging Face repo id), `path` (a folder) or `url` (one file)"
            )
        kind, takes_prompt = MODEL_PIPELINES[self.pipeline]
        if self.kind is not None and self.kind != kind:
            raise ValueError(f"{self.pipeline} serves the {kind} app, not {self.kind}")
        if self.takes_prompt is not None and self.takes_prompt != takes_prompt:
            raise ValueError(f"{self.pipeline} {'takes' if takes_prompt else 'takes no'} prompt")
        return self


def load_models_config(path: Path) -> list[ModelSpec]:
    """The entries of a models config file (ModelsConfigError naming the file and entry when bad)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelsConfigError(f"models_config {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelsConfigError(f"models_config {path}: expected an object mapping names to entries")
    specs = []
    for name, raw in data.items():
        try:
            entry = _Entry.model_validate(raw)
        except ValidationError as exc:
            errors = "; ".join(
                (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + e["msg"] for e in exc.errors()
            )
            raise ModelsConfigError(f"models_config {path}: model {name!r}: {errors}") from None
        folder = None
        if entry.path is not None:
            folder = Path(entry.path)
            folder = folder if folder.is_absolute() else Path(path).resolve().parent / folder
        specs.append(ModelSpec(name, entry.pipeline, entry.repo, folder, entry.description,
                               url=entry.url, md5=entry.md5))
    return specs


def register_model(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def use_models_config(settings: Settings) -> None:
    """Add the entries of ``settings.models_config`` (if set) to the registry of this process."""
    if settings.models_config:
        for spec in load_models_config(settings.models_config):
            register_model(spec)


def get_model(name: str) -> ModelSpec | None:
    return _REGISTRY.get(name)


def all_models(kind: Kind | None = None) -> list[ModelSpec]:
    return [m for m in _REGISTRY.values() if kind is None or m.kind == kind]


def model_names(kind: Kind) -> str:
    """The names serving ``kind``, for error messages."""
    return ", ".join(m.name for m in all_models(kind))


def dtype_name(device_type: str) -> str:
    """Weights dtype per device: fp16 on CUDA, fp32 elsewhere (CPU kernels are slow or missing in fp16)."""
    return "float16" if device_type == "cuda" else "float32"
