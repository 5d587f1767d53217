"""A tiny random-weight Swin2SR (the restore step's model class) built from a config, no downloads.

``build_tiny_restore`` seeds torch, builds ``Swin2SRForImageSuperResolution`` at toy size (embed_dim
8, one stage of one layer, one head) with the default checkpoint's upsampler (``pixelshuffle_aux``),
and saves it with ``save_pretrained``; tests register the folder (``register_tiny_restore`` or a
models config entry) and load it through the worker's real loader (worker/restore_model.py).

transformers initialises convolutions and linears with std 0.02, which makes a tiny model's output
nearly constant whatever its input, so tiling errors would hide. The builder re-draws them with a
fan-in scaled std (``gain`` / sqrt(fan_in)), so the output follows the input (std about 0.25 on noise)
and a tile border that is blended badly shows.

The model's reach from a tile edge, in input pixels, with window_size 4 and upscale 2: the first conv
(1) spreads an edge difference to the whole edge window (up to 4), then six 3x3 convs at input scale
and two at the output scale add about 6: about 10 px. tests/unit/test_op_restore.py relies on it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from darkroom.models import ModelSpec, register_model

PIPELINE = "Swin2SRForImageSuperResolution"


def build_tiny_restore(
    folder: Path, seed: int = 0, window_size: int = 4, upscale: int = 2,
    upsampler: str = "pixelshuffle_aux", gain: float = 0.7,
) -> Path:
    """Save a tiny Swin2SR into ``folder`` (config.json, model.safetensors, preprocessor_config.json).
    ``upsampler=""`` makes a same-size (denoising) model."""
    import torch
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution

    torch.manual_seed(seed)
    config = Swin2SRConfig(
        image_size=16, embed_dim=8, depths=[1], num_heads=[1], window_size=window_size, mlp_ratio=2.0,
        upscale=upscale, upsampler=upsampler,
    )
    model = Swin2SRForImageSuperResolution(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                module.weight.normal_(0.0, gain / math.sqrt(module.weight[0].numel()))
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.01)
    model.save_pretrained(folder)
    processor = {"do_pad": True, "do_rescale": True, "image_processor_type": "Swin2SRImageProcessor",
                 "pad_size": window_size, "rescale_factor": 1 / 255}
    (Path(folder) / "preprocessor_config.json").write_text(json.dumps(processor))
    return Path(folder)


def register_tiny_restore(folder: Path, name: str, **build) -> ModelSpec:
    """Build a tiny model into ``folder`` and register it in this process under ``name``."""
    build_tiny_restore(folder, **build)
    return register_model(ModelSpec(name, PIPELINE, path=Path(folder), description="tiny test Swin2SR"))


def models_config_entry(folder_name: str) -> dict:
    """The models config (DARKROOM_MODELS_CONFIG) entry of a tiny model in ``folder_name`` next to it."""
    return {"path": folder_name, "pipeline": PIPELINE}
